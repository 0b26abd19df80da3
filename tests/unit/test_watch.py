"""The Watch buffer of one stream: bounded in changes, never silently lossy."""

from __future__ import annotations

import asyncio

from sessionmemory_server.values import Change
from sessionmemory_server.watch import Watcher


def _changes(n: int, start: int = 1) -> list[Change]:
    return [Change(f"k{i}", "set", None, i, i, 0) for i in range(start, start + n)]


async def test_a_stalled_watcher_is_marked_behind_not_grown() -> None:
    watcher = Watcher(limit=10)
    watcher.push(_changes(6))
    watcher.push(_changes(4, 7))
    assert await watcher.next() == _changes(6)
    watcher.push(_changes(7, 11))  # 4 + 7 > 10: dropped, the watcher catches up instead
    assert await watcher.next() is None
    watcher.push(_changes(1, 18))
    assert await watcher.next() == _changes(1, 18)


async def test_next_waits_for_a_push() -> None:
    watcher = Watcher()
    waiting = asyncio.create_task(watcher.next())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    watcher.push(_changes(1))
    assert await asyncio.wait_for(waiting, 1) == _changes(1)
