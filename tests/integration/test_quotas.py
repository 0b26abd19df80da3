"""Tenant quotas against two real server processes sharing one Redis (quotas.py).

Live sessions, stored bytes and uploads in progress: a call over a quota is
RESOURCE_EXHAUSTED QUOTA_EXCEEDED (no RetryInfo) and changes nothing, on either
process; freeing usage lets calls in again; another tenant is never affected.
Each test uses tenants of its own, so what the rest of the run stores does not count.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from sessionmemory import LimitExceededError, MemoryClient
from sessionmemory_server.embedded import EmbeddedRedis, EmbeddedS3
from sessionmemory_server.quotas import FLUSH_SECONDS, HEADROOM_MIN_MS
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
        # Clear frees a place at once (with the next batch).
        a.session("s1").clear()
        assert wait_until(lambda: _admitted(lambda: b.session("s5").set("k", "v")), 5)
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
            "actual": str(62_000 + 5000 + 2 * O),
        }
        refused(lambda: memory.set_file("more", b"z" * 10_000, ttl=600, mime="text/plain"))
        # ... and on the other process once the bookkeeping is shared (the lag).
        time.sleep(SETTLE)
        refused(lambda: elsewhere.set_json("v", blob(5000), ttl=600))
        assert [e.key for e in memory.list()] == ["big"]
        assert elsewhere.get("v") is None
        assert tenant_keys(redis_server.url, name, "t") == []
        # Small writes still fit (values count their payload bytes, plus O each).
        memory.set_json("small", blob(3000), ttl=600)
        assert a.get_limits().tenant_usage.stored_bytes == 65_000 + 2 * O
        # Another tenant is not affected.
        other.session("s").set_file("big", b"x" * 62_000, ttl=600, mime="text/plain")
        # Deleting frees the space, for both processes, within a flush interval or two.
        memory.delete(["big"])
        assert wait_until(
            lambda: _admitted(lambda: elsewhere.set_json("v", blob(5000), ttl=600)), 5
        )
        assert memory.set_file("more", b"z" * 10_000, ttl=600, mime="text/plain").size_bytes
        assert wait_until(lambda: a.get_limits().tenant_usage.stored_bytes == 18_000 + 3 * O, 5)
        # Expired values free their bytes too; Clear frees a whole session.
        memory.set_json("brief", blob(5000), ttl=2)
        assert wait_until(lambda: b.get_limits().tenant_usage.stored_bytes == 23_000 + 4 * O, 5)
        assert wait_until(lambda: a.get_limits().tenant_usage.stored_bytes == 18_000 + 3 * O, 10)
        memory.clear()
        assert wait_until(lambda: a.get_limits().tenant_usage.stored_bytes == 5000 + O, 5)


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
