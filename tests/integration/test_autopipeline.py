"""The auto-pipelining Redis client against a real redis-server.

Concurrent commands of one event-loop tick share one connection and one write;
error replies, NOSCRIPT, timeouts, cancellation and a dead Redis each affect only
what they must. (Cluster routing is tested in test_cluster.py.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis import exceptions as rexc
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.maint_notifications import MaintNotificationsConfig

from sessionmemory_server.app import redis_client
from sessionmemory_server.config import Settings
from sessionmemory_server.embedded import EmbeddedRedis
from sessionmemory_server.stores.autopipeline import (
    AutoPipelineRedis,
    AutoPipelineRedisCluster,
    LuaScript,
)


def pipelined_client(
    url: str, name: str, *, cluster: bool = False, timeout: float = 2.0, **options: Any
) -> Any:
    """The client as app.redis_client builds it, with a name to find its connections."""
    cls = AutoPipelineRedisCluster if cluster else AutoPipelineRedis
    return cls.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        client_name=name,
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
        **options,
    )


@contextlib.asynccontextmanager
async def owned_client(url: str, name: str, **options: Any) -> AsyncIterator[Any]:
    """A connected client of the test's own (on a Cluster the slot table is known,
    so every command is pipelined), closed after it."""
    client = pipelined_client(url, name, **options)
    try:
        await client.ping()
        yield client
    finally:
        await client.aclose()


async def _connection_ids(plain: Redis, name: str) -> list[int]:
    return [int(c["id"]) for c in await plain.client_list() if c.get("name") == name]


# A script that keeps Redis busy for ~ARGV[1] ms (TIME is allowed in scripts).
_BUSY = """
local start = redis.call('TIME')
local until_us = start[1] * 1000000 + start[2] + ARGV[1] * 1000
repeat local now = redis.call('TIME') until now[1] * 1000000 + now[2] >= until_us
return 1
"""


@pytest.fixture
async def pipelined(redis_server: EmbeddedRedis) -> AsyncIterator[tuple[AutoPipelineRedis, str]]:
    name = f"ap-{uuid.uuid4().hex[:8]}"
    client = pipelined_client(redis_server.url, name)
    yield client, name
    await client.aclose()


async def _connections(plain: Redis, name: str) -> int:
    clients = await plain.client_list()
    return sum(1 for c in clients if c.get("name") == name)


async def _numbered(client: AutoPipelineRedis, count: int) -> str:
    """Set ``<prefix>:<i>`` to i for i below ``count``, concurrently; the prefix."""
    prefix = uuid.uuid4().hex
    await asyncio.gather(*(client.set(f"{prefix}:{i}", i) for i in range(count)))
    return prefix


def test_the_server_uses_it() -> None:
    plain = Settings(redis_url="redis://127.0.0.1:1/0")
    assert isinstance(redis_client(plain), AutoPipelineRedis)
    cluster = Settings(redis_url="redis://127.0.0.1:1/0", redis_cluster=True)
    assert isinstance(redis_client(cluster), AutoPipelineRedisCluster)


async def test_a_tick_of_commands_goes_out_on_one_connection(
    pipelined: tuple[AutoPipelineRedis, str], redis: Redis
) -> None:
    client, name = pipelined
    prefix = await _numbered(client, 200)
    replies = await asyncio.gather(*(client.get(f"{prefix}:{i}") for i in range(200)))
    assert replies == [str(i).encode() for i in range(200)]
    many = await asyncio.gather(
        *(client.mget([f"{prefix}:{i}", f"{prefix}:{i + 1}"]) for i in range(199))
    )
    assert many == [[str(i).encode(), str(i + 1).encode()] for i in range(199)]
    # Without pipelining 200 concurrent commands take 200 connections.
    assert await _connections(redis, name) == 1


async def test_an_error_reply_fails_only_its_own_command(
    pipelined: tuple[AutoPipelineRedis, str], redis: Redis
) -> None:
    client, _ = pipelined
    prefix = uuid.uuid4().hex
    await redis.hset(f"{prefix}:hash", "f", "v")
    await redis.set(f"{prefix}:s", "ok")
    replies = await asyncio.gather(
        client.get(f"{prefix}:s"),
        client.get(f"{prefix}:hash"),  # WRONGTYPE
        client.incr(f"{prefix}:s"),  # not an integer
        client.get(f"{prefix}:s"),
        return_exceptions=True,
    )
    assert replies[0] == replies[3] == b"ok"
    assert isinstance(replies[1], rexc.ResponseError)
    assert "WRONGTYPE" in str(replies[1])
    assert isinstance(replies[2], rexc.ResponseError)
    assert "not an integer" in str(replies[2])


async def test_an_argument_redis_cannot_take_fails_only_its_own_command(
    pipelined: tuple[AutoPipelineRedis, str], redis: Redis
) -> None:
    client, _ = pipelined
    prefix = uuid.uuid4().hex
    await redis.set(f"{prefix}:s", "ok")
    replies = await asyncio.gather(
        client.set(f"{prefix}:none", None),  # type: ignore[arg-type]
        client.get(f"{prefix}:s"),
        client.set(f"{prefix}:bad", "\udcff"),  # a lone surrogate: no UTF-8 for it
        client.set(f"{prefix}:float", 0.1 + 0.2),
        return_exceptions=True,
    )
    assert isinstance(replies[0], rexc.DataError), replies[0]
    assert replies[1] == b"ok"
    assert isinstance(replies[2], rexc.DataError | UnicodeError), replies[2]
    assert replies[3] is True
    assert await redis.get(f"{prefix}:float") == b"0.30000000000000004"  # as redis-py packs it
    assert await redis.exists(f"{prefix}:none", f"{prefix}:bad") == 0


async def test_a_flushed_script_is_reloaded_for_every_caller(
    pipelined: tuple[AutoPipelineRedis, str], redis: Redis
) -> None:
    client, _ = pipelined
    script = LuaScript(client, f"-- {uuid.uuid4().hex}\nreturn ARGV[1] .. KEYS[1]")
    assert await script(keys=["k"], args=["a"]) == b"ak"
    await redis.script_flush()
    # Every EVALSHA of the tick gets NOSCRIPT, each reloads and runs once.
    replies = await asyncio.gather(*(script(keys=[f"k{i}"], args=["a"]) for i in range(20)))
    assert replies == [f"ak{i}".encode() for i in range(20)]


async def test_a_stalled_redis_times_out_every_waiting_command_then_recovers(
    redis_server: EmbeddedRedis, redis: Redis
) -> None:
    name = f"ap-{uuid.uuid4().hex[:8]}"
    client = pipelined_client(redis_server.url, name, timeout=0.3)
    try:
        await client.set("ap-stall", "v")
        await redis.client_pause(1500)
        start = time.monotonic()
        replies = await asyncio.gather(
            *(client.get("ap-stall") for _ in range(10)), return_exceptions=True
        )
        took = time.monotonic() - start
        assert all(isinstance(r, rexc.TimeoutError) for r in replies), replies
        assert took < 1.2, f"timed out after {took:.2f}s, not the 0.3s socket timeout"
        await redis.client_unpause()
        assert await client.get("ap-stall") == b"v"
    finally:
        await redis.client_unpause()
        await client.aclose()


async def test_a_caller_that_stops_waiting_does_not_desync_the_connection(
    pipelined: tuple[AutoPipelineRedis, str], redis: Redis
) -> None:
    client, name = pipelined
    prefix = await _numbered(client, 50)
    await redis.client_pause(300)
    # Half the callers give up while their replies are on the way.
    slow = [asyncio.ensure_future(client.get(f"{prefix}:{i}")) for i in range(50)]
    await asyncio.sleep(0.05)
    for task in slow[::2]:
        task.cancel()
    kept = await asyncio.gather(*slow[1::2])
    assert kept == [str(i).encode() for i in range(1, 50, 2)]
    # The next tick reads its own replies, on the same connection.
    again = await asyncio.gather(*(client.get(f"{prefix}:{i}") for i in range(50)))
    assert again == [str(i).encode() for i in range(50)]
    assert await _connections(redis, name) == 1


async def test_a_dead_redis_fails_the_batch_and_a_restarted_one_serves_again(
    tmp_path: Path,
) -> None:
    with EmbeddedRedis(tmp_path / "redis") as server:
        client = pipelined_client(server.url, "ap-dead", timeout=0.5)
        try:
            await client.set("k", "v")
            server.stop()
            start = time.monotonic()
            replies: list[Any] = await asyncio.gather(
                *(client.get("k") for _ in range(10)), return_exceptions=True
            )
            assert all(isinstance(r, rexc.ConnectionError) for r in replies), replies
            assert time.monotonic() - start < 2
            server.start()
            assert await client.get("k") in (b"v", None)  # persisted or not, it answers
            await client.set("k", "w")
            assert await client.get("k") == b"w"
        finally:
            await client.aclose()


async def test_blocking_commands_take_their_own_connection(
    pipelined: tuple[AutoPipelineRedis, str], redis: Redis
) -> None:
    client, _ = pipelined
    key = f"ap-list-{uuid.uuid4().hex}"
    waiting = asyncio.ensure_future(client.blpop([key], timeout=2))
    await asyncio.sleep(0.1)
    # A GET issued while BLPOP blocks is not stuck behind it.
    start = time.monotonic()
    assert await client.get(f"{key}-other") is None
    assert time.monotonic() - start < 0.5
    await redis.rpush(key, "x")
    assert await waiting == (key.encode(), b"x")


async def test_a_busy_redis_times_out_late_commands_but_keeps_the_connection(
    redis_server: EmbeddedRedis, redis: Redis
) -> None:
    """Commands of 60 ms, 20 at once, 0.5 s timeout: late ones fail, the stream stays."""
    name = f"ap-{uuid.uuid4().hex[:8]}"
    async with owned_client(redis_server.url, name, timeout=0.5) as client:
        busy = LuaScript(client, _BUSY)
        await busy(keys=[], args=[1])
        [before] = await _connection_ids(redis, name)
        start = time.monotonic()
        replies = await asyncio.gather(
            *(busy(keys=[], args=[60]) for _ in range(20)), return_exceptions=True
        )
        took = time.monotonic() - start
        assert all(r == 1 or isinstance(r, rexc.TimeoutError) for r in replies), replies
        assert any(isinstance(r, rexc.TimeoutError) for r in replies)
        assert took < 1.5, f"answered after {took:.2f} s with a 0.5 s timeout"
        assert await client.get("ap-busy-after") is None
        assert await _connection_ids(redis, name) == [before], "the connection was dropped"


async def test_commands_cancelled_before_they_are_written_never_run(
    pipelined: tuple[AutoPipelineRedis, str], redis: Redis
) -> None:
    client, _ = pipelined
    key = f"ap-cancelled-{uuid.uuid4().hex}"
    tasks = [asyncio.ensure_future(client.incr(key)) for _ in range(10)]
    await asyncio.sleep(0)  # each has queued its INCR; the tick's write has not run
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert await client.incr(key) == 1
    assert await redis.get(key) == b"1"


async def test_a_client_encoding_other_than_utf8_is_kept(redis_server: EmbeddedRedis) -> None:
    async with owned_client(redis_server.url, "ap-latin1", encoding="latin-1") as client:
        key = f"ap-latin1-{uuid.uuid4().hex}"
        await client.set(key, "é")
        assert await client.get(key) == b"\xe9"  # as redis-py packs it


async def test_a_redis_that_stops_reading_does_not_fill_memory(tmp_path: Path) -> None:
    """Commands Redis does not read fail at once past the unsent-bytes bound."""
    with EmbeddedRedis(tmp_path / "redis") as server:
        async with owned_client(server.url, "ap-unread", timeout=3) as client:
            mux = client._mux
            assert mux is not None
            mux.max_unsent_bytes = 1024 * 1024
            value = "x" * (512 * 1024)
            assert server.process is not None
            os.kill(server.process.pid, signal.SIGSTOP)
            try:
                writes = [asyncio.ensure_future(client.set(f"k{i}", value)) for i in range(64)]
                for _ in range(40):  # a write per tick until the bound is reached
                    await asyncio.sleep(0.01)
                    if any(w.done() for w in writes):
                        break
                refused = [w for w in writes if w.done()]
                assert refused, "every command was buffered"
                assert all(isinstance(w.exception(), rexc.ConnectionError) for w in refused)
                assert "not reading" in str(refused[0].exception())
                buffered = client._mux._connection._writer.transport.get_write_buffer_size()
                assert buffered < 4 * 1024 * 1024
            finally:
                os.kill(server.process.pid, signal.SIGCONT)
            await asyncio.gather(*writes, return_exceptions=True)
            assert await client.set("after", "v") is True
