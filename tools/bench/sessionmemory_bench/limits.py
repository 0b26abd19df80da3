"""``make bench-limits`` (``python -m sessionmemory_bench limits``): the rate limiter's cost,
accuracy and fairness.

Everything runs as real processes on one embedded redis-server and is driven by
h2load (C), so the load generator does not take the Python servers' CPU:

- **cost**: `Get` and `Set` at 16 calls in flight against one server, the
  tenant's limits and quotas on (far above what the server can serve, so every
  call goes through the limiter and the quota bookkeeping and none is refused)
  and off (0), in interleaved rounds; calls/s and server CPU per call, medians.
- **accuracy**: two server processes on their own ports, each driven with
  `Increment` at 32 calls in flight by its own h2load for the same seconds, one
  tenant limited to ``--rate`` writes/s with a burst of ``--burst``. Every
  accepted Increment adds one to a counter, so the counter is the number of
  calls the limiter let through; it is compared with rate x seconds + burst.
- **fairness**: a "calm" tenant's `Get` at 1 call in flight, alone, then while
  a "flood" tenant drives `Get` at 64 in flight: once with the flood tenant
  unlimited and once limited to ``--flood-rate`` reads/s. Prints p50/p99 and
  the ratio of the calm tenant's p99 to its unloaded p99.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Final

from sessionmemory.v1 import memory_service_pb2 as svc
from sessionmemory_server.config import Settings
from sessionmemory_server.embedded import EmbeddedRedis, free_port

from .calls import Op, Result, _calls, _cpu_seconds, _h2load, _process

_SESSION = "bench-limits"
_REFRESH_SECONDS = 2.5  # longer than the servers' poll of tenant limits


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``bench-limits`` flags."""
    p.add_argument("--duration", type=float, default=5.0, help="seconds per measurement")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the cost pair")
    p.add_argument("--rate", type=float, default=500.0, help="writes/s for the accuracy run")
    p.add_argument("--burst", type=int, default=50, help="burst for the accuracy run")
    fields = Settings.model_fields
    p.add_argument(
        "--flood-rate",
        type=float,
        default=fields["tenant_reads_per_second"].default,
        help="reads/s of the flooding tenant (default: the server's default)",
    )
    p.add_argument(
        "--flood-burst",
        type=int,
        default=fields["tenant_read_burst"].default,
        help="read burst of the flooding tenant (default: the server's default)",
    )
    p.add_argument(
        "--parts", default="cost,accuracy,fairness", help="which measurements, comma-separated"
    )


def _limit(url: str, tenant: str, values: Mapping[str, float]) -> None:
    EmbeddedRedis.set_limits_at(url, tenant, values)


@contextlib.contextmanager
def _server(redis_url: str, tmp: Path, name: str) -> Iterator[tuple[int, str]]:
    address = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "SESSION_MEMORY_LOG_LEVEL": "WARNING"}
    serve = [sys.executable, "-m", "sessionmemory_server.cli", "serve",
             "--listen", address, "--redis-url", redis_url]  # fmt: skip
    with _process(serve, tmp / f"{name}.log", env) as pid:
        yield pid, address


def _get_op() -> Op:
    return Op(svc.GetRequest(session_id=_SESSION, key="step"), svc.GetResponse)


def _body(tmp: Path, op: Op) -> Path:
    path = tmp / f"{op.method}.grpc"
    path.write_bytes(op.body())
    return path


def _load(
    address: str, op: Op, body: Path, key: str, inflight: int, seconds: float, log: Path
) -> Result:
    return _h2load(address, op.method, body, key, inflight, seconds, log)


# Overrides that keep the limits and quotas on without ever refusing (to measure
# their bookkeeping), and that turn them off.
_ON: Final = {
    "reads_per_second": 1e9,
    "read_burst": 1_000_000,
    "writes_per_second": 1e9,
    "write_burst": 1_000_000,
    "max_sessions": 10**9,
    "max_stored_bytes": 10**15,
}
_OFF: Final = {
    "reads_per_second": 0.0,
    "writes_per_second": 0.0,
    "max_sessions": 0,
    "max_stored_bytes": 0,
}


def _cost(args: argparse.Namespace, redis_url: str, key: str, tmp: Path) -> None:
    ops = {
        "Get": _get_op(),
        "Set": Op(
            svc.SetRequest(
                session_id=_SESSION, key="note", string_value="left a voicemail", ttl_seconds=3600
            ),
            svc.SetResponse,
        ),
    }
    bodies = {name: _body(tmp, op) for name, op in ops.items()}
    rows: dict[tuple[str, bool], list[tuple[float, float]]] = {}
    with _server(redis_url, tmp, "cost") as (pid, address), _calls(address, key) as calls:
        calls(
            svc.SetRequest(session_id=_SESSION, key="step", string_value="x", ttl_seconds=3600),
            svc.SetResponse,
        )
        for _ in range(args.rounds):
            for name, op in ops.items():
                for on in (True, False):
                    _limit(redis_url, "bench", _ON if on else _OFF)
                    time.sleep(_REFRESH_SECONDS)
                    _load(address, op, bodies[name], key, 16, 1.0, tmp / "warm.log")
                    before = _cpu_seconds(pid)
                    r = _load(address, op, bodies[name], key, 16, args.duration, tmp / "cost.log")
                    cpu = (_cpu_seconds(pid) - before) / r.calls * 1e6
                    rows.setdefault((name, on), []).append((r.rate, cpu))
    print(
        f"cost: limits and quotas on (never refusing) vs off, 16 in flight,"
        f" {args.rounds} interleaved rounds of {args.duration:g} s"
    )
    for name in ops:
        for on in (True, False):
            got = rows[(name, on)]
            print(
                f"  {name:<4} {'on ' if on else 'off'}: {statistics.median(r for r, _ in got):8.0f}"
                f" calls/s   {statistics.median(c for _, c in got):6.1f} us CPU/call"
                f"   (calls/s {', '.join(f'{r:.0f}' for r, _ in got)})"
            )
        on_rows, off_rows = rows[(name, True)], rows[(name, False)]
        rate = statistics.median(r for r, _ in on_rows) / statistics.median(r for r, _ in off_rows)
        cpu = statistics.median(c for _, c in on_rows) / statistics.median(c for _, c in off_rows)
        print(f"  {name:<4} on/off: calls/s {rate:.3f}x, CPU per call {cpu:.3f}x")


def _accuracy(args: argparse.Namespace, redis_url: str, key: str, tmp: Path) -> None:
    counter = "accepted"
    op = Op(svc.IncrementRequest(session_id=_SESSION, key=counter, delta=1), svc.IncrementResponse)
    body = _body(tmp, op)
    _limit(redis_url, "bench", {"writes_per_second": 0.0})
    with (
        _server(redis_url, tmp, "acc-1") as (_, first),
        _server(redis_url, tmp, "acc-2") as (_, second),
        _calls(first, key) as calls,
    ):
        calls(svc.DeleteRequest(session_id=_SESSION, keys=[counter]), svc.DeleteResponse)
        _limit(redis_url, "bench", {"writes_per_second": args.rate, "write_burst": args.burst})
        time.sleep(_REFRESH_SECONDS + args.burst / args.rate)  # the bucket is full again
        results: dict[str, Result] = {}

        def drive(address: str) -> None:
            results[address] = _load(
                address, op, body, key, 32, args.duration, tmp / f"acc-{address[-5:]}.log"
            )

        threads = [threading.Thread(target=drive, args=(a,)) for a in (first, second)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        _limit(redis_url, "bench", {"writes_per_second": 0.0})
        time.sleep(_REFRESH_SECONDS)
        got = calls(svc.GetRequest(session_id=_SESSION, key=counter), svc.GetResponse)
    accepted = int(got.entry.value.number_value)
    sent = sum(r.calls for r in results.values())
    expected = args.rate * args.duration + args.burst
    print(
        f"accuracy: 2 server processes, Increment at 32 in flight each, {args.duration:g} s"
        f" (wall {elapsed:.1f} s), limit {args.rate:g} writes/s burst {args.burst}"
    )
    print(
        f"  answered {sent} calls, accepted {accepted}; rate x seconds + burst = {expected:.0f};"
        f" accepted / expected = {accepted / expected:.3f}"
    )


def _fairness(
    args: argparse.Namespace, redis_url: str, calm_key: str, flood_key: str, tmp: Path
) -> None:
    op = _get_op()
    body = _body(tmp, op)
    rows: list[tuple[str, Result, Result | None]] = []
    _limit(redis_url, "calm", {"reads_per_second": 0.0})
    with _server(redis_url, tmp, "fair") as (_, address):
        for key in (calm_key, flood_key):
            with _calls(address, key) as calls:
                calls(
                    svc.SetRequest(
                        session_id=_SESSION, key="step", string_value="x", ttl_seconds=3600
                    ),
                    svc.SetResponse,
                )
        _load(address, op, body, calm_key, 1, 1.0, tmp / "warm.log")
        alone = _load(address, op, body, calm_key, 1, args.duration, tmp / "alone.log")
        rows.append(("calm alone", alone, None))
        for label, rate in (
            ("flood unlimited", 0.0),
            (f"flood at {args.flood_rate:g}/s", args.flood_rate),
        ):
            _limit(redis_url, "flood", {"reads_per_second": rate, "read_burst": args.flood_burst})
            time.sleep(_REFRESH_SECONDS)
            flood: dict[str, Result] = {}

            def drive(into: dict[str, Result]) -> None:
                into["r"] = _load(
                    address, op, body, flood_key, 64, args.duration + 2, tmp / "flood.log"
                )

            thread = threading.Thread(target=drive, args=(flood,))
            thread.start()
            time.sleep(1.0)
            calm = _load(address, op, body, calm_key, 1, args.duration, tmp / "calm.log")
            thread.join()
            rows.append((label, calm, flood["r"]))
    print("fairness: calm tenant's Get at 1 in flight, flood tenant's Get at 64 in flight")
    for label, calm, flood_r in rows:
        extra = f"   flood answered {flood_r.rate:7.0f} calls/s" if flood_r else ""
        print(
            f"  {label:<20} calm p50 {calm.p50_ms:6.2f} ms  p99 {calm.p99_ms:6.2f} ms"
            f"  p99/alone {calm.p99_ms / alone.p99_ms:5.2f}x{extra}"
        )


def main(args: argparse.Namespace) -> int:
    """Run the three measurements and print them."""
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        with EmbeddedRedis(tmp / "redis") as server:
            bench_key = server.create_key("bench")
            calm_key = server.create_key("calm", unlimited=True)
            flood_key = server.create_key("flood")
            parts = set(args.parts.split(","))
            if "cost" in parts:
                _cost(args, server.url, bench_key, tmp)
            if "accuracy" in parts:
                _accuracy(args, server.url, bench_key, tmp)
            if "fairness" in parts:
                _fairness(args, server.url, calm_key, flood_key, tmp)
    return 0
