"""What the sync and async clients share besides conversion: settings and checks."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import grpc

from .errors import MemoryUnavailableError

DEFAULT_ADDRESS = "localhost:50051"
DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_UPLOAD_TIMEOUT = 300.0

ChannelOptions = Sequence[tuple[str, Any]]


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


def env_client_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """A from_env constructor's keyword arguments: the caller's, TLS from the environment.

    Explicit ``credentials`` win over every SESSION_MEMORY_TLS* variable; the
    environment's channel options come before the caller's.
    """
    if "credentials" in kwargs:
        return kwargs
    credentials, options = env_tls()
    return {**kwargs, "credentials": credentials, "options": (*options, *kwargs.get("options", ()))}


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
