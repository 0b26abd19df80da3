"""The server's TLS files: checks at start and the certificate reloader, on a fake clock."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest

from sessionmemory_server.config import Settings
from sessionmemory_server.tls import CertificateReloader, TlsConfigError, check, mode, server_tls

from ..tls_certs import Authority, Issued


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def ca(tmp_path: Path) -> Authority:
    return Authority(tmp_path / "pki", "unit")


@pytest.fixture
def live(ca: Authority) -> Issued:
    return ca.issue("live", server=True)


def settings(cert: Path, key: Path, client_ca: Path | None = None) -> Settings:
    return Settings(
        tls_cert=str(cert),
        tls_key=str(key),
        tls_client_ca=None if client_ca is None else str(client_ca),
    )


def reloader(live: Issued, clock: Clock, client_ca: Path | None = None) -> CertificateReloader:
    ca = None if client_ca is None else str(client_ca)
    return CertificateReloader(str(live.cert), str(live.key), ca, interval=60, clock=clock)


def install(source: Issued, target: Issued, *, key_of: Issued | None = None) -> None:
    """Rotate as a Secret volume or cert-manager does: new files moved over the old."""
    for src, dst in ((source.cert, target.cert), ((key_of or source).key, target.key)):
        shutil.copyfile(src, dst.with_suffix(".new"))
        os.replace(dst.with_suffix(".new"), dst)


def test_modes() -> None:
    assert mode(Settings()) == "off"
    assert mode(Settings(tls_cert="c", tls_key="k")) == "tls"
    assert mode(Settings(tls_cert="c", tls_key="k", tls_client_ca="ca")) == "mtls"
    assert server_tls(Settings()) is None


def test_check_names_the_file_and_the_problem(ca: Authority, live: Issued, tmp_path: Path) -> None:
    check(settings(live.cert, live.key, ca.pem))  # fits
    other = ca.issue("other", server=True)
    with pytest.raises(TlsConfigError, match="the private key does not belong to the certificate"):
        check(settings(live.cert, other.key))
    with pytest.raises(TlsConfigError, match=r"tls_key .*nowhere\.key: cannot read it"):
        check(settings(live.cert, tmp_path / "nowhere.key"))
    with pytest.raises(TlsConfigError, match=r"tls_client_ca .*: not a PEM file"):
        (tmp_path / "empty.pem").write_text("")
        check(settings(live.cert, live.key, tmp_path / "empty.pem"))
    with pytest.raises(TlsConfigError, match="not a certificate chain and its private key"):
        check(settings(live.key, live.key))


def test_rotated_files_are_read_once_the_interval_passed(live: Issued, ca: Authority) -> None:
    clock = Clock()
    fetch = reloader(live, clock)
    assert fetch() is None, "nothing changed"
    install(ca.issue("next", server=True), live)
    assert fetch() is None, "not checked before the interval"
    clock.now += 60
    assert fetch() is not None, "the new pair"
    assert fetch.reloads == 1
    clock.now += 60
    assert fetch() is None, "already served"


def test_a_pair_that_does_not_fit_keeps_the_old_one_and_warns_once(
    live: Issued, ca: Authority, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sessionmemory_server.tls")
    clock = Clock()
    fetch = reloader(live, clock)
    new, stray = ca.issue("new", server=True), ca.issue("stray", server=True)
    install(new, live, key_of=stray)
    for _ in range(3):
        clock.now += 60
        assert fetch() is None
    assert len(caplog.records) == 1
    assert "do not fit" in caplog.records[0].getMessage()
    install(new, live)
    clock.now += 60
    assert fetch() is not None, "fits again: served"
    assert fetch.reloads == 1


def test_missing_files_keep_the_old_pair_and_never_raise(
    live: Issued, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sessionmemory_server.tls")
    clock = Clock()
    fetch = reloader(live, clock)
    live.key.unlink()
    for _ in range(2):
        clock.now += 60
        assert fetch() is None
    assert [r.getMessage() for r in caplog.records] == [
        "TLS files missing; keeping the certificate"
    ]


def test_a_rotated_client_ca_is_read_too(live: Issued, ca: Authority, tmp_path: Path) -> None:
    bundle = tmp_path / "clients.pem"
    shutil.copyfile(ca.pem, bundle)
    clock = Clock()
    fetch = reloader(live, clock, bundle)
    other = Authority(tmp_path / "other", "other")
    (tmp_path / "next.pem").write_bytes(ca.pem.read_bytes() + other.pem.read_bytes())
    os.replace(tmp_path / "next.pem", bundle)
    clock.now += 60
    assert fetch() is not None
