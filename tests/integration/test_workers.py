"""`session-memory serve --workers 2` as a platform team runs it: the parent supervises.

A killed worker is logged and replaced while the port keeps answering and
readiness reports the gap; SIGTERM drains every worker; workers do not outlive
a killed parent; workers that cannot start make the parent give up, not spin.
"""

from __future__ import annotations

import contextlib
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
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from sessionmemory import MemoryClient, ServiceUnavailableError
from sessionmemory_server.app import SERVICE_NAME
from sessionmemory_server.embedded import EmbeddedRedis, EmbeddedS3, free_port
from sessionmemory_server.supervisor import DRAIN_MARGIN_SECONDS, STALL_SECONDS

from ..conftest import cli_env, wait_until

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
GRACE = 3.0


class Served:
    """A `session-memory serve` process whose stderr (JSON lines) is collected as it comes."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.address = env["SESSION_MEMORY_LISTEN"]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sessionmemory_server.cli", "serve", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []
        # Workers share the pipe: read it to the end, or a full pipe would block them.
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            self.raw.append(line)
            with contextlib.suppress(ValueError):  # a traceback's lines are not JSON
                self.lines.append(json.loads(line))

    def logged(self, msg: str, **fields: Any) -> list[dict[str, Any]]:
        """The JSON log lines with this message and these fields."""
        return [
            line
            for line in list(self.lines)
            if line.get("msg") == msg and all(line.get(k) == v for k, v in fields.items())
        ]

    def workers(self) -> list[int]:
        """Pids of the workers: the parent's spawned children (not its resource tracker)."""
        try:
            text = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return []
        return [int(p) for p in text.split() if b"spawn_main" in _cmdline(int(p))]

    def worker_numbers(self) -> dict[int, int]:
        """Worker pid -> worker number, from the parent's "worker started" lines."""
        return {line["worker_pid"]: line["worker"] for line in self.logged("worker started")}

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(GRACE + DRAIN_MARGIN_SECONDS + 10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(10)


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def alive(pid: int) -> bool:
    """The process exists and is not a zombie waiting to be collected."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def health(address: str, service: str = SERVICE_NAME) -> int | None:
    """The status one worker gives (a new connection each time: any worker may answer)."""
    with grpc.insecure_channel(address, options=[("grpc.channel_id", uuid.uuid4().hex)]) as ch:
        try:
            request = health_pb2.HealthCheckRequest(service=service)
            return int(health_pb2_grpc.HealthStub(ch).Check(request, timeout=2).status)
        except grpc.RpcError:
            return None


def all_say(address: str, status: int, checks: int = 10) -> bool:
    """``checks`` health checks in a row (spread over the workers) all answer ``status``."""
    return all(health(address) == status for _ in range(checks))


@pytest.fixture
def env(redis_server: EmbeddedRedis, s3_server: EmbeddedS3) -> dict[str, str]:
    return cli_env(
        redis_server.url,
        s3_server,
        f"127.0.0.1:{free_port()}",
        log_level="INFO",
        grace_seconds=GRACE,
        readiness_interval_seconds=0.5,
        readiness_timeout_seconds=0.5,
        # The traffic below is one tenant's, faster than its default rates.
        tenant_reads_per_second=0,
        tenant_writes_per_second=0,
    )


@pytest.fixture
def served(env: dict[str, str]) -> Iterator[Served]:
    srv = Served(env, "--workers", "2")
    try:
        assert wait_until(lambda: len(srv.workers()) == 2, timeout=30), srv.raw
        # Ready only once both workers serve.
        assert wait_until(lambda: all_say(srv.address, SERVING), timeout=30), srv.raw
        yield srv
    finally:
        srv.stop()


class Traffic:
    """Set and Get over several connections in a thread, keeping every outcome."""

    def __init__(self, address: str, key: str, channels: int = 4) -> None:
        self.clients = [
            MemoryClient(address, api_key=key, timeout=5, options=[("grpc.channel_id", i)])
            for i in range(channels)
        ]
        self.ok = 0
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            for i, client in enumerate(self.clients):
                session = client.session(f"traffic-{i}")
                try:
                    session.set("n", n)
                    assert session.get("n") == n
                    self.ok += 1
                except Exception as exc:
                    self.errors.append(exc)
            n += 1
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        for client in self.clients:
            client.close()


def test_a_killed_worker_is_logged_and_respawned_while_the_port_answers(
    served: Served, redis_server: EmbeddedRedis
) -> None:
    key = redis_server.create_key("acme")
    numbers = served.worker_numbers()
    victim = served.workers()[1]
    survivor = served.workers()[0]
    traffic = Traffic(served.address, key)
    statuses: list[int | None] = []
    watching = threading.Event()

    def watch() -> None:
        while not watching.is_set():
            statuses.append(health(served.address))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch, daemon=True)
    try:
        assert wait_until(lambda: traffic.ok >= 20, timeout=10)
        watcher.start()
        os.kill(victim, signal.SIGKILL)
        # The parent logs the death with the pid, the worker's number and the signal.
        assert wait_until(lambda: served.logged("worker died", worker_pid=victim), timeout=5)
        (died,) = served.logged("worker died", worker_pid=victim)
        assert died["level"] == "ERROR" and died["logger"] == "sessionmemory_server.supervisor"
        assert died["pid"] == served.proc.pid
        assert died["worker"] == numbers[victim] and died["signal"] == "SIGKILL"
        assert died["respawn_in_seconds"] == 0.5
        # A new worker takes its place (and its number) within seconds.
        assert wait_until(
            lambda: len(served.workers()) == 2 and victim not in served.workers(), timeout=10
        )
        (fresh,) = set(served.workers()) - {survivor}
        assert served.worker_numbers()[fresh] == numbers[victim]
        assert wait_until(lambda: served.logged("serving", pid=fresh), timeout=10)
        assert served.logged("serving", pid=fresh)[0]["worker"] == numbers[victim]
        # Readiness said so while it was missing, and is back now that it serves
        # (every worker: each follows the count within a second).
        assert wait_until(lambda: all_say(served.address, SERVING), timeout=10)
        watching.set()
        watcher.join(10)
        assert NOT_SERVING in statuses, statuses
        assert served.logged("not ready", failing=["workers: 1 of 2 serving"]), served.raw
        assert health(served.address, "") == SERVING
        done = traffic.ok
        assert wait_until(lambda: traffic.ok >= done + 20, timeout=10)
    finally:
        watching.set()
        traffic.stop()
    # The port answered throughout: a call may only have met the dead worker's
    # reset connections (UNAVAILABLE after the client's retries), nothing else.
    assert traffic.ok > 40
    assert all(isinstance(e, ServiceUnavailableError) for e in traffic.errors), traffic.errors
    assert len(traffic.errors) <= len(traffic.clients), traffic.errors
    for i in range(6):  # every new connection, to either worker, works
        with MemoryClient(served.address, api_key=key, options=[("grpc.channel_id", 100 + i)]) as c:
            c.session("after").set("k", i)
            assert c.session("after").get("k") == i


def test_sigterm_drains_every_worker_and_exits_0(served: Served) -> None:
    workers = served.workers()
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(GRACE + DRAIN_MARGIN_SECONDS + 5) == 0
    assert not [pid for pid in workers if alive(pid)]
    served.stop()  # collects the rest of the log
    assert served.logged(
        "shutting down", logger="sessionmemory_server.supervisor", signal="SIGTERM"
    )
    stopped = {line["worker_pid"]: line for line in served.logged("worker stopped")}
    assert set(stopped) == set(workers), "\n".join(served.raw)
    assert all(line["exit_code"] == 0 for line in stopped.values()), stopped
    assert not served.logged("worker died") and not served.logged("worker failed to start")
    assert served.logged("stopped", logger="sessionmemory_server.supervisor", exit_status=0)


def test_a_worker_that_does_not_drain_is_killed_after_the_grace_period(served: Served) -> None:
    stuck, other = served.workers()
    os.kill(stuck, signal.SIGSTOP)  # it cannot act on the SIGTERM the parent forwards
    started = time.monotonic()
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(GRACE + DRAIN_MARGIN_SECONDS + 5) == 0
    assert time.monotonic() - started >= GRACE + DRAIN_MARGIN_SECONDS - 0.5
    assert not alive(stuck) and not alive(other)
    served.stop()
    assert served.logged("worker stopped", worker_pid=other, exit_code=0)
    (killed,) = served.logged("worker killed: still running after the grace period")
    assert killed["worker_pid"] == stuck and killed["level"] == "WARNING"


def test_a_second_interrupt_kills_the_workers_at_once(served: Served) -> None:
    stuck, other = served.workers()
    os.kill(stuck, signal.SIGSTOP)
    served.proc.send_signal(signal.SIGINT)
    assert wait_until(lambda: served.logged("worker stopped", worker_pid=other), timeout=10)
    started = time.monotonic()
    served.proc.send_signal(signal.SIGINT)
    assert served.proc.wait(5) == 0
    assert time.monotonic() - started < GRACE
    assert not alive(stuck)
    served.stop()
    assert served.logged("shutting down", logger="sessionmemory_server.supervisor", signal="SIGINT")
    (killed,) = served.logged("worker killed: a second interrupt")
    assert killed["worker_pid"] == stuck


def test_workers_leave_when_the_parent_is_killed(served: Served) -> None:
    workers = served.workers()
    served.proc.kill()
    served.proc.wait(5)
    assert wait_until(lambda: not any(alive(pid) for pid in workers), timeout=GRACE + 5)
    served.stop()
    gone = served.logged("supervisor gone; shutting down", supervisor_pid=served.proc.pid)
    assert {line["pid"] for line in gone} == set(workers)


def test_workers_that_cannot_start_make_the_parent_give_up(env: dict[str, str]) -> None:
    # (A bad TLS file never gets this far: `serve` checks the files first.)
    host, port = env["SESSION_MEMORY_LISTEN"].rsplit(":", 1)
    with socket.socket() as taken:  # another program holds the port (no SO_REUSEPORT)
        taken.bind((host, int(port)))
        taken.listen()
        srv = Served(env, "--workers", "2")
        try:
            # 3 attempts per worker, 0.5 + 1 s apart, each a process start: bounded.
            assert srv.proc.wait(60) == 1
        finally:
            srv.stop()
    failed = srv.logged("worker failed to start")
    assert sorted(line["worker"] for line in failed) == [0, 0, 0, 1, 1, 1], srv.raw
    for number in (0, 1):
        delays = [line["respawn_in_seconds"] for line in failed if line["worker"] == number]
        assert delays == [0.5, 1.0, 2.0]
    assert all(line["exit_code"] == 1 for line in failed)
    (gave_up,) = [line for line in srv.lines if "no worker could start" in line.get("msg", "")]
    assert gave_up["level"] == "ERROR" and gave_up["attempts"] == 3
    assert any("Address already in use" in line for line in srv.raw), srv.raw
    pids = [line["worker_pid"] for line in srv.logged("worker started")]
    assert len(pids) == 6 and not any(alive(pid) for pid in pids)


def set_calls(metrics: str) -> float:
    """Successful Set calls counted by the parent's /metrics (every worker's, summed)."""
    with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=5) as response:
        assert response.status == 200
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "grpc_server_handled_total"
        and sample.labels.get("grpc_method") == "Set"
        and sample.labels.get("grpc_code") == "OK"
    )


def test_the_parent_serves_every_workers_metrics(
    env: dict[str, str], redis_server: EmbeddedRedis
) -> None:
    metrics = f"127.0.0.1:{free_port()}"
    srv = Served(env, "--workers", "2", "--metrics-listen", metrics)
    key = redis_server.create_key("acme")
    try:
        # A worker opening the endpoint too would fail to start: the parent holds the port.
        assert wait_until(lambda: all_say(srv.address, SERVING), timeout=30), srv.raw
        for i in range(8):  # separate connections: both workers serve some
            with MemoryClient(srv.address, api_key=key, options=[("grpc.channel_id", i)]) as c:
                c.session("m").set("k", i)
        assert set_calls(metrics) == 8
        # A dead worker's calls still count after its replacement serves.
        victim = srv.workers()[0]
        os.kill(victim, signal.SIGKILL)
        assert wait_until(lambda: all_say(srv.address, SERVING), timeout=30)
        assert victim not in srv.workers()
        assert set_calls(metrics) == 8
        assert not srv.logged("worker failed to start")
    finally:
        srv.stop()
    assert srv.proc.returncode == 0


def test_a_stalled_worker_is_killed_and_replaced(served: Served) -> None:
    """A worker whose event loop stops (here: SIGSTOP) would hang every connection it gets."""
    stuck, other = served.workers()
    os.kill(stuck, signal.SIGSTOP)
    assert wait_until(
        lambda: served.logged("worker stalled; killing it", worker_pid=stuck),
        timeout=STALL_SECONDS + 5,
    )
    assert wait_until(
        lambda: served.logged("worker died", worker_pid=stuck, signal="SIGKILL"), timeout=5
    )
    assert wait_until(lambda: len(served.workers()) == 2 and stuck not in served.workers(), 10)
    assert other in served.workers()
    assert wait_until(lambda: all_say(served.address, SERVING), timeout=15)


def test_workers_killed_from_outside_never_make_the_parent_give_up(served: Served) -> None:
    """Deaths by a signal (the OOM killer) lengthen the back-off; only failures to start count."""
    killed: set[int] = set()
    for _ in range(4):
        assert wait_until(lambda: len(set(served.workers()) - killed) == 2, timeout=30)
        for pid in set(served.workers()) - killed:
            os.kill(pid, signal.SIGKILL)
            killed.add(pid)
    assert wait_until(lambda: all_say(served.address, SERVING), timeout=40)
    assert served.proc.poll() is None
    assert not served.logged("no worker could start", workers=2)


def test_sighup_drains_like_sigterm(served: Served) -> None:
    workers = served.workers()
    served.proc.send_signal(signal.SIGHUP)
    assert served.proc.wait(GRACE + DRAIN_MARGIN_SECONDS + 5) == 0
    served.stop()
    assert served.logged("shutting down", logger="sessionmemory_server.supervisor", signal="SIGHUP")
    for pid in workers:
        assert served.logged("worker stopped", worker_pid=pid, exit_code=0)
