"""The real `session-memory serve` process: graceful shutdown and --workers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from sessionmemory import MemoryClient, ServiceUnavailableError
from sessionmemory_server.embedded import EmbeddedRedis, free_port


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path / "redis") as redis:
        yield redis


def _serve(redis: EmbeddedRedis, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    address = f"127.0.0.1:{free_port()}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "sessionmemory_server.cli", "serve", "--listen", address,
         "--redis-url", redis.url, *extra],
        stderr=subprocess.PIPE,
    )  # fmt: skip
    with grpc.insecure_channel(address) as channel:
        grpc.channel_ready_future(channel).result(timeout=20)
    return proc, address


def test_sigterm_finishes_in_flight_calls_and_refuses_new_ones(own_redis: EmbeddedRedis) -> None:
    proc, address = _serve(own_redis, "--redis-timeout-seconds", "5", "--grace-seconds", "5")
    key = own_redis.create_key("acme")
    assert own_redis.process is not None
    try:
        with MemoryClient(address, api_key=key, timeout=10, max_attempts=1) as client:
            memory = client.session("graceful")
            memory.set("k", "v")
            result: dict[str, Any] = {}
            os.kill(own_redis.process.pid, signal.SIGSTOP)  # the next call hangs in Redis
            reader = threading.Thread(target=lambda: result.update(v=memory.get("k")))
            reader.start()
            time.sleep(0.5)
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            with (
                MemoryClient(address, api_key=key, timeout=2, max_attempts=1) as late,
                pytest.raises(ServiceUnavailableError),
            ):
                late.session("graceful").get("k")
            os.kill(own_redis.process.pid, signal.SIGCONT)
            reader.join(10)
            assert result == {"v": "v"}, "the in-flight call completed"
        assert proc.wait(10) == 0
        assert b"shutting down" in (proc.stderr.read() if proc.stderr else b"")
    finally:
        os.kill(own_redis.process.pid, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_workers_share_the_port(own_redis: EmbeddedRedis) -> None:
    proc, address = _serve(own_redis, "--workers", "2")
    key = own_redis.create_key("acme")
    try:
        # Separate channels land on either process; all see the same data.
        with MemoryClient(address, api_key=key) as writer:
            writer.session("w").set("k", "shared")
        for i in range(6):
            with MemoryClient(address, api_key=key, options=[("grpc.channel_id", i)]) as c:
                assert c.session("w").get("k") == "shared"
        workers = [
            p for p in os.listdir("/proc")
            if p.isdigit() and _ppid(int(p)) == proc.pid and b"spawn_main" in _cmdline(int(p))
        ]  # fmt: skip
        assert len(workers) == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0


def _ppid(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except OSError:
        return -1


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sessionmemory_server.cli", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_keys_cli_create_list_revoke(own_redis: EmbeddedRedis) -> None:
    created = _cli("keys", "create", "--tenant", "acme", "--redis-url", own_redis.url)
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    assert key.startswith("smk_") and "shown only once" in created.stderr
    key_id = key.split("_")[1]
    listed = _cli("keys", "list", "--redis-url", own_redis.url)
    rows = [line.split() for line in listed.stdout.splitlines()]
    assert any(row[:2] == [key_id, "acme"] for row in rows), listed.stdout  # tab or table
    assert key not in listed.stdout
    proc, address = _serve(own_redis)
    try:
        with MemoryClient(address, api_key=key) as client:
            client.session("cli").set("k", 1)
        assert _cli("keys", "revoke", key_id, "--redis-url", own_redis.url).returncode == 0
        # Revoked already: refused, with one line saying why (the exit code per error
        # class is the CLI tests' business).
        again = _cli("keys", "revoke", key_id, "--redis-url", own_redis.url)
        assert again.returncode != 0 and len(again.stderr.strip().splitlines()) == 1, again
        assert key_id not in _cli("keys", "list", "--redis-url", own_redis.url).stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(15)
    bad = _cli("keys", "create", "--tenant", "no spaces", "--redis-url", own_redis.url)
    assert bad.returncode != 0


def test_dev_mode_starts_redis_prints_a_key_and_stops_cleanly(tmp_path: Path) -> None:
    marker = f"aof-{uuid.uuid4().hex}"  # a value no other byte of the AOF can spell
    address = f"127.0.0.1:{free_port()}"
    metrics = f"127.0.0.1:{free_port()}"  # dev serves metrics, by default on 9464
    proc = subprocess.Popen(
        [sys.executable, "-m", "sessionmemory_server.cli", "dev", "--listen", address,
         "--data-dir", str(tmp_path), "--metrics-listen", metrics],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(5)]
        key = next(line.split(":", 1)[1].strip() for line in lines if "API key" in line)
        with grpc.insecure_channel(address) as channel:
            grpc.channel_ready_future(channel).result(timeout=20)
        with MemoryClient(address, api_key=key) as client:
            client.session("dev").set("step", marker)
            assert client.session("dev").get("step") == marker
            client.session("dev").set_file("note", b"hello", ttl=60, mime="text/plain")
            assert client.session("dev").get_file("note").to_raw() == b"hello"
        scraped = _scrape(metrics)
        assert 'grpc_method="Set",grpc_service="sessionmemory.v1.MemoryService"' in scraped
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(20) == 0
    assert (tmp_path / "dev-api-key").read_text().strip() == key
    # Dev data survives a restart: Redis logged the write in its append-only file.
    assert marker.encode() in _aof(tmp_path / "redis")


@pytest.mark.parametrize("taken", ["metrics", "grpc", "health"])
def test_a_taken_port_fails_the_start_in_one_line(tmp_path: Path, taken: str) -> None:
    # Regressions: the metrics port was bound after the gRPC server started, and a taken
    # one raised into a half-started server that never said "serving" nor exited; a
    # taken gRPC port was a traceback (grpcio raises RuntimeError, not OSError).
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        held = f"127.0.0.1:{holder.getsockname()[1]}"
        listen = {"grpc": "127.0.0.1:0", "metrics": "127.0.0.1:0", "health": "127.0.0.1:0"}
        listen[taken] = held
        done = subprocess.run(
            [sys.executable, "-m", "sessionmemory_server.cli", "dev", "--listen", listen["grpc"],
             "--data-dir", str(tmp_path), "--metrics-listen", listen["metrics"]],
            env={**os.environ, "SESSION_MEMORY_HEALTH_LISTEN": listen["health"]},
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert done.returncode == 1, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "(LISTEN_FAILED)" in errors[0], done.stderr
    assert (held in errors[0]) == (taken != "metrics"), errors  # the metrics error names errno
    assert "Traceback" not in done.stderr, done.stderr


def _aof(directory: Path) -> bytes:
    """Everything Redis appended to its AOF in `directory`: appendonly.aof (Redis 6) or
    the multi-part AOF's files in appendonlydir/ (Redis 7+; the base, an RDB by default,
    and the incremental files, which hold the commands since)."""
    files = [directory / "appendonly.aof", *sorted((directory / "appendonlydir").glob("*"))]
    found = [f for f in files if f.is_file()]
    assert found, f"no append-only file in {directory}: {sorted(os.listdir(directory))}"
    return b"".join(f.read_bytes() for f in found)


def _scrape(listen: str) -> str:
    with urllib.request.urlopen(f"http://{listen}/metrics", timeout=5) as response:
        return str(response.read().decode())


def test_serve_exports_metrics_and_writes_access_log_lines(own_redis: EmbeddedRedis) -> None:
    metrics = f"127.0.0.1:{free_port()}"
    address = f"127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        "SESSION_MEMORY_LOG_LEVEL": "INFO",
        "SESSION_MEMORY_ACCESS_LOG_SAMPLE_RATE": "1",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "sessionmemory_server.cli", "serve", "--listen", address,
         "--redis-url", own_redis.url, "--metrics-listen", metrics],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        with grpc.insecure_channel(address) as channel:
            grpc.channel_ready_future(channel).result(timeout=20)
        key = _cli("keys", "create", "acme", "--redis-url", own_redis.url).stdout.strip()
        with MemoryClient(address, api_key=key, max_attempts=1) as client:
            client.session("conv-secret").set("step", "name")
            assert client.session("conv-secret").get("step") == "name"
        scraped = _scrape(metrics)
        ok = 'grpc_code="OK",grpc_method="Get",grpc_service="sessionmemory.v1.MemoryService"'
        assert f'grpc_server_handled_total{{{ok},grpc_type="UNARY"}} 1.0' in scraped
        assert "process_cpu_seconds_total" in scraped  # the process collector too
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    access = [
        json.loads(line) for line in err.splitlines() if '"sessionmemory_server.access"' in line
    ]
    assert [(a["method"], a["code"], a["tenant"]) for a in access] == [
        ("Set", "OK", "acme"),
        ("Get", "OK", "acme"),
    ]
    assert all(a["pid"] == proc.pid for a in access)
    assert "conv-secret" not in err and key not in err
