"""Readiness tells the truth, against real servers: the service's health flips to
NOT_SERVING within seconds of Redis or the object store going away and back when
it returns, while liveness ("") stays SERVING; neither needs an API key."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from sessionmemory import MemoryClient, ServiceUnavailableError
from sessionmemory_server.app import SERVICE_NAME
from sessionmemory_server.embedded import EmbeddedRedis, EmbeddedS3

from ..conftest import ServerThread, start_server, wait_until

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[EmbeddedRedis, EmbeddedS3, ServerThread]]:
    redis = EmbeddedRedis(tmp_path / "redis", persist=True).start()
    s3 = EmbeddedS3(tmp_path / "s3", access_key="test", secret_key=uuid.uuid4().hex).start()
    server = start_server(
        redis.url, s3, readiness_interval_seconds=0.5, readiness_timeout_seconds=0.5
    )
    try:
        yield redis, s3, server
    finally:
        server.stop()
        s3.stop()
        redis.stop()


def status(server: ServerThread, service: str) -> int:
    with grpc.insecure_channel(server.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return int(stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status)


def test_readiness_follows_redis(stack: tuple[EmbeddedRedis, EmbeddedS3, ServerThread]) -> None:
    redis, _, server = stack
    assert status(server, SERVICE_NAME) == SERVING
    assert status(server, "") == SERVING
    redis.stop()
    started = time.monotonic()
    assert wait_until(lambda: status(server, SERVICE_NAME) == NOT_SERVING, timeout=10)
    assert time.monotonic() - started < 5, "readiness flips within seconds"
    assert status(server, "") == SERVING  # alive: it answers, with UNAVAILABLE
    redis.start()
    assert wait_until(lambda: status(server, SERVICE_NAME) == SERVING, timeout=10)


def test_a_failed_call_makes_readiness_check_at_once(tmp_path: Path, s3_server: EmbeddedS3) -> None:
    redis = EmbeddedRedis(tmp_path / "redis", persist=True).start()
    # Checks every 60 s: only a failed call's nudge can flip it within the test.
    server = start_server(
        redis.url, s3_server, readiness_interval_seconds=60, readiness_timeout_seconds=0.5
    )
    try:
        key = server.create_key("acme")
        assert status(server, SERVICE_NAME) == SERVING
        with MemoryClient(server.address, api_key=key, timeout=3, max_attempts=1) as client:
            redis.stop()
            assert status(server, SERVICE_NAME) == SERVING  # nothing noticed yet
            with pytest.raises(ServiceUnavailableError):
                client.session("s").get("k")
        assert wait_until(lambda: status(server, SERVICE_NAME) == NOT_SERVING, timeout=5)
    finally:
        server.stop()
        redis.stop()


def test_readiness_follows_the_object_store(
    stack: tuple[EmbeddedRedis, EmbeddedS3, ServerThread],
) -> None:
    _, s3, server = stack
    assert status(server, SERVICE_NAME) == SERVING
    s3.stop()
    assert wait_until(lambda: status(server, SERVICE_NAME) == NOT_SERVING, timeout=10)
    assert status(server, "") == SERVING
    s3.start()
    assert wait_until(lambda: status(server, SERVICE_NAME) == SERVING, timeout=20)


def test_an_unreachable_store_at_start_is_not_ready(
    tmp_path: Path, redis_server: EmbeddedRedis
) -> None:
    s3 = EmbeddedS3(tmp_path / "s3", access_key="test", secret_key=uuid.uuid4().hex).start()
    s3.stop()  # its port is known, nothing answers there
    server = start_server(
        redis_server.url, s3, readiness_interval_seconds=0.5, readiness_timeout_seconds=0.5
    )
    try:
        assert status(server, SERVICE_NAME) == NOT_SERVING
        assert status(server, "") == SERVING
    finally:
        server.stop()
