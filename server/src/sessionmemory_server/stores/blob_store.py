"""File bytes in an S3-compatible object store, through the minio SDK.

The SDK is synchronous, so every call runs in a bounded thread pool: at most
``threads`` transfers at once, each holding at most one 5 MiB part (an upload
at most two) or two 256 KiB chunks (a read) in memory.
Every request has a timeout (urllib3), so a dead store is UNAVAILABLE, not a hang.
Each runs with the calling task's context variables, so with tracing on its
HTTP request is a child span of the call's span.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import urllib3
from minio import Minio
from minio.datatypes import Part
from minio.deleteobjects import DeleteObject
from minio.error import S3Error

PART_SIZE = 5 * 1024 * 1024
READ_CHUNK = 256 * 1024
_GONE = ("NoSuchKey", "NoSuchObject", "ResourceNotFound")
# Parts of one upload being sent at once; a 10 MiB file has at most two parts.
_PARTS_IN_FLIGHT = 2
# Listing pages (of up to 1,000 uploads) one stale-upload sweep reads, and the
# failed aborts after which it gives up until the next (a store that is down).
_STALE_PAGES = 10
_STALE_FAILURES = 3

log = logging.getLogger("sessionmemory_server.blobs")


async def _outlived(done: asyncio.Future[Any], grace: float) -> Any:
    """Await a thread's request; a cancelled caller first waits up to ``grace`` s for it to end.

    A thread cannot be stopped, so a caller whose cleanup deletes the object
    does so after the request that may create it has ended, not before.
    """
    try:
        return await asyncio.shield(done)
    except asyncio.CancelledError:
        await asyncio.wait({done}, timeout=grace)
        raise


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
                # Uploads send a larger file in parts as it arrives (`Upload`); this
                # puts at most one part, so the pool bounds memory to threads x one part.
                self._client.put_object(
                    self.bucket,
                    name,
                    f,
                    size,
                    content_type=content_type,
                    part_size=PART_SIZE,
                    num_parallel_uploads=1,
                )

        await _outlived(_in_thread(self._pool, put), 4 * self._timeout)

    def _abort_upload(self, name: str, upload_id: str) -> None:
        """In a thread: abort one multipart upload; one already gone is fine."""
        try:
            self._client._abort_multipart_upload(self.bucket, name, upload_id)
        except S3Error as exc:
            if exc.code != "NoSuchUpload":
                raise

    def _uploads_of(self, name: str) -> list[str]:
        """In a thread: the ids of the multipart uploads in progress for object ``name``."""
        listing = self._client._list_multipart_uploads(self.bucket, prefix=name)
        return [u.upload_id for u in listing.uploads if u.object_name == name and u.upload_id]

    async def abort_stale_uploads(self, prefix: str, older_than: float) -> int:
        """Abort multipart uploads under ``prefix`` begun more than ``older_than`` s ago.

        No upload lives that long, so these were left by a server that died or an
        abort the store refused. Returns how many were aborted.
        """

        def sweep() -> int:
            cutoff = datetime.now(UTC) - timedelta(seconds=older_than)
            aborted = failed = 0
            marker: str | None = None
            for _ in range(_STALE_PAGES):
                listing = self._client._list_multipart_uploads(
                    self.bucket, prefix=prefix, key_marker=marker
                )
                for u in listing.uploads:
                    begun = u.initiated_time
                    if not (u.upload_id and begun is not None and begun < cutoff):
                        continue
                    try:
                        self._abort_upload(u.object_name, u.upload_id)
                        aborted += 1
                    except Exception:  # one upload's failure does not stop the others
                        failed += 1
                        if failed >= _STALE_FAILURES:
                            raise
                if not listing.is_truncated or not listing.uploads:
                    break
                # Some stores (SeaweedFS) send no NextKeyMarker: go on after the last key.
                marker = listing.next_key_marker or listing.uploads[-1].object_name
            return aborted

        count: int = await self._run_small(sweep)
        return count

    def upload(self, name: str, spool: Path, content_type: str) -> Upload:
        """Start putting object ``name`` while its bytes still arrive in ``spool``."""
        return Upload(self, name, spool, content_type)

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


class Upload:
    """One object put while its bytes still arrive in a spool file, part by part.

    `received` sends each whole 5 MiB part that cannot be the last as soon as
    the spool holds it, so the store takes the upload while the client still
    sends. `finish` sends the rest, only once the caller's checks passed, and
    completes the multipart upload: the one moment the object becomes visible.
    `aborted` (after a failure or cancel) stops parts not begun yet, waits for
    the ones in flight, then aborts every multipart upload of the object's name,
    which makes the store drop their parts; also an upload the store created
    for a request that timed out here. Whatever an abort misses (the store was
    down, the server died) `BlobStore.abort_stale_uploads` finds later. An
    upload of at most one part is a single PUT at `finish`, as before.

    minio-py has no public call for parts sent as they arrive: put_object reads a
    stream, and a stream that fails leaves its part threads waiting forever. So
    this uses its multipart requests (``_create_multipart_upload``,
    ``_upload_part``, ``_complete_multipart_upload``, ``_abort_multipart_upload``,
    ``_list_multipart_uploads``), the ones put_object is built on; the
    dependency is held below minio 8.
    """

    def __init__(self, store: BlobStore, name: str, spool: Path, content_type: str) -> None:
        self._store = store
        self.name = name
        self._spool = spool
        self._type = content_type
        # Held by a part thread while it starts the upload, and by the abort
        # while it reads the id: an abort never misses an upload being created.
        self._lock = threading.Lock()
        self._upload_id: str | None = None
        self._aborting = False
        self._parts: list[asyncio.Future[str]] = []
        self.sent = 0  # bytes of the spool handed to part uploads
        self.completed = False

    async def received(self, size: int, flush: Callable[[], object] = lambda: None) -> None:
        """The spool holds ``size`` bytes: send the whole parts that cannot be last.

        ``flush`` hands the spool's buffered bytes to the file before a part's
        thread reads them. Called for every chunk: raises the error of a part
        that failed, so a dead store ends the upload now, not after the client
        sent everything.
        """
        self._raise_failed()
        if size - self.sent > PART_SIZE:
            flush()
        while size - self.sent > PART_SIZE:
            await self._send(PART_SIZE)

    async def finish(self, size: int) -> None:
        """Send the rest of the ``size`` bytes and make the object."""
        if not self._parts:
            await self._store.put(self.name, self._spool, size, self._type)
            self.completed = True
            return
        await self.received(size)
        await self._send(size - self.sent)  # the last part: 1 byte to 5 MiB
        etags = [await asyncio.shield(part) for part in self._parts]
        upload_id = self._upload_id
        if upload_id is None:  # set by the first part's thread before it returned
            raise RuntimeError("a multipart upload without an id")
        parts = [Part(number, etag) for number, etag in enumerate(etags, 1)]
        client, bucket = self._store._client, self._store.bucket
        done = _in_thread(
            self._store._pool,
            client._complete_multipart_upload,
            bucket,
            self.name,
            upload_id,
            parts,
        )
        await _outlived(done, 4 * self._store._timeout)
        self.completed = True

    async def aborted(self) -> None:
        """Drop an upload that will not be finished; returns at once when nothing was sent.

        Waits at most one store timeout (never raises): past that, and when the
        caller is cancelled, the abort goes on by itself, so a failed upload
        answers with its own error, not the upload budget's.
        """
        if self.completed or not self._parts:
            return
        task = asyncio.ensure_future(self._abort())
        _ABORTS.add(task)
        task.add_done_callback(_ABORTS.discard)
        await asyncio.wait({task}, timeout=self._store._timeout)

    async def _abort(self) -> None:
        self._aborting = True  # a part not begun yet starts nothing now
        pending = [part for part in self._parts if not part.done()]
        if pending:
            # Parts in flight first: one landing after the abort could keep its bytes.
            await asyncio.wait(pending, timeout=4 * self._store._timeout)
        try:
            await self._store._run_small(self._abort_all)
        except Exception as exc:  # abort_stale_uploads finds it later
            log.warning(
                "could not abort a multipart upload",
                extra={"object": self.name, "error": repr(exc)},
            )

    def _abort_all(self) -> None:
        """In a thread: abort our upload, then any other of this name the store holds."""
        with self._lock:
            known = self._upload_id
        if known:
            self._store._abort_upload(self.name, known)
        for upload_id in self._store._uploads_of(self.name):
            if upload_id != known:
                self._store._abort_upload(self.name, upload_id)

    def _raise_failed(self) -> None:
        for part in self._parts:
            if part.done() and not part.cancelled() and (error := part.exception()) is not None:
                raise error

    async def _send(self, length: int) -> None:
        self._raise_failed()
        if len(self._parts) >= _PARTS_IN_FLIGHT:
            oldest = self._parts[-_PARTS_IN_FLIGHT]
            await asyncio.wait({oldest})
        number, offset = len(self._parts) + 1, self.sent
        part = _in_thread(self._store._pool, self._put_part, number, offset, length)
        part.add_done_callback(_retrieved)
        self._parts.append(part)
        self.sent += length

    def _put_part(self, number: int, offset: int, length: int) -> str:
        """In a thread: part ``number`` from the spool (the first one starts the upload)."""
        client, bucket = self._store._client, self._store.bucket
        with self._lock:
            if self._aborting:
                raise UploadAborted(self.name)
            if self._upload_id is None:
                self._upload_id = client._create_multipart_upload(
                    bucket, self.name, {"Content-Type": self._type}
                )
            upload_id = self._upload_id
        fd = os.open(self._spool, os.O_RDONLY)
        try:
            data = os.pread(fd, length, offset)
        finally:
            os.close(fd)
        if len(data) != length:
            raise OSError(f"the spool file ends before part {number} does")
        etag: str = client._upload_part(bucket, self.name, data, None, upload_id, number)
        return etag


class UploadAborted(Exception):
    """A part of an upload that was aborted before the part began."""


# Aborts that outlive a cancelled caller, held until they end.
_ABORTS: set[asyncio.Future[None]] = set()


def _retrieved(part: asyncio.Future[str]) -> None:
    """Mark a part's failure as seen: an aborted upload's parts may fail unwatched."""
    if not part.cancelled():
        part.exception()
