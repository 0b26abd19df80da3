"""TLS and mTLS of the gRPC port, from PEM files that may be rotated while it serves.

The files are read and checked at start: a missing, unreadable or mismatched
certificate or key stops the server with `TlsConfigError` naming the file.
After that, grpc asks `CertificateReloader` for the certificate before every
TLS handshake; at most every ``tls_reload_seconds`` it looks at the files'
inode, size and modification time, and when they changed it reads and checks
them again. A new pair that does not fit (a half-written rotation, a key of
another certificate) is ignored with one warning: connections keep getting
the previous certificate until the files fit again. Connections already open
keep the certificate of their handshake.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import grpc

from .config import Settings

log = logging.getLogger("sessionmemory_server.tls")

_PEM_BEGIN = b"-----BEGIN "


class TlsConfigError(ValueError):
    """A TLS file is missing, unreadable, not PEM, or the key is not the certificate's."""


@dataclass(frozen=True)
class _Files:
    """Where the PEM files are; ``client_ca`` None means no client certificates (TLS)."""

    cert: str
    key: str
    client_ca: str | None

    def paths(self) -> tuple[str, ...]:
        return (self.cert, self.key) + (() if self.client_ca is None else (self.client_ca,))


@dataclass(frozen=True)
class _Pems:
    cert: bytes
    key: bytes
    client_ca: bytes | None

    def configuration(self) -> grpc.ServerCertificateConfiguration:
        return grpc.ssl_server_certificate_configuration([(self.key, self.cert)], self.client_ca)


# A file's identity and version: a Kubernetes Secret volume swaps a symlink (new
# inode), cert-manager and editors rewrite in place (new mtime/size).
_Signature = tuple[tuple[int, int, int], ...]


def _signature(files: _Files) -> _Signature:
    stats = [os.stat(path) for path in files.paths()]
    return tuple((s.st_ino, s.st_mtime_ns, s.st_size) for s in stats)


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise TlsConfigError(f"{what} {path}: cannot read it ({exc.strerror or exc})") from exc
    if _PEM_BEGIN not in data:
        raise TlsConfigError(f"{what} {path}: not a PEM file (no '-----BEGIN' line)")
    return data


def _no_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key.
    raise TlsConfigError("the key is encrypted; give the server an unencrypted key")


def _load(files: _Files) -> _Pems:
    """Read and check the files: the key must be the certificate's, the CA a certificate."""
    pems = _Pems(
        _read(files.cert, "tls_cert"),
        _read(files.key, "tls_key"),
        None if files.client_ca is None else _read(files.client_ca, "tls_client_ca"),
    )
    # grpc would only find out at the first handshake (every one failing);
    # OpenSSL's own checks name the problem now.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(files.cert, files.key, password=_no_password)
    except TlsConfigError as exc:
        raise TlsConfigError(f"tls_key {files.key}: {exc}") from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            why = "the private key does not belong to the certificate"
        else:
            why = f"not a certificate chain and its private key ({exc.reason or exc})"
        raise TlsConfigError(f"tls_cert {files.cert} and tls_key {files.key}: {why}") from exc
    except OSError as exc:
        raise TlsConfigError(f"tls_cert {files.cert}: cannot read it ({exc})") from exc
    if pems.client_ca is not None:
        try:
            context.load_verify_locations(cadata=pems.client_ca.decode("ascii", "replace"))
        except (ssl.SSLError, ValueError) as exc:
            raise TlsConfigError(
                f"tls_client_ca {files.client_ca}: not a PEM CA bundle ({exc})"
            ) from exc
    # OpenSSL read the files a second time: if a rotation wrote them in between,
    # what was checked is not what was read.
    again = (
        _read(files.cert, "tls_cert"),
        _read(files.key, "tls_key"),
    )
    if again != (pems.cert, pems.key):
        raise TlsConfigError(f"tls_cert {files.cert} or tls_key {files.key} changed while read")
    return pems


def _files(settings: Settings) -> _Files | None:
    if settings.tls_cert is None or settings.tls_key is None:
        return None
    return _Files(settings.tls_cert, settings.tls_key, settings.tls_client_ca)


def mode(settings: Settings) -> str:
    """``"mtls"``, ``"tls"`` or ``"off"``: what the gRPC port of these settings speaks."""
    files = _files(settings)
    if files is None:
        return "off"
    return "tls" if files.client_ca is None else "mtls"


def check(settings: Settings) -> None:
    """Read and check the TLS files of ``settings`` (nothing when TLS is off).

    Raises:
        TlsConfigError: a file is missing, unreadable, not PEM, or the key is not
            the certificate's.
    """
    files = _files(settings)
    if files is not None:
        _load(files)


class CertificateReloader:
    """grpc's certificate fetcher: the files' pair again when they were rotated.

    grpc calls it from its own threads before every handshake, so a call costs
    a clock read unless ``interval`` has passed; it never raises (an exception
    would fail the handshake).
    """

    def __init__(
        self,
        cert: str,
        key: str,
        client_ca: str | None = None,
        *,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Read and check the files (see `check`); ``interval`` is in seconds of ``clock``.

        Raises:
            TlsConfigError: a file is missing, unreadable, not PEM, or the key is not
                the certificate's.
        """
        files = self._files = _Files(cert, key, client_ca)
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._loaded = _signature_or_none(files)
        self.initial = _load(files).configuration()
        self._next_check = clock() + interval
        self._failed: object = None  # what failed last, so it is logged once
        self.reloads = 0

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        """The rotated files' configuration, or None to keep the current one."""
        now = self._clock()
        if now < self._next_check or not self._lock.acquire(blocking=False):
            return None
        try:
            self._next_check = now + self._interval
            return self._check()
        except Exception as exc:  # never into grpc's handshake
            self._warn_once(("unexpected", repr(exc)), "TLS certificate check failed", exc)
            return None
        finally:
            self._lock.release()

    def _check(self) -> grpc.ServerCertificateConfiguration | None:
        try:
            signature = _signature(self._files)
        except OSError as exc:
            self._warn_once(("stat", str(exc)), "TLS files missing; keeping the certificate", exc)
            return None
        if signature in (self._loaded, self._failed):
            return None
        try:
            pems = _load(self._files)
        except TlsConfigError as exc:
            self._warn_once(signature, "rotated TLS files do not fit; keeping the certificate", exc)
            return None
        self._loaded, self._failed = signature, None
        self.reloads += 1
        log.info("TLS certificate reloaded", extra={"tls_cert": self._files.cert})
        return pems.configuration()

    def _warn_once(self, failure: object, message: str, exc: BaseException) -> None:
        if failure != self._failed:
            self._failed = failure
            log.warning(message, extra={"tls_cert": self._files.cert, "error": str(exc)})


def _signature_or_none(files: _Files) -> _Signature | None:
    try:
        return _signature(files)
    except OSError:
        return None  # _load names the file


@dataclass(frozen=True)
class ServerTls:
    """The gRPC port's credentials and their reloader (for tests and logs)."""

    credentials: grpc.ServerCredentials
    reloader: CertificateReloader
    mode: str


def server_tls(settings: Settings) -> ServerTls | None:
    """Credentials of the gRPC port for ``settings``; None when TLS is off.

    With ``tls_client_ca`` every client must present a certificate that CA
    signed (mTLS); the CA bundle is reloaded with the certificate.

    Raises:
        TlsConfigError: a file is missing, unreadable, not PEM, or the key is not
            the certificate's.
    """
    files = _files(settings)
    if files is None:
        return None
    reloader = CertificateReloader(
        files.cert, files.key, files.client_ca, interval=settings.tls_reload_seconds
    )
    credentials = grpc.dynamic_ssl_server_credentials(
        reloader.initial,
        # The stubs omit it, but grpc documents None as "keep the current one".
        cast("Callable[[], grpc.ServerCertificateConfiguration]", reloader),
        require_client_authentication=files.client_ca is not None,
    )
    return ServerTls(credentials, reloader, mode(settings))
