"""``session-memory bench``: our Get against the floor, under the same load, same run.

The floor is the bare minimum a Python developer would write: a grpc.aio server
whose Get handler does one Redis GET and returns a GetResponse. Ours is the real
server (auth, validation, error mapping, record decoding). Both run as their own
processes against one embedded redis-server; h2load (C, from Debian's
nghttp2-client) drives both with identical gRPC requests at 1, 16 and 64 calls
in flight, so the load generator does not steal the Python servers' CPU. Prints
p50/p99 latency, calls/s, server CPU per call and the ratios to the floor.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import grpc

from sessionmemory.v1 import memory_service_pb2 as svc
from sessionmemory.v1 import memory_service_pb2_grpc as svc_grpc

from .embedded import EmbeddedRedis, free_port

_SESSION = "bench-session"
_KEY = "step"
_TICKS = os.sysconf("SC_CLK_TCK")


# --- the floor server ----------------------------------------------------------


async def _floor(port: int, redis_url: str) -> None:
    from redis.asyncio import Redis  # noqa: PLC0415

    redis = Redis.from_url(redis_url)

    async def get(request: svc.GetRequest, context: object) -> svc.GetResponse:
        return svc.GetResponse(found=await redis.get(request.key) is not None)

    server = grpc.aio.server()
    handler = grpc.unary_unary_rpc_method_handler(
        get,
        request_deserializer=svc.GetRequest.FromString,
        response_serializer=svc.GetResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("sessionmemory.v1.MemoryService", {"Get": handler}),)
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def floor_main() -> None:
    """Entry of the floor server process: ``python -m sessionmemory_server.bench PORT URL``."""
    port, url = int(sys.argv[1]), sys.argv[2]
    try:
        import uvloop  # noqa: PLC0415

        uvloop.run(_floor(port, url))
    except ImportError:
        asyncio.run(_floor(port, url))


# --- measuring -------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """One load level against one server."""

    calls: int
    seconds: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_call: float

    @property
    def rate(self) -> float:
        """Calls per second."""
        return self.calls / self.seconds


def _cpu_seconds(pid: int) -> float:
    """CPU time of a process and its children (the --workers processes)."""
    total = 0.0
    pids = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if fields and int(fields[1]) == pid:
                pids.append(int(entry))
    for p in pids:
        with contextlib.suppress(OSError), open(f"/proc/{p}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / _TICKS
    return total


def _grpc_body(path: Path) -> None:
    message = svc.GetRequest(session_id=_SESSION, key=_KEY).SerializeToString()
    path.write_bytes(b"\x00" + len(message).to_bytes(4, "big") + message)


def _h2load(
    address: str, body: Path, api_key: str, inflight: int, duration: float, log: Path
) -> Result:
    conns = min(inflight, 4)
    streams = max(1, inflight // conns)
    args = [
        "h2load",
        f"http://{address}/sessionmemory.v1.MemoryService/Get",
        "-d", str(body),
        "-H", "content-type: application/grpc",
        "-H", "te: trailers",
        "-H", f"authorization: Bearer {api_key}",
        "-c", str(conns),
        "-m", str(streams),
        "-t", "1",
        "-D", f"{duration:g}",
        "--warm-up-time=1",
        f"--log-file={log}",
    ]  # fmt: skip
    log.unlink(missing_ok=True)
    out = subprocess.run(args, capture_output=True, text=True, check=False, timeout=duration + 60)
    if out.returncode != 0:
        raise RuntimeError(f"h2load failed: {out.stderr or out.stdout}")
    rows = [line.split("\t") for line in log.read_text().splitlines() if line]
    bad = [r for r in rows if r[1] != "200"]
    if bad or not rows:
        raise RuntimeError(f"{len(bad)} of {len(rows)} calls failed at the HTTP level")
    latencies = sorted(int(r[2]) / 1000 for r in rows)
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return Result(len(rows), duration, q[49], q[98], 0.0)


def _check(address: str, api_key: str) -> None:
    """One real gRPC call first: h2load cannot see gRPC status codes in trailers."""
    with grpc.insecure_channel(address) as channel:
        grpc.channel_ready_future(channel).result(timeout=15)
        resp = svc_grpc.MemoryServiceStub(channel).Get(
            svc.GetRequest(session_id=_SESSION, key=_KEY),
            metadata=(("authorization", f"Bearer {api_key}"),),
            timeout=5,
        )
    if not resp.found:
        raise RuntimeError(f"sanity Get on {address} found nothing")


@contextlib.contextmanager
def _process(args: list[str], env: dict[str, str] | None = None) -> Iterator[int]:
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _run_levels(
    name: str, pid: int, address: str, api_key: str, levels: list[int], duration: float, tmp: Path
) -> dict[int, Result]:
    body = tmp / "get.grpc"
    _grpc_body(body)
    results = {}
    for inflight in levels:
        before = _cpu_seconds(pid)
        r = _h2load(address, body, api_key, inflight, duration, tmp / f"{name}-{inflight}.log")
        cpu = _cpu_seconds(pid) - before
        # CPU covers the warm-up second too; count those calls at the measured rate.
        calls_incl_warmup = r.calls * (duration + 1) / duration
        results[inflight] = replace(r, cpu_us_per_call=cpu / calls_incl_warmup * 1e6)
    return results


def main(args: argparse.Namespace) -> int:
    """Run the benchmark and print the table."""
    if shutil.which("h2load") is None:
        print("h2load not found: apt-get install nghttp2-client", file=sys.stderr)
        return 2
    levels = [int(x) for x in str(args.inflight).split(",")]
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        with EmbeddedRedis(tmp / "redis") as redis:
            import redis as redis_sync  # noqa: PLC0415

            api_key = redis.create_key("bench")
            seeded = redis_sync.Redis.from_url(redis.url)
            seeded.set(_KEY, "floor")
            seeded.close()
            floor_port, ours_port = free_port(), free_port()
            env = {**os.environ, "SESSION_MEMORY_LOG_LEVEL": "WARNING"}
            with _process([sys.executable, "-m", "sessionmemory_server.bench",
                           str(floor_port), redis.url]) as floor_pid:  # fmt: skip
                floor_addr = f"127.0.0.1:{floor_port}"
                _check(floor_addr, api_key)
                floor = _run_levels("floor", floor_pid, floor_addr, api_key, levels,
                                    args.duration, tmp)  # fmt: skip
            ours_addr = f"127.0.0.1:{ours_port}"
            serve = [sys.executable, "-m", "sessionmemory_server.cli", "serve",
                     "--listen", ours_addr, "--redis-url", redis.url,
                     "--workers", str(args.workers)]  # fmt: skip
            with _process(serve, env) as ours_pid:
                _seed(ours_addr, api_key)
                _check(ours_addr, api_key)
                ours = _run_levels("ours", ours_pid, ours_addr, api_key, levels,
                                   args.duration, tmp)  # fmt: skip
    _print(levels, floor, ours, args)
    return 0


def _seed(address: str, api_key: str) -> None:
    with grpc.insecure_channel(address) as channel:
        grpc.channel_ready_future(channel).result(timeout=15)
        svc_grpc.MemoryServiceStub(channel).Set(
            svc.SetRequest(session_id=_SESSION, key=_KEY, string_value="name", ttl_seconds=3600),
            metadata=(("authorization", f"Bearer {api_key}"),),
            timeout=5,
        )


def _print(
    levels: list[int], floor: dict[int, Result], ours: dict[int, Result], args: argparse.Namespace
) -> None:
    print(
        f"Get: ours (--workers {args.workers}) vs floor (bare grpc.aio + one Redis GET),"
        f" h2load, {args.duration:.0f}s per level, {os.cpu_count()} cores"
    )
    header = (
        f"{'in flight':>9} {'server':>6} {'calls/s':>9} {'p50 ms':>7} {'p99 ms':>7}"
        f" {'CPU us/call':>11}"
    )
    print(header)
    for n in levels:
        for name, r in (("floor", floor[n]), ("ours", ours[n])):
            print(
                f"{n:>9} {name:>6} {r.rate:>9.0f} {r.p50_ms:>7.3f} {r.p99_ms:>7.3f}"
                f" {r.cpu_us_per_call:>11.0f}"
            )
        f, o = floor[n], ours[n]
        print(
            f"{n:>9} {'ratio':>6} {o.rate / f.rate:>9.2f} {o.p50_ms / f.p50_ms:>7.2f}"
            f" {o.p99_ms / f.p99_ms:>7.2f} {o.cpu_us_per_call / f.cpu_us_per_call:>11.2f}"
        )


if __name__ == "__main__":
    floor_main()
