"""Change streams returned by `watch`: iterators that resume a dropped Watch by themselves.

Both streams keep their place in a `WatchCursor` (the last revision seen); when the
stream drops (UNAVAILABLE, or it just ends), they open a new one after that revision,
after the server's RetryInfo or a backoff (0.5 s doubling, at most 5 s), and give
up after the client's ``max_attempts`` streams in a row that brought no message.
Stopping the iteration (``close``, ``with``, or dropping the last reference) cancels
the gRPC call.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any

import grpc

from ._convert import Change, WatchCursor
from .errors import from_grpc
from .v1 import memory_service_pb2 as svc


class _Stream:
    """What both streams hold: the cursor, the changes not yet handed out, the call."""

    def __init__(
        self, open_call: Callable[[svc.WatchRequest, float | None], Any], cursor: WatchCursor
    ) -> None:
        self._open = open_call
        self._cursor = cursor
        self._pending: deque[Change] = deque()
        self._delivered = cursor.revision
        self._call: Any = None
        self._closed = False

    @property
    def session_id(self) -> str:
        """The watched session."""
        return self._cursor.session

    @property
    def revision(self) -> int | None:
        """The revision of the last change handed out (or the start revision).

        Pass it as ``after_revision`` to a later `watch` to go on from here; None
        before the first message of a stream started without ``after_revision``.
        """
        return self._delivered if self._pending else self._cursor.revision

    @property
    def closed(self) -> bool:
        """True once the stream was closed (or gave up)."""
        return self._closed

    def _take(self) -> Change:
        change = self._pending.popleft()
        self._delivered = change.revision
        return change

    def _receive(self, response: Any) -> None:
        self._delivered = self._cursor.revision
        self._pending.extend(self._cursor.receive(response))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(session_id={self.session_id!r}, revision={self.revision!r},"
            f" closed={self._closed})"
        )

    def _cancel(self) -> None:
        call, self._call = self._call, None
        if call is not None:
            call.cancel()

    def __del__(self) -> None:
        # A caller that breaks out of its loop drops the stream: end the call with it.
        with contextlib.suppress(Exception):
            self._closed = True
            self._cancel()


class ChangeStream(_Stream):
    """An iterator of a session's changes, `Change` objects (from `Session.watch`).

    Blocks until the next change. Resumes by itself after a dropped stream; close it
    (or use it in a ``with`` block) to stop. `close` may be called from another
    thread to end a blocked iteration.

    Raises:
        MemoryApiError: while iterating: the server refused the stream (e.g.
            ``TOO_MANY_WATCHERS``), or it could not be resumed within the client's
            ``max_attempts``.
    """

    def __init__(
        self, open_call: Callable[[svc.WatchRequest, float | None], Any], cursor: WatchCursor
    ) -> None:
        super().__init__(open_call, cursor)
        self._lock = threading.Lock()
        self._wake = threading.Event()

    def __iter__(self) -> ChangeStream:
        return self

    def __next__(self) -> Change:
        while True:
            if self._pending:
                return self._take()
            call = self._current()
            if call is None:
                raise StopIteration
            error = None
            try:
                self._receive(next(call))
                continue
            except StopIteration:
                pass
            except grpc.RpcError as err:
                if self._closed:
                    raise StopIteration from None
                error = from_grpc(err)
            with self._lock:
                if self._call is call:
                    self._call = None
            try:
                delay = self._cursor.ended(error)
            except BaseException:
                self.close()
                raise
            self._wake.wait(delay)

    def _current(self) -> Any:
        """The open call (opened now if needed); None once closed."""
        with self._lock:
            if self._closed:
                return None
            if self._call is None:
                self._call = self._open(self._cursor.request(), self._cursor.call_timeout())
            return self._call

    def close(self) -> None:
        """Stop the stream and cancel its call (safe from any thread, and twice)."""
        with self._lock:
            self._closed = True
            call, self._call = self._call, None
        self._wake.set()
        if call is not None:
            call.cancel()

    def __enter__(self) -> ChangeStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncChangeStream(_Stream):
    """An async iterator of a session's changes, `Change` objects (from `AsyncSession.watch`).

    Resumes by itself after a dropped stream; ``await stream.aclose()`` (or
    ``async with``) stops it, also while another task waits for a change.

    Raises:
        MemoryApiError: while iterating: the server refused the stream (e.g.
            ``TOO_MANY_WATCHERS``), or it could not be resumed within the client's
            ``max_attempts``.
    """

    def __init__(
        self, open_call: Callable[[svc.WatchRequest, float | None], Any], cursor: WatchCursor
    ) -> None:
        super().__init__(open_call, cursor)
        self._wake: asyncio.Event | None = None

    def __aiter__(self) -> AsyncChangeStream:
        return self

    async def __anext__(self) -> Change:
        while True:
            if self._pending:
                return self._take()
            if self._closed:
                raise StopAsyncIteration
            if self._call is None:
                self._call = self._open(self._cursor.request(), self._cursor.call_timeout())
            call = self._call
            error = None
            try:
                response = await call.read()
            except asyncio.CancelledError:
                # Either aclose() cancelled the call, or the task waiting here was
                # cancelled: then the call must not outlive it.
                if self._closed:
                    raise StopAsyncIteration from None
                if self._call is call:
                    self._cancel()
                raise
            except grpc.RpcError as err:
                if self._closed:
                    raise StopAsyncIteration from None
                error = from_grpc(err)
            else:
                if response is not grpc.aio.EOF:
                    self._receive(response)
                    continue
            if self._call is call:
                self._call = None
            try:
                delay = self._cursor.ended(error)
            except BaseException:
                await self.aclose()
                raise
            await self._sleep(delay)

    async def _sleep(self, delay: float) -> None:
        """Wait ``delay`` seconds, or less when the stream is closed meanwhile."""
        if self._wake is None:
            self._wake = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay)

    async def aclose(self) -> None:
        """Stop the stream and cancel its call (also ends a pending iteration)."""
        self._closed = True
        if self._wake is not None:
            self._wake.set()
        self._cancel()

    async def __aenter__(self) -> AsyncChangeStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
