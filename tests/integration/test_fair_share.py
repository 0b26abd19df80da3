"""One caller cannot take what every other caller needs, against the real server:
a tenant holds at most its share of the calls in flight, and anonymous health and
reflection streams are capped."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from sessionmemory import LimitExceededError, MemoryClient
from sessionmemory_server.aux_services import MAX_STREAMS
from sessionmemory_server.embedded import EmbeddedRedis, EmbeddedS3

from ..conftest import ServerThread, start_server, wait_until
from ..samples import pdf_of

MIB = 1024 * 1024


@pytest.fixture
def server(redis_server: EmbeddedRedis, s3_server: EmbeddedS3) -> Iterator[ServerThread]:
    started = start_server(
        redis_server.url,
        s3_server,
        max_calls_in_flight=8,
        max_tenant_calls_in_flight=2,
        upload_idle_seconds=10.0,
    )
    yield started
    started.stop()


def _client(server: ServerThread, tenant: str) -> MemoryClient:
    return MemoryClient(
        server.address, api_key=server.create_key(tenant), timeout=30, max_attempts=1
    )


def test_a_tenant_holds_at_most_its_share_of_the_calls_in_flight(server: ServerThread) -> None:
    release = threading.Event()
    outcomes: list[Any] = []

    def held_upload(memory: Any, key: str) -> None:
        def chunks() -> Iterator[bytes]:
            yield pdf_of(MIB)
            release.wait(30)

        try:
            outcomes.append(memory.set_file(key, chunks(), ttl=60, mime="application/pdf"))
        except Exception as exc:  # asserted below
            outcomes.append(exc)

    with _client(server, "hog") as hog, _client(server, "calm") as calm:
        memory = hog.session(f"share-{uuid.uuid4().hex}")
        threads = [
            threading.Thread(target=held_upload, args=(memory, f"f{i}"), daemon=True)
            for i in range(2)
        ]
        try:
            for t in threads:
                t.start()
            # Both uploads are in flight once the server counted them.
            assert wait_until(lambda: sum(server.built.calls.by_tenant.values()) == 2)
            with pytest.raises(LimitExceededError) as info:
                memory.get("k")
            assert info.value.code == "SERVER_BUSY"
            assert info.value.metadata["scope"] == "tenant"
            assert info.value.metadata["limit"] == "2"
            assert info.value.retry_after is not None
            # Another tenant is not held up by it.
            other = calm.session("s")
            other.set("k", "v")
            assert other.get("k") == "v"
        finally:
            release.set()
            for t in threads:
                t.join(30)
        assert not any(isinstance(o, Exception) for o in outcomes), outcomes
        assert memory.get("k") is None  # the share is back once the uploads ended
        assert server.built.calls.by_tenant == {}


def test_health_watch_streams_are_capped(server: ServerThread) -> None:
    with grpc.insecure_channel(server.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        streams = [
            stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
            for _ in range(MAX_STREAMS)
        ]
        try:
            for s in streams:
                assert next(s).status == health_pb2.HealthCheckResponse.SERVING
            extra = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
            with pytest.raises(grpc.RpcError) as info:
                next(extra)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            # Unary health checks and every tenant's calls still work.
            check = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
            assert check.status == health_pb2.HealthCheckResponse.SERVING
            with _client(server, "acme") as client:
                client.session("s").set("k", "v")
        finally:
            for s in streams:
                s.cancel()
        assert wait_until(lambda: server.built.health.watching == 0)


def test_reflection_streams_are_capped(server: ServerThread) -> None:
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    with grpc.insecure_channel(server.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        holds = [threading.Event() for _ in range(MAX_STREAMS)]

        def requests(hold: threading.Event) -> Iterator[reflection_pb2.ServerReflectionRequest]:
            yield request
            hold.wait(30)

        streams = [stub.ServerReflectionInfo(requests(h), timeout=30) for h in holds]
        try:
            for s in streams:
                names = {x.name for x in next(s).list_services_response.service}
                assert "sessionmemory.v1.MemoryService" in names
            extra = stub.ServerReflectionInfo(iter([request]), timeout=10)
            with pytest.raises(grpc.RpcError) as info:
                next(extra)
            assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        finally:
            for h in holds:
                h.set()
            for s in streams:
                s.cancel()
