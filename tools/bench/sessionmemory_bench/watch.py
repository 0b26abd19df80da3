"""``make bench-watch`` (``python -m sessionmemory_bench watch``): what idle Watch streams
cost, and how fast changes arrive.

Starts an embedded redis-server (keyspace expiry notifications on) and our
server as its own process. Client load runs in separate processes so it does
not share the server's event loop:

1. Idle cost. A holder process opens N Watch streams over N/250 channels (the
   server allows 1,000 streams per HTTP/2 connection) and keeps them open. After
   they settle, the server's RSS, CPU and Redis connections are compared with
   the same server before it (a fresh server per variant, warmed up with one
   Set and one Watch). Variants: N streams on N sessions, and N streams on one
   session id per tenant (the server caps a tenant at a quarter of its 2,048
   streams, so the holder spreads streams over tenants of 250).
2. Delivery. With the N idle streams still open, a receiver process watches
   100 sessions and a writer process sends Set calls to them at R per second
   for S seconds, paced. Each change's delay is from just before its Set was
   sent to the moment the receiver read it (wall clock, ``time.time()``; the
   processes share the host's clock). Prints p50/p99/max and the Set calls' own
   latency beside it, changes sent vs. received (and any out of order), and
   the CPU the server, Redis, the bench clients and everything else on the
   host used during the writes: the server and Redis share the cores with
   whatever else runs, and that shows in the tail latency.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import grpc
import redis

from sessionmemory.v1 import memory_service_pb2 as svc
from sessionmemory.v1 import memory_service_pb2_grpc as svc_grpc
from sessionmemory_server.core import LIMITS
from sessionmemory_server.embedded import EmbeddedRedis, free_port

MIB = 1024 * 1024
_TICKS = os.sysconf("SC_CLK_TCK")
# Streams per channel (one HTTP/2 connection each; the server allows 1,000).
_PER_CHANNEL = 250
# Streams per tenant: the server allows one tenant a quarter of its 2,048.
_PER_TENANT = 250
_LIVE_SESSIONS = 100
_KEY = "k"
_TTL_SECONDS = 3600
_OPEN_TIMEOUT_SECONDS = 60.0
_READY_TIMEOUT_SECONDS = 30.0
# How long a receiver waits for changes still in flight after the last write.
_DRAIN_SECONDS = 5.0
# Hard bound on every client process's life beyond the measured phases.
_SLACK_SECONDS = 120.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the benchmark's flags to ``parser``."""
    parser.add_argument("--watchers", type=int, default=1000, help="idle Watch streams")
    parser.add_argument("--rate", type=float, default=200.0, help="Set calls per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds of writes")
    parser.add_argument(
        "--settle", type=float, default=10.0, help="seconds to wait before sampling idle cost"
    )
    parser.add_argument(
        "--cpu-window", type=float, default=5.0, help="seconds over which idle CPU is sampled"
    )


# --- /proc and Redis samples ------------------------------------------------------


def _cpu_seconds(pid: int, *, missing_ok: bool = False) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        if missing_ok:  # a client process that has just exited
            return 0.0
        raise
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _runqueue_seconds(pid: int) -> float:
    """Time the process's main thread was runnable but waited for a CPU (/proc/PID/schedstat)."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[1]) / 1e9


def _host_busy_seconds() -> float:
    """CPU time every process on the host used (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / _TICKS  # minus idle and iowait


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"VmRSS not in /proc/{pid}/status")


@dataclass(frozen=True)
class Sample:
    """The server at rest: memory, CPU and what it holds in Redis."""

    rss: int
    cpu_percent: float
    redis_connections: int
    pubsub_connections: int
    channels: int


def _sample(pid: int, probe: redis.Redis, window: float) -> Sample:
    before = _cpu_seconds(pid)
    started = time.monotonic()
    time.sleep(window)
    cpu = (_cpu_seconds(pid) - before) / (time.monotonic() - started) * 100
    own = probe.client_id()
    clients = [c for c in probe.client_list() if int(c["id"]) != own]
    pubsub = [c for c in clients if int(c.get("sub", 0)) or int(c.get("psub", 0))]
    channels = len(probe.pubsub_channels())
    return Sample(_rss(pid), cpu, len(clients), len(pubsub), channels)


# --- client processes ----------------------------------------------------------------


def _metadata(api_key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {api_key}"),)


def _channel(address: str) -> grpc.aio.Channel:
    # A local subchannel pool: otherwise grpc shares one connection among channels.
    return grpc.aio.insecure_channel(address, options=[("grpc.use_local_subchannel_pool", 1)])


async def _message(conn: Connection, deadline: float) -> Any:
    """The parent's next message, or None at ``deadline`` (time.monotonic)."""
    loop = asyncio.get_running_loop()
    ready = asyncio.Event()
    loop.add_reader(conn.fileno(), ready.set)
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(ready.wait(), max(0.0, deadline - time.monotonic()))
    finally:
        loop.remove_reader(conn.fileno())
    return conn.recv() if conn.poll() else None


class _Tally:
    """Streams that opened (read their first message) or failed; wakes when all have."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.opened = 0
        self.failures: list[str] = []
        self.settled = asyncio.Event()

    def open(self) -> None:
        self.opened += 1
        self._check()

    def fail(self, exc: grpc.aio.AioRpcError) -> None:
        self.failures.append(f"{exc.code().name}: {exc.details()}")
        self._check()

    def _check(self) -> None:
        if self.opened + len(self.failures) >= self.total:
            self.settled.set()

    async def report(self, conn: Connection) -> None:
        """Tell the parent how many streams opened, once all have or time is up."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.settled.wait(), _OPEN_TIMEOUT_SECONDS)
        conn.send(("ready", self.opened, self.failures[:3], len(self.failures)))


async def _hold_async(
    address: str, streams: list[tuple[str, str]], max_seconds: float, conn: Connection
) -> None:
    deadline = time.monotonic() + max_seconds
    channels = [_channel(address) for _ in range(-(-len(streams) // _PER_CHANNEL))]
    tally = _Tally(len(streams))
    extra = 0

    async def hold(i: int, api_key: str, session: str) -> None:
        nonlocal extra
        stub = svc_grpc.MemoryServiceStub(channels[i // _PER_CHANNEL])
        call = stub.Watch(svc.WatchRequest(session_id=session), metadata=_metadata(api_key))
        try:
            await call.read()
            tally.open()
            while await call.read() is not grpc.aio.EOF:
                extra += 1
        except grpc.aio.AioRpcError as exc:
            tally.fail(exc)

    tasks = [asyncio.create_task(hold(i, k, s)) for i, (k, s) in enumerate(streams)]
    await tally.report(conn)
    await _message(conn, deadline)
    failed = len(tally.failures)  # before cancelling: streams that broke while idle
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for channel in channels:
        await channel.close()
    conn.send(("done", extra, failed))


def _hold(address: str, streams: list[tuple[str, str]], limit: float, conn: Connection) -> None:
    """Holder process: keep ``streams`` (api key, session) open until told to stop."""
    asyncio.run(_hold_async(address, streams, limit, conn))


async def _receive_async(
    address: str, api_key: str, sessions: list[str], max_seconds: float, conn: Connection
) -> None:
    deadline = time.monotonic() + max_seconds
    channel = _channel(address)
    stub = svc_grpc.MemoryServiceStub(channel)
    arrivals: dict[tuple[str, int], float] = {}
    tally = _Tally(len(sessions))
    compacted = 0
    out_of_order = 0
    expected = float("inf")
    complete = asyncio.Event()

    async def watch(session: str) -> None:
        nonlocal compacted, out_of_order
        call = stub.Watch(svc.WatchRequest(session_id=session), metadata=_metadata(api_key))
        last = 0
        try:
            await call.read()
            tally.open()
            while isinstance(resp := await call.read(), svc.WatchResponse):
                now = time.time()
                compacted += resp.compacted
                for change in resp.changes:
                    arrivals.setdefault((session, change.version), now)
                    out_of_order += change.version <= last
                    last = change.version
                if len(arrivals) >= expected:
                    complete.set()
        except grpc.aio.AioRpcError as exc:
            tally.fail(exc)

    tasks = [asyncio.create_task(watch(s)) for s in sessions]
    await tally.report(conn)
    # The parent sends how many changes were written; wait for them, briefly.
    expected = await _message(conn, deadline) or 0
    if len(arrivals) >= expected:
        complete.set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(complete.wait(), _DRAIN_SECONDS)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await channel.close()
    conn.send(("done", arrivals, compacted, out_of_order))


def _receive(
    address: str, api_key: str, sessions: list[str], limit: float, conn: Connection
) -> None:
    """Receiver process: watch ``sessions``, note when each change arrived."""
    asyncio.run(_receive_async(address, api_key, sessions, limit, conn))


async def _write_async(
    address: str, api_key: str, sessions: list[str], rate: float, seconds: float, conn: Connection
) -> None:
    channel = _channel(address)
    stub = svc_grpc.MemoryServiceStub(channel)
    await asyncio.wait_for(channel.channel_ready(), _READY_TIMEOUT_SECONDS)
    sent: list[tuple[str, int, float, float]] = []
    errors: list[str] = []

    async def one(i: int) -> None:
        session = sessions[i % len(sessions)]
        request = svc.SetRequest(
            session_id=session, key=_KEY, string_value=str(i), ttl_seconds=_TTL_SECONDS
        )
        started = time.time()
        try:
            resp = await stub.Set(request, metadata=_metadata(api_key), timeout=10)
        except grpc.aio.AioRpcError as exc:
            errors.append(f"{exc.code().name}: {exc.details()}")
            return
        sent.append((session, resp.result.version, started, time.time()))

    total = int(rate * seconds)
    conn.send(("start",))
    begin = time.monotonic()
    tasks = []
    for i in range(total):
        delay = begin + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    elapsed = time.monotonic() - begin
    await channel.close()
    conn.send(("done", sent, errors[:3], len(errors), elapsed))
    conn.poll(30)  # stay until the parent has read our CPU time


def _write(
    address: str, api_key: str, sessions: list[str], rate: float, seconds: float, conn: Connection
) -> None:
    """Writer process: Set calls at ``rate`` per second for ``seconds``, spread over sessions."""
    asyncio.run(_write_async(address, api_key, sessions, rate, seconds, conn))


class _Child:
    """A client process and the parent's end of its pipe."""

    def __init__(self, target: Any, *args: Any) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=target, args=(*args, child), daemon=True)
        self.process.start()
        child.close()

    def recv(self, timeout: float) -> Any:
        try:
            if self.conn.poll(timeout):
                return self.conn.recv()
        except EOFError:
            pass
        raise RuntimeError(f"client process {self.process.pid} gave no answer (see above)")

    def stop(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(OSError):
                self.conn.send(None)  # every client process ends on a message
            self.process.join(15)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)


def _opened(child: _Child, want: int, what: str) -> None:
    _, opened, failures, failed = child.recv(_OPEN_TIMEOUT_SECONDS + 30)
    if opened != want:
        raise RuntimeError(f"{what}: {opened} of {want} streams opened, {failed} failed {failures}")


# --- the server ------------------------------------------------------------------------


@contextlib.contextmanager
def _server(redis_url: str, log: Path) -> Iterator[tuple[int, str]]:
    address = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "SESSION_MEMORY_LOG_LEVEL": "WARNING"}
    args = [sys.executable, "-m", "sessionmemory_server.cli", "serve",
            "--listen", address, "--redis-url", redis_url]  # fmt: skip
    with log.open("ab") as out:
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        with grpc.insecure_channel(address) as channel:
            grpc.channel_ready_future(channel).result(timeout=_READY_TIMEOUT_SECONDS)
        yield proc.pid, address
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _warm_up(address: str, keys: list[str]) -> None:
    """One Set and one Watch per tenant: first-call costs are not the watchers'."""
    with grpc.insecure_channel(address) as channel:
        stub = svc_grpc.MemoryServiceStub(channel)
        for api_key in keys:
            stub.Set(
                svc.SetRequest(session_id="warm", key=_KEY, string_value="x", ttl_seconds=60),
                metadata=_metadata(api_key),
                timeout=10,
            )
            call = stub.Watch(svc.WatchRequest(session_id="warm"), metadata=_metadata(api_key))
            next(call)
            call.cancel()


# --- running ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Idle:
    """One idle variant: the server before and after its streams opened."""

    name: str
    before: Sample
    after: Sample


@dataclass(frozen=True)
class Delivery:
    """The delivery phase's figures."""

    sent: int
    failed: int
    received: int
    compacted: int
    out_of_order: int
    latencies_ms: list[float]
    set_ms: list[float]
    seconds: float
    server_cpu: float
    redis_cpu: float
    clients_cpu: float
    host_cpu: float
    server_waited: float
    redis_waited: float
    errors: list[str]


# Run by an idle variant while its streams are open: (server pid, address, holder pid).
_Phase = Callable[[int, str, int], Delivery]


def _idle_variant(
    name: str,
    streams: list[tuple[str, str]],
    redis_server: EmbeddedRedis,
    keys: list[str],
    args: argparse.Namespace,
    log: Path,
    then: _Phase | None = None,
) -> tuple[Idle, Delivery | None]:
    probe = redis.Redis.from_url(redis_server.url)
    limit = 2 * args.settle + 2 * args.cpu_window + args.seconds + _SLACK_SECONDS
    try:
        with _server(redis_server.url, log) as (pid, address):
            _warm_up(address, keys)
            time.sleep(args.settle)
            before = _sample(pid, probe, args.cpu_window)
            holder = _Child(_hold, address, streams, limit)
            try:
                _opened(holder, len(streams), name)
                time.sleep(args.settle)
                after = _sample(pid, probe, args.cpu_window)
                delivery = then(pid, address, holder.process.pid or 0) if then is not None else None
                holder.conn.send("stop")
                _, extra, failed = holder.recv(30)
                if extra or failed:
                    raise RuntimeError(
                        f"{name}: idle streams received {extra} messages, {failed} failed"
                    )
            finally:
                holder.stop()
    finally:
        probe.close()
    return Idle(name, before, after), delivery


def _cpu_now(server: int, redis_pid: int, clients: list[int]) -> tuple[float, ...]:
    """Monotonic time; CPU seconds of the server, Redis, our clients, the host; run-queue waits."""
    return (
        time.monotonic(),
        _cpu_seconds(server),
        _cpu_seconds(redis_pid),
        sum(_cpu_seconds(p, missing_ok=True) for p in clients),
        _host_busy_seconds(),
        _runqueue_seconds(server),
        _runqueue_seconds(redis_pid),
    )


def _delivery(api_key: str, redis_pid: int, args: argparse.Namespace) -> _Phase:
    """The delivery phase, run by an idle variant while its streams are open."""
    sessions = [f"live-{i}" for i in range(_LIVE_SESSIONS)]
    limit = args.seconds + _SLACK_SECONDS

    def run(pid: int, address: str, holder_pid: int) -> Delivery:
        receiver = _Child(_receive, address, api_key, sessions, limit)
        try:
            _opened(receiver, len(sessions), "receiver")
            writer = _Child(_write, address, api_key, sessions, args.rate, args.seconds)
            try:
                clients = [holder_pid, receiver.process.pid or 0, writer.process.pid or 0]
                writer.recv(_READY_TIMEOUT_SECONDS + 30)  # ("start",)
                before = _cpu_now(pid, redis_pid, clients)
                _, sent, errors, failed, _elapsed = writer.recv(args.seconds + 60)
                after = _cpu_now(pid, redis_pid, clients)
                writer.conn.send("bye")
                wall, cpu, rcpu, ccpu, hcpu, waited, rwaited = (
                    b - a for a, b in zip(before, after, strict=True)
                )
            finally:
                writer.stop()
            receiver.conn.send(len(sent))  # stop, once this many changes arrived
            _, arrivals, compacted, out_of_order = receiver.recv(_DRAIN_SECONDS + 30)
        finally:
            receiver.stop()
        latencies = sorted(
            (arrivals[(s, v)] - started) * 1000 for s, v, started, _ in sent if (s, v) in arrivals
        )
        set_ms = sorted((acked - started) * 1000 for _, _, started, acked in sent)
        return Delivery(
            len(sent) + failed, failed, len(latencies), compacted, out_of_order, latencies, set_ms,
            wall, cpu / wall * 100, rcpu / wall * 100, ccpu / wall * 100, hcpu / wall * 100,
            waited, rwaited, errors,
        )  # fmt: skip

    return run


def main(args: argparse.Namespace) -> int:
    """Run the benchmark and print the table."""
    if args.watchers < 1 or args.rate <= 0 or args.seconds <= 0:
        print("--watchers, --rate and --seconds must be positive", file=sys.stderr)
        return 2
    if args.watchers + _LIVE_SESSIONS > LIMITS.max_watchers:
        print(
            f"--watchers {args.watchers} + {_LIVE_SESSIONS} live streams is over the server's"
            f" {LIMITS.max_watchers} per process",
            file=sys.stderr,
        )
        return 2
    n = args.watchers
    tenants = -(-n // _PER_TENANT)
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        with EmbeddedRedis(tmp / "redis") as redis_server:
            keys = [redis_server.create_key(f"bench-{t}", unlimited=True) for t in range(tenants)]
            live_key = redis_server.create_key("bench-live", unlimited=True)
            with redis.Redis.from_url(redis_server.url) as probe:
                version = str(probe.info("server")["redis_version"])
            assert redis_server.process is not None
            redis_pid = redis_server.process.pid
            log = tmp / "server.log"
            try:
                one, _ = _idle_variant(
                    f"{n} on one session id per tenant ({tenants} tenant{'s' * (tenants > 1)})",
                    [(keys[i // _PER_TENANT], "shared") for i in range(n)],
                    redis_server, keys, args, log,
                )  # fmt: skip
                many, delivery = _idle_variant(
                    f"{n} on {n} sessions",
                    [(keys[i // _PER_TENANT], f"idle-{i}") for i in range(n)],
                    redis_server, [*keys, live_key], args, log,
                    then=_delivery(live_key, redis_pid, args),
                )  # fmt: skip
            except Exception:
                sys.stderr.write(log.read_text(errors="replace")[-4000:])
                raise
    assert delivery is not None
    _print(args, version, [many, one], delivery)
    complete = delivery.received == delivery.sent and not delivery.failed
    return 0 if complete and not delivery.out_of_order else 1


def _q(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def _print(args: argparse.Namespace, redis_version: str, idle: list[Idle], d: Delivery) -> None:
    command = (
        f"python -m sessionmemory_bench watch --watchers {args.watchers}"
        f" --rate {args.rate:g} --seconds {args.seconds:g} --settle {args.settle:g}"
        f" --cpu-window {args.cpu_window:g}"
    )
    print(f"bench-watch: {command}")
    print(
        f"{os.cpu_count()} cores, Redis {redis_version}, Python {sys.version.split()[0]},"
        f" grpcio {grpc.__version__}; server: 1 process; streams held by a separate"
        f" grpc.aio process, {_PER_CHANNEL} per channel"
    )
    print(
        f"idle cost: a fresh server per row, sampled {args.settle:g} s after the streams"
        f" opened, CPU over {args.cpu_window:g} s"
    )
    print(
        f"  {'idle Watch streams':<44} {'RSS MiB':>8} {'CPU %':>6} {'Redis conns':>11}"
        f" {'pub/sub':>7} {'channels':>8}"
    )
    for row in idle:
        for label, s in (("0 (same server, before)", row.before), (row.name, row.after)):
            print(
                f"  {label:<44} {s.rss / MIB:>8.1f} {s.cpu_percent:>6.1f}"
                f" {s.redis_connections:>11} {s.pubsub_connections:>7} {s.channels:>8}"
            )
        per = (row.after.rss - row.before.rss) / args.watchers / 1024
        print(f"  {'  per stream':<44} {f'{per:.1f} KiB':>8}")
    lat, setl = d.latencies_ms, d.set_ms
    print(
        f"delivery: {args.rate:g} Set/s for {args.seconds:g} s over {_LIVE_SESSIONS} watched"
        f" sessions, {args.watchers} idle streams still open"
    )
    print(
        f"  changes sent {d.sent}, received {d.received}, failed writes {d.failed},"
        f" compacted messages {d.compacted}, out of order {d.out_of_order}"
        + (f"; errors: {d.errors}" if d.errors else "")
    )
    print(
        f"  write -> watcher   p50 {_q(lat, 50):7.2f} ms  p99 {_q(lat, 99):7.2f} ms"
        f"  max {max(lat, default=float('nan')):7.2f} ms   (target: within 100 ms)"
    )
    print(
        f"  Set call           p50 {_q(setl, 50):7.2f} ms  p99 {_q(setl, 99):7.2f} ms"
        f"  max {max(setl, default=float('nan')):7.2f} ms"
    )
    others = d.host_cpu - d.server_cpu - d.redis_cpu - d.clients_cpu
    print(
        f"  CPU during the writes ({d.seconds:.1f} s, 100 % = one core): server"
        f" {d.server_cpu:.1f} %, Redis {d.redis_cpu:.1f} %, bench clients {d.clients_cpu:.1f} %,"
        f" other processes on the host {others:.1f} % of {100 * (os.cpu_count() or 1)} %"
    )
    print(
        f"  time runnable but waiting for a CPU (run queue): server main thread"
        f" {d.server_waited * 1000:.0f} ms, Redis {d.redis_waited * 1000:.0f} ms"
    )
