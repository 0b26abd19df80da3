"""Tenant quotas against two real server processes sharing one Redis (quotas.py).

Live sessions, stored bytes and uploads in progress: a call over a quota is
RESOURCE_EXHAUSTED QUOTA_EXCEEDED (no RetryInfo) and changes nothing, on either
process; freeing usage lets calls in again; another tenant is never affected.
Each test uses tenants of its own, so what the rest of the run stores does not count.
"""

from __future__ import annotations

import asyncio
import base64
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from redis.asyncio import Redis as AsyncRedis

from sessionmemory import LimitExceededError, MemoryClient
from sessionmemory_server.embedded import EmbeddedRedis, EmbeddedS3
from sessionmemory_server.limits import LimitBook, TenantLimits
from sessionmemory_server.quotas import FLUSH_SECONDS, HEADROOM_MIN_MS, PRUNE_BATCH, Quotas
from sessionmemory_server.stores.redis_store import RedisStore
from sessionmemory_server.values import VALUE_OVERHEAD_BYTES as O

from ..conftest import ServerThread, start_server, wait_until
from ..samples import pdf_of
from .test_caps import Held

MAX_SESSIONS = 3
MAX_BYTES = 64 * 1024
# Long enough for every process to have sent (and learnt) the bookkeeping.
SETTLE = 4 * FLUSH_SECONDS


@pytest.fixture(scope="module")
def pair(
    redis_server: EmbeddedRedis, s3_server: EmbeddedS3, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerThread, ServerThread]]:
    """Two servers (two processes' worth of state) on the shared Redis, small quotas."""
    settings: dict[str, Any] = {
        "tenant_max_sessions": MAX_SESSIONS,
        "tenant_max_stored_bytes": MAX_BYTES,
        "max_tenant_uploads": 1,
        "spool_dir": str(tmp_path_factory.mktemp("spool")),
        "upload_idle_seconds": 10.0,  # held uploads pause longer than the fixtures' idle limit
    }
    one = start_server(redis_server.url, s3_server, **settings)
    two = start_server(redis_server.url, s3_server, **settings)
    yield one, two
    one.stop()
    two.stop()


def tenant() -> str:
    return f"quota-{uuid.uuid4().hex[:12]}"


def client_of(server: ServerThread, name: str) -> MemoryClient:
    return MemoryClient(server.address, api_key=server.create_key(name), timeout=10, max_attempts=1)


def refused(call: Any) -> LimitExceededError:
    with pytest.raises(LimitExceededError) as info:
        call()
    err = info.value
    assert err.code == "QUOTA_EXCEEDED" and err.is_quota_exceeded(), err
    assert err.retry_after is None and not err.is_rate_limit()
    return err


def tenant_keys(redis_url: str, name: str, session: str) -> list[bytes]:
    with Redis.from_url(redis_url) as plain:
        return list(plain.scan_iter(f"sm:{{{name}|{session}}}:*"))


def test_live_sessions(
    pair: tuple[ServerThread, ServerThread], redis_server: EmbeddedRedis
) -> None:
    one, two = pair
    name = tenant()
    with client_of(one, name) as a, client_of(two, name) as b, client_of(one, tenant()) as other:
        a.session("s1").set("k", "v", ttl=600)
        b.session("s2").set("k", "v", ttl=600)
        a.session("brief").set("k", "v", ttl=1)
        for client in (a, b):  # the fourth session, on either process
            err = refused(lambda c=client: c.session("s4").set("k", "v"))
            limit, actual = str(MAX_SESSIONS), str(MAX_SESSIONS + 1)
            assert err.metadata == {"quota": "sessions", "limit": limit, "actual": actual}
        refused(lambda: a.session("s4").increment("n", 1))
        refused(lambda: b.session("s4").update({"a": 1}, ttl=60))
        assert a.session("s4").get("k") is None
        assert tenant_keys(redis_server.url, name, "s4") == []
        assert a.get_limits().tenant_usage.sessions == MAX_SESSIONS
        # Live sessions take every write, on either process.
        a.session("s1").set_many({"x": 1, "y": "two"})
        b.session("s1").increment("n", 2)
        b.session("s2").update({"doc": {"a": 1}}, ttl=60)
        # Another tenant has quota of its own.
        for i in range(MAX_SESSIONS):
            other.session(f"o{i}").set("k", "v")
        # An expired session frees its place (after its registration's headroom).
        timeout = 1 + HEADROOM_MIN_MS / 1000 + 5
        assert wait_until(lambda: _admitted(lambda: b.session("s4").set("k", "v")), timeout)
        assert b.session("s4").get("k") == "v"
        refused(lambda: a.session("s5").set("k", "v"))
        # Clear does not free a place: the session keeps it until its registration ends.
        a.session("s1").clear()
        time.sleep(SETTLE)
        refused(lambda: b.session("s5").set("k", "v"))
        assert a.get_limits().tenant_usage.sessions == MAX_SESSIONS


def _admitted(call: Any) -> bool:
    try:
        call()
    except LimitExceededError as exc:
        assert exc.code == "QUOTA_EXCEEDED"
        return False
    return True


def blob(size: int) -> str:
    """A JSON string value whose stored payload is ``size`` bytes."""
    return "y" * (size - 2)


def test_stored_bytes(pair: tuple[ServerThread, ServerThread], redis_server: EmbeddedRedis) -> None:
    one, two = pair
    name = tenant()
    with client_of(one, name) as a, client_of(two, name) as b, client_of(two, tenant()) as other:
        memory, elsewhere = a.session("s"), b.session("t")
        memory.set_file("big", b"x" * 62_000, ttl=600, mime="text/plain")
        # Refused on this process at once: its own write counts before any flush.
        err = refused(lambda: memory.set_json("v", blob(5000), ttl=600))
        assert err.metadata == {
            "quota": "stored_bytes",
            "limit": str(MAX_BYTES),
            "actual": str(62_000 + 5000 + (3 + 1) + (1 + 1) + 2 * O),  # + keys, session ids
        }
        refused(lambda: memory.set_file("more", b"z" * 10_000, ttl=600, mime="text/plain"))
        # ... and on the other process once the bookkeeping is shared (the lag).
        time.sleep(SETTLE)
        refused(lambda: elsewhere.set_json("v", blob(5000), ttl=600))
        assert [e.key for e in memory.list()] == ["big"]
        assert elsewhere.get("v") is None
        assert tenant_keys(redis_server.url, name, "t") == []
        # Small writes still fit (values count their payload, key and session id, plus O each).
        memory.set_json("small", blob(3000), ttl=600)
        assert a.get_limits().tenant_usage.stored_bytes == 65_000 + (4 + 6) + 2 * O
        # Another tenant is not affected.
        other.session("s").set_file("big", b"x" * 62_000, ttl=600, mime="text/plain")
        # Deleting frees the space, for both processes, within a flush interval or two.
        memory.delete(["big"])
        assert wait_until(
            lambda: _admitted(lambda: elsewhere.set_json("v", blob(5000), ttl=600)), 5
        )
        assert memory.set_file("more", b"z" * 10_000, ttl=600, mime="text/plain").size_bytes
        assert wait_until(
            lambda: a.get_limits().tenant_usage.stored_bytes == 18_000 + (6 + 2 + 5) + 3 * O, 5
        )
        # Expired values free their bytes too; Clear frees a whole session.
        memory.set_json("brief", blob(5000), ttl=2)
        brief = 23_000 + (6 + 2 + 5 + 6) + 4 * O
        assert wait_until(lambda: b.get_limits().tenant_usage.stored_bytes == brief, 5)
        kept = 18_000 + (6 + 2 + 5) + 3 * O
        assert wait_until(lambda: a.get_limits().tenant_usage.stored_bytes == kept, 10)
        memory.clear()
        assert wait_until(lambda: a.get_limits().tenant_usage.stored_bytes == 5000 + 2 + O, 5)


def test_uploads_across_processes(pair: tuple[ServerThread, ServerThread], tmp_path: Path) -> None:
    one, two = pair
    name = tenant()
    release = threading.Event()
    with client_of(one, name) as a, client_of(two, name) as b, client_of(two, tenant()) as other:
        held = Held(a.session("s"), "doc", release, first=pdf_of(16 * 1024))
        try:
            assert wait_until(lambda: b.get_limits().tenant_usage.uploads == 1)
            err = refused(lambda: b.session("s").set_file("late", b"hi", ttl=60, mime="text/plain"))
            assert err.metadata == {"quota": "uploads", "limit": "1", "actual": "2"}
            # Another tenant uploads meanwhile.
            assert other.session("s").set_file("f", b"hi", ttl=60, mime="text/plain").size_bytes
        finally:
            release.set()
        assert held.size() == 16 * 1024 + 1024
        assert b.session("s").get("late") is None
        # The slot was given back when the upload ended.
        assert b.get_limits().tenant_usage.uploads == 0
        assert b.session("s").set_file("late", b"hi", ttl=60, mime="text/plain").size_bytes == 2


def test_write_clear_write_keeps_counting_the_session(
    pair: tuple[ServerThread, ServerThread],
) -> None:
    # Regression: Clear queued a removal of the session's registration that could
    # land after the next write's admission, leaving a live session uncounted.
    one, two = pair
    name = tenant()
    with client_of(one, name) as a, client_of(two, name) as b:
        for i in range(MAX_SESSIONS):
            a.session(f"s{i}").set("k", "v", ttl=600)
        for _ in range(3):
            a.session("s0").clear()  # on this process
            a.session("s0").set("k", "v", ttl=600)
            b.session("s1").clear()  # on the other one
            a.session("s1").set("k", "v", ttl=600)
            time.sleep(SETTLE)
        for client in (a, b):
            refused(lambda c=client: c.session("late").set("k", "v"))
        assert a.get_limits().tenant_usage.sessions == MAX_SESSIONS


def _now_ms(store_client: Redis) -> int:
    seconds, micros = store_client.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def test_touches_of_one_revision_keep_the_later_expiry(redis_server: EmbeddedRedis) -> None:
    # Regression: Touch does not move the revision; the last batch to land set
    # the ledger's expiry, so a short Touch landing after a long one dropped bytes
    # of a value that lived on.
    store = RedisStore(AsyncRedis.from_url(redis_server.url), bucket="test-bucket")
    name = tenant()
    with Redis.from_url(redis_server.url) as plain:
        now = _now_ms(plain)
    long, short = now + 600_000, now + 300
    ops = [("S", "m", 100, 1, long), ("T", "m", 1, long, 100), ("T", "m", 1, short, 100)]
    assert (await store.quota_flush(name, ops, tombstone_ms=5000, prune=10))[0] == 100
    # A Touch whose entry an earlier expiry already dropped counts the value again.
    ops = [("S", "n", 50, 1, now + 300)]
    assert (await store.quota_flush(name, ops, tombstone_ms=5000, prune=10))[0] == 150
    await asyncio.sleep(0.5)
    assert (await store.quota_flush(name, [], tombstone_ms=5000, prune=10))[0] == 100
    ops = [("T", "n", 1, long, 50)]
    assert (await store.quota_flush(name, ops, tombstone_ms=5000, prune=10))[0] == 150


def test_ledger_members_are_short_and_names_count(
    pair: tuple[ServerThread, ServerThread], redis_server: EmbeddedRedis
) -> None:
    # Regression: ledger members were "<session>\n<key>" (KiBs per value) in two
    # keys, and neither the key nor the session id counted.
    one, _ = pair
    name = tenant()
    session, key = "S" * 200, "k" * 100
    with client_of(one, name) as a:
        a.session(session).set_json(key, blob(10), ttl=600)
        assert a.get_limits().tenant_usage.stored_bytes == 10 + 100 + 200 + O
    with Redis.from_url(redis_server.url) as plain:
        members = plain.hkeys(f"sm:{{{name}}}:kb")
        assert len(members) == 1 and len(base64.b64decode(members[0])) == 12
        assert plain.zrange(f"sm:{{{name}}}:ke", 0, -1) == members


async def test_expired_ledger_entries_are_all_dropped(redis_server: EmbeddedRedis) -> None:
    # Regression: deletes left tombstones for a minute, dropped 1,000 per flush.
    store = RedisStore(AsyncRedis.from_url(redis_server.url), bucket="test-bucket")
    name = tenant()
    limits = TenantLimits(0, 1, 0, 1, 0, 1, 0, 10**9, 0)
    quotas = Quotas(store, LimitBook(limits), upload_max_seconds=10)
    count = 3 * PRUNE_BATCH + 7
    ops = [("S", f"m{i}", 10, 1, 2**50) for i in range(count)]
    ops += [("D", f"m{i}", 2, 0, 0) for i in range(count)]
    for i in range(0, len(ops), 500):
        await store.quota_flush(name, ops[i : i + 500], tombstone_ms=100, prune=PRUNE_BATCH)
    with Redis.from_url(redis_server.url) as plain:
        assert plain.zcard(f"sm:{{{name}}}:ke") == count  # tombstones
        await asyncio.sleep(0.2)
        assert (await quotas.usage(name)).stored_bytes == 0  # one flush drops them all
        assert plain.zcard(f"sm:{{{name}}}:ke") == 0
        assert not plain.exists(f"sm:{{{name}}}:kb")


def test_concurrent_writes_of_one_process_stay_within_the_quota(
    pair: tuple[ServerThread, ServerThread],
) -> None:
    # Regression: concurrent writes all passed the check before any was recorded.
    one, _ = pair
    name = tenant()
    size = 5000
    fits = MAX_BYTES // (size + 3 + 1 + O)
    with client_of(one, name) as a:
        memory = a.session("s")

        def put(i: int) -> bool:
            return _admitted(lambda: memory.set_json(f"k{i:02d}", blob(size), ttl=600))

        with ThreadPoolExecutor(32) as pool:
            admitted = sum(pool.map(put, range(3 * fits)))
        assert admitted <= fits
        assert a.get_limits().tenant_usage.stored_bytes <= MAX_BYTES


# How far a key a script sets from another's PTTL may end past it (Redis 6.2).
SCRIPT_CLOCK_SLACK_MS = 5


def test_bind_and_watch_admit_before_creating_keys(
    pair: tuple[ServerThread, ServerThread], redis_server: EmbeddedRedis
) -> None:
    # Regression: BindSchema and Watch on new sessions created keys (a day's TTL)
    # no quota admitted.
    one, two = pair
    name = tenant()
    with client_of(one, name) as a, client_of(two, name) as b:
        a.put_schema("sch", {"type": "object"})
        a.session("bound").bind_schema("sch")  # a new session: admitted
        for i in range(MAX_SESSIONS - 1):
            a.session(f"s{i}").set("k", "v", ttl=600)
        err = refused(lambda: b.session("late").bind_schema("sch"))
        assert err.metadata["quota"] == "sessions"
        assert tenant_keys(redis_server.url, name, "late") == []
        assert a.get_limits().tenant_usage.sessions == MAX_SESSIONS
        a.session("s0").bind_schema("sch")  # a live session: no admission needed
    store = RedisStore(AsyncRedis.from_url(redis_server.url), bucket="test-bucket")
    one.run(store.changes(name, "watched-never-written", 2**62))
    assert tenant_keys(redis_server.url, name, "watched-never-written") == []
    one.run(store.changes(name, "s1", 2**62))
    with Redis.from_url(redis_server.url) as plain:
        # The session's key first: a marker read later can only read lower. Redis
        # 6.2 reads the clock anew for each command of a script, so the marker
        # (SET PX from the counter's PTTL) may end a millisecond or two after the
        # counter: the bound is "not past it" give or take that (CI saw +1 ms).
        session_ttl = plain.pttl(f"sm:{{{name}|s1}}:n")
        marker = plain.pttl(f"sm:{{{name}|s1}}:wm")
        assert 0 < marker <= session_ttl + SCRIPT_CLOCK_SLACK_MS
