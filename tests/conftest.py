"""Fixtures: a real redis-server and the real gRPC server (build_server) on free ports."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from redis.asyncio import Redis

from sessionmemory import AsyncMemoryClient, MemoryClient
from sessionmemory_server.app import Built, build_server
from sessionmemory_server.auth import ApiKeys
from sessionmemory_server.config import Settings
from sessionmemory_server.embedded import EmbeddedRedis, EmbeddedS3
from sessionmemory_server.testing import stack_settings


class ServerThread:
    """The production server (build_server) on its own event loop in a thread.

    Sync clients block their thread, so the server cannot share the test's loop.
    """

    def __init__(self, settings: Settings) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.built: Built = self.run(build_server(settings))
        self.address = f"127.0.0.1:{self.built.port}"

    def run(self, coro: Any, timeout: float = 30) -> Any:
        """Run a coroutine on the server's loop and wait for its result."""
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout)

    def create_key(self, tenant: str) -> str:
        """Create an API key through the server's own Redis client."""
        return str(self.run(ApiKeys(self.built.redis).create(tenant)))

    def stop(self, grace: float | None = 1.0) -> None:
        """Stop the server and its loop."""
        self.run(self.built.stop(grace))
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


def start_server(redis_url: str, s3: EmbeddedS3, **overrides: Any) -> ServerThread:
    """Start a server for a Redis URL and an S3 server on a free port."""
    fast_failing: dict[str, Any] = {
        "redis_timeout_seconds": 0.5,
        "s3_timeout_seconds": 2.0,
        "upload_idle_seconds": 2.0,
    }
    return ServerThread(stack_settings(redis_url, s3, **{**fast_failing, **overrides}))


def run_in_thread(coro: Any, timeout: float = 30) -> Any:
    """Run a coroutine to completion on a fresh loop in its own thread.

    ``asyncio.run`` on the main thread would unset the loop that the session's
    async fixtures share.
    """
    done: Future[Any] = Future()

    def run() -> None:
        try:
            done.set_result(asyncio.run(coro))
        except BaseException as exc:  # handed to the caller
            done.set_exception(exc)

    threading.Thread(target=run, daemon=True).start()
    return done.result(timeout)


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def cli_env(redis_url: str, s3: EmbeddedS3, address: str, **settings: object) -> dict[str, str]:
    """Environment of a `session-memory serve` process over the test Redis and S3."""
    env = {
        **os.environ,
        "SESSION_MEMORY_LISTEN": address,
        "SESSION_MEMORY_REDIS_URL": redis_url,
        "SESSION_MEMORY_S3_ENDPOINT": s3.endpoint,
        "SESSION_MEMORY_S3_ACCESS_KEY": s3.access_key,
        "SESSION_MEMORY_S3_SECRET_KEY": s3.secret_key,
        "SESSION_MEMORY_S3_BUCKET": "test-bucket",
        "SESSION_MEMORY_LOG_LEVEL": "WARNING",
    }
    env.update((f"SESSION_MEMORY_{k.upper()}", str(v)) for k, v in settings.items())
    return env


def serve_cli(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start `session-memory serve` as its own process and wait until it accepts calls."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "sessionmemory_server.cli", "serve"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Try the port every half second (grpc's default backoff grows to 20 s and
    # more, missing a server that came up slowly on a busy machine).
    options = [("grpc.initial_reconnect_backoff_ms", 200), ("grpc.max_reconnect_backoff_ms", 500)]
    with grpc.insecure_channel(env["SESSION_MEMORY_LISTEN"], options=options) as channel:
        grpc.channel_ready_future(channel).result(timeout=60)
    return proc


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """One real redis-server for the whole run."""
    with EmbeddedRedis(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedS3]:
    """One real S3 server (SeaweedFS) with checked credentials for the whole run."""
    with EmbeddedS3(
        tmp_path_factory.mktemp("s3"), access_key="test-access", secret_key=uuid.uuid4().hex
    ) as server:
        yield server


@pytest.fixture(scope="session")
def server(redis_server: EmbeddedRedis, s3_server: EmbeddedS3) -> Iterator[ServerThread]:
    """The real gRPC server, shared by the run."""
    srv = start_server(redis_server.url, s3_server)
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def api_key(server: ServerThread) -> str:
    """An API key of tenant "acme"."""
    return server.create_key("acme")


@pytest.fixture
def sid() -> str:
    """A fresh session id per test."""
    return f"conv-{uuid.uuid4().hex}"


@pytest.fixture
async def redis(redis_server: EmbeddedRedis) -> AsyncIterator[Redis]:
    """A plain Redis client to look at what the server stored."""
    client = Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


@dataclass
class AsyncView:
    """Gives a sync Session the async Session's shape, so one suite runs on both."""

    target: Any

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.target, name)
        if not callable(attr):
            return attr

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(attr, *args, **kwargs)

        return call


MemoryFactory = Callable[..., Any]


@pytest.fixture(params=["sync", "async"])
async def make_memory(
    request: pytest.FixtureRequest, server: ServerThread, api_key: str
) -> AsyncIterator[MemoryFactory]:
    """Factory of sessions of the sync or the async client, with async methods."""
    clients: list[Any] = []

    def factory(session_id: str, *, key: str | None = api_key, address: str | None = None) -> Any:
        addr = address or server.address
        if request.param == "sync":
            sync = MemoryClient(addr, api_key=key, timeout=5)
            clients.append(sync)
            return AsyncView(sync.session(session_id))
        aio = AsyncMemoryClient(addr, api_key=key, timeout=5)
        clients.append(aio)
        return aio.session(session_id)

    yield factory
    for client in clients:
        if isinstance(client, AsyncMemoryClient):
            await client.close()
        else:
            client.close()


@pytest.fixture
async def memory(make_memory: MemoryFactory, sid: str) -> Any:
    """A session of tenant "acme" with a fresh id, for the sync and the async client.

    Made on the tests' event loop: grpc.aio binds a channel to the running loop, and
    outside one it asks for the main thread's current loop, which is gone once anything
    in the process (the CLI's commands, run in-process by test_cli) used asyncio.run().
    """
    return make_memory(sid)
