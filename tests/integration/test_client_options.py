"""Per-call timeouts and the client's retry log, against real servers.

A stopped Redis makes calls wait (SIGSTOP: the server's 0.5 s Redis timeout is the
only thing that ends them) or fail at once with a retryable UNAVAILABLE (stopped);
an address nobody listens on fails every attempt at the transport.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from sessionmemory import (
    AsyncMemoryClient,
    DeadlineExceededError,
    MemoryClient,
    ServiceUnavailableError,
)
from sessionmemory_server.embedded import EmbeddedRedis, EmbeddedS3, free_port

from ..conftest import ServerThread, start_server

Stack = tuple[EmbeddedRedis, ServerThread, str]


@pytest.fixture
def own_stack(tmp_path: Path, s3_server: EmbeddedS3) -> Iterator[Stack]:
    """A server on a Redis of the test's own, which it may stop."""
    redis = EmbeddedRedis(tmp_path / "redis").start()
    server = start_server(redis.url, s3_server)
    try:
        yield redis, server, server.create_key("acme")
    finally:
        server.stop()
        redis.stop()


def _retry_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "sessionmemory"]


# --- per-call timeouts ------------------------------------------------------------


def test_a_per_call_timeout_bounds_calls_that_must_wait(own_stack: Stack) -> None:
    redis, server, key = own_stack
    assert redis.process is not None
    with MemoryClient(server.address, api_key=key, timeout=30, upload_timeout=60) as client:
        memory = client.session(f"t-{uuid.uuid4().hex}")
        memory.set("k", "v")
        memory.set_file("doc", b"hello", ttl=60, mime="text/plain")
        handle = memory.get_file("doc")
        assert handle is not None
        os.kill(redis.process.pid, signal.SIGSTOP)
        try:
            calls = {
                "get": lambda: memory.get("k", timeout=0.2),
                "set_many": lambda: memory.set_many({"a": 1}, timeout=0.2),
                "set_file": lambda: memory.set_file(
                    "doc2", b"hi", ttl=60, mime="text/plain", timeout=0.2
                ),
                "read": lambda: handle.to_raw(timeout=0.2),
                "get_limits": lambda: client.get_limits(timeout=0.2),
            }
            for name, call in calls.items():
                started = time.monotonic()
                with pytest.raises(DeadlineExceededError):
                    call()
                elapsed = time.monotonic() - started
                # The call's 0.2 s, not the client's 30 s.
                assert 0.15 < elapsed < 2, (name, elapsed)
        finally:
            os.kill(redis.process.pid, signal.SIGCONT)
        assert memory.get("k", timeout=5) == "v"
        assert handle.to_raw(timeout=5) == b"hello"


async def test_an_async_per_call_timeout_bounds_calls_that_must_wait(own_stack: Stack) -> None:
    redis, server, key = own_stack
    assert redis.process is not None
    async with AsyncMemoryClient(server.address, api_key=key, timeout=30) as client:
        memory = client.session(f"t-{uuid.uuid4().hex}")
        await memory.set("k", "v")
        os.kill(redis.process.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(DeadlineExceededError):
                await memory.get("k", timeout=0.2)
            assert 0.15 < time.monotonic() - started < 2
        finally:
            os.kill(redis.process.pid, signal.SIGCONT)
        assert await memory.get("k", "", timeout=5) == "v"


def test_a_watch_with_a_timeout_ends_with_deadline_exceeded(
    server: ServerThread, api_key: str
) -> None:
    with MemoryClient(server.address, api_key=api_key) as client:
        memory = client.session(f"w-{uuid.uuid4().hex}")
        memory.set("k", 1)
        started = time.monotonic()
        with memory.watch(after_revision=0, timeout=0.5) as changes:
            assert next(changes).key == "k"  # the replay comes within the deadline
            with pytest.raises(DeadlineExceededError):
                next(changes)  # nothing else happens: the deadline ends the stream
        assert 0.4 < time.monotonic() - started < 3


async def test_an_async_watch_with_a_timeout_ends_with_deadline_exceeded(
    server: ServerThread, api_key: str
) -> None:
    async with AsyncMemoryClient(server.address, api_key=api_key) as client:
        memory = client.session(f"w-{uuid.uuid4().hex}")
        started = time.monotonic()
        async with memory.watch(timeout=0.5) as changes:
            with pytest.raises(DeadlineExceededError):
                await anext(changes)
        assert 0.4 < time.monotonic() - started < 3


def test_a_timeout_must_be_positive(server: ServerThread, api_key: str) -> None:
    with MemoryClient(server.address, api_key=api_key) as client:
        with pytest.raises(ValueError, match="timeout=0: a timeout is a positive number"):
            client.session("s").get("k", timeout=0)
        with pytest.raises(ValueError, match="timeout=-1"):
            client.session("s").watch(timeout=-1)


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_a_per_call_timeout_covers_the_retries(
    flavour: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Nobody listens: every attempt fails at once, and retries stop at the call's deadline."""
    caplog.set_level(logging.DEBUG, logger="sessionmemory")
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(ServiceUnavailableError):
        if flavour == "sync":
            with MemoryClient(address, api_key="smk_a_b", timeout=60, max_attempts=50) as sync:
                await asyncio.to_thread(sync.session("s").get, "k", timeout=0.4)
        else:
            async with AsyncMemoryClient(
                address, api_key="smk_a_b", timeout=60, max_attempts=50
            ) as aio:
                await aio.session("s").get("k", timeout=0.4)
    assert time.monotonic() - started < 1.0  # not 60 s, not 50 attempts
    records = _retry_records(caplog)
    retries = [r for r in records if r.backoff_seconds is not None]  # type: ignore[attr-defined]
    assert len(retries) >= 2, [r.getMessage() for r in records]
    assert records[-1].backoff_seconds is None  # type: ignore[attr-defined]
    assert "giving up" in records[-1].getMessage()
    assert all(r.reason == "-" and r.status == "UNAVAILABLE" for r in records)  # type: ignore[attr-defined]


# --- the retry log -------------------------------------------------------------------


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_retries_are_logged_at_debug_without_secrets(
    own_stack: Stack, flavour: str, caplog: pytest.LogCaptureFixture
) -> None:
    redis, server, key = own_stack
    session_id = f"secret-conversation-{uuid.uuid4().hex}"
    value = f"secret-value-{uuid.uuid4().hex}"
    sync = MemoryClient(server.address, api_key=key, timeout=5, max_attempts=3)
    aio = AsyncMemoryClient(server.address, api_key=key, timeout=5, max_attempts=3)
    try:
        if flavour == "sync":
            memory = sync.session(session_id)
            memory.set("k", value)
            await asyncio.to_thread(redis.stop)
            caplog.set_level(logging.DEBUG, logger="sessionmemory")
            with pytest.raises(ServiceUnavailableError):
                await asyncio.to_thread(memory.get, "k")
        else:
            amemory = aio.session(session_id)
            await amemory.set("k", value)
            await asyncio.to_thread(redis.stop)
            caplog.set_level(logging.DEBUG, logger="sessionmemory")
            with pytest.raises(ServiceUnavailableError):
                await amemory.get("k")
    finally:
        sync.close()
        await aio.close()
    records = _retry_records(caplog)
    # Two retries after the server's RetryInfo (0.2 s), then the third attempt gives up.
    assert [(r.levelno, r.rpc_method, r.attempt, r.status, r.reason, r.backoff_seconds)  # type: ignore[attr-defined]
            for r in records] == [
        (logging.DEBUG, "Get", 1, "UNAVAILABLE", "BACKEND_UNAVAILABLE", 0.2),
        (logging.DEBUG, "Get", 2, "UNAVAILABLE", "BACKEND_UNAVAILABLE", 0.2),
        (logging.DEBUG, "Get", 3, "UNAVAILABLE", "BACKEND_UNAVAILABLE", None),
    ]  # fmt: skip
    assert records[0].getMessage() == (
        "Get attempt 1 failed with UNAVAILABLE (BACKEND_UNAVAILABLE); retrying in 0.200 s"
    )
    secret = key.split("_", 2)[2]
    for record in records:
        text = f"{record.getMessage()} {vars(record)}"
        for leak in (secret, session_id, value):
            assert leak not in text
