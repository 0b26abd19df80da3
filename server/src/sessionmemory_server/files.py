"""Files: streamed uploads, presigned URLs and streamed reads.

An upload is spooled to disk, checked, put in the object store, then switched in
atomically.

Memory stays flat: chunks go to a spool file as they arrive (hashing, counting
and content-checking on the way) and the object store reads the spool in 5 MiB
parts from a bounded pool. A part that cannot be the last goes up while the
rest still arrives; the last one only once the whole upload has passed every
check, and the object exists only when that last part completes it. A failed,
cancelled or oversized upload stores nothing: its multipart upload is aborted,
which drops the parts sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
import os
import re
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

import grpc

from . import core
from .collector import FILES_PREFIX, Collector
from .content import ContentCheck, ContentMismatch
from .core import LIMITS, Kind, RequestId
from .errors import DomainError, invalid, store_full, unavailable
from .memory import Memory
from .quotas import Quotas
from .stores.blob_store import BlobStore, Upload
from .stores.redis_store import RedisStore, Replayed, StoreFull
from .uploads import (
    DISK_FULL_ERRNOS,
    ProcessSpool,
    RateFloor,
    UploadCaps,
    Uploads,
    UploadSlot,
    spool_full,
)
from .values import FileMeta, Write, file_meta, file_payload

_SHA256_RE: Final = re.compile(r"[0-9a-fA-F]{64}")
DEFAULT_URL_TTL: Final = 900
MAX_URL_TTL: Final = 3600
SPOOL_PREFIX: Final = "sm-upload-"


@dataclass(frozen=True, slots=True)
class FileHeaderSpec:
    """An upload's header as received."""

    session_id: str
    key: str
    mime_type: str
    ttl_seconds: int | None
    size_bytes: int | None
    sha256: str
    upload_id: str
    if_version: int | None


def _not_a_file(key: str, kind: Kind) -> DomainError:
    return DomainError(
        grpc.StatusCode.FAILED_PRECONDITION,
        "NOT_A_FILE",
        f"key {key!r} holds a {kind.name.lower()} value, not a file",
        metadata={"key": key, "kind": kind.name.lower()},
    )


def _bad_upload(message: str, field: str) -> DomainError:
    return invalid("INVALID_UPLOAD", message, field)


def _too_large(actual: int, field: str) -> DomainError:
    return invalid(
        "FILE_TOO_LARGE",
        f"the file is {'at least ' if field == 'chunk' else ''}{actual} bytes;"
        f" the limit is {LIMITS.max_file_bytes} bytes (10 MiB)",
        field,
        limit=LIMITS.max_file_bytes,
        actual=actual,
    )


def upload_request(h: FileHeaderSpec, ttl: int) -> RequestId | None:
    """The upload id bound to the whole header, remembered as long as a request id.

    Not as long as the file: a retry comes within minutes, and clients that set
    an id on every upload would otherwise keep a record per upload for a week,
    beyond the reach of Delete and Clear.
    """
    if not h.upload_id:
        return None
    fingerprint = core.request_fingerprint(
        "set_file",
        h.key,
        h.mime_type,
        str(ttl),
        "" if h.size_bytes is None else str(h.size_bytes),
        h.sha256.lower(),
        "" if h.if_version is None else str(h.if_version),
    )
    return RequestId(h.upload_id, fingerprint, LIMITS.request_id_window_seconds * 1000)


def check_header(h: FileHeaderSpec) -> int:
    """Check an upload header before any byte is stored; returns the TTL."""
    core.session_id(h.session_id, "header.session_id")
    core.key(h.key, "header.key")
    if h.mime_type not in LIMITS.allowed_mime_types:
        raise DomainError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "MIME_NOT_ALLOWED",
            f"MIME type {h.mime_type[:100]!r} is not allowed; allowed:"
            f" {', '.join(LIMITS.allowed_mime_types)}",
            field="header.mime_type",
            metadata={"mime_type": h.mime_type[:100]},
        )
    ttl = core.ttl(Kind.FILE, h.ttl_seconds, "header.ttl_seconds")
    if h.size_bytes is not None:
        if h.size_bytes < 0:
            raise _bad_upload("header.size_bytes must not be negative", "header.size_bytes")
        if h.size_bytes > LIMITS.max_file_bytes:
            raise _too_large(h.size_bytes, "header.size_bytes")
    if h.sha256 and _SHA256_RE.fullmatch(h.sha256) is None:
        raise _bad_upload("header.sha256 must be 64 hex digits", "header.sha256")
    core.request_id(h.upload_id, "header.upload_id")
    core.if_version(h.if_version, "header.if_version")
    return ttl


class Files:
    """Upload, describe, link and read files."""

    def __init__(
        self,
        memory: Memory,
        blobs: BlobStore,
        collector: Collector,
        *,
        spool_dir: Path,
        upload_max_seconds: float,
        caps: UploadCaps,
        quotas: Quotas,
    ) -> None:
        self._memory = memory
        self._quotas = quotas
        self._blobs = blobs
        self._collector = collector
        self._spool_dir = spool_dir
        self._upload_max = upload_max_seconds
        self._caps = caps
        self._uploads = Uploads(self._caps)
        self._spool = ProcessSpool(spool_dir)

    def clean_spool(self) -> int:
        """Claim this process's spool directory; remove dead processes' spool files.

        A process's files go once its lock can be taken (it died), never by
        age, so a live worker sharing the directory keeps its uploads. Returns
        how many files were removed.
        """
        self._spool.directory()
        removed = self._spool.remove_dead()
        # Files of versions that spooled into the root itself; none lives this long.
        cutoff = time.time() - self._upload_max
        for path in self._spool_dir.glob(SPOOL_PREFIX + "*"):
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
        return removed

    async def upload(
        self,
        tenant: str,
        header: FileHeaderSpec,
        chunks: AsyncIterator[bytes],
        cancelled: Callable[[], bool] = lambda: False,
    ) -> FileMeta:
        """Receive, check and store a file; replace the key's value atomically.

        ``cancelled`` tells whether the caller cancelled the call: a cancelled
        stream can look like a finished one, so it is asked before the switch.
        """
        ttl = check_header(header)
        request = upload_request(header, ttl)
        if request is not None:
            first = await self._memory.first_result(
                tenant, header.session_id, header.key, request, "header.upload_id"
            )
            if first is not None:
                return file_meta(first)  # a retry of a committed upload: its first result
        budget = asyncio.timeout(self._upload_max)
        try:
            async with budget:
                return await self._upload(tenant, header, ttl, chunks, cancelled)
        except TimeoutError:
            if not budget.expired():
                raise  # a backend's timeout, not the upload's
            raise DomainError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                "UPLOAD_TIMEOUT",
                f"the upload took longer than {self._upload_max:.0f} s; nothing was stored",
                metadata={"limit": self._upload_max},
            ) from None

    async def _upload(
        self,
        tenant: str,
        header: FileHeaderSpec,
        ttl: int,
        chunks: AsyncIterator[bytes],
        cancelled: Callable[[], bool],
    ) -> FileMeta:
        # The process's slot first (no Redis), then the tenant's (over every
        # process); both (and the bytes counted) go back once the spool file is gone.
        with self._uploads.admit() as slot:
            async with self._quotas.upload(tenant):
                await self._quotas.check_bytes(
                    tenant, header.session_id, header.key, header.size_bytes or 0
                )
                return await self._spooled(tenant, header, ttl, chunks, cancelled, slot)

    async def _spooled(
        self,
        tenant: str,
        header: FileHeaderSpec,
        ttl: int,
        chunks: AsyncIterator[bytes],
        cancelled: Callable[[], bool],
        slot: UploadSlot,
    ) -> FileMeta:
        """Receive the upload into a spool file, check it, store it; remove the file."""
        try:
            fd, spool_name = tempfile.mkstemp(prefix=SPOOL_PREFIX, dir=self._spool.directory())
        except OSError as exc:
            if exc.errno in DISK_FULL_ERRNOS:
                raise spool_full() from exc
            raise
        spool = Path(spool_name)
        name = f"{FILES_PREFIX}{tenant}/{uuid.uuid4().hex}"
        upload = self._blobs.upload(name, spool, header.mime_type)
        try:
            try:
                with os.fdopen(fd, "wb") as out:
                    size, digest, check = await self._receive(header, chunks, out, slot, upload)
            except OSError as exc:
                if exc.errno in DISK_FULL_ERRNOS:
                    raise spool_full() from exc
                raise
            if cancelled():
                raise asyncio.CancelledError("the client cancelled the upload")
            if header.size_bytes is not None and size != header.size_bytes:
                raise invalid(
                    "CHECKSUM_MISMATCH",
                    f"received {size} bytes but the header declared {header.size_bytes};"
                    " nothing was stored",
                    "header.size_bytes",
                )
            if header.sha256 and digest != header.sha256.lower():
                raise invalid(
                    "CHECKSUM_MISMATCH",
                    "the received bytes do not match header.sha256; nothing was stored",
                    "header.sha256",
                )
            try:
                await asyncio.to_thread(check.finish, spool)
            except ContentMismatch as exc:
                raise self._mismatch(header.mime_type, str(exc)) from None
            return await self._store_and_switch(
                tenant, header, ttl, upload, size, digest, cancelled
            )
        finally:
            try:
                await upload.aborted()  # when parts were sent and it was not finished
            finally:
                # Also when cancelled during the abort (which goes on): a part not
                # begun yet then fails to open the spool, and starts nothing.
                spool.unlink(missing_ok=True)  # noqa: ASYNC240 - one unlink, no I/O wait

    async def _receive(
        self,
        header: FileHeaderSpec,
        chunks: AsyncIterator[bytes],
        out: BinaryIO,
        slot: UploadSlot,
        upload: Upload,
    ) -> tuple[int, str, ContentCheck]:
        sha = hashlib.sha256()
        check = ContentCheck(header.mime_type)
        limit = LIMITS.max_file_bytes
        declared = header.size_bytes
        size = 0
        write = out.write
        clock = asyncio.get_running_loop().time
        caps = self._caps
        floor = RateFloor(caps.min_upload_bytes, caps.upload_rate_window_seconds, clock(), declared)
        # One timer for the whole stream, moved each time the floor is met; the
        # servicer's idle timeout (no message at all) runs inside it, per message.
        window = asyncio.timeout_at(floor.deadline)
        try:
            async with window:
                async for chunk in chunks:
                    size += len(chunk)
                    if size > limit:
                        raise _too_large(size, "chunk")
                    if declared is not None and size > declared:
                        raise invalid(
                            "CHECKSUM_MISMATCH",
                            f"received more than the {declared} bytes the header declared",
                            "header.size_bytes",
                        )
                    sha.update(chunk)
                    try:
                        check.feed(chunk)
                    except ContentMismatch as exc:
                        raise self._mismatch(header.mime_type, str(exc)) from None
                    slot.spool(len(chunk))
                    write(chunk)
                    await upload.received(size, out.flush)
                    if floor.feed(len(chunk), clock()):
                        window.reschedule(floor.deadline)
                out.flush()  # a full disk shows here, not when the file is closed
        except TimeoutError:
            if not window.expired():
                raise
            raise floor.too_slow() from None
        return size, sha.hexdigest(), check

    @staticmethod
    def _mismatch(mime_type: str, why: str) -> DomainError:
        return DomainError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "CONTENT_MISMATCH",
            f"the content is not {mime_type}: {why}; nothing was stored",
            field="chunk",
            metadata={"mime_type": mime_type},
        )

    async def _store_and_switch(
        self,
        tenant: str,
        header: FileHeaderSpec,
        ttl: int,
        upload: Upload,
        size: int,
        digest: str,
        cancelled: Callable[[], bool],
    ) -> FileMeta:
        session = header.session_id
        name = upload.name
        created = int(time.time() * 1000)
        payload = file_payload(name, header.mime_type, size, digest, created, header.upload_id)
        value_key = RedisStore.value_key(tenant, session, header.key)
        request = upload_request(header, ttl)
        try:
            async with self._collector.lease(name, value_key) as lease:
                await upload.finish(size)
                if cancelled():
                    raise asyncio.CancelledError("the client cancelled the upload")
                if not self._collector.lease_is_safe(lease):
                    raise DomainError(
                        grpc.StatusCode.UNAVAILABLE,
                        "BACKEND_UNAVAILABLE",
                        "the upload could not be committed safely; retry",
                        retry_after=1.0,
                    )
                write = Write(header.key, Kind.FILE, payload, ttl, header.if_version)
                # From here a failure (a timeout, a cancel) may come after the switch
                # happened, so the object is left to the collector, which checks.
                lease.in_doubt = True
                try:
                    [written], released = await self._memory.commit(
                        tenant, session, [write], request, "header.upload_id"
                    )
                except Replayed as replay:
                    if file_meta(replay.record).object_name != name:
                        # The same upload committed first (a concurrent retry):
                        # nothing was written now, so this object goes.
                        lease.in_doubt = False
                    raise
                except DomainError:
                    lease.in_doubt = False  # refused by the script: nothing was written
                    raise
        except Replayed as replay:
            first = file_meta(replay.record)
            if first.object_name == name:  # our own commit, seen again: it stands
                await self._collector.committed(lease, first.expires_ms, [])
            return first
        except StoreFull:  # the lease could not be registered: nothing was stored
            raise store_full() from None
        await self._collector.committed(lease, written.expires_ms, released)
        return FileMeta(
            key=header.key,
            mime_type=header.mime_type,
            size_bytes=size,
            sha256=digest,
            created_ms=created,
            expires_ms=written.expires_ms,
            version=written.version,
            upload_id=header.upload_id,
            object_name=name,
        )

    async def _file(self, tenant: str, session: str, key: str) -> FileMeta | None:
        record = await self._memory.get(tenant, session, core.key(key))  # a key, never a path
        if record is None:
            return None
        if record.kind is not Kind.FILE:
            raise _not_a_file(key, record.kind)
        return file_meta(record)

    async def get_file(
        self, tenant: str, session: str, key: str, url_ttl: int | None
    ) -> tuple[FileMeta, str, int] | None:
        """The file, a presigned URL and when that URL expires (ms); None when missing."""
        if url_ttl is not None and url_ttl < 1:
            raise invalid(
                "TTL_OUT_OF_RANGE",
                f"url_ttl_seconds is {url_ttl}; it must be at least 1",
                "url_ttl_seconds",
                limit=MAX_URL_TTL,
                actual=url_ttl,
            )
        meta = await self._file(tenant, session, key)
        if meta is None:
            return None
        now_ms = int(time.time() * 1000)
        left = max(1, math.floor((meta.expires_ms - now_ms) / 1000))
        ttl = min(url_ttl or DEFAULT_URL_TTL, MAX_URL_TTL, left)
        return meta, self._blobs.presign(meta.object_name, ttl), now_ms + ttl * 1000

    async def read(
        self, tenant: str, session: str, key: str, offset: int, limit: int | None
    ) -> tuple[FileMeta, AsyncIterator[bytes]]:
        """The file and an iterator over its bytes (a range of them)."""
        for value, name in ((offset, "offset"), (limit, "limit")):
            if value is not None and value < 0:
                raise invalid("INVALID_RANGE", f"{name} must not be negative", name)
        meta = await self._file(tenant, session, key)
        if meta is None:
            raise DomainError(
                grpc.StatusCode.NOT_FOUND,
                "FILE_NOT_FOUND",
                f"no file under key {key!r} (missing or expired)",
                metadata={"key": key},
            )
        length = max(0, meta.size_bytes - offset)
        if limit is not None:
            length = min(length, limit)
        if length == 0:
            return meta, _empty()
        return meta, self._stream(tenant, session, meta, offset, length)

    async def _stream(
        self, tenant: str, session: str, meta: FileMeta, offset: int, length: int
    ) -> AsyncIterator[bytes]:
        """The object's bytes; a read cut short by a Delete/replacement says so.

        Objects are deleted as soon as nothing references them, so a read that
        was streaming when its file was deleted or replaced may end early: that
        is NOT_FOUND (FILE_NOT_FOUND), never a silently short file. Any other
        failure keeps its own meaning (UNAVAILABLE for a store that stopped).
        """
        sent = 0
        try:
            async for chunk in self._blobs.read(meta.object_name, offset, length):
                sent += len(chunk)
                yield chunk
        except Exception:
            if await self._released(tenant, session, meta):
                raise self._gone_while_reading(meta) from None
            raise
        if sent < length:
            if await self._released(tenant, session, meta):
                raise self._gone_while_reading(meta)
            raise unavailable("the object store ended the read early; retry")

    async def _released(self, tenant: str, session: str, meta: FileMeta) -> bool:
        record = await self._memory.get(tenant, session, meta.key)
        return (
            record is None
            or record.kind is not Kind.FILE
            or (file_meta(record).object_name != meta.object_name)
        )

    @staticmethod
    def _gone_while_reading(meta: FileMeta) -> DomainError:
        return DomainError(
            grpc.StatusCode.NOT_FOUND,
            "FILE_NOT_FOUND",
            f"the file under key {meta.key!r} (version {meta.version}) was deleted or replaced"
            " while it was being read; read the key again",
            metadata={"key": meta.key, "version": meta.version},
        )


async def _empty() -> AsyncIterator[bytes]:
    return
    yield  # pragma: no cover - makes this an async generator
