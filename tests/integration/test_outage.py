"""Redis stopped mid-test: UNAVAILABLE (never a hang), then recovery when it is back.

A Redis restart costs no call once Redis is back: stale pooled connections are replaced.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from sessionmemory import AsyncMemoryClient, MemoryApiError, MemoryClient, ServiceUnavailableError
from sessionmemory_server.embedded import EmbeddedRedis, EmbeddedS3

from ..conftest import ServerThread, start_server


@pytest.fixture
def own_stack(
    tmp_path: Path, s3_server: EmbeddedS3
) -> Iterator[tuple[EmbeddedRedis, ServerThread, str]]:
    redis = EmbeddedRedis(tmp_path / "redis", persist=True).start()
    server = start_server(redis.url, s3_server)
    try:
        yield redis, server, server.create_key("acme")
    finally:
        server.stop()
        redis.stop()


def test_redis_down_is_unavailable_then_recovers(
    own_stack: tuple[EmbeddedRedis, ServerThread, str],
) -> None:
    redis, server, key = own_stack
    with MemoryClient(server.address, api_key=key, timeout=3, max_attempts=1) as client:
        memory = client.session("outage")
        memory.set("k", "before")
        redis.stop()
        started = time.monotonic()
        for call in (lambda: memory.get("k"), lambda: memory.set("k", "x"), memory.list):
            with pytest.raises(ServiceUnavailableError) as info:
                call()
            assert info.value.status == grpc.StatusCode.UNAVAILABLE
            assert info.value.code == "BACKEND_UNAVAILABLE"
            assert info.value.retry_after is not None
        assert time.monotonic() - started < 3, "failing fast, not hanging"
        # Same port, same data dir: the server reconnects on its own.
        redis.start()
        memory.set("k", "after")
        assert memory.get("k") == "after"


def test_hung_redis_times_out_as_unavailable(
    own_stack: tuple[EmbeddedRedis, ServerThread, str],
) -> None:
    redis, server, key = own_stack
    assert redis.process is not None
    with MemoryClient(server.address, api_key=key, timeout=5, max_attempts=1) as client:
        memory = client.session("hang")
        memory.set("k", "v")
        os.kill(redis.process.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(ServiceUnavailableError):
                memory.get("k")
            elapsed = time.monotonic() - started
            assert elapsed < 2.5, f"the 0.5 s Redis timeout bounds the call, took {elapsed:.1f}s"
        finally:
            os.kill(redis.process.pid, signal.SIGCONT)
        assert memory.get("k") == "v"


def test_client_retries_idempotent_calls_until_redis_is_back(
    own_stack: tuple[EmbeddedRedis, ServerThread, str],
) -> None:
    redis, server, key = own_stack
    with MemoryClient(server.address, api_key=key, timeout=10, max_attempts=8) as client:
        memory = client.session("retry")
        memory.set("k", "v")
        assert redis.process is not None
        os.kill(redis.process.pid, signal.SIGSTOP)

        def resume() -> None:
            time.sleep(0.6)
            os.kill(redis.process.pid, signal.SIGCONT)  # type: ignore[union-attr]

        import threading

        threading.Thread(target=resume).start()
        assert memory.get("k") == "v"  # failed attempts were retried with backoff


async def _calls(client: AsyncMemoryClient, n: int) -> list[BaseException | None]:
    """``n`` concurrent calls, half Gets and half Sets (which are never retried)."""
    memory = client.session("restart")

    async def one(i: int) -> BaseException | None:
        try:
            if i % 2:
                await memory.set(f"k{i % 10}", "v")
            else:
                assert await memory.get(f"k{i % 10}", "") == "v"
        except MemoryApiError as exc:
            return exc
        return None

    return list(await asyncio.gather(*(one(i) for i in range(n))))


@pytest.mark.parametrize("quiet_seconds", [0.2, 2.0])
async def test_redis_restart_then_200_concurrent_calls_see_no_error(
    own_stack: tuple[EmbeddedRedis, ServerThread, str], quiet_seconds: float
) -> None:
    redis, server, key = own_stack
    async with AsyncMemoryClient(server.address, api_key=key, timeout=5, max_attempts=1) as client:
        memory = client.session("restart")
        for i in range(10):
            await memory.set(f"k{i}", "v")
        # Fill the server's Redis pool with many connections, then restart Redis under them.
        assert [e for e in await _calls(client, 200) if e is not None] == []
        await asyncio.to_thread(redis.stop)
        await asyncio.to_thread(redis.start)
        await asyncio.sleep(quiet_seconds)
        errors = [e for e in await _calls(client, 200) if e is not None]
        assert errors == [], f"{len(errors)} of 200 failed, first: {errors[0]!r}"
