"""The asyncio client: `AsyncMemoryClient` and its `AsyncSession` (mirrors `_sync`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar

import grpc

from . import _convert as c
from ._base import (
    DEFAULT_ADDRESS,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_TIMEOUT,
    DEFAULT_UPLOAD_TIMEOUT,
    ChannelOptions,
    auth_metadata,
    check_available,
    env_settings,
)
from ._convert import (
    Entry,
    EntryInfo,
    FileData,
    FileInfo,
    Limits,
    Plan,
    Progress,
    Scalar,
    SetItem,
    WriteResult,
)
from ._files import AsyncFileHandle
from .errors import from_grpc
from .v1 import memory_service_pb2_grpc

T = TypeVar("T")


class AsyncMemoryClient:
    """A connection to Session Memory. Thread-safe; create one and share it.

    Args:
        address: ``host:port`` of the server.
        api_key: The tenant's API key (sent as ``authorization: Bearer <key>``).
        timeout: Default deadline of every call, in seconds (retries included).
        upload_timeout: Deadline of a file upload or download, in seconds.
        max_attempts: Attempts for calls that are safe to retry on UNAVAILABLE.
        credentials: TLS credentials; None for a plaintext channel.
        options: Extra gRPC channel options.
    """

    def __init__(
        self,
        address: str = DEFAULT_ADDRESS,
        *,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        upload_timeout: float = DEFAULT_UPLOAD_TIMEOUT,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        credentials: grpc.ChannelCredentials | None = None,
        options: ChannelOptions = (),
    ) -> None:
        self._channel = (
            grpc.aio.secure_channel(address, credentials, options)
            if credentials is not None
            else grpc.aio.insecure_channel(address, options)
        )
        self._stub = memory_service_pb2_grpc.MemoryServiceStub(self._channel)
        self._metadata = auth_metadata(api_key)
        self._timeout = timeout
        self._upload_timeout = upload_timeout
        self._max_attempts = max(1, max_attempts)

    @classmethod
    def from_env(cls, **kwargs: Any) -> AsyncMemoryClient:
        """A client for SESSION_MEMORY_ADDR with SESSION_MEMORY_API_KEY."""
        address, api_key = env_settings()
        return cls(address, api_key=api_key, **kwargs)

    @property
    def stub(self) -> memory_service_pb2_grpc.MemoryServiceStub:
        """The raw generated stub: an escape hatch for what the client does not wrap."""
        return self._stub

    def session(self, session_id: str | None) -> AsyncSession:
        """A handle on one conversation's memory. Does no I/O."""
        return AsyncSession(self, session_id)

    async def get_limits(self) -> Limits:
        """The limits the server enforces.

        Raises:
            MemoryApiError: the call failed.
        """
        return await self._run(None, c.plan_limits())

    async def close(self) -> None:
        """Close the channel."""
        await self._channel.close()

    async def __aenter__(self) -> AsyncMemoryClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _retrying(
        self, invoke: Callable[[float], Awaitable[Any]], retryable: bool, budget: float
    ) -> Any:
        """Call ``invoke(timeout)``; retry UNAVAILABLE with backoff while ``retryable``."""
        deadline = time.monotonic() + budget
        attempt = 0
        while True:
            attempt += 1
            try:
                return await invoke(max(deadline - time.monotonic(), 0.001))
            except grpc.RpcError as err:
                error = from_grpc(err)
                delay = c.retry_delay(error, attempt, self._max_attempts, retryable, deadline)
                if delay is None:
                    raise error from None
                await asyncio.sleep(delay)

    async def _run(self, session_id: str | None, plan: Plan[T]) -> T:
        check_available(session_id, self._metadata)
        method = getattr(self._stub, plan.method)
        response = await self._retrying(
            lambda timeout: method(plan.request, timeout=timeout, metadata=self._metadata),
            plan.idempotent,
            self._timeout,
        )
        return plan.convert(response)

    async def _upload(
        self,
        session_id: str,
        key: str,
        data: FileData,
        *,
        ttl: int,
        mime: str,
        upload_id: str | None,
        if_version: int | None,
        only_if_absent: bool,
        progress: Progress | None,
    ) -> FileInfo:
        check_available(session_id, self._metadata)
        plan = c.plan_set_file(
            session_id,
            key,
            data,
            mime=mime,
            ttl=ttl,
            upload_id=upload_id,
            if_version=if_version,
            only_if_absent=only_if_absent,
            progress=progress,
        )
        response = await self._retrying(
            lambda timeout: self._stub.SetFile(
                plan.requests(), timeout=timeout, metadata=self._metadata
            ),
            plan.retryable,
            self._upload_timeout,
        )
        return c.file_info_of(response.file)

    def _reader(self, request: Any) -> Any:
        return self._stub.ReadFile(request, timeout=self._upload_timeout, metadata=self._metadata)


class AsyncSession:
    """One conversation's memory (from `AsyncMemoryClient.session`)."""

    def __init__(self, client: AsyncMemoryClient, session_id: str | None) -> None:
        self._client = client
        self.session_id = session_id or ""

    @property
    def available(self) -> bool:
        """False when the session id or the API key is missing; calls then raise."""
        return bool(self.session_id) and self._client._metadata is not None

    async def _run(self, plan: Plan[T]) -> T:
        return await self._client._run(self.session_id, plan)

    async def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` converted to the type of ``default``; ``default`` when missing.

        Raises:
            MemoryTypeError: the stored value cannot be converted exactly.
            MemoryApiError: the call failed.
        """
        return await self._run(c.plan_get(self.session_id, key, default))

    async def get_json(self, key: str, default: Any = None) -> Any:
        """The JSON value of ``key`` (parsed); ``default`` when missing.

        Raises:
            MemoryApiError: the call failed.
        """
        return await self._run(c.plan_get_json(self.session_id, key, default))

    async def get_entry(self, key: str) -> Entry | None:
        """The value with its kind, version and expiry; None when missing.

        Raises:
            MemoryApiError: the call failed.
        """
        return await self._run(c.plan_get_entry(self.session_id, key))

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Up to 100 values in one round trip; missing keys are left out.

        Raises:
            MemoryApiError: the call failed.
        """
        return await self._run(c.plan_get_many(self.session_id, keys))

    async def set(
        self,
        key: str,
        value: Scalar,
        *,
        ttl: int | None = None,
        if_version: int | None = None,
        only_if_absent: bool = False,
    ) -> WriteResult:
        """Store a string, number or boolean (``ttl`` seconds, default one day).

        Raises:
            ConflictError: the precondition failed; nothing was written.
            MemoryApiError: the call failed.
        """
        return await self._run(
            c.plan_set(self.session_id, key, value, ttl, if_version, only_if_absent)
        )

    async def set_json(
        self,
        key: str,
        value: Any,
        *,
        ttl: int,
        if_version: int | None = None,
        only_if_absent: bool = False,
    ) -> WriteResult:
        """Store any JSON-serializable value for ``ttl`` seconds (required, at most a day).

        Raises:
            ConflictError: the precondition failed; nothing was written.
            MemoryApiError: the call failed.
        """
        return await self._run(
            c.plan_set_json(self.session_id, key, value, ttl, if_version, only_if_absent)
        )

    async def set_many(
        self, entries: Mapping[str, Any] | Iterable[SetItem], *, ttl: int | None = None
    ) -> list[WriteResult]:
        """Store up to 100 values all or nothing (non-scalars are stored as JSON).

        Raises:
            ConflictError: a precondition failed; nothing was written.
            MemoryApiError: the call failed.
        """
        return await self._run(c.plan_set_many(self.session_id, entries, ttl))

    async def delete(self, keys: str | Iterable[str]) -> int:
        """Delete one key or up to 100; returns how many existed.

        Raises:
            MemoryApiError: the call failed.
        """
        return await self._run(c.plan_delete(self.session_id, keys))

    async def increment(
        self, key: str, delta: float = 1, *, ttl: int | None = None, request_id: str | None = None
    ) -> int | float:
        """Add ``delta`` atomically and return the new number (missing counts from 0).

        A request id (generated when not given) makes retries count once: the same id
        with the same key, delta and TTL within 10 minutes returns the first result.
        Pass your own to make retries of your own (e.g. after a crash) count once too;
        ``request_id=""`` sends none (no deduplication, and no automatic retry).

        Raises:
            NotANumberError: the key holds another kind of value.
            InvalidArgumentError: a limit was broken, or ``request_id`` was already used
                in this session for another key, delta or TTL (``REQUEST_ID_REUSED``).
            MemoryApiError: the call failed.
        """
        return await self._run(c.plan_increment(self.session_id, key, delta, ttl, request_id))

    async def touch(self, keys: str | Iterable[str], *, ttl: int) -> int:
        """Give keys a new TTL without rewriting them; returns how many existed.

        Raises:
            MemoryApiError: the call failed.
        """
        return await self._run(c.plan_touch(self.session_id, keys, ttl))

    async def list(self) -> list[EntryInfo]:
        """Describe every live key (kind, size, expiry, version), sorted by key.

        Raises:
            MemoryApiError: the call failed.
        """
        return await self._run(c.plan_list(self.session_id))

    async def clear(self) -> int:
        """Delete the whole session; returns how many keys were deleted.

        Raises:
            MemoryApiError: the call failed.
        """
        return await self._run(c.plan_clear(self.session_id))

    async def set_file(
        self,
        key: str,
        data: FileData,
        *,
        ttl: int,
        mime: str,
        upload_id: str | None = None,
        if_version: int | None = None,
        only_if_absent: bool = False,
        progress: Progress | None = None,
    ) -> FileInfo:
        """Upload a file (at most 10 MiB) for ``ttl`` seconds (required, at most a week).

        ``data`` is bytes, a base64 str, a path, a binary file object or an
        iterable of byte chunks; it is streamed in 256 KiB chunks. ``progress``
        is called with (bytes sent, total or None). An upload id (generated when
        not given) makes a retry return the committed file instead of storing
        it twice; bytes and paths are retried on UNAVAILABLE.

        Raises:
            InvalidArgumentError: a limit, the MIME type or the content was refused.
            ConflictError: the precondition failed; nothing was written.
            MemoryApiError: the call failed.
        """
        return await self._client._upload(
            self.session_id,
            key,
            data,
            ttl=ttl,
            mime=mime,
            upload_id=upload_id,
            if_version=if_version,
            only_if_absent=only_if_absent,
            progress=progress,
        )

    async def get_file(self, key: str, *, url_ttl: int | None = None) -> AsyncFileHandle | None:
        """A handle on the file under ``key`` (with a presigned URL), or None when missing.

        Raises:
            FailedPreconditionError: the key holds another kind of value.
            MemoryApiError: the call failed.
        """
        found = await self._run(c.plan_get_file(self.session_id, key, url_ttl))
        if found is None:
            return None
        info, url, url_expires_at = found
        return AsyncFileHandle(info, url, url_expires_at, self._client._reader, self.session_id)
