"""Caps on uploads and connections, against the real server: each is reached and
answered with its reason, and nothing is stored or left in the spool."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from sessionmemory import DeadlineExceededError, LimitExceededError, MemoryClient
from sessionmemory.v1 import memory_service_pb2 as svc
from sessionmemory_server.embedded import EmbeddedRedis, EmbeddedS3, free_port

from ..conftest import ServerThread, cli_env, serve_cli, start_server, wait_until
from ..samples import pdf_of

MIB = 1024 * 1024
KIB = 1024
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS, PING, GOAWAY = 0x4, 0x6, 0x7
SETTINGS_MAX_CONCURRENT_STREAMS = 0x3


def spool_files(spool_dir: Path) -> list[Path]:
    """The upload spool files of every process spooling under ``spool_dir``."""
    return sorted((spool_dir / "session-memory-spool").glob("proc-*/sm-upload-*"))


class Held:
    """An upload (in its own thread) that sends ``first`` and waits for ``release``."""

    def __init__(self, memory: Any, key: str, release: threading.Event, first: bytes = b"") -> None:
        self.outcome: Any = None
        first = first or pdf_of(MIB)

        def chunks() -> Iterator[bytes]:
            yield first
            release.wait(30)
            yield b"x" * KIB

        def run() -> None:
            try:
                self.outcome = memory.set_file(key, chunks(), ttl=60, mime="application/pdf")
            except Exception as exc:
                self.outcome = exc

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def result(self) -> Any:
        self._thread.join(30)
        assert not self._thread.is_alive()
        return self.outcome

    def size(self) -> int:
        """The stored size, or the upload's error as an assertion."""
        outcome = self.result()
        assert not isinstance(outcome, Exception), repr(outcome)
        return int(outcome.size_bytes)


@pytest.fixture
def caps_server(
    redis_server: EmbeddedRedis, s3_server: EmbeddedS3, tmp_path: Path
) -> Iterator[Any]:
    """Starts servers with small caps spooling under tmp_path; stops them after."""
    started: list[ServerThread] = []

    def start(**settings: Any) -> ServerThread:
        # Held uploads pause for a few seconds: longer than the fixtures' idle limit.
        settings = {"spool_dir": str(tmp_path), "upload_idle_seconds": 10.0, **settings}
        server = start_server(redis_server.url, s3_server, **settings)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def client_of(server: ServerThread, tenant: str = "acme", **options: Any) -> MemoryClient:
    return MemoryClient(
        server.address, api_key=server.create_key(tenant), timeout=30, max_attempts=1, **options
    )


def test_per_process_upload_cap(caps_server: Any, tmp_path: Path) -> None:
    server = caps_server(max_uploads=3, max_tenant_uploads=3)
    release = threading.Event()
    with client_of(server) as client:
        memory = client.session(f"caps-{uuid.uuid4().hex}")
        try:
            held = [Held(memory, f"doc{i}", release) for i in range(3)]
            assert wait_until(lambda: len(spool_files(tmp_path)) == 3)
            with pytest.raises(LimitExceededError) as info:
                memory.set_file("late", b"hello", ttl=60, mime="text/plain")
            assert info.value.code == "TOO_MANY_UPLOADS"
            assert info.value.metadata == {"scope": "process", "limit": "3"}
            assert info.value.retry_after == 1.0
        finally:
            release.set()
        assert [h.size() for h in held] == [MIB + KIB] * len(held)
        assert memory.get("late") is None
        assert memory.set_file("late", b"hello", ttl=60, mime="text/plain").size_bytes == 5
    assert spool_files(tmp_path) == []


def test_per_tenant_upload_quota(caps_server: Any, tmp_path: Path) -> None:
    # The tenant's uploads are a quota over every process (more in test_quotas.py).
    server = caps_server(max_uploads=4, max_tenant_uploads=2)
    release = threading.Event()
    sid = f"caps-{uuid.uuid4().hex}"
    with client_of(server, "acme") as acme, client_of(server, "globex") as globex:
        memory = acme.session(sid)
        try:
            held = [Held(memory, f"doc{i}", release) for i in range(2)]
            assert wait_until(lambda: len(spool_files(tmp_path)) == 2)
            with pytest.raises(LimitExceededError) as info:
                memory.set_file("third", b"hello", ttl=60, mime="text/plain")
            assert info.value.code == "QUOTA_EXCEEDED" and info.value.retry_after is None
            assert info.value.metadata == {"quota": "uploads", "limit": "2", "actual": "3"}
            # Another tenant still gets in while acme's two are held.
            other = globex.session(sid).set_file("doc", b"other", ttl=60, mime="text/plain")
            assert other.size_bytes == 5
        finally:
            release.set()
        assert [h.size() for h in held] == [MIB + KIB] * len(held)
        assert memory.get("third") is None
    assert spool_files(tmp_path) == []


def test_spool_byte_cap(caps_server: Any, tmp_path: Path) -> None:
    server = caps_server(max_spool_bytes=3 * MIB)
    release = threading.Event()
    with client_of(server) as client:
        memory = client.session(f"caps-{uuid.uuid4().hex}")
        before = set(server.run(server.built.blobs.names("files/")))
        try:
            held = Held(memory, "first", release, first=pdf_of(2 * MIB))
            assert wait_until(
                lambda: sum(p.stat().st_size for p in spool_files(tmp_path)) >= 2 * MIB
            )
            with pytest.raises(LimitExceededError) as info:
                memory.set_file("second", pdf_of(2 * MIB), ttl=60, mime="application/pdf")
            assert info.value.code == "SPOOL_FULL"
            assert info.value.metadata == {"limit": str(3 * MIB)}
            assert info.value.retry_after == 1.0
            assert len(spool_files(tmp_path)) == 1  # the refused upload's file is gone
        finally:
            release.set()
        assert held.size() == 2 * MIB + KIB
        assert memory.get("second") is None
        assert len(set(server.run(server.built.blobs.names("files/"))) - before) == 1
        assert spool_files(tmp_path) == []
        # The counted bytes came back: an upload of nearly the whole cap passes.
        big = memory.set_file("second", pdf_of(3 * MIB - KIB), ttl=60, mime="application/pdf")
        assert big.size_bytes == 3 * MIB - KIB
    assert spool_files(tmp_path) == []


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB tmpfs (needs the right to mount, e.g. root; skipped otherwise)."""
    disk = tmp_path / "tiny"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_is_spool_full(tiny_disk: Path, caps_server: Any) -> None:
    server = caps_server(spool_dir=str(tiny_disk))
    with client_of(server) as client:
        memory = client.session(f"caps-{uuid.uuid4().hex}")
        with pytest.raises(LimitExceededError) as info:
            memory.set_file("big", pdf_of(3 * MIB), ttl=60, mime="application/pdf")
        assert info.value.code == "SPOOL_FULL"
        assert info.value.metadata == {} and info.value.retry_after == 1.0
        assert memory.get("big") is None
        assert spool_files(tiny_disk) == []
        assert memory.set_file("small", pdf_of(MIB), ttl=60, mime="application/pdf").size_bytes
    assert spool_files(tiny_disk) == []


def test_slow_upload_and_idle_upload(caps_server: Any, tmp_path: Path) -> None:
    server = caps_server(
        min_upload_bytes=64 * KIB, upload_rate_window_seconds=1.5, upload_idle_seconds=1.0
    )
    with client_of(server) as client:
        memory = client.session(f"caps-{uuid.uuid4().hex}")

        def trickle() -> Iterator[bytes]:  # a message every 0.1 s: never idle, but 10 KiB/s
            yield b"%PDF-1.4\n"
            for _ in range(100):
                time.sleep(0.1)
                yield b"x" * KIB

        started = time.monotonic()
        with pytest.raises(DeadlineExceededError) as info:
            memory.set_file("slow", trickle(), ttl=60, mime="application/pdf")
        assert 1.4 < time.monotonic() - started < 4
        assert info.value.code == "UPLOAD_TOO_SLOW"
        assert info.value.metadata == {"limit": str(64 * KIB), "window_seconds": "1.5"}

        def stall() -> Iterator[bytes]:  # nothing at all after the first chunk
            yield b"%PDF-1.4\n"
            time.sleep(3)
            yield b"x"

        with pytest.raises(DeadlineExceededError) as info:
            memory.set_file("stalled", stall(), ttl=60, mime="application/pdf")
        assert info.value.code == "UPLOAD_TIMEOUT"  # the idle limit (1 s) comes first

        def steady() -> Iterator[bytes]:  # above the floor in every window, 3 s in all
            yield pdf_of(100 * KIB)
            for _ in range(6):
                time.sleep(0.5)
                yield b"x" * (100 * KIB)

        assert memory.set_file("steady", steady(), ttl=60, mime="application/pdf").size_bytes == (
            700 * KIB
        )
        assert memory.get("slow") is None and memory.get("stalled") is None
    assert spool_files(tmp_path) == []


def _frames(sock: socket.socket, until: float) -> Iterator[tuple[int, int, bytes]]:
    """(type, flags, payload) of the HTTP/2 frames read until EOF or ``until``."""
    buf = b""
    while time.monotonic() < until:
        sock.settimeout(max(0.01, until - time.monotonic()))
        try:
            data = sock.recv(65536)
        except TimeoutError:
            return
        except ConnectionResetError:
            data = b""
        if not data:
            yield (-1, 0, b"")  # closed by the server
            return
        buf += data
        while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
            length = int.from_bytes(buf[:3], "big")
            yield buf[3], buf[4], buf[9 : 9 + length]
            buf = buf[9 + length :]


def test_connections_are_capped(caps_server: Any) -> None:
    server = caps_server(
        handshake_timeout_seconds=1.0, max_connection_idle_seconds=1.0, max_concurrent_streams=7
    )
    host, port = server.address.rsplit(":", 1)

    # A TCP connection that never starts HTTP/2 is closed after the handshake timeout.
    with socket.create_connection((host, int(port)), timeout=5) as raw:
        started = time.monotonic()
        kinds = [kind for kind, _, _ in _frames(raw, started + 10)]
        assert kinds[-1:] == [-1] and time.monotonic() - started < 4

    # An HTTP/2 connection that makes no call: the server's SETTINGS advertise the
    # stream cap, and after max_connection_idle it sends GOAWAY and closes.
    with socket.create_connection((host, int(port)), timeout=5) as h2:
        h2.sendall(PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        started = time.monotonic()
        advertised: dict[int, int] = {}
        goaway_after = None
        for kind, flags, payload in _frames(h2, started + 10):
            if kind == SETTINGS and not flags & 1:
                for i in range(0, len(payload), 6):
                    ident, value = struct.unpack(">HI", payload[i : i + 6])
                    advertised[ident] = value
                h2.sendall(b"\x00\x00\x00\x04\x01\x00\x00\x00\x00")  # SETTINGS ACK
            elif kind == PING and not flags & 1:
                h2.sendall(b"\x00\x00\x08\x06\x01\x00\x00\x00\x00" + payload)  # PING ACK
            elif kind == GOAWAY and goaway_after is None:
                goaway_after = time.monotonic() - started
        assert advertised.get(SETTINGS_MAX_CONCURRENT_STREAMS) == 7
        assert goaway_after is not None and 0.5 < goaway_after < 4

    # A client channel sees the same: READY after a call, IDLE once the server let go.
    states: list[grpc.ChannelConnectivity] = []
    with client_of(server) as client:
        client.session("idle").get("k")
        client._channel.subscribe(states.append)
        assert wait_until(lambda: grpc.ChannelConnectivity.READY in states, 5)
        assert wait_until(lambda: states[-1] == grpc.ChannelConnectivity.IDLE, 5)


def test_max_concurrent_streams_is_enforced(caps_server: Any) -> None:
    server = caps_server(max_concurrent_streams=2)
    release = threading.Event()
    with (
        client_of(server) as client,
        # Channels with equal arguments share one connection; this one gets its own.
        client_of(server, options=[("grpc.use_local_subchannel_pool", 1)]) as other,
    ):
        memory = client.session(f"caps-{uuid.uuid4().hex}")
        request = svc.GetRequest(session_id=memory.session_id, key="k")
        try:
            held = [Held(memory, f"doc{i}", release) for i in range(2)]
            time.sleep(0.5)
            # A third call on the connection with 2 streams open waits for one to end...
            with pytest.raises(grpc.RpcError) as info:
                client.stub.Get(request, timeout=1, metadata=client._metadata)
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            # ... while one on another connection goes through.
            assert other.session(memory.session_id).get("k") is None
        finally:
            release.set()
        assert [h.size() for h in held] == [MIB + KIB] * len(held)
        assert not client.stub.Get(request, timeout=5, metadata=client._metadata).found


def test_spool_files_of_a_killed_server_go_at_the_next_start(
    caps_server: Any, redis_server: EmbeddedRedis, s3_server: EmbeddedS3, tmp_path: Path
) -> None:
    # Shares the spool directory and keeps uploading. Its upload is held across a
    # whole server start (seconds under load): no idle or slow-upload cut meanwhile.
    live = caps_server(upload_idle_seconds=60.0, upload_rate_window_seconds=60.0)
    address = f"127.0.0.1:{free_port()}"
    env = cli_env(redis_server.url, s3_server, address, spool_dir=tmp_path)
    release = threading.Event()
    procs = [serve_cli(env)]
    killed_pid = procs[0].pid
    key = live.create_key("acme")
    try:
        with (
            MemoryClient(address, api_key=key, timeout=30, max_attempts=1) as doomed,
            client_of(live) as client,
        ):
            sid = f"caps-{uuid.uuid4().hex}"
            cut = [Held(doomed.session(sid), f"cut{i}", release) for i in range(2)]
            kept = Held(client.session(sid), "kept", release)
            assert wait_until(lambda: len(spool_files(tmp_path)) == 3, timeout=30), (
                spool_files(tmp_path),
                [h.outcome for h in (*cut, kept)],
            )
            os.kill(killed_pid, signal.SIGKILL)
            procs[0].wait(10)
            theirs = [p for p in spool_files(tmp_path) if f"proc-{killed_pid}-" in str(p)]
            assert len(theirs) == 2, "the killed server left its spool files"
            procs.append(serve_cli(env))  # a new server on the same spool directory
            assert all(not p.exists() for p in theirs)
            assert not any(
                d.name.startswith(f"proc-{killed_pid}-")
                for d in (tmp_path / "session-memory-spool").iterdir()
            )
            assert [p.parent.name.split("-")[1] for p in spool_files(tmp_path)] == [
                str(os.getpid())
            ], "the live server's upload was kept"
            release.set()
            assert kept.size() == MIB + KIB
            assert all(isinstance(h.result(), Exception) for h in cut)
    finally:
        release.set()
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)


def test_a_request_message_over_the_cap_is_refused_by_grpc(caps_server: Any) -> None:
    server = caps_server(max_message_bytes=512 * 1024)
    key = server.create_key("acme")
    with grpc.insecure_channel(server.address) as channel:
        get = channel.unary_unary("/sessionmemory.v1.MemoryService/Get")
        with pytest.raises(grpc.RpcError) as info:
            get(b"\x0a\x80\x80\x24" + b"x" * (576 * 1024), timeout=5)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    with MemoryClient(server.address, api_key=key, timeout=5) as client:
        memory = client.session("big")
        memory.set_file("f", b"x" * (300 * 1024), ttl=60, mime="text/plain")  # 256 KiB chunks
        assert memory.get_file("f").to_raw() == b"x" * (300 * 1024)


def test_calls_in_flight_are_capped_per_process(caps_server: Any, tmp_path: Path) -> None:
    server = caps_server(max_calls_in_flight=2)
    release = threading.Event()
    with client_of(server) as client:
        memory = client.session(f"caps-{uuid.uuid4().hex}")
        try:
            held = [Held(memory, f"f{i}", release) for i in range(2)]
            assert wait_until(lambda: len(spool_files(tmp_path)) == 2)
            with pytest.raises(LimitExceededError) as info:
                memory.get("k")
            assert info.value.status == grpc.StatusCode.RESOURCE_EXHAUSTED
        finally:
            release.set()
        assert [h.size() for h in held] == [MIB + KIB] * 2
        assert memory.get("k") is None
