"""Upload caps, spool accounting, the rate floor, spool ownership and SERVER_BUSY, no server."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.exceptions
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from sessionmemory_server.errors import DomainError
from sessionmemory_server.interceptors import _fail
from sessionmemory_server.uploads import (
    LOCK_NAME,
    STAGING_PREFIX,
    ProcessSpool,
    RateFloor,
    UploadCaps,
    Uploads,
)

CAPS = UploadCaps(
    max_uploads=3,
    max_spool_bytes=100,
    min_upload_bytes=10,
    upload_rate_window_seconds=1.0,
)


def refused(fn: Any, *args: Any) -> DomainError:
    with pytest.raises(DomainError) as info:
        fn(*args)
    return info.value


def test_process_cap() -> None:
    # The per-tenant limit is a quota over every process (quotas.py, tested
    # against Redis in tests/integration/test_quotas.py); this cap is the process's.
    uploads = Uploads(CAPS)
    a1, a2, b1 = uploads.admit(), uploads.admit(), uploads.admit()
    err = refused(uploads.admit)
    assert (err.code, err.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "TOO_MANY_UPLOADS")
    assert err.metadata == {"scope": "process", "limit": "3"} and err.retry_after == 1.0
    assert uploads.active == 3
    a1.release()
    a1.release()  # a second release gives nothing back twice
    assert uploads.active == 2
    with uploads.admit():
        assert uploads.active == 3
    for slot in (a2, b1):
        slot.release()
    assert uploads.active == 0


def test_spool_bytes_are_capped_and_given_back() -> None:
    uploads = Uploads(CAPS)
    with uploads.admit() as one:
        one.spool(60)
        with uploads.admit() as two:
            two.spool(40)
            err = refused(two.spool, 1)
            assert (err.code, err.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "SPOOL_FULL")
            assert err.metadata == {"limit": "100"} and err.retry_after == 1.0
            assert uploads.spool_bytes == 100
        assert uploads.spool_bytes == 60
        one.spool(40)
    assert uploads.spool_bytes == 0 and uploads.active == 0


def test_rate_floor() -> None:
    floor = RateFloor(100, 10.0, now=0.0)
    assert floor.deadline == 10.0
    assert not floor.feed(60, now=3.0)  # not yet 100 bytes: the deadline stays
    assert floor.feed(50, now=8.0) and floor.deadline == 18.0  # met: a new window
    assert not floor.feed(99, now=17.0) and floor.deadline == 18.0
    err = floor.too_slow()
    assert (err.code, err.reason) == (grpc.StatusCode.DEADLINE_EXCEEDED, "UPLOAD_TOO_SLOW")
    assert err.metadata == {"limit": "100", "window_seconds": "10"}
    off = RateFloor(0, 10.0, now=0.0)
    assert off.deadline is None and not off.feed(1, now=100.0)


_OWNER = """
import sys, time
from pathlib import Path
from sessionmemory_server.uploads import ProcessSpool
spool = ProcessSpool(Path(sys.argv[1]))  # holds the lock while it lives
own = spool.directory()
(own / "sm-upload-x").write_bytes(b"partial")
print(own, flush=True)
time.sleep(60)
"""


def test_spools_of_dead_processes_go_live_ones_stay(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER, str(root)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert owner.stdout is not None
        theirs = Path(owner.stdout.readline().strip())
        live = ProcessSpool(root)  # another server of this process: its own lock
        mine = live.directory()
        (mine / "sm-upload-y").write_bytes(b"in flight")
        assert mine.name.startswith(f"proc-{os.getpid()}-") and (mine / LOCK_NAME).exists()
        assert ProcessSpool(root).remove_dead() == 0  # both owners live
        assert theirs.is_dir() and (mine / "sm-upload-y").exists()
    finally:
        owner.kill()
        owner.wait(10)
    stale = root / f"{STAGING_PREFIX}old"
    stale.mkdir()
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    fresh = root / f"{STAGING_PREFIX}fresh"
    fresh.mkdir()
    assert ProcessSpool(root).remove_dead() == 1  # the killed owner's one file
    assert not theirs.exists() and not stale.exists() and fresh.exists()
    assert (mine / "sm-upload-y").exists()
    assert live.directory() == mine


class _Aborted:
    """A servicer context recording the abort, and the call the client then sees."""

    def __init__(self) -> None:
        self._status: tuple[grpc.StatusCode, str, Any] | None = None

    async def abort(self, code: grpc.StatusCode, details: str, trailing: Any) -> None:
        self._status = (code, details, trailing)

    def code(self) -> grpc.StatusCode:
        assert self._status is not None
        return self._status[0]

    def details(self) -> str:
        assert self._status is not None
        return self._status[1]

    def trailing_metadata(self) -> Any:
        assert self._status is not None
        return self._status[2]


async def _mapped(exc: Exception) -> tuple[grpc.StatusCode, str, bool]:
    """(status code, ErrorInfo reason, has RetryInfo) the error mapping gives ``exc``."""
    call = _Aborted()
    await _fail(call, "/test", exc)  # type: ignore[arg-type]
    status = rpc_status.from_call(call)  # type: ignore[arg-type]
    assert status is not None
    info, retry = error_details_pb2.ErrorInfo(), False
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            detail.Unpack(info)
        retry = retry or detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR)
    return call.code(), info.reason, retry


def _chained(outer: type[Exception], inner: BaseException, *, cause: bool) -> Exception:
    try:
        try:
            raise inner
        except BaseException as exc:
            if cause:
                raise outer("wrapped") from exc
            raise outer("wrapped")  # noqa: B904 - redis-py's way: only __context__
    except Exception as wrapped:
        return wrapped
    raise AssertionError


@pytest.mark.parametrize(
    "exc",
    [
        OSError(errno.EMFILE, "Too many open files"),
        OSError(errno.ENFILE, "Too many open files in system"),
        MemoryError(),
        _chained(redis.exceptions.ConnectionError, OSError(errno.EMFILE, "x"), cause=False),
        _chained(RuntimeError, OSError(errno.ENOMEM, "x"), cause=True),
    ],
)
async def test_out_of_resources_is_server_busy(exc: Exception) -> None:
    assert await _mapped(exc) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "SERVER_BUSY", True)


async def test_other_os_errors_stay_unavailable() -> None:
    refused_conn = _chained(
        redis.exceptions.ConnectionError, OSError(errno.ECONNREFUSED, "x"), cause=False
    )
    assert (await _mapped(refused_conn))[:2] == (grpc.StatusCode.UNAVAILABLE, "BACKEND_UNAVAILABLE")


_EXHAUST = """
import asyncio, encodings.idna, json, resource
import redis.asyncio, redis.backoff, redis.retry
from sessionmemory_server.interceptors import _exhausted
from sessionmemory_server.stores.blob_store import BlobStore
resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
blobs = BlobStore(endpoint="127.0.0.1:1", access_key="a", secret_key="b", bucket="bucket",
                  secure=False, region="us-east-1", timeout=5, threads=1)
out = {}
async def main():
    no_retry = redis.retry.Retry(redis.backoff.NoBackoff(), 0)
    r = redis.asyncio.Redis(host="127.0.0.1", port=1, retry=no_retry)
    held = []
    try:
        while True:
            held.append(open("/dev/null"))
    except OSError:
        pass
    try:
        await r.ping()
    except Exception as exc:
        out["redis"] = [type(exc).__name__, _exhausted(exc)]
    try:
        await blobs.ensure_bucket()
    except Exception as exc:
        out["minio"] = [type(exc).__name__, _exhausted(exc)]
    for f in held:
        f.close()
asyncio.run(main())
print(json.dumps(out))
"""


def test_real_redis_and_minio_errors_out_of_descriptors_are_recognised() -> None:
    # The real clients' own wrapping (the server's Redis and S3 adapters), in a
    # child whose descriptors are all used up.
    done = subprocess.run(
        [sys.executable, "-c", _EXHAUST], capture_output=True, text=True, timeout=60, check=True
    )
    found = json.loads(done.stdout)
    assert found["redis"] == ["ConnectionError", "EMFILE"]
    assert found["minio"][1] == "EMFILE"


def test_rate_floor_asks_a_declared_file_for_no_more_than_it_has_left() -> None:
    floor = RateFloor(64, 10.0, now=0.0, size=100)
    assert floor.feed(64, now=1.0) and floor.deadline == 11.0
    assert not floor.feed(30, now=5.0)  # 36 were left: 30 is not all of them
    assert floor.feed(6, now=6.0) and floor.deadline == 16.0
    small = RateFloor(64, 10.0, now=0.0, size=10)
    assert small.feed(10, now=9.0) and small.deadline == 19.0
