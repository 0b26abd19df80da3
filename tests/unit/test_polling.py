"""Poller's lifecycle: close ends the background loop even right after a nudge."""

from __future__ import annotations

import asyncio
import logging

from sessionmemory_server.logs import EventCounter
from sessionmemory_server.polling import Poller


async def test_close_right_after_a_nudge_ends_the_loop() -> None:
    # A supervised worker nudges readiness as its siblings stop and closes it a
    # moment later; on Python 3.11 asyncio.wait_for swallowed that cancel and
    # the worker hung until its supervisor killed it.
    async def refresh() -> None:
        pass

    poller = Poller(refresh, 3600, EventCounter(logging.getLogger("test"), "refresh failed"))
    await poller.start()
    await asyncio.sleep(0)  # the loop now waits for the interval or a nudge
    task = poller._task
    assert task is not None
    poller.nudge()
    closing = asyncio.ensure_future(poller.close())
    await asyncio.wait([closing, task], timeout=5)
    assert closing.done() and task.done()
