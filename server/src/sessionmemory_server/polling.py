"""`Poller`: keep in-memory state in step with Redis by refreshing it on an interval.

API keys, token signing keys and revocations, and tenant limit overrides are all
read from memory on the hot path and reloaded in the background; this is their
one loop. A refresh that fails is counted (one throttled log line) and tried
again at the next tick: the last loaded state stays in force meanwhile.

`SingleFlight` runs such a reload for callers that cannot wait for the next
tick (nothing loaded yet, a credential not known here): concurrent callers share
one load instead of queueing behind each other, and after a failed load they are
refused at once for a short back-off instead of each trying Redis again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from .errors import DomainError, unavailable
from .logs import EventCounter

# After a failed load, callers are refused for this long without trying again.
BACKOFF_SECONDS = 1.0


class Poller:
    """Runs ``refresh`` once at `start`, then every ``interval`` seconds until `close`.

    `nudge` asks for a refresh now, at most once per ``min_gap`` seconds.
    """

    def __init__(
        self,
        refresh: Callable[[], Awaitable[object]],
        interval: float,
        failed: EventCounter,
        *,
        min_gap: float = 0.0,
    ) -> None:
        self._refresh = refresh
        self.interval = interval
        self._failed = failed
        self._min_gap = min_gap
        self._wake = asyncio.Event()
        self._last = 0.0
        self._task: asyncio.Task[None] | None = None

    def nudge(self) -> None:
        """Refresh soon, without waiting for the interval."""
        self._wake.set()

    async def start(self) -> None:
        """Refresh now (a failure is counted, not raised), then in the background.

        An interval of 0 or less polls nothing: the owner refreshes on demand.
        """
        if self._task is not None:
            return
        await self._once()
        if self.interval > 0:
            self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        """Stop the background refresh."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _once(self) -> None:
        self._last = time.monotonic()
        try:
            await self._refresh()
        except Exception as exc:  # Redis down: keep the last state, try again later
            cause = exc.__cause__ if isinstance(exc, DomainError) and exc.__cause__ else exc
            self._failed.count(type(cause).__name__)

    async def _run(self) -> None:
        while True:
            # Not asyncio.wait_for: on Python 3.11 it swallows a cancel (close) that
            # arrives as a nudge wakes it, and the loop then never ends.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            self._wake.clear()
            gap = self._last + self._min_gap - time.monotonic()
            if gap > 0:
                await asyncio.sleep(gap)
            await self._once()


class SingleFlight:
    """At most one ``load`` at a time, shared by every caller that wants one.

    A caller arriving while a load runs waits for that load (or, with
    ``fresh``, for the next one, started after it asked); no caller ever waits
    behind a queue of loads. When a load fails, every caller that shared it
    gets UNAVAILABLE (BACKEND_UNAVAILABLE), and so does every caller in the
    ``backoff_seconds`` after it, without a Redis call (except with ``force``:
    the poller, admin commands). A caller cancelled while it waits (its
    deadline) does not cancel the load: the others still get it.
    """

    def __init__(
        self,
        load: Callable[[], Coroutine[Any, Any, None]],
        what: str,
        backoff_seconds: float = BACKOFF_SECONDS,
    ) -> None:
        self._load = load
        self._what = what
        self.backoff = backoff_seconds
        self._task: asyncio.Task[None] | None = None
        self._failed_until = 0.0

    def backing_off(self) -> float | None:
        """Seconds left of the back-off after a failed load, or None."""
        left = self._failed_until - time.monotonic()
        return left if left > 0 else None

    async def run(self, *, fresh: bool = False, force: bool = False) -> None:
        """Load, or wait for the load in flight.

        Args:
            fresh: The load must start after this call (something changed just
                now): wait out the one in flight, then share the next.
            force: Load even during the back-off.

        Raises:
            DomainError: UNAVAILABLE when the load failed, or during the back-off.
        """
        task = self._task
        if task is not None and fresh:
            with contextlib.suppress(Exception):
                await asyncio.shield(task)
            # A load started since the one we waited for is fresh enough.
            task = self._task if self._task is not task else None
        if task is None:
            left = self.backing_off()
            if left is not None and not force:
                raise self._unavailable(left)
            task = self._task = asyncio.create_task(self._load())
            task.add_done_callback(self._done)
        try:
            await asyncio.shield(task)
        except DomainError:
            raise
        except Exception as exc:
            raise self._unavailable(self.backoff) from exc

    async def close(self) -> None:
        """Cancel a load in flight."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    def _done(self, task: asyncio.Task[None]) -> None:
        if self._task is task:
            self._task = None
        if task.cancelled():
            return
        if task.exception() is None:  # also marks the exception retrieved
            self._failed_until = 0.0
        else:
            self._failed_until = time.monotonic() + self.backoff

    def _unavailable(self, retry_after: float) -> DomainError:
        return unavailable(
            f"{self._what} could not be read from Redis; retry in a moment",
            retry_after=max(retry_after, 0.05),
        )
