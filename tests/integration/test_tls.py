"""TLS and mTLS on the gRPC port, the plaintext probe port, and certificate rotation.

A CA, a server certificate for localhost / 127.0.0.1, a client certificate and a
client certificate of another CA are made in the test. The Python clients, and
the TypeScript and Go clients through small tools (`clients/typescript/tools/
tlsping.ts`, `clients/go/cmd/tlsping`), are configured by their from_env only:
SESSION_MEMORY_TLS, _TLS_CA, _TLS_SERVER_NAME, _CLIENT_CERT, _CLIENT_KEY (the server's own
certificate is SESSION_MEMORY_TLS_CERT/_KEY: a client in a server's container never takes it).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from sessionmemory import AsyncMemoryClient, MemoryClient, ServiceUnavailableError
from sessionmemory.v1 import memory_service_pb2, memory_service_pb2_grpc
from sessionmemory_server.app import SERVICE_NAME, build_server
from sessionmemory_server.embedded import EmbeddedRedis, EmbeddedS3, free_port
from sessionmemory_server.testing import stack_settings
from sessionmemory_server.tls import TlsConfigError

from ..conftest import ServerThread, cli_env, run_in_thread, start_server, wait_until
from ..tls_certs import Authority, Issued

ROOT = Path(__file__).resolve().parents[2]
TS_TOOL = ROOT / "clients/typescript/dist/tools/tlsping.js"
GO_DIR = ROOT / "clients/go"
LANGS = ["python", "typescript", "go"]
TOOL_TIMEOUT = 60
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# Building the Go tool from scratch takes a while on a fresh clone.
pytestmark = pytest.mark.timeout(300)


@dataclass(frozen=True)
class Pki:
    """Our CA with a server and a client certificate, and a client of another CA."""

    ca: Authority
    server: Issued
    client: Issued
    other_ca: Authority
    other_client: Issued


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    ca = Authority(root / "ours", "ours")
    other = Authority(root / "other", "other")
    return Pki(
        ca=ca,
        server=ca.issue("server", server=True),
        client=ca.issue("client", server=False),
        other_ca=other,
        other_client=other.issue("client", server=False),
    )


def tls_settings(pki: Pki, *, mtls: bool) -> dict[str, Any]:
    settings: dict[str, Any] = {"tls_cert": str(pki.server.cert), "tls_key": str(pki.server.key)}
    if mtls:
        settings["tls_client_ca"] = str(pki.ca.pem)
    return settings


@pytest.fixture(scope="module")
def tls_server(
    redis_server: EmbeddedRedis, s3_server: EmbeddedS3, pki: Pki
) -> Iterator[ServerThread]:
    """TLS on the gRPC port (no client certificates), the probe port in plaintext."""
    srv = start_server(
        redis_server.url, s3_server, health_listen="127.0.0.1:0", **tls_settings(pki, mtls=False)
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def mtls_server(
    redis_server: EmbeddedRedis, s3_server: EmbeddedS3, pki: Pki
) -> Iterator[ServerThread]:
    """mTLS: clients need a certificate of our CA."""
    srv = start_server(redis_server.url, s3_server, **tls_settings(pki, mtls=True))
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def tls_key(tls_server: ServerThread) -> str:
    return tls_server.create_key("acme")


@pytest.fixture(scope="module")
def mtls_key(mtls_server: ServerThread) -> str:
    return mtls_server.create_key("acme")


@pytest.fixture(scope="module")
def go_tool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Go tool, built once."""
    binary = tmp_path_factory.mktemp("tlsping") / "tlsping"
    done = subprocess.run(
        ["go", "build", "-o", str(binary), "./cmd/tlsping"],
        cwd=GO_DIR, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"go build ./cmd/tlsping failed: {done.stderr}"
    return binary


# --- each language, configured by the environment alone --------------------------------------


def client_env(address: str, api_key: str, **tls: str | Path) -> dict[str, str]:
    """SESSION_MEMORY_ADDR, _API_KEY and the TLS variable of each ``tls`` item."""
    env = {"SESSION_MEMORY_ADDR": address, "SESSION_MEMORY_API_KEY": api_key}
    names = {
        "cert": "SESSION_MEMORY_CLIENT_CERT",
        "key": "SESSION_MEMORY_CLIENT_KEY",
        "": "SESSION_MEMORY_TLS",
    }
    env.update((names.get(k, f"SESSION_MEMORY_TLS_{k.upper()}"), str(v))
               for k, v in tls.items())  # fmt: skip
    return env


def ping_python(env: dict[str, str], value: str) -> dict[str, Any]:
    """What the tools do, with the sync client and then the async one."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("SESSION_MEMORY_")}
    for name in saved:
        del os.environ[name]
    os.environ.update(env)
    try:
        session = f"tls-{uuid.uuid4().hex}"
        try:
            with MemoryClient.from_env(timeout=10, max_attempts=1) as client:
                client.session(session).set("tls", f"{value} (sync)", ttl=600)
                sync_value = client.session(session).get("tls")

            async def aio() -> Any:
                async with AsyncMemoryClient.from_env(timeout=10, max_attempts=1) as client:
                    await client.session(session).set("tls", value, ttl=600)
                    return await client.session(session).get("tls")

            aio_value = run_in_thread(aio())
        except ServiceUnavailableError as err:
            return {"error": {"status": err.status.name, "message": str(err)}}
        assert sync_value == f"{value} (sync)"
        return {"value": aio_value}
    finally:
        for name in env:
            os.environ.pop(name, None)
        os.environ.update(saved)


def ping(lang: str, env: dict[str, str], go_tool: Path) -> dict[str, Any]:
    """Set and get one value from ``lang`` configured by ``env``: what it read, or the error."""
    value = f"over TLS from {lang} ✓"
    if lang == "python":
        return ping_python(env, value)
    if lang == "typescript":
        if not TS_TOOL.exists():
            pytest.fail(f"{TS_TOOL} is missing: build the TypeScript client (make test does)")
        tool = ["node", str(TS_TOOL)]
    else:
        tool = [str(go_tool)]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SESSION_MEMORY_")}
    done = subprocess.run(
        [*tool, f"tls-{uuid.uuid4().hex}", value], env={**clean, **env},
        cwd=ROOT, capture_output=True, text=True, timeout=TOOL_TIMEOUT, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{lang} failed: {done.stderr}"
    result: dict[str, Any] = json.loads(done.stdout)
    return result


# --- round trips --------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
def test_round_trip_over_tls(lang: str, tls_server: ServerThread, tls_key: str, pki: Pki,
                             go_tool: Path) -> None:  # fmt: skip
    # The address is an IP: the certificate's IP SAN is what is checked.
    env = client_env(tls_server.address, tls_key, ca=pki.ca.pem)
    assert ping(lang, env, go_tool) == {"value": f"over TLS from {lang} ✓"}


@pytest.mark.parametrize("lang", LANGS)
def test_round_trip_over_mtls(lang: str, mtls_server: ServerThread, mtls_key: str, pki: Pki,
                              go_tool: Path) -> None:  # fmt: skip
    env = client_env(
        mtls_server.address,
        mtls_key,
        ca=pki.ca.pem,
        cert=pki.client.cert,
        key=pki.client.key,
        server_name="localhost",  # checked instead of 127.0.0.1: the DNS SAN
    )
    assert ping(lang, env, go_tool) == {"value": f"over TLS from {lang} ✓"}


# (the server, what the client is given, what connect-node reports) -> refused. Python and
# Go report UNAVAILABLE, as gRPC does for a connection that cannot be made. connect-node
# reports what Node saw: INTERNAL with Node's reason when it cannot verify the server's
# certificate, CANCELLED ("http/2 stream closed with error code CANCEL") when the server
# closes the connection (TLS 1.3 clients learn that their certificate was refused only then).
REFUSED: dict[str, tuple[str, dict[str, str], str]] = {
    "plaintext client on the TLS port": ("tls", {}, "CANCELLED"),
    "TLS with the system roots (our CA is not one)": ("tls", {"": "true"}, "INTERNAL"),
    "a server name the certificate does not have": (
        "tls",
        {"ca": "ca", "server_name": "elsewhere.test"},
        "INTERNAL",
    ),
    "mTLS without a client certificate": ("mtls", {"ca": "ca"}, "CANCELLED"),
    "mTLS with another CA's client certificate": (
        "mtls",
        {"ca": "ca", "cert": "other_client.cert", "key": "other_client.key"},
        "CANCELLED",
    ),
}


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("case", list(REFUSED))
def test_clients_that_do_not_fit_are_refused(
    case: str,
    lang: str,
    request: pytest.FixtureRequest,
    pki: Pki,
    go_tool: Path,
) -> None:
    kind, given, node_status = REFUSED[case]
    server: ServerThread = request.getfixturevalue(f"{kind}_server")
    key: str = request.getfixturevalue(f"{kind}_key")
    files = {
        "ca": pki.ca.pem,
        "other_client.cert": pki.other_client.cert,
        "other_client.key": pki.other_client.key,
    }
    tls = {name: files.get(value, value) for name, value in given.items()}
    outcome = ping(lang, client_env(server.address, key, **tls), go_tool)
    assert "value" not in outcome, f"{lang}: {case} was served"
    expected = node_status if lang == "typescript" else "UNAVAILABLE"
    assert outcome["error"]["status"] == expected, outcome


# --- the probe port ----------------------------------------------------------------------------


def health_status(address: str, service: str) -> int:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return int(stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status)


def test_the_probe_port_serves_health_alone_in_plaintext(
    redis_server: EmbeddedRedis, s3_server: EmbeddedS3, pki: Pki
) -> None:
    server = start_server(
        redis_server.url, s3_server, health_listen="127.0.0.1:0", **tls_settings(pki, mtls=True)
    )
    try:
        assert server.built.health_port is not None
        probe = f"127.0.0.1:{server.built.health_port}"
        assert health_status(probe, "") == SERVING
        assert health_status(probe, SERVICE_NAME) == SERVING
        # The main port speaks TLS only: a plaintext probe there fails.
        with pytest.raises(grpc.RpcError) as main_port:
            health_status(server.address, "")
        assert main_port.value.code() == grpc.StatusCode.UNAVAILABLE
        # The same servicer as the main port's: readiness is the same on both.
        server.run(server.built.health.set(SERVICE_NAME, NOT_SERVING))
        assert health_status(probe, SERVICE_NAME) == NOT_SERVING
        server.run(server.built.health.set(SERVICE_NAME, SERVING))
        # Nothing else is served there: not the API, not reflection.
        with grpc.insecure_channel(probe) as channel:
            api = memory_service_pb2_grpc.MemoryServiceStub(channel)
            with pytest.raises(grpc.RpcError) as get:
                api.Get(memory_service_pb2.GetRequest(session_id="s", key="k"), timeout=5)
            assert get.value.code() == grpc.StatusCode.UNIMPLEMENTED
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            ask = reflection_pb2.ServerReflectionRequest(list_services="")
            with pytest.raises(grpc.RpcError) as listed:
                list(stub.ServerReflectionInfo(iter([ask]), timeout=5))
            assert listed.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        server.stop()
    with pytest.raises(grpc.RpcError) as stopped:
        health_status(probe, "")
    assert stopped.value.code() == grpc.StatusCode.UNAVAILABLE, "the probe port stops too"


# --- rotation -----------------------------------------------------------------------------------


def served_serial(address: str, ca: Path) -> int:
    """The serial number of the certificate a new TLS connection to ``address`` gets."""
    host, port = address.rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(["h2"])  # grpc refuses TLS without ALPN h2
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="localhost") as conn,
    ):
        der = conn.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def install(source: Issued, target: Issued, *, key_of: Issued | None = None) -> None:
    """Rotate: ``source``'s certificate (and ``key_of``'s key, default its own) over ``target``."""
    for src, dst in ((source.cert, target.cert), ((key_of or source).key, target.key)):
        shutil.copyfile(src, dst.with_suffix(".new"))
        os.replace(dst.with_suffix(".new"), dst)  # what a Secret volume or cert-manager does


def test_a_rotated_certificate_is_served_to_new_connections(
    redis_server: EmbeddedRedis,
    s3_server: EmbeddedS3,
    pki: Pki,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="sessionmemory_server.tls")
    live = pki.ca.issue("live", server=True)
    first = live.serial
    server = start_server(
        redis_server.url,
        s3_server,
        tls_cert=str(live.cert),
        tls_key=str(live.key),
        tls_reload_seconds=0.2,
    )
    try:
        assert served_serial(server.address, pki.ca.pem) == first
        key = server.create_key("acme")
        env = client_env(server.address, key, ca=pki.ca.pem)
        # A half-done rotation: a new certificate with another certificate's key.
        new, stray = pki.ca.issue("new", server=True), pki.ca.issue("stray", server=True)
        install(new, live, key_of=stray)
        for _ in range(4):  # several checks of the same bad files
            time.sleep(0.3)
            assert served_serial(server.address, pki.ca.pem) == first, "the old pair is kept"
        warnings = [r for r in caplog.records if "do not fit" in r.getMessage()]
        assert len(warnings) == 1, "the bad pair is reported once"
        assert ping_python(env, "during a bad rotation") == {"value": "during a bad rotation"}
        # The rotation completes: new connections get the new certificate.
        install(new, live)
        assert wait_until(lambda: served_serial(server.address, pki.ca.pem) == new.serial, 5)
        assert served_serial(server.address, pki.ca.pem) == new.serial, "and keep getting it"
        assert ping_python(env, "after the rotation") == {"value": "after the rotation"}
        assert server.built.tls is not None and server.built.tls.reloader.reloads == 1
        assert any("reloaded" in r.getMessage() for r in caplog.records)
    finally:
        server.stop()


# --- configuration errors -----------------------------------------------------------------------


def test_tls_files_that_do_not_fit_stop_the_start(
    tmp_path: Path, redis_server: EmbeddedRedis, s3_server: EmbeddedS3, pki: Pki
) -> None:
    stray = pki.ca.issue("stray-start", server=True)
    not_pem = tmp_path / "ca.txt"
    not_pem.write_text("not a certificate\n")
    cert, key = str(pki.server.cert), str(pki.server.key)
    cases = [
        ({"tls_cert": str(tmp_path / "missing.pem"), "tls_key": key}, "missing.pem: cannot read"),
        ({"tls_cert": cert, "tls_key": str(stray.key)}, "does not belong to the certificate"),
        ({"tls_cert": cert, "tls_key": cert}, "not a certificate chain and its private key"),
        ({"tls_cert": cert, "tls_key": key, "tls_client_ca": str(not_pem)}, "not a PEM file"),
    ]
    for files, message in cases:
        settings = stack_settings(redis_server.url, s3_server, **files)
        with pytest.raises(TlsConfigError, match=message):
            run_in_thread(build_server(settings))


def test_the_command_says_what_is_wrong_without_a_traceback(tmp_path: Path, pki: Pki) -> None:
    stray = pki.ca.issue("stray-cli", server=True)
    env = {
        **os.environ,
        "SESSION_MEMORY_TLS_CERT": str(pki.server.cert),
        "SESSION_MEMORY_TLS_KEY": str(stray.key),
    }
    for extra in (["--check-config"], []):
        done = subprocess.run(
            [sys.executable, "-m", "sessionmemory_server.cli", "serve", "--listen",
             f"127.0.0.1:{free_port()}", "--redis-url", "redis://127.0.0.1:1/0", *extra],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("error: TLS: tls_cert "), done.stderr
        assert done.stderr.endswith(" (TLS_INVALID)\n") and done.stderr.count("\n") == 1
        assert "does not belong to the certificate" in done.stderr
        assert "Traceback" not in done.stderr


def test_the_serve_command_serves_mtls_and_the_probe_port(
    redis_server: EmbeddedRedis, s3_server: EmbeddedS3, pki: Pki
) -> None:
    address, probe = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    env = cli_env(redis_server.url, s3_server, address, log_level="INFO", log_format="json")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sessionmemory_server.cli", "serve",
         "--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key),
         "--tls-client-ca", str(pki.ca.pem), "--health-listen", probe],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert wait_until(lambda: _answers(probe), timeout=60), "the probe port answers"
        key = redis_server.create_key("acme")
        mtls = client_env(address, key, ca=pki.ca.pem, cert=pki.client.cert, key=pki.client.key)
        assert ping_python(mtls, "from the command") == {"value": "from the command"}
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    lines = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    [serving] = [line for line in lines if line.get("msg") == "serving"]
    assert serving["tls"] == "mtls"
    assert serving["listen"] == address
    assert serving["health_listen"] == probe


def _answers(probe: str) -> bool:
    try:
        return health_status(probe, "") == SERVING
    except grpc.RpcError:
        return False
