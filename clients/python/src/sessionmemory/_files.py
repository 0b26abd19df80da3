"""File handles returned by `get_file`: the URL at hand, the bytes through ReadFile."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from typing import Any

import grpc

from ._convert import FileInfo, Progress, file_info_of, read_file_request
from .errors import ConflictError, from_grpc


def _check_version(info: FileInfo, first: Any) -> None:
    current = file_info_of(first.file)
    if current.version != info.version:
        raise ConflictError(
            f"file {info.key!r} was replaced since get_file (version {info.version} ->"
            f" {current.version}); call get_file again",
            status=grpc.StatusCode.ABORTED,
            code="VERSION_MISMATCH",
        )


class _Handle:
    """What both handles hold: the file's info, its URL and a way to read it."""

    def __init__(
        self,
        info: FileInfo,
        url: str,
        url_expires_at: datetime,
        read: Callable[[Any, float | None], Any],
        session_id: str,
    ) -> None:
        self.info = info
        self.url_expires_at = url_expires_at
        self._url = url
        self._read = read
        self._session_id = session_id

    def to_url(self) -> str:
        """The presigned download URL (plain HTTP GET; no extra call)."""
        return self._url

    def __repr__(self) -> str:
        # Not the URL: it is a credential to the bytes until it expires.
        return f"{type(self).__name__}(info={self.info!r}, url_expires_at={self.url_expires_at!r})"


class FileHandle(_Handle):
    """A stored file: its `info`, a presigned URL, and its bytes on demand."""

    def iter_chunks(
        self, offset: int = 0, limit: int | None = None, *, timeout: float | None = None
    ) -> Iterator[bytes]:
        """Stream the bytes (a range of them) without holding them all.

        ``timeout`` bounds the whole read (None: the client's ``upload_timeout``).

        Raises:
            ConflictError: the file was replaced since `get_file`.
            MemoryApiError: the call failed.
        """
        request = read_file_request(self._session_id, self.info.key, offset, limit)
        try:
            stream = iter(self._read(request, timeout))
            _check_version(self.info, next(stream))
            for message in stream:
                yield message.chunk
        except grpc.RpcError as err:
            raise from_grpc(err) from None

    def to_raw(self, *, timeout: float | None = None) -> bytes:
        """All the bytes (``timeout``: as `iter_chunks`).

        Raises:
            MemoryApiError: the call failed.
        """
        return b"".join(self.iter_chunks(timeout=timeout))

    def to_base64(self, *, timeout: float | None = None) -> str:
        """All the bytes, base64-encoded (``timeout``: as `iter_chunks`).

        Raises:
            MemoryApiError: the call failed.
        """
        return base64.b64encode(self.to_raw(timeout=timeout)).decode("ascii")

    def save(
        self,
        path: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
        timeout: float | None = None,
    ) -> int:
        """Stream the bytes to a file; returns how many were written.

        ``progress(written, size)`` is called after each chunk; ``timeout`` as
        `iter_chunks`.

        Raises:
            MemoryApiError: the call failed.
        """
        written = 0
        with open(path, "wb") as out:
            for chunk in self.iter_chunks(timeout=timeout):
                out.write(chunk)
                written += len(chunk)
                if progress is not None:
                    progress(written, self.info.size_bytes)
        return written


class AsyncFileHandle(_Handle):
    """A stored file (asyncio): its `info`, a presigned URL, its bytes on demand."""

    async def iter_chunks(
        self, offset: int = 0, limit: int | None = None, *, timeout: float | None = None
    ) -> AsyncIterator[bytes]:
        """Stream the bytes (a range of them) without holding them all.

        ``timeout`` bounds the whole read (None: the client's ``upload_timeout``).

        Raises:
            ConflictError: the file was replaced since `get_file`.
            MemoryApiError: the call failed.
        """
        request = read_file_request(self._session_id, self.info.key, offset, limit)
        try:
            first = True
            async for message in self._read(request, timeout):
                if first:
                    _check_version(self.info, message)
                    first = False
                    continue
                yield message.chunk
        except grpc.RpcError as err:
            raise from_grpc(err) from None

    async def to_raw(self, *, timeout: float | None = None) -> bytes:
        """All the bytes (``timeout``: as `iter_chunks`).

        Raises:
            MemoryApiError: the call failed.
        """
        return b"".join([chunk async for chunk in self.iter_chunks(timeout=timeout)])

    async def to_base64(self, *, timeout: float | None = None) -> str:
        """All the bytes, base64-encoded (``timeout``: as `iter_chunks`).

        Raises:
            MemoryApiError: the call failed.
        """
        return base64.b64encode(await self.to_raw(timeout=timeout)).decode("ascii")

    async def save(
        self,
        path: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
        timeout: float | None = None,
    ) -> int:
        """Stream the bytes to a file; returns how many were written.

        ``progress(written, size)`` is called after each chunk; ``timeout`` as
        `iter_chunks`.

        Raises:
            MemoryApiError: the call failed.
        """
        written = 0
        with open(path, "wb") as out:  # noqa: ASYNC230 - local disk, chunk by chunk
            async for chunk in self.iter_chunks(timeout=timeout):
                out.write(chunk)
                written += len(chunk)
                if progress is not None:
                    progress(written, self.info.size_bytes)
        return written
