"""File bytes in an S3-compatible object store, through the minio SDK.

The SDK is synchronous, so every call runs in a bounded thread pool: at most
``threads`` transfers at once, an upload holding at most two 5 MiB parts in
memory, a read two 256 KiB chunks.
Every request has a timeout (urllib3), so a dead store is UNAVAILABLE, not a hang.
Each runs with the calling task's context variables, so with tracing on its
HTTP request is a child span of the call's span.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import urllib3
from minio import Minio
from minio.deleteobjects import DeleteObject
from minio.error import S3Error

PART_SIZE = 5 * 1024 * 1024
READ_CHUNK = 256 * 1024
_GONE = ("NoSuchKey", "NoSuchObject", "ResourceNotFound")


def _in_thread(pool: ThreadPoolExecutor, fn: Any, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
    """``fn(*args, **kwargs)`` on ``pool``, in a copy of the caller's context variables."""
    run = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    return asyncio.get_running_loop().run_in_executor(pool, run)


class BlobStore:
    """One bucket of immutable objects: put once, read, presign, delete."""

    def __init__(
        self,
        *,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        secure: bool,
        region: str,
        timeout: float,
        threads: int,
        public_endpoint: str | None = None,
    ) -> None:
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=timeout, read=timeout),
            # Each streaming ReadFile holds a connection until it ends; above this
            # many at once urllib3 opens and discards extra ones (and says so).
            maxsize=threads * 2 + 64,
            retries=urllib3.Retry(total=2, backoff_factor=0.1, status_forcelist=(500, 502, 503)),
        )
        self._client = Minio(
            endpoint,
            access_key=access_key,
            secret_key=secret_key,
            secure=secure,
            region=region,
            http_client=http,
        )
        if public_endpoint:
            url = urlsplit(
                public_endpoint if "://" in public_endpoint else f"http://{public_endpoint}"
            )
            # Presigning is local computation; the region is given, so no request is made.
            self._signer = Minio(
                url.netloc,
                access_key=access_key,
                secret_key=secret_key,
                secure=url.scheme == "https",
                region=region,
            )
        else:
            self._signer = self._client
        self.bucket = bucket
        self._timeout = timeout
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="blobs")
        # Deletes and stats are small and must not queue behind 10 MiB transfers:
        # a Delete answers only once its objects are gone.
        self._small = ThreadPoolExecutor(2, thread_name_prefix="blobs-small")
        self._probe = ThreadPoolExecutor(1, thread_name_prefix="blobs-probe")

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await _in_thread(self._pool, fn, *args, **kwargs)

    async def _run_small(self, fn: Any, *args: Any) -> Any:
        return await _in_thread(self._small, fn, *args)

    async def check_bucket(self) -> None:
        """Raise unless the bucket exists and answers (readiness; bound it with a timeout).

        Runs on a thread of its own, so a hung store never holds up transfers;
        a check still hanging from before makes the next one wait (and time out).
        """

        def check() -> None:
            if not self._client.bucket_exists(self.bucket):
                raise LookupError(f"bucket {self.bucket!r} does not exist")

        await _in_thread(self._probe, check)

    async def ensure_bucket(self) -> None:
        """Create the bucket when it is missing."""

        def make() -> None:
            if not self._client.bucket_exists(self.bucket):
                try:
                    self._client.make_bucket(self.bucket)
                except S3Error as exc:
                    if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                        raise

        await self._run(make)

    async def put(self, name: str, path: Path, size: int, content_type: str) -> None:
        """Upload a spooled file as object ``name``."""

        def put() -> None:
            with path.open("rb") as f:
                # Two parts at a time per transfer, as put_object's default does (the
                # two halves of a 10 MiB file go up together); the pool bounds the
                # transfers, so memory is at most threads x two parts (40 MiB).
                self._client.put_object(
                    self.bucket,
                    name,
                    f,
                    size,
                    content_type=content_type,
                    part_size=PART_SIZE,
                    num_parallel_uploads=2,
                )

        done = _in_thread(self._pool, put)
        try:
            await asyncio.shield(done)
        except asyncio.CancelledError:
            # A thread cannot be stopped: wait (bounded) until the put has ended, so
            # the caller's cleanup deletes the object after it exists, not before.
            await asyncio.wait({done}, timeout=4 * self._timeout)
            raise

    async def delete(self, name: str) -> None:
        """Delete an object (deleting a missing one is fine)."""
        await self._run_small(self._client.remove_object, self.bucket, name)

    async def delete_many(self, names: list[str]) -> list[str]:
        """Delete objects in one multi-object request; returns the names that failed.

        A missing object counts as deleted.
        """

        def remove() -> list[str]:
            errors = self._client.remove_objects(self.bucket, [DeleteObject(n) for n in names])
            return [e.name for e in errors if e.code not in _GONE and e.name]

        failed: list[str] = await self._run_small(remove)
        return failed

    async def exists(self, name: str) -> bool:
        """True when the object exists."""
        try:
            await self._run_small(self._client.stat_object, self.bucket, name)
        except S3Error as exc:
            if exc.code in _GONE:
                return False
            raise
        return True

    async def names(self, prefix: str = "") -> list[str]:
        """Every object name under a prefix (for tests and audits, not the hot path)."""

        def listing() -> list[str]:
            objects = self._client.list_objects(self.bucket, prefix=prefix, recursive=True)
            return [o.object_name for o in objects if o.object_name]

        result: list[str] = await self._run(listing)
        return result

    def presign(self, name: str, ttl_seconds: int) -> str:
        """A presigned GET URL valid for ``ttl_seconds`` (no I/O)."""
        return self._signer.presigned_get_object(
            self.bucket, name, expires=timedelta(seconds=ttl_seconds)
        )

    async def read(self, name: str, offset: int, length: int) -> AsyncIterator[bytes]:
        """Stream ``length`` (> 0) bytes of an object from ``offset``, at most 256 KiB a chunk."""
        response = await self._run(
            self._client.get_object, self.bucket, name, offset=offset, length=length
        )
        # One chunk read ahead: the store's next read overlaps the sending of
        # this one (at most two chunks of memory per read).
        ahead = _in_thread(self._pool, response.read, READ_CHUNK)
        try:
            while True:
                # Shielded: a cancelled call leaves the thread's read to finish
                # (waited for below) instead of closing the response under it.
                chunk: bytes = await asyncio.shield(ahead)
                if not chunk:
                    break
                ahead = _in_thread(self._pool, response.read, READ_CHUNK)
                yield chunk
        finally:
            if not ahead.done():
                # A reader that stopped early: the thread's read ends (bounded by the
                # store's timeouts) before the response is closed under it.
                await asyncio.wait({ahead}, timeout=4 * self._timeout)
            if ahead.done() and not ahead.cancelled():
                ahead.exception()  # retrieved: a failed read-ahead nobody wanted
            response.close()
            response.release_conn()

    def close(self) -> None:
        """Stop the thread pool."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._small.shutdown(wait=False, cancel_futures=True)
        self._probe.shutdown(wait=False, cancel_futures=True)
