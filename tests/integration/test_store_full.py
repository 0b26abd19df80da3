"""Redis over maxmemory: every write is refused cleanly (STORE_FULL), space can be freed.

Runs on every Redis-compatible server installed (Redis 6.2, Redis 7, Valkey 9):
Redis checks maxmemory only at a script's first deny-oom command, so a script
whose first write is not deny-oom (ZREMRANGEBYSCORE) slips past the limit.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from sessionmemory import LimitExceededError, MemoryClient
from sessionmemory_server.embedded import EmbeddedRedis, EmbeddedS3, redis_server_binaries

from ..conftest import ServerThread, start_server
from ..samples import SAMPLES

# Room for a little more than 500 values of 5 KiB (one full session) and their
# quota bookkeeping (quotas.py), then Redis is full.
HEADROOM = 4 * 1024 * 1024
BLOB = "x" * 5000
# How far past maxmemory the last admitted write may take Redis (see below).
OVERSHOOT = 256 * 1024


@pytest.fixture(params=sorted(redis_server_binaries()))
def small_redis(
    request: pytest.FixtureRequest, tmp_path: Path, s3_server: EmbeddedS3
) -> Iterator[tuple[redis.Redis, ServerThread, str]]:
    server_redis = EmbeddedRedis(
        tmp_path / "redis", binary=redis_server_binaries()[request.param]
    ).start()
    plain = redis.Redis(port=server_redis.port)
    server = start_server(server_redis.url, s3_server)
    try:
        key = server.create_key("acme")
        used = int(plain.info("memory")["used_memory"])
        plain.config_set("maxmemory", used + HEADROOM)
        plain.config_set("maxmemory-policy", "noeviction")
        yield plain, server, key
    finally:
        server.stop()
        plain.close()
        server_redis.stop()


def _store_full(call: Any) -> None:
    with pytest.raises(LimitExceededError) as info:
        call()
    assert info.value.code == "STORE_FULL", info.value
    assert info.value.retry_after is None


def test_writes_stop_at_maxmemory_and_resume_after_deletes(
    small_redis: tuple[redis.Redis, ServerThread, str],
) -> None:
    plain, server, key = small_redis
    maxmemory = int(plain.config_get("maxmemory")["maxmemory"])
    with MemoryClient(server.address, api_key=key, timeout=5, max_attempts=1) as client:
        client.put_schema("full", {"type": "object"})
        # Fill: 5 KiB JSON values in sessions of 500 keys, until the first refusal.
        written = 0
        deadline = time.monotonic() + 60
        refused: LimitExceededError | None = None
        while refused is None and written < 5000 and time.monotonic() < deadline:
            memory = client.session(f"fill-{written // 500}")
            try:
                memory.set_json(f"k{written % 500}", [BLOB], ttl=3600)
            except LimitExceededError as exc:
                refused = exc
            else:
                written += 1
        assert refused is not None, f"no refusal after {written} writes"
        assert refused.code == "STORE_FULL"
        assert written > 100  # it did fill first
        used = int(plain.info("memory")["used_memory"])
        # Redis admits a command while it is under maxmemory, and that one command
        # may grow a hash table (a rehash doubles it: 64 KiB for 4,096 keys) or
        # a client buffer past the limit; beyond that slack nothing more lands.
        assert used <= maxmemory + OVERSHOOT, f"Redis grew to {used} over maxmemory {maxmemory}"

        # Keep it firmly over the limit (a refused call's own buffers, once freed,
        # can leave it a few bytes under), so every check below sees a full Redis.
        plain.config_set("maxmemory", used - 256 * 1024)

        # Every write path is refused, and the refusal writes nothing.
        memory = client.session("fill-0")
        probe = client.session("probe")
        before = memory.get_entry("k0")
        _store_full(lambda: memory.set("k0", "new"))
        _store_full(lambda: memory.set_json("k0", {"a": 1}, ttl=60))
        _store_full(lambda: probe.set_many({"a": "1", "b": 2}))
        _store_full(lambda: probe.increment("n", 1))
        _store_full(lambda: probe.increment("n", 1, request_id="turn-1"))
        _store_full(lambda: probe.set_file("f", SAMPLES["text/plain"], ttl=60, mime="text/plain"))
        _store_full(lambda: probe.update({"a": {"b": 1}}, ttl=60))
        _store_full(lambda: memory.update({"k0": {"a": 1}}, ttl=60))
        _store_full(lambda: client.put_schema("another", {"type": "object"}))
        _store_full(lambda: probe.bind_schema("full"))
        assert memory.get_entry("k0") == before
        assert probe.list() == []
        assert plain.keys("sm:{acme|probe}:*") == []

        # Reads and Touch still work.
        assert memory.get_json("k0") == [BLOB]
        assert len(memory.list()) == 500
        assert memory.touch(["k0", "k1"], ttl=600) == 2
        # A patch that only deletes frees space, so it goes through.
        assert memory.update({"k4": None}, ttl=60) > 0
        assert memory.get("k4") is None

        # Delete and Clear work, and free space: writes succeed again.
        assert memory.delete(["k2", "k3"]) == 2
        for session in range(written // 500 + 1):
            client.session(f"fill-{session}").clear()
        probe.set("k", "v")
        assert probe.get("k") == "v"
        assert probe.increment("n", 2) == 2


def test_every_redis_version_we_support_is_tested() -> None:
    # `make install` brings all three; a missing one would silently shrink the matrix above.
    assert set(redis_server_binaries()) == {"redis-6.2", "redis-7", "valkey-9"}


def test_collection_goes_on_while_redis_is_full(
    small_redis: tuple[redis.Redis, ServerThread, str],
) -> None:
    plain, _, _ = small_redis
    gc_key = "sm:gc:test-bucket"
    # An orphan entry, as a failed release leaves it, due in a moment.
    plain.zadd(gc_key, {"files/acme/orphan\t": int(time.time() * 1000) + 1000})
    # Put Redis over its maxmemory and keep it there.
    used = int(plain.info("memory")["used_memory"])
    plain.config_set("maxmemory", used - 256 * 1024)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        plain.set("probe", "x")
    deadline = time.monotonic() + 10
    while plain.zscore(gc_key, "files/acme/orphan\t") is not None:
        assert time.monotonic() < deadline, "the collector stalled while Redis was full"
        time.sleep(0.1)
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        plain.set("probe", "x")
