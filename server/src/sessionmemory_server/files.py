"""Files: streamed uploads, presigned URLs and streamed reads.

An upload is spooled to disk, checked, put in the object store, then switched in
atomically.

Memory stays flat: chunks go to a spool file as they arrive (hashing, counting
and content-checking on the way) and the object store reads the spool in 5 MiB
parts from a bounded pool. Nothing reaches the store before the whole upload
has passed every check, so a failed, cancelled or oversized upload stores nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
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
from .collector import Collector
from .content import ContentCheck, ContentMismatch
from .core import LIMITS, Kind, Record, Write
from .errors import DomainError, invalid
from .memory import Memory
from .stores.blob_store import BlobStore
from .stores.redis_store import RedisStore

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


@dataclass(frozen=True, slots=True)
class FileMeta:
    """A stored file's description."""

    key: str
    mime_type: str
    size_bytes: int
    sha256: str
    created_ms: int
    expires_ms: int
    version: int
    upload_id: str
    object_name: str


def file_meta(record: Record) -> FileMeta:
    """Decode a file record."""
    p = json.loads(record.payload)
    return FileMeta(
        key=record.key,
        mime_type=p["m"],
        size_bytes=p["s"],
        sha256=p["h"],
        created_ms=p["c"],
        expires_ms=record.expires_ms,
        version=record.version,
        upload_id=p["u"],
        object_name=p["o"],
    )


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
    ) -> None:
        self._memory = memory
        self._blobs = blobs
        self._collector = collector
        self._spool_dir = spool_dir
        self._upload_max = upload_max_seconds

    def clean_spool(self, older_than: float) -> int:
        """Remove spool files left by a killed process; returns how many."""
        removed = 0
        cutoff = time.time() - older_than
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
        session = header.session_id
        if header.upload_id:
            current = await self._memory.get(tenant, session, header.key)
            if current is not None and current.kind is Kind.FILE:
                meta = file_meta(current)
                if meta.upload_id == header.upload_id:
                    return meta  # a retry of a committed upload
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
        self._spool_dir.mkdir(parents=True, exist_ok=True)
        fd, spool_name = tempfile.mkstemp(prefix=SPOOL_PREFIX, dir=self._spool_dir)
        spool = Path(spool_name)
        try:
            with os.fdopen(fd, "wb") as out:
                size, digest, check = await self._receive(header, chunks, out)
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
            return await self._store_and_switch(tenant, header, ttl, spool, size, digest, cancelled)
        finally:
            spool.unlink(missing_ok=True)  # noqa: ASYNC240 - one unlink, no I/O wait

    async def _receive(
        self, header: FileHeaderSpec, chunks: AsyncIterator[bytes], out: BinaryIO
    ) -> tuple[int, str, ContentCheck]:
        sha = hashlib.sha256()
        check = ContentCheck(header.mime_type)
        limit = LIMITS.max_file_bytes
        declared = header.size_bytes
        size = 0
        write = out.write
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
            write(chunk)
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
        spool: Path,
        size: int,
        digest: str,
        cancelled: Callable[[], bool],
    ) -> FileMeta:
        session = header.session_id
        name = f"files/{tenant}/{uuid.uuid4().hex}"
        created = int(time.time() * 1000)
        payload = json.dumps(
            {"o": name, "m": header.mime_type, "s": size, "h": digest, "c": created,
             "u": header.upload_id},
            separators=(",", ":"),
        )  # fmt: skip
        value_key = RedisStore.value_key(tenant, session, header.key)
        async with self._collector.lease(name, value_key) as lease:
            await self._blobs.put(name, spool, size, header.mime_type)
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
                [written], released = await self._memory.commit(tenant, session, [write])
            except DomainError:
                lease.in_doubt = False  # refused by the script: nothing was written
                raise
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
        record = await self._memory.get(tenant, session, key)
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
        return meta, self._blobs.read(meta.object_name, offset, length)


async def _empty() -> AsyncIterator[bytes]:
    return
    yield  # pragma: no cover - makes this an async generator
