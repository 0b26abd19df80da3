"""`session-memory health`, the container health check, against real servers: exit 0
only when the service answers SERVING; where to ask comes from the server's own
settings (probe port first, TLS when the server serves it)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sessionmemory_server.app import SERVICE_NAME
from sessionmemory_server.embedded import EmbeddedRedis, EmbeddedS3

from ..conftest import ServerThread, start_server
from ..tls_certs import Authority


def health(*args: str, **settings: str) -> subprocess.CompletedProcess[str]:
    """Run the command as a container runtime would: the server's environment, no key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_MEMORY_")}
    env.update((f"SESSION_MEMORY_{k.upper()}", v) for k, v in settings.items())
    return subprocess.run(
        [sys.executable, "-m", "sessionmemory_server.cli", "health", *args],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_ready_server_is_healthy(server: ServerThread) -> None:
    done = health("--addr", server.address)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"SERVING: service '{SERVICE_NAME}' at {server.address}"
    live = health("--addr", server.address, "--service", "")
    assert live.returncode == 0, live.stderr
    assert live.stdout.startswith("SERVING: liveness")


def test_the_address_comes_from_the_server_settings(server: ServerThread) -> None:
    port = server.address.rsplit(":", 1)[1]
    # What a server in a container binds: the wildcard means this machine.
    done = health(listen=f"0.0.0.0:{port}")
    assert done.returncode == 0, done.stderr
    assert f"at 127.0.0.1:{port}" in done.stdout


def test_an_unknown_service_is_not_healthy(server: ServerThread) -> None:
    done = health("--addr", server.address, "--service", "no.such.Service")
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith("NOT_FOUND: service 'no.such.Service'")


def test_nothing_listening_fails_at_once() -> None:
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    done = health("--addr", address, "--timeout", "30")
    assert done.returncode == 1
    assert done.stderr.startswith(f"UNAVAILABLE: service '{SERVICE_NAME}' at {address}")
    assert len(done.stderr.strip().splitlines()) == 1
    # A refused connection is an answer: no waiting for the 30 s deadline.
    assert time.monotonic() - started < 15


def test_invalid_settings_are_one_line_not_a_traceback() -> None:
    done = health(workers="0")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        f"UNKNOWN: service '{SERVICE_NAME}': cannot tell where to ask"
        " (setting workers: Input should be greater than or equal to 1)"
    ]


@pytest.fixture
def unready(tmp_path: Path, redis_server: EmbeddedRedis) -> Iterator[ServerThread]:
    """A server whose object store is gone: alive, not ready."""
    s3 = EmbeddedS3(tmp_path / "s3", access_key="test", secret_key=uuid.uuid4().hex).start()
    s3.stop()
    server = start_server(
        redis_server.url, s3, readiness_interval_seconds=0.5, readiness_timeout_seconds=0.5
    )
    yield server
    server.stop()


def test_a_server_without_its_backends_is_alive_but_not_ready(unready: ServerThread) -> None:
    done = health("--addr", unready.address)
    assert done.returncode == 1
    assert done.stderr.strip() == f"NOT_SERVING: service '{SERVICE_NAME}' at {unready.address}"
    assert health("--addr", unready.address, "--service", "").returncode == 0


def test_the_probe_port_is_asked_first(
    tmp_path: Path, redis_server: EmbeddedRedis, s3_server: EmbeddedS3
) -> None:
    ca = Authority(tmp_path / "ca", "ca")
    issued = ca.issue("server", server=True)
    server = start_server(
        redis_server.url,
        s3_server,
        health_listen="127.0.0.1:0",
        tls_cert=str(issued.cert),
        tls_key=str(issued.key),
    )
    try:
        probe = f"127.0.0.1:{server.built.health_port}"
        # The gRPC port named by listen has nothing on it: only the probe port answers.
        done = health(
            listen=f"127.0.0.1:{free_port()}",
            health_listen=f"0.0.0.0:{server.built.health_port}",
            tls_cert=str(issued.cert),
            tls_key=str(issued.key),
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"SERVING: service '{SERVICE_NAME}' at {probe}"
    finally:
        server.stop()


def test_a_tls_server_is_asked_over_tls(
    tmp_path: Path, redis_server: EmbeddedRedis, s3_server: EmbeddedS3
) -> None:
    ca = Authority(tmp_path / "ca", "ca")
    issued = ca.issue("server", server=True)
    # A chain file that ends with its CA: the check trusts the server's own chain.
    chain = tmp_path / "chain.pem"
    chain.write_bytes(issued.cert.read_bytes() + ca.pem.read_bytes())
    server = start_server(redis_server.url, s3_server, tls_cert=str(chain), tls_key=str(issued.key))
    try:
        port = server.address.rsplit(":", 1)[1]
        settings = {"listen": f"0.0.0.0:{port}", "tls_cert": str(chain), "tls_key": str(issued.key)}
        done = health(**settings)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"SERVING: service '{SERVICE_NAME}' at 127.0.0.1:{port}"
        # The same port in plaintext does not answer SERVING.
        plain = health("--addr", f"127.0.0.1:{port}", "--timeout", "5")
        assert plain.returncode == 1
        assert plain.stderr.startswith("UNAVAILABLE")
    finally:
        server.stop()
