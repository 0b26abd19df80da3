"""``make bench-obs`` (``python -m sessionmemory_bench observability``): what metrics,
tracing and the access log cost.

`Get` at 16 calls in flight (``--inflight``) against our server, driven by
h2load (C, so the load generator takes no Python CPU) on one embedded
redis-server, once per configuration and round, the configurations
interleaved within each round so slow drifts of the machine hit all alike:

- **off**: no metrics, no tracing, no access log: nothing observes a call;
- **metrics**: ``--metrics-listen`` (the gRPC metrics, in-flight gauge and
  Redis command timing recorded on every call);
- **tracing 0**: ``--otlp-endpoint`` set (to a port nobody listens on) with
  ``trace_sample_ratio`` 0: every call gets an unsampled span and context;
- **access 1%**: the access log at its default sample rate, lines written to
  a file (the server's stderr) at INFO;
- **all**: the three together, as a platform team would run it.

Each server is a fresh ``session-memory serve`` process with the settings as
``SESSION_MEMORY_*`` variables; every other round runs the configurations in
reverse order. A lone server is pinned to one core and Redis and h2load to
another (see `_pinning`). Prints the medians over ``--rounds`` of calls/s, p50 latency and
server CPU per call (user + system, from /proc), and each
configuration's ratio to **off**: the median over rounds of the ratio within
each round, so slow drifts of the machine cancel out.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from sessionmemory.v1 import memory_service_pb2 as svc
from sessionmemory_server.embedded import EmbeddedRedis, free_port

from .calls import Op, Result, _calls, _cpu_seconds, _h2load, _process, pinning

_SESSION = "bench-obs"
_KEY = "step"
_WARM_UP_SECONDS = 1.0
# Settings of every configuration; each names what it turns on.
_BASE: Final = {"ACCESS_LOG": "false", "LOG_LEVEL": "INFO"}
CONFIGS: Final = ("off", "metrics", "tracing0", "access", "all")
_LABELS: Final = {
    "off": "off",
    "metrics": "metrics",
    "tracing0": "tracing 0",
    "access": "access 1%",
    "all": "all",
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``bench-observability`` flags."""
    p.add_argument("--duration", type=float, default=3.0, help="seconds per measurement")
    p.add_argument(
        "--rounds",
        type=int,
        default=15,
        help="interleaved rounds (each a fresh process per configuration: processes differ"
        " by a few percent, so many short rounds beat a few long ones)",
    )
    p.add_argument("--inflight", type=int, default=16, help="calls in flight")
    p.add_argument("--workers", type=int, default=1, help="server processes (--workers)")
    p.add_argument(
        "--configs",
        default=",".join(CONFIGS),
        help=f"configurations to measure, comma-separated from {','.join(CONFIGS)}",
    )


def _env(config: str) -> dict[str, str]:
    """The SESSION_MEMORY_* settings of one configuration."""
    settings = dict(_BASE)
    if config in ("metrics", "all"):
        settings["METRICS_LISTEN"] = f"127.0.0.1:{free_port()}"
    if config in ("tracing0", "all"):
        # Nothing is sampled, so nothing is sent: no collector needed.
        settings["OTLP_ENDPOINT"] = f"http://127.0.0.1:{free_port()}"
        settings["TRACE_SAMPLE_RATIO"] = "0"
    if config in ("access", "all"):
        settings["ACCESS_LOG"] = "true"  # at the default sample rate
    return {f"SESSION_MEMORY_{k}": v for k, v in settings.items()}


@contextlib.contextmanager
def _server(
    config: str, args: argparse.Namespace, redis_url: str, tmp: Path, round_: int
) -> Iterator[tuple[int, str]]:
    address = f"127.0.0.1:{free_port()}"
    env = {**os.environ, **_env(config)}
    serve = [*args.pin, sys.executable, "-m", "sessionmemory_server.cli", "serve",
             "--listen", address, "--redis-url", redis_url,
             "--workers", str(args.workers)]  # fmt: skip
    with _process(serve, tmp / f"{config}-{round_}.log", env) as pid:
        yield pid, address


def _measure(
    config: str, args: argparse.Namespace, redis_url: str, key: str, tmp: Path, round_: int
) -> tuple[Result, float]:
    """One round of one configuration: its result and its log's size in bytes."""
    op = Op(svc.GetRequest(session_id=_SESSION, key=_KEY), svc.GetResponse, ok=lambda r: r.found)
    body = tmp / "get.grpc"
    body.write_bytes(op.body())
    with (
        _server(config, args, redis_url, tmp, round_) as (pid, address),
        _calls(address, key) as calls,
    ):
        calls(
            svc.SetRequest(session_id=_SESSION, key=_KEY, string_value="x", ttl_seconds=3600),
            svc.SetResponse,
        )
        op.check(calls, config)
        _h2load(address, op.method, body, key, args.inflight, _WARM_UP_SECONDS, None)
        before = _cpu_seconds(pid)
        r = _h2load(address, op.method, body, key, args.inflight, args.duration, tmp / "load.log")
        cpu = (_cpu_seconds(pid) - before) / r.calls * 1e6
        op.check(calls, config)
    log = tmp / f"{config}-{round_}.log"
    return Result(r.calls, r.seconds, r.p50_ms, r.p99_ms, cpu), float(log.stat().st_size)


def main(args: argparse.Namespace) -> int:
    """Run the rounds and print the table."""
    if shutil.which("h2load") is None:
        print("h2load not found: apt-get install nghttp2-client", file=sys.stderr)
        return 2
    configs = [c.strip() for c in str(args.configs).split(",") if c.strip()]
    unknown = sorted(set(configs) - set(CONFIGS))
    if unknown or "off" not in configs:
        print(f"--configs: choose from {','.join(CONFIGS)}, including off", file=sys.stderr)
        return 2
    args.pin, pinned = pinning(args.workers)
    results: dict[str, list[Result]] = {c: [] for c in configs}
    log_bytes: dict[str, list[float]] = {c: [] for c in configs}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        with EmbeddedRedis(tmp / "redis") as redis:
            key = redis.create_key("bench", unlimited=True)
            for round_ in range(args.rounds):
                # Every other round in reverse: no configuration always runs first.
                for config in configs if round_ % 2 == 0 else configs[::-1]:
                    result, size = _measure(config, args, redis.url, key, tmp, round_)
                    results[config].append(result)
                    log_bytes[config].append(size / result.calls)
    _print(args, configs, results, log_bytes, pinned)
    return 0


def _print(
    args: argparse.Namespace,
    configs: list[str],
    results: dict[str, list[Result]],
    log_bytes: dict[str, list[float]],
    pinned: str,
) -> None:
    def med(config: str, what: str) -> float:
        values = [getattr(r, what) for r in results[config]]
        return float(statistics.median(values))

    print(
        f"Observability cost: Get at {args.inflight} in flight, --workers {args.workers},"
        f" h2load, {args.rounds} interleaved rounds of {args.duration:g} s, medians;"
        f" {os.cpu_count()} cores, {pinned}"
    )
    print(
        f"{'config':>10} {'calls/s':>9} {'p50 ms':>7} {'CPU us/call':>11} {'log B/call':>10}"
        f" {'calls/s x':>9} {'CPU x':>6} {'CPU x range':>13}"
    )
    off = results["off"]
    for config in configs:
        # Ratios to "off" within each round, then their median: the machine's
        # slow drifts (a VM's neighbours, clock speed) cancel out.
        pairs = list(zip(results[config], off, strict=True))
        rate_x = statistics.median(r.rate / o.rate for r, o in pairs)
        cpu_xs = [r.cpu_us_per_call / o.cpu_us_per_call for r, o in pairs]
        spread = f"{min(cpu_xs):.3f}-{max(cpu_xs):.3f}"
        print(
            f"{_LABELS[config]:>10} {med(config, 'rate'):>9.0f} {med(config, 'p50_ms'):>7.3f}"
            f" {med(config, 'cpu_us_per_call'):>11.1f}"
            f" {statistics.median(log_bytes[config]):>10.1f} {rate_x:>9.3f}"
            f" {statistics.median(cpu_xs):>6.3f} {spread:>13}"
        )
