"""Per-tenant rate limits against a real Redis and two real server processes sharing it.

Each test has a tenant of its own with low limits set as overrides; the test
servers' defaults are unlimited, like every other suite's.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from sessionmemory.v1 import memory_pb2 as pb
from sessionmemory.v1 import memory_service_pb2 as svc
from sessionmemory.v1 import memory_service_pb2_grpc as svc_grpc
from sessionmemory_server.embedded import EmbeddedRedis, EmbeddedS3, redis_server_binaries
from sessionmemory_server.limits import REFRESH_SECONDS, clear_overrides, overrides, set_overrides

from ..conftest import ServerThread, start_server
from .test_cluster import cluster, cluster_server  # noqa: F401 - the 6-node cluster fixtures

KIB = 1024


@pytest.fixture(scope="module")
def pair(redis_server: EmbeddedRedis, s3_server: EmbeddedS3) -> Iterator[list[ServerThread]]:
    """Two server processes (event loops) on one Redis; no blob collection noise."""
    servers = [
        start_server(redis_server.url, s3_server, collect_interval_seconds=3600) for _ in range(2)
    ]
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def plain(redis_server: EmbeddedRedis) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


class Tenant:
    """A fresh tenant with a key, and raw stubs to both servers."""

    def __init__(self, pair: list[ServerThread], **limits: float) -> None:
        self.pair = pair
        self.name = f"rl-{uuid.uuid4().hex[:12]}"
        self.md = (("authorization", f"Bearer {pair[0].create_key(self.name)}"),)
        self.channels = [grpc.insecure_channel(s.address) for s in pair]
        self.stubs = [svc_grpc.MemoryServiceStub(c) for c in self.channels]
        self.sid = f"conv-{uuid.uuid4().hex}"
        if limits:
            self.set_limits(**limits)

    def set_limits(self, **limits: float) -> None:
        """Override limits and make both servers see them now (not within a second)."""
        srv = self.pair[0]
        srv.run(set_overrides(srv.built.redis, self.name, limits))
        self.refresh()

    def refresh(self) -> None:
        for srv in self.pair:
            assert srv.built.limit_book is not None
            srv.run(srv.built.limit_book.refresh())

    def get(self, key: str = "k", server: int = 0) -> Any:
        return self.stubs[server].Get(
            svc.GetRequest(session_id=self.sid, key=key), metadata=self.md, timeout=5
        )

    def set(self, key: str, value: str, server: int = 0) -> Any:
        return self.stubs[server].Set(
            svc.SetRequest(session_id=self.sid, key=key, string_value=value, ttl_seconds=60),
            metadata=self.md,
            timeout=5,
        )

    def close(self) -> None:
        for channel in self.channels:
            channel.close()


@pytest.fixture
def tenants(pair: list[ServerThread]) -> Iterator[Any]:
    made: list[Tenant] = []

    def make(**limits: float) -> Tenant:
        made.append(Tenant(pair, **limits))
        return made[-1]

    yield make
    for tenant in made:
        tenant.close()


def details(err: grpc.RpcError) -> tuple[error_details_pb2.ErrorInfo, float | None]:
    """The ErrorInfo and the RetryInfo delay (None without one) of a refusal."""
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    info, retry = error_details_pb2.ErrorInfo(), None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            message = error_details_pb2.RetryInfo()
            detail.Unpack(message)
            retry = message.retry_delay.ToNanoseconds() / 1e9
    return info, retry


def rate_limited(call: Any) -> bool:
    """True when the call was refused with RATE_LIMITED; False when it passed."""
    try:
        call()
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err
        assert details(err)[0].reason == "RATE_LIMITED"
        return True
    return False


def script_calls(plain: redis.Redis) -> int:
    stats = plain.info("commandstats")
    return sum(
        int(stats.get(name, {}).get("calls", 0)) for name in ("cmdstat_evalsha", "cmdstat_eval")
    )


async def flood(tenant: Tenant, seconds: float, per_server: int) -> tuple[int, int, float]:
    """Gets on both servers with ``per_server`` calls in flight each: (passed, refused, time)."""
    channels = [grpc.aio.insecure_channel(s.address) for s in tenant.pair]
    stubs = [svc_grpc.MemoryServiceStub(c) for c in channels]
    request = svc.GetRequest(session_id=tenant.sid, key="k")
    passed = refused = 0
    start = time.monotonic()
    end = start + seconds

    async def worker(stub: Any) -> None:
        nonlocal passed, refused
        while time.monotonic() < end:
            try:
                await stub.Get(request, metadata=tenant.md, timeout=5)
                passed += 1
            except grpc.aio.AioRpcError as err:
                assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err
                assert details(err)[0].reason == "RATE_LIMITED", err
                refused += 1

    await asyncio.gather(*(worker(stub) for stub in stubs for _ in range(per_server)))
    took = time.monotonic() - start
    for channel in channels:
        await channel.close()
    return passed, refused, took


async def test_two_processes_hold_the_rate_within_ten_percent(tenants: Any) -> None:
    rate, burst = 200, 20
    tenant = tenants(reads_per_second=rate, read_burst=burst)
    passed, refused, took = await flood(tenant, 3.0, per_server=24)
    expected = rate * took + burst
    print(f"\npassed {passed} of {passed + refused} in {took:.2f} s; expected {expected:.0f}")
    assert refused > 0  # over the limit (the tarpit paces refusals at about the rate)
    assert passed == pytest.approx(expected, rel=0.10)


def test_rate_limited_carries_error_info_and_retry_info_and_changes_nothing(
    tenants: Any,
) -> None:
    tenant = tenants(writes_per_second=0.5, write_burst=1)
    tenant.set("first", "1")
    with pytest.raises(grpc.RpcError) as info:
        tenant.set("second", "2")
    err = info.value
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    error_info, retry_after = details(err)
    assert error_info.reason == "RATE_LIMITED"
    assert error_info.domain == "sessionmemory"
    assert dict(error_info.metadata) == {
        "limit": "writes",
        "rate": "0.5",
        "burst": "1",
        "window_seconds": "1",
    }
    assert retry_after is not None and 0 < retry_after <= 2.0
    assert "rate limit" in (err.details() or "")
    assert not tenant.get("second").found  # refused: nothing written
    assert tenant.get("first").found


def test_reads_and_writes_are_separate_buckets(tenants: Any) -> None:
    tenant = tenants(reads_per_second=0.5, read_burst=2)
    assert [rate_limited(tenant.get) for _ in range(3)] == [False, False, True]
    assert not rate_limited(lambda: tenant.set("k", "v"))


def test_one_tenants_limit_does_not_touch_another(tenants: Any) -> None:
    limited = tenants(reads_per_second=0.5, read_burst=1)
    other = tenants()
    rate_limited(limited.get)
    assert rate_limited(limited.get)
    assert not any(rate_limited(other.get) for _ in range(100))
    assert rate_limited(limited.get)


def test_overrides_reach_every_process_within_the_refresh_interval(
    tenants: Any, pair: list[ServerThread]
) -> None:
    tenant = tenants()
    srv = pair[0]
    srv.run(set_overrides(srv.built.redis, tenant.name, {"reads_per_second": 0.5, "read_burst": 1}))
    assert srv.run(overrides(srv.built.redis, tenant.name)) == {
        "reads_per_second": 0.5,
        "read_burst": 1,
    }
    start = time.monotonic()
    for server in (0, 1):
        while not rate_limited(lambda s=server: tenant.get(server=s)):
            assert time.monotonic() - start < REFRESH_SECONDS + 1.0
            time.sleep(0.05)
    srv.run(clear_overrides(srv.built.redis, tenant.name))
    start = time.monotonic()
    for server in (0, 1):
        while rate_limited(lambda s=server: tenant.get(server=s)):
            assert time.monotonic() - start < REFRESH_SECONDS + 1.0
    assert srv.run(overrides(srv.built.redis, tenant.name)) == {}


def test_a_rate_of_zero_is_unlimited_and_keeps_no_state(tenants: Any, plain: redis.Redis) -> None:
    tenant = tenants(reads_per_second=0, read_burst=1, writes_per_second=0)
    for i in range(300):
        assert not rate_limited(lambda i=i: tenant.get(server=i % 2))
    for i in range(100):
        assert not rate_limited(lambda i=i: tenant.set(f"k{i}", "v"))
    assert plain.keys(f"sm:{{{tenant.name}}}:rl:*") == []


def test_file_bytes_are_shaped_and_limited(tenants: Any) -> None:
    rate, burst = 256 * KIB, 128 * KIB
    tenant = tenants(file_bytes_per_second=rate, file_bytes_burst=burst)
    size, chunk = 384 * KIB, 64 * KIB
    data = b"x" * size

    def messages() -> Iterator[svc.SetFileRequest]:
        header = svc.FileHeader(
            session_id=tenant.sid, key="doc", mime_type="text/plain", ttl_seconds=60
        )
        yield svc.SetFileRequest(header=header)
        for i in range(0, size, chunk):
            yield svc.SetFileRequest(chunk=data[i : i + chunk], finish_write=i + chunk >= size)

    start = time.monotonic()
    stored = tenant.stubs[0].SetFile(messages(), metadata=tenant.md, timeout=10)
    upload = time.monotonic() - start
    assert stored.file.size_bytes == size
    assert (size - burst) / rate * 0.9 < upload < (size - burst) / rate + 1.0
    start = time.monotonic()
    got = b"".join(
        r.chunk
        for r in tenant.stubs[1].ReadFile(
            svc.ReadFileRequest(session_id=tenant.sid, key="doc"), metadata=tenant.md, timeout=10
        )
    )
    read = time.monotonic() - start
    assert got == data
    # The upload left the bucket about empty (it refilled a little while the upload
    # was stored): reading is shaped too.
    assert (size - burst) / rate * 0.9 < read < size / rate + 1.0

    # A chunk that would wait longer than the shaping allows is refused at once.
    tenant.set_limits(file_bytes_per_second=10 * KIB, file_bytes_burst=KIB)

    def big() -> Iterator[svc.SetFileRequest]:
        header = svc.FileHeader(
            session_id=tenant.sid, key="big", mime_type="text/plain", ttl_seconds=60
        )
        yield svc.SetFileRequest(header=header)
        yield svc.SetFileRequest(chunk=b"y" * 256 * KIB, finish_write=True)

    with pytest.raises(grpc.RpcError) as info:
        tenant.stubs[0].SetFile(big(), metadata=tenant.md, timeout=10)
    error_info, retry_after = details(info.value)
    assert error_info.reason == "RATE_LIMITED"
    assert error_info.metadata["limit"] == "file_bytes"
    assert retry_after is not None
    assert not tenant.get("big").found


async def test_refusals_while_limited_make_no_redis_call(tenants: Any, plain: redis.Redis) -> None:
    tenant = tenants(reads_per_second=0.2, read_burst=1)
    assert not rate_limited(tenant.get)
    await asyncio.sleep(0.1)  # the first call's charge tells the process the bucket is empty
    assert rate_limited(tenant.get)
    key = f"sm:{{{tenant.name}}}:rl:reads"
    assert 0 < plain.pttl(key) <= 6000  # the TAT, expiring when the bucket is full again
    before = script_calls(plain)
    channel = grpc.aio.insecure_channel(tenant.pair[0].address)
    stub = svc_grpc.MemoryServiceStub(channel)
    request = svc.GetRequest(session_id=tenant.sid, key="k")

    async def refused() -> bool:
        try:
            await stub.Get(request, metadata=tenant.md, timeout=5)
        except grpc.aio.AioRpcError as err:
            return err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        return False

    start = time.monotonic()
    for _ in range(4):
        assert all(await asyncio.gather(*(refused() for _ in range(50))))
    took = time.monotonic() - start
    await channel.close()
    assert script_calls(plain) - before < 10  # 200 refusals; anything else is other noise
    # The tarpit held each refusal up to 0.5 s instead of answering at once.
    assert took > 0.5


def test_limits_hold_on_a_cluster(cluster_server: ServerThread) -> None:  # noqa: F811
    tenant = Tenant([cluster_server], reads_per_second=0.5, read_burst=2)
    try:
        assert [rate_limited(tenant.get) for _ in range(3)] == [False, False, True]
        assert not rate_limited(lambda: tenant.set("k", "v"))
    finally:
        tenant.close()


@pytest.fixture(params=sorted(redis_server_binaries()))
def full_pair(
    request: pytest.FixtureRequest, tmp_path: Path, s3_server: EmbeddedS3
) -> Iterator[tuple[redis.Redis, list[ServerThread]]]:
    """Two server processes on a Redis of its own (each version we support), not yet full."""
    own = EmbeddedRedis(tmp_path / "redis", binary=redis_server_binaries()[request.param]).start()
    plain = redis.Redis(port=own.port)
    servers: list[ServerThread] = []
    try:
        servers += [
            start_server(own.url, s3_server, collect_interval_seconds=3600) for _ in range(2)
        ]
        yield plain, servers
    finally:
        for server in servers:
            server.stop()
        plain.close()
        own.stop()


async def test_over_maxmemory_each_process_still_holds_the_rate(
    full_pair: tuple[redis.Redis, list[ServerThread]],
) -> None:
    plain, servers = full_pair
    rate, burst = 20, 10
    tenant = Tenant(servers, reads_per_second=rate, read_burst=burst)  # stored before it fills
    key = f"sm:{{{tenant.name}}}:rl:reads"
    try:
        # Over maxmemory (noeviction): Redis refuses every write that adds data,
        # the bucket's state included.
        plain.config_set("maxmemory-policy", "noeviction")
        plain.config_set("maxmemory", int(plain.info("memory")["used_memory"]) // 2)
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            plain.set("probe", "x")
        seconds = 2.0
        passed, refused, took = await flood(tenant, seconds, per_server=8)
        # Each process limits on its own (it cannot know how many there are):
        # up to 2 x (rate x time + burst) for the two.
        expected = 2 * (rate * seconds + burst)
        print(f"\npassed {passed} of {passed + refused} in {took:.2f} s; expected {expected:.0f}")
        assert refused > 0
        # Never more than that; somewhat fewer on a loaded machine, where the
        # tarpit holds all 8 flooding callers at once while the bucket refills.
        assert 0.7 * expected <= passed <= 1.15 * expected
        assert plain.exists(key) == 0  # nothing was stored

        # Room again: the next refill stores the bucket, the limit is shared again.
        plain.config_set("maxmemory", 0)
        stored = False
        deadline = time.monotonic() + 5
        while not stored and time.monotonic() < deadline:
            rate_limited(tenant.get)  # a call's refill stores the bucket again
            stored = plain.pttl(key) > 0  # (it expires once the bucket is full again)
            await asyncio.sleep(0.05)
        assert stored
        passed, refused, took = await flood(tenant, 1.0, per_server=8)
        assert passed <= rate * took + burst + 2 * 2  # shared: two processes' leases at most
    finally:
        plain.config_set("maxmemory", 0)
        tenant.close()


def test_a_batch_counts_one_call_per_ten_keys(tenants: Any) -> None:
    tenant = tenants(writes_per_second=0.01, write_burst=12, reads_per_second=0.01, read_burst=3)

    def set_many(n: int) -> Any:
        entries = [
            svc.SetManyEntry(key=f"k{i}", value=pb.Value(string_value="v"), ttl_seconds=60)
            for i in range(n)
        ]
        return tenant.stubs[0].SetMany(
            svc.SetManyRequest(session_id=tenant.sid, entries=entries),
            metadata=tenant.md,
            timeout=5,
        )

    set_many(100)  # 10 of the 12
    set_many(10)  # 1
    set_many(1)  # 1: the bucket is empty now
    assert rate_limited(lambda: set_many(1))
    # Reads have their own bucket: 25 keys count 3.
    keys = [f"k{i}" for i in range(25)]
    got = tenant.stubs[0].GetMany(
        svc.GetManyRequest(session_id=tenant.sid, keys=keys), metadata=tenant.md, timeout=5
    )
    assert len(got.entries) == 25
    assert rate_limited(tenant.get)
