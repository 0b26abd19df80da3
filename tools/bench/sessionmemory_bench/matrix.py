"""``make bench-matrix`` (``python -m sessionmemory_bench matrix``): every benchmark against
its floor in one run, as one Markdown table.

Rows, each measured side by side with its floor in the same run:

- every unary call ``calls`` can drive (Get, Set, Increment, Delete, SetJson of
  1 KiB, GetMany of 20 keys, List of a 50-key session) at 1, 16 and 64 calls in
  flight, driven by h2load, against the bare grpc.aio + redis.asyncio floor of
  ``calls`` (one Redis round trip per call);
- files: SetFile and ReadFile of ``--file-mib`` MiB (1 MiB chunks, one call at
  a time) against a direct minio ``put_object``/``get_object`` of the same bytes
  to the same embedded S3 server (SeaweedFS);
- workers: Get from our server run with ``--workers 2`` at 16 and 64 in flight.

Our server and the floor both run while the matrix does, and every cell
measures them one after the other (the order alternates), ``--rounds`` times:
the figures are medians, the ratio (ours / floor calls/s, above 1 is faster than
the floor) the median of the rounds' ratios, so the machine's slow drifts
cancel out. With 2 or more cores and taskset, the single-process servers run on
CPU 0 and this process, Redis, SeaweedFS and h2load on the last CPU; ``--workers
2`` is not pinned. The table goes to stdout and to ``--out``; progress to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import redis as redis_sync
from minio import Minio

from sessionmemory.v1 import memory_service_pb2 as svc
from sessionmemory_server.embedded import EmbeddedRedis, EmbeddedS3

from .calls import (
    _FLOOR_DOES,
    _OPS,
    Op,
    Result,
    _floor_server,
    _key_value_op,
    _ours,
    _Target,
    measure,
    pinning,
    seed_floor,
    seed_ours,
    write_body,
)
from .files import MIB, _chunks

_LABELS = {
    "get": "Get",
    "set": "Set",
    "increment": "Increment",
    "delete": "Delete",
    "set_json": "SetJson 1 KiB",
    "get_many": "GetMany(20)",
    "list": "List(50)",
}
_FILES_SESSION = "bench-files"
_DIRECT_BUCKET = "bench-direct"
_MIME = "application/pdf"  # files._chunks starts with a PDF header


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command line of ``matrix``."""
    p.add_argument("--duration", type=float, default=2.0, help="seconds per cell and server")
    p.add_argument("--warm-up", type=float, default=0.5, help="unmeasured seconds before each")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians)")
    p.add_argument("--inflight", default="1,16,64", help="calls in flight of the unary rows")
    p.add_argument("--ops", default=",".join(_OPS), help=f"unary rows, from {','.join(_OPS)}")
    p.add_argument(
        "--workers-inflight", default="16,64", help="calls in flight of the --workers 2 rows"
    )
    p.add_argument("--file-mib", type=int, default=10, help="size of the file rows' file")
    p.add_argument("--file-reps", type=int, default=5, help="calls per file row and round")
    p.add_argument("--parts", default="calls,files,workers", help="which rows, comma-separated")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 0.3 s cells, 1 round, 1 MiB files, 2 file calls (figures are noise)",
    )
    p.add_argument("--no-pin", action="store_true", help="do not pin the servers to a core")
    p.add_argument("--out", type=Path, help="also write the table (Markdown) to this file")
    p.add_argument(
        "--server-src",
        metavar="DIR[:DIR...]",
        help="run our server with these dirs first on PYTHONPATH (as calls --server-src)",
    )


@dataclass
class _Cell:
    """One row of the table: our results and the floor's, a pair per round."""

    label: str
    inflight: int
    ours: list[Result] = field(default_factory=list)
    floor: list[Result] = field(default_factory=list)

    def line(self) -> str:
        """The row in Markdown."""

        def med(results: list[Result], what: str) -> float:
            return float(statistics.median(getattr(r, what) for r in results))

        ratio = statistics.median(
            o.rate / f.rate for o, f in zip(self.ours, self.floor, strict=True)
        )
        ours = f"{med(self.ours, 'p50_ms'):.2f} / {med(self.ours, 'p99_ms'):.2f}"
        floor = f"{med(self.floor, 'p50_ms'):.2f} / {med(self.floor, 'p99_ms'):.2f}"
        return (
            f"| {self.label} | {self.inflight} | {med(self.ours, 'rate'):,.0f}"
            f" | {med(self.floor, 'rate'):,.0f} | {ratio:.2f} | {ours} | {floor} |"
        )


_HEADER = (
    "| RPC | in flight | ours calls/s | floor calls/s | ours/floor"
    " | ours p50 / p99 ms | floor p50 / p99 ms |\n"
    "|---|---:|---:|---:|---:|---:|---:|"
)


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _pair(
    cell: _Cell, first_ours: bool, ours: Callable[[], Result], floor: Callable[[], Result]
) -> None:
    """Measure ours and the floor one after the other, in the given order."""
    if first_ours:
        cell.ours.append(ours())
        cell.floor.append(floor())
    else:
        cell.floor.append(floor())
        cell.ours.append(ours())


# --- files: SetFile/ReadFile against direct put_object/get_object --------------------


def _timed(call: Callable[[], None]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _from_seconds(seconds: list[float]) -> Result:
    """One call at a time: calls/s from the mean, p50/p99 from the calls' latencies."""
    ms = sorted(s * 1000 for s in seconds)
    q = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else [ms[0]] * 99
    return Result(len(seconds), sum(seconds), q[49], q[98], 0.0)


class _Files:
    """SetFile and ReadFile through our server, put/get_object straight to the store."""

    def __init__(self, target: _Target, s3: EmbeddedS3, mib: int) -> None:
        self._metadata = (("authorization", f"Bearer {target.api_key}"),)
        self._channel = grpc.insecure_channel(target.address)
        self._set_file = self._channel.stream_unary(
            "/sessionmemory.v1.MemoryService/SetFile",
            request_serializer=svc.SetFileRequest.SerializeToString,
            response_deserializer=svc.SetFileResponse.FromString,
        )
        self._read_file = self._channel.unary_stream(
            "/sessionmemory.v1.MemoryService/ReadFile",
            request_serializer=svc.ReadFileRequest.SerializeToString,
            response_deserializer=svc.ReadFileResponse.FromString,
        )
        self.size = mib * MIB
        self._chunks = list(_chunks(self.size))
        self._data = b"".join(self._chunks)
        self._minio = Minio(
            s3.endpoint.removeprefix("http://"),
            access_key=s3.access_key,
            secret_key=s3.secret_key,
            secure=False,
        )
        if not self._minio.bucket_exists(_DIRECT_BUCKET):
            self._minio.make_bucket(_DIRECT_BUCKET)

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()

    def set_file(self) -> None:
        """One SetFile of the file, in 1 MiB chunks."""
        header = svc.FileHeader(
            session_id=_FILES_SESSION,
            key="upload",
            mime_type=_MIME,
            ttl_seconds=600,
            size_bytes=self.size,
        )

        def requests() -> Iterator[svc.SetFileRequest]:
            yield svc.SetFileRequest(header=header)
            last = len(self._chunks) - 1
            for i, chunk in enumerate(self._chunks):
                yield svc.SetFileRequest(chunk=chunk, finish_write=i == last)

        response = self._set_file(requests(), metadata=self._metadata, timeout=120)
        if response.file.size_bytes != self.size:
            raise RuntimeError(f"SetFile stored {response.file.size_bytes} bytes, not {self.size}")

    def read_file(self) -> None:
        """One ReadFile of the whole file."""
        request = svc.ReadFileRequest(session_id=_FILES_SESSION, key="upload")
        got = sum(
            len(part.chunk)
            for part in self._read_file(request, metadata=self._metadata, timeout=120)
        )
        if got != self.size:
            raise RuntimeError(f"ReadFile returned {got} bytes, not {self.size}")

    def put_object(self) -> None:
        """One direct put_object of the same bytes."""
        self._minio.put_object(_DIRECT_BUCKET, "upload", io.BytesIO(self._data), self.size)

    def get_object(self) -> None:
        """One direct get_object of them."""
        response = self._minio.get_object(_DIRECT_BUCKET, "upload")
        try:
            got = len(response.read())
        finally:
            response.close()
            response.release_conn()
        if got != self.size:
            raise RuntimeError(f"get_object returned {got} bytes, not {self.size}")


def _file_rows(files: _Files, cells: dict[str, _Cell], reps: int, round_: int) -> None:
    pairs = (
        ("SetFile", files.set_file, files.put_object),
        ("ReadFile", files.read_file, files.get_object),
    )
    for name, ours, floor in pairs:
        ours_s: list[float] = []
        floor_s: list[float] = []
        for rep in range(reps):
            for which in ((ours, ours_s), (floor, floor_s))[:: 1 if (rep + round_) % 2 else -1]:
                which[1].append(_timed(which[0]))
        cells[name].ours.append(_from_seconds(ours_s))
        cells[name].floor.append(_from_seconds(floor_s))


# --- the run ----------------------------------------------------------------------


def _hiredis(env: dict[str, str]) -> str:
    """Whether redis-py in our server's environment parses replies with hiredis."""
    code = "from redis.utils import HIREDIS_AVAILABLE as h; print('yes' if h else 'no')"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )
    return out.stdout.strip() or f"unknown ({out.stderr.strip()[-80:]})"


def _round(
    args: argparse.Namespace,
    round_: int,
    unary: list[tuple[str, Op, int, _Target]],
    floor: _Target,
    files: _Files | None,
    cells: dict[str, _Cell],
    tmp: Path,
) -> None:
    """One round of every cell: ours and the floor, the order alternating from cell to cell."""
    for i, (label, op, n, target) in enumerate(unary):
        _progress(f"round {round_ + 1}/{args.rounds}: {label} at {n} in flight")
        for t in (target, floor):
            op.check(t.calls, t.name)

        def run(t: _Target, op: Op = op, n: int = n) -> Callable[[], Result]:
            return lambda: measure(t, op, n, args.duration, tmp, args.warm_up)

        _pair(cells[f"{label}@{n}"], (i + round_) % 2 == 0, run(target), run(floor))
    if files is not None:
        _progress(f"round {round_ + 1}/{args.rounds}: files")
        _file_rows(files, cells, args.file_reps, round_)


def _parse(args: argparse.Namespace) -> tuple[set[str], list[str], list[int], list[int]] | str:
    """--parts, --ops, --inflight and --workers-inflight, or what is wrong with them."""
    if args.quick:
        args.duration, args.warm_up, args.rounds = 0.3, 0.2, 1
        args.file_mib, args.file_reps = 1, 2
    args.workers = 1  # what _ours starts unless told otherwise
    parts = {p.strip() for p in str(args.parts).split(",") if p.strip()}
    ops = [o.strip() for o in str(args.ops).split(",") if o.strip()]
    unknown = sorted(set(ops) - set(_OPS)) + sorted(parts - {"calls", "files", "workers"})
    if unknown:
        return f"unknown --ops/--parts: {','.join(unknown)}"
    try:
        levels = [int(x) for x in str(args.inflight).split(",")] if "calls" in parts else []
        workers = [int(x) for x in str(args.workers_inflight).split(",")]
    except ValueError as exc:
        return f"--inflight and --workers-inflight take comma-separated numbers: {exc}"
    return parts, ops, levels, workers if "workers" in parts else []


def main(args: argparse.Namespace) -> int:
    """Run the matrix and print (and write) the table."""
    if shutil.which("h2load") is None:
        print("h2load not found: apt-get install nghttp2-client", file=sys.stderr)
        return 2
    parsed = _parse(args)
    if isinstance(parsed, str):
        print(parsed, file=sys.stderr)
        return 2
    parts, ops, levels, workers_levels = parsed
    pin, pinned = ([], "not pinned") if args.no_pin else pinning(1)
    env = {**os.environ}
    if args.server_src:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [args.server_src, env.get("PYTHONPATH")]))
    started = time.monotonic()
    cells: dict[str, _Cell] = {}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        with contextlib.ExitStack() as stack:
            redis = stack.enter_context(EmbeddedRedis(tmp / "redis"))
            s3 = stack.enter_context(
                EmbeddedS3(tmp / "s3", access_key="bench", secret_key=uuid.uuid4().hex)
            )
            api_key = redis.create_key("bench", unlimited=True)
            seed_floor(redis.url)
            s3_env = {
                "SESSION_MEMORY_S3_ENDPOINT": s3.endpoint,
                "SESSION_MEMORY_S3_ACCESS_KEY": s3.access_key,
                "SESSION_MEMORY_S3_SECRET_KEY": s3.secret_key,
                "SESSION_MEMORY_SPOOL_DIR": str(tmp / "spool"),
            }
            floor = stack.enter_context(_floor_server(redis, api_key, tmp, pin))
            ours = stack.enter_context(_ours(args, redis, api_key, tmp, pin=pin, env=s3_env))
            seed_ours(ours.calls)
            two = (
                stack.enter_context(_ours(args, redis, api_key, tmp, workers=2, name="ours-2"))
                if workers_levels
                else None
            )
            files = _Files(ours, s3, args.file_mib) if "files" in parts else None
            if files is not None:
                stack.callback(files.close)
                files.set_file()  # ReadFile reads it
            unary = [(_LABELS[o], _key_value_op(o), n, ours) for o in ops for n in levels]
            if two is not None:
                get = _key_value_op("get")
                unary += [("Get, --workers 2", get, n, two) for n in workers_levels]
            for label, op, n, _ in unary:
                cells.setdefault(f"{label}@{n}", _Cell(label, n))
                write_body(tmp, op)
            if files is not None:
                mib = f"{args.file_mib} MiB"
                cells["SetFile"] = _Cell(f"SetFile {mib} (floor: put_object)", 1)
                cells["ReadFile"] = _Cell(f"ReadFile {mib} (floor: get_object)", 1)
            for round_ in range(args.rounds):
                _round(args, round_, unary, floor, files, cells, tmp)
            hiredis = _hiredis(env)
    table = _table(args, list(cells.values()), ops, pinned, hiredis, time.monotonic() - started)
    print(table)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table + "\n", encoding="utf-8")
    return 0


def _table(
    args: argparse.Namespace,
    cells: list[_Cell],
    ops: list[str],
    pinned: str,
    hiredis: str,
    seconds: float,
) -> str:
    redis_version = redis_sync.__version__
    lines = [
        f"Session Memory benchmark matrix: {args.rounds} interleaved round(s) of"
        f" {args.duration:g} s per cell and server, medians; {os.cpu_count()} cores,"
        f" {pinned}; Python {platform.python_version()}, redis-py {redis_version},"
        f" hiredis in our server: {hiredis}; {seconds:.0f} s in all"
        + (" (--quick: the figures are noise)" if args.quick else ""),
        "",
        _HEADER,
        *(cell.line() for cell in cells),
        "",
        "Floors (bare grpc.aio + redis.asyncio, one process): "
        + "; ".join(f"{_LABELS[o]}: {_FLOOR_DOES[o]}" for o in ops)
        + f". Files: one call at a time, {args.file_reps} per round, 1 MiB chunks, against"
        " minio-py put_object/get_object to the same SeaweedFS.",
    ]
    failed = [
        f"{c.label} at {c.inflight}: {sum(r.failed for r in c.ours)} calls took no effect"
        for c in cells
        if any(r.failed for r in c.ours)
    ]
    if failed:
        lines.append("Failed calls (a gRPC error h2load cannot see): " + "; ".join(failed))
    return "\n".join(lines)
