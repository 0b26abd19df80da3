"""``make bench-files`` (``python -m sessionmemory_bench files``): server memory under 20
concurrent 10 MiB uploads.

Starts an embedded Redis and S3 server (SeaweedFS) and our server as its own
process, uploads one small file to warm up, resets the server's peak-RSS mark
(/proc/PID/clear_refs), then runs N concurrent uploads of a 10 MiB file streamed
in 1 MiB chunks and prints the server's idle RSS, peak RSS and the difference,
plus the upload throughput. The target is a peak at most ~64 MiB over idle.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc

from sessionmemory_server.embedded import EmbeddedRedis, EmbeddedS3, free_port

MIB = 1024 * 1024


def _status(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def _chunks(size: int) -> Iterator[bytes]:
    head = b"%PDF-1.4\n"
    yield head + b"x" * (MIB - len(head))
    for _ in range(size // MIB - 1):
        yield b"x" * MIB


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command line of ``files``."""
    p.add_argument("--uploads", type=int, default=20, help="concurrent uploads")
    p.add_argument("--size-mib", type=int, default=10, help="size of each upload")


def main(args: argparse.Namespace) -> int:
    """Run the benchmark and print the figures."""
    from sessionmemory import MemoryClient  # noqa: PLC0415

    size = args.size_mib * MIB
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        with (
            EmbeddedRedis(tmp / "redis") as redis,
            EmbeddedS3(tmp / "s3", access_key="bench", secret_key=uuid.uuid4().hex) as s3,
        ):
            address = f"127.0.0.1:{free_port()}"
            env = {
                **os.environ,
                "SESSION_MEMORY_LISTEN": address,
                "SESSION_MEMORY_REDIS_URL": redis.url,
                "SESSION_MEMORY_S3_ENDPOINT": s3.endpoint,
                "SESSION_MEMORY_S3_ACCESS_KEY": s3.access_key,
                "SESSION_MEMORY_S3_SECRET_KEY": s3.secret_key,
                "SESSION_MEMORY_SPOOL_DIR": str(tmp / "spool"),
                "SESSION_MEMORY_LOG_LEVEL": "WARNING",
                # One tenant sends them all: let the upload caps admit every one.
                "SESSION_MEMORY_MAX_UPLOADS": str(max(32, args.uploads)),
                "SESSION_MEMORY_MAX_TENANT_UPLOADS": str(max(8, args.uploads)),
                "SESSION_MEMORY_MAX_SPOOL_BYTES": str(
                    max(256, 2 * args.uploads * args.size_mib) * MIB
                ),
            }
            proc = subprocess.Popen(
                [sys.executable, "-m", "sessionmemory_server.cli", "serve"], env=env
            )
            try:
                with grpc.insecure_channel(address) as channel:
                    grpc.channel_ready_future(channel).result(timeout=30)
                key = redis.create_key("bench", unlimited=True)
                with MemoryClient(address, api_key=key, upload_timeout=600) as client:
                    client.session("warm").set_file(
                        "w", list(_chunks(2 * MIB)), ttl=600, mime="application/pdf"
                    )
                    time.sleep(1)
                    with open(f"/proc/{proc.pid}/clear_refs", "w") as f:
                        f.write("5")  # reset the peak-RSS mark
                    idle = _status(proc.pid, "VmRSS")
                    errors: list[BaseException] = []

                    def upload(i: int) -> None:
                        try:
                            client.session(f"s{i}").set_file(
                                "video", _chunks(size), ttl=600, mime="application/pdf"
                            )
                        except BaseException as exc:
                            errors.append(exc)

                    threads = [
                        threading.Thread(target=upload, args=(i,)) for i in range(args.uploads)
                    ]
                    started = time.monotonic()
                    for t in threads:
                        t.start()
                    for t in threads:
                        t.join()
                    elapsed = time.monotonic() - started
                    peak = _status(proc.pid, "VmHWM")
            finally:
                proc.terminate()
                proc.wait(15)
    if errors:
        print(f"{len(errors)} uploads failed: {errors[0]!r}", file=sys.stderr)
        return 1
    total = args.uploads * size
    print(
        f"{args.uploads} concurrent uploads of {args.size_mib} MiB (1 MiB chunks),"
        f" {os.cpu_count()} cores"
    )
    print(f"  server RSS idle   {idle / MIB:8.1f} MiB")
    print(f"  server RSS peak   {peak / MIB:8.1f} MiB")
    print(f"  peak over idle    {(peak - idle) / MIB:8.1f} MiB   (target: <= ~64 MiB)")
    print(f"  time              {elapsed:8.2f} s   ({total / MIB / elapsed:.1f} MiB/s)")
    return 0
