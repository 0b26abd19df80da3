"""`Poller`: keep in-memory state in step with Redis by refreshing it on an interval.

API keys, token signing keys and revocations, and tenant limit overrides are all
read from memory on the hot path and reloaded in the background; this is their
one loop. A refresh that fails is counted (one throttled log line) and tried
again at the next tick: the last loaded state stays in force meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from .logs import EventCounter


class Poller:
    """Runs ``refresh`` once at `start`, then every ``interval`` seconds until `close`."""

    def __init__(
        self, refresh: Callable[[], Awaitable[object]], interval: float, failed: EventCounter
    ) -> None:
        self._refresh = refresh
        self.interval = interval
        self._failed = failed
        self._task: asyncio.Task[None] | None = None

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
        try:
            await self._refresh()
        except Exception as exc:  # Redis down: keep the last state, try again later
            self._failed.count(type(exc).__name__)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self._once()
