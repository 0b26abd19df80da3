"""What the sync and async clients share besides conversion: settings, checks, logging."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any, Final

import grpc

from .errors import MemoryApiError, MemoryUnavailableError

DEFAULT_ADDRESS = "localhost:50051"
DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_UPLOAD_TIMEOUT = 300.0

ChannelOptions = Sequence[tuple[str, Any]]

LOGGER: Final = logging.getLogger("sessionmemory")
"""The client's logger. Retries and stream resumes are logged at DEBUG, with the
method, the attempt, the status and reason, and the backoff; never the API key, a
value or a session id."""


def env_settings() -> tuple[str, str | None]:
    """Address and API key from SESSION_MEMORY_ADDR / SESSION_MEMORY_API_KEY."""
    return (
        os.environ.get("SESSION_MEMORY_ADDR") or DEFAULT_ADDRESS,
        os.environ.get("SESSION_MEMORY_API_KEY") or None,
    )


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})
# Each of these turns TLS on by itself.
_IMPLY_TLS = (
    "SESSION_MEMORY_TLS_CA",
    "SESSION_MEMORY_CLIENT_CERT",
    "SESSION_MEMORY_TLS_SERVER_NAME",
)


def _env_pem(name: str, marker: bytes) -> bytes | None:
    """The PEM file named by the variable ``name``, or None when it is unset."""
    path = os.environ.get(name)
    if not path:
        return None
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ValueError(f"{name}={path}: cannot read it ({exc.strerror or exc})") from exc
    if marker not in data:
        raise ValueError(f"{name}={path}: not a PEM file with a {marker.decode()} block")
    return data


def env_tls() -> tuple[grpc.ChannelCredentials | None, ChannelOptions]:
    """TLS credentials and channel options from the SESSION_MEMORY_TLS* variables.

    ``SESSION_MEMORY_TLS=true`` (1, yes, on) turns TLS on with grpc's root
    certificates; ``SESSION_MEMORY_TLS_CA`` (a PEM CA bundle to verify the server
    with), ``SESSION_MEMORY_CLIENT_CERT`` with ``SESSION_MEMORY_CLIENT_KEY`` (a client
    certificate and its key, for mTLS) and ``SESSION_MEMORY_TLS_SERVER_NAME`` (the
    name to check in the server's certificate instead of the address's host) each
    imply it. None and no options when none is set: plaintext.

    Raises:
        ValueError: a file is unreadable or not PEM, a certificate comes without
            its key (or a key without its certificate), SESSION_MEMORY_TLS is not
            a boolean, or it is false while another TLS variable is set.
    """
    flag = os.environ.get("SESSION_MEMORY_TLS", "").strip().lower()
    if flag not in _TRUE | _FALSE:
        raise ValueError(f"SESSION_MEMORY_TLS={flag!r}: use true or false")
    cert_path = os.environ.get("SESSION_MEMORY_CLIENT_CERT")
    key_path = os.environ.get("SESSION_MEMORY_CLIENT_KEY")
    if bool(cert_path) != bool(key_path):
        given, missing = (
            ("SESSION_MEMORY_CLIENT_CERT", "SESSION_MEMORY_CLIENT_KEY")
            if cert_path
            else ("SESSION_MEMORY_CLIENT_KEY", "SESSION_MEMORY_CLIENT_CERT")
        )
        raise ValueError(
            f"{given} is set without {missing}: a client certificate needs its private key"
        )
    implied = [name for name in _IMPLY_TLS if os.environ.get(name)]
    if flag in _FALSE and flag and implied:
        raise ValueError(f"SESSION_MEMORY_TLS={flag} but {implied[0]} is set: that needs TLS")
    if flag not in _TRUE and not implied:
        return None, ()
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_env_pem("SESSION_MEMORY_TLS_CA", b"-----BEGIN CERTIFICATE"),
        private_key=_env_pem("SESSION_MEMORY_CLIENT_KEY", b"PRIVATE KEY-----"),
        certificate_chain=_env_pem("SESSION_MEMORY_CLIENT_CERT", b"-----BEGIN CERTIFICATE"),
    )
    server_name = os.environ.get("SESSION_MEMORY_TLS_SERVER_NAME")
    options = () if not server_name else (("grpc.ssl_target_name_override", server_name),)
    return credentials, options


def env_channel(
    credentials: grpc.ChannelCredentials | None, options: ChannelOptions
) -> tuple[grpc.ChannelCredentials | None, ChannelOptions]:
    """A from_env constructor's credentials and options: the caller's, else the environment's.

    Explicit ``credentials`` win over every SESSION_MEMORY_TLS* variable; the
    environment's channel options come before the caller's.

    Raises:
        ValueError: as `env_tls`, when ``credentials`` is None.
    """
    if credentials is not None:
        return credentials, options
    env_credentials, env_options = env_tls()
    return env_credentials, (*env_options, *options)


# The longest deadline sent: gRPC's deadline arithmetic overflows a little above 9e9
# seconds and then fails the call at once (DEADLINE_EXCEEDED), so ``timeout=math.inf``
# (or 1e12) is taken as this, about three years: no deadline in practice.
MAX_TIMEOUT: Final = 1e8


def seconds(name: str, value: float) -> float:
    """``value`` checked as a duration in seconds: positive, at most `MAX_TIMEOUT` (inf too).

    Raises:
        TypeError: ``value`` is not a number.
        ValueError: ``value`` is zero, negative or NaN.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name}={value!r}: a number of seconds, not {type(value).__name__}")
    if not value > 0:  # also refuses NaN
        raise ValueError(f"{name}={value!r}: a timeout is a positive number of seconds")
    return min(float(value), MAX_TIMEOUT)


def call_budget(timeout: float | None, default: float) -> float:
    """Seconds one call may take, retries included: ``timeout``, else the client's default.

    Raises:
        TypeError: ``timeout`` is not a number.
        ValueError: ``timeout`` is not a positive number of seconds.
    """
    if timeout is None:
        return default
    return seconds("timeout", timeout)


def redacted_key(api_key: str | None) -> str | None:
    """What a repr may show of an API key: its public part, never the secret.

    ``smk_<id>_<secret>`` keeps ``smk_<id>_`` (the id names the key in ``keys
    list``); a session token keeps ``smt_`` only (its payload names the session).
    """
    if api_key is None:
        return None
    parts = api_key.split("_", 2)
    if len(parts) == 3 and parts[0] == "smk" and parts[1] and parts[2]:
        return f"smk_{parts[1]}_\u2026(redacted)"
    if api_key.startswith("smt_"):
        return "smt_\u2026(redacted)"
    return "\u2026(redacted)"


def client_repr(
    cls: type,
    address: str,
    tls: bool,
    api_key: str | None,
    timeout: float,
) -> str:
    """``MemoryClient(address='…', tls=False, api_key='smk_<id>_…(redacted)', timeout=5.0)``."""
    return (
        f"{cls.__name__}(address={address!r}, tls={tls}, api_key={redacted_key(api_key)!r},"
        f" timeout={float(timeout)!r})"
    )


def log_retry(
    method: str, attempt: int, error: MemoryApiError, delay: float | None, retryable: bool
) -> None:
    """Log at DEBUG that attempt ``attempt`` of ``method`` failed and is retried after ``delay``.

    ``delay`` None: not retried. That is logged too when the failure was one a retry
    could fix (UNAVAILABLE on a call safe to repeat) but the attempts or the deadline
    are spent. Only the status and reason are logged: an error's message may quote a
    value or a session id.
    """
    if not LOGGER.isEnabledFor(logging.DEBUG):
        return
    if delay is None and not (retryable and error.status == grpc.StatusCode.UNAVAILABLE):
        return
    reason = error.code or "-"
    extra = {
        "rpc_method": method,
        "attempt": attempt,
        "status": error.status.name,
        "reason": reason,
        "backoff_seconds": delay,
    }
    if delay is None:
        LOGGER.debug(
            "%s attempt %d failed with %s (%s); giving up: attempts or deadline spent",
            method, attempt, error.status.name, reason, extra=extra,
        )  # fmt: skip
    else:
        LOGGER.debug(
            "%s attempt %d failed with %s (%s); retrying in %.3f s",
            method, attempt, error.status.name, reason, delay, extra=extra,
        )  # fmt: skip


def auth_metadata(api_key: str | None) -> tuple[tuple[str, str], ...] | None:
    """The call metadata carrying the API key, or None without a key."""
    return (("authorization", f"Bearer {api_key}"),) if api_key else None


def check_available(session_id: str | None, metadata: object) -> None:
    """Raise `MemoryUnavailableError` when a call cannot be made at all.

    ``session_id`` is None for calls outside a session (GetLimits).
    """
    if metadata is None:
        raise MemoryUnavailableError(
            "no API key: pass api_key= or set SESSION_MEMORY_API_KEY",
            status=grpc.StatusCode.UNAUTHENTICATED,
            code="API_KEY_MISSING",
        )
    if session_id == "":
        raise MemoryUnavailableError(
            "no session id: memory is only available inside a conversation",
            status=grpc.StatusCode.INVALID_ARGUMENT,
            code="INVALID_SESSION_ID",
        )
