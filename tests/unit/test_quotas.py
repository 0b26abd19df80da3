"""Quota bookkeeping without Redis: what costs a Redis call, what is refused locally."""

from __future__ import annotations

import dataclasses
from typing import cast

import grpc
import pytest

from sessionmemory_server.core import Kind
from sessionmemory_server.errors import DomainError
from sessionmemory_server.limits import LimitBook, TenantLimits
from sessionmemory_server.quotas import Quotas
from sessionmemory_server.stores.redis_store import QuotaExceeded, QuotaOp, RedisStore
from sessionmemory_server.values import VALUE_OVERHEAD_BYTES as O
from sessionmemory_server.values import Erase, Write, Written

# What a value of a one-character key in session 's' counts beyond its payload.
N = 2 + O

LIMITS = TenantLimits(
    reads_per_second=0,
    read_burst=1,
    writes_per_second=0,
    write_burst=1,
    file_bytes_per_second=0,
    file_bytes_burst=1,
    max_sessions=2,
    max_stored_bytes=100 + 2 * N,  # 100 payload bytes in two values of session 's'
    max_uploads=1,
)


class FakeStore:
    """Counts the quota calls a RedisStore would get; holds a total and sessions."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.sessions: set[tuple[str, str]] = set()
        self.total = 0
        self.fail = False
        self.flushed: list[QuotaOp] = []

    async def admit_session(self, tenant: str, session: str, keep_ms: int, quota: int) -> int:
        self.calls.append("admit")
        live = {s for t, s in self.sessions if t == tenant}
        if session not in live:
            if len(live) >= quota:
                raise QuotaExceeded(len(live))
            self.sessions.add((tenant, session))
        return keep_ms

    async def quota_flush(
        self, tenant: str, ops: list[QuotaOp], *, tombstone_ms: int, prune: int
    ) -> tuple[int, int, int, bool]:
        self.calls.append("flush")
        if self.fail:
            raise ConnectionError("down")
        self.flushed.extend(ops)
        for op in ops:
            if op[0] == "S":
                self.total += op[2]
        return self.total, len(self.sessions), 0, False


def quotas(limits: TenantLimits = LIMITS) -> tuple[Quotas, FakeStore]:
    store = FakeStore()
    return Quotas(cast(RedisStore, store), LimitBook(limits), upload_max_seconds=10), store


def write(key: str, size: int, ttl: int = 60) -> Write:
    return Write(key, Kind.STRING, "x" * size, ttl)


async def test_a_known_session_costs_no_call() -> None:
    q, store = quotas()
    reserved = await q.admit("t", "s", [write("a", 10)])
    assert reserved == 10 + N
    assert store.calls == ["flush", "admit"]  # the tenant's total, the new session
    q.wrote("t", "s", [write("a", 10)], [Written(1, 60_000)], reserved)
    for _ in range(5):
        reserved = await q.admit("t", "s", [write("a", 10)])
        assert reserved
        q.unreserve("t", reserved)  # the write failed
    assert store.calls == ["flush", "admit"]


async def test_sessions_over_the_quota_are_refused() -> None:
    q, store = quotas()
    q.unreserve("t", await q.admit("t", "s1", [write("a", 1)]))
    q.unreserve("t", await q.admit("t", "s2", [write("a", 1)]))
    with pytest.raises(DomainError) as info:
        await q.admit("t", "s3", [write("a", 1)])
    err = info.value
    assert (err.code, err.reason, err.retry_after) == (
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "QUOTA_EXCEEDED",
        None,
    )
    assert err.metadata == {"quota": "sessions", "limit": "2", "actual": "3"}
    assert store.sessions == {("t", "s1"), ("t", "s2")}
    await q.admit("t", "s1", [])  # deletes only: nothing to admit
    await q.admit("other", "s3", [write("a", 1)])  # another tenant


async def test_bytes_count_this_process_writes_before_any_flush() -> None:
    q, store = quotas()
    reserved = await q.admit("t", "s", [write("a", 60)])
    q.wrote("t", "s", [write("a", 60)], [Written(1, 60_000)], reserved)
    q.wrote("t", "s", [write("a", 60)], [Written(2, 60_000)])  # overwritten: counted once
    with pytest.raises(DomainError) as info:
        await q.admit("t", "s", [write("b", 41)])
    assert info.value.metadata == {
        "quota": "stored_bytes",
        "limit": str(100 + 2 * N),
        "actual": str(101 + 2 * N),
    }
    q.unreserve("t", await q.admit("t", "s", [write("b", 40)]))
    # A delete takes its pending bytes back at once.
    q.wrote("t", "s", [Erase("a")], [Written(3, 0)])
    await q.admit("t", "s", [write("b", 100)])
    await q.flush()
    # Written twice, then deleted, before a flush: only the newest operation is sent.
    assert [op[0] for op in store.flushed] == ["D"]


async def test_unlimited_quotas_cost_nothing() -> None:
    q, store = quotas(
        dataclasses.replace(LIMITS, max_sessions=0, max_stored_bytes=0, max_uploads=0)
    )
    assert not await q.admit("t", "s", [write("a", 10**6)])
    async with q.upload("t"):
        pass
    await q.flush()
    assert store.calls == []


async def test_a_failed_flush_keeps_the_operations() -> None:
    q, store = quotas()
    reserved = await q.admit("t", "s", [write("a", 10)])
    q.wrote("t", "s", [write("a", 10)], [Written(1, 60_000)], reserved)
    store.fail = True
    with pytest.raises(ConnectionError):
        await q.flush()
    with pytest.raises(DomainError):  # the unsent bytes still count
        await q.admit("t", "s", [write("b", 91)])
    store.fail = False
    await q.flush()
    assert store.total == 10 + N and len(store.flushed) == 1


async def test_concurrent_writes_reserve_their_bytes() -> None:
    """Writes admitted and not yet made count: one process cannot overshoot by its concurrency."""
    q, _ = quotas()
    first = await q.admit("t", "s", [write("a", 60)])
    with pytest.raises(DomainError):  # "a" is not made yet, but its bytes are reserved
        await q.admit("t", "s", [write("b", 41)])
    q.unreserve("t", first)  # "a" failed: its bytes come back
    second = await q.admit("t", "s", [write("b", 100)])
    q.wrote("t", "s", [write("b", 100)], [Written(1, 60_000)], second)
    with pytest.raises(DomainError):  # "b" now counts as written
        await q.admit("t", "s", [write("c", 1)])
