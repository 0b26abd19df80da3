"""API keys under attack, against the real server and Redis (raw gRPC stubs).

Wrong keys cost no Redis call per attempt and get throttled per address and per
key id; revoked keys die within the refresh interval on every process; keys
expire, and a rotated key keeps working for its grace period.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import redis as redis_sync
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from sessionmemory.v1 import memory_service_pb2 as svc
from sessionmemory.v1 import memory_service_pb2_grpc as svc_grpc
from sessionmemory_server import watch
from sessionmemory_server.auth import ApiKeys
from sessionmemory_server.embedded import EmbeddedRedis, EmbeddedS3

from ..conftest import ServerThread, run_in_thread, start_server, wait_until

# The production refresh interval (Settings.auth_cache_seconds' default): the
# documented bound on how long a revoked key keeps working, plus a round trip.
REFRESH_SECONDS = 1.0


@dataclass
class Failure:
    """What a refused call carries."""

    code: grpc.StatusCode
    reason: str
    metadata: dict[str, str]
    retry_after: float | None
    message: str


def failure(err: grpc.RpcError) -> Failure:
    """The status code, ErrorInfo and RetryInfo of a refused call."""
    call: Any = err
    status = rpc_status.from_call(call)
    assert status is not None, "every refusal carries a google.rpc.Status"
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    retry = None
    for detail in status.details[1:]:
        ri = error_details_pb2.RetryInfo()
        if detail.Unpack(ri):
            retry = ri.retry_delay.ToNanoseconds() / 1e9
    return Failure(call.code(), info.reason, dict(info.metadata), retry, call.details())


class Caller:
    """A raw stub that sends a given credential."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.stub = svc_grpc.MemoryServiceStub(self.channel)

    def call(self, credential: str | None, method: str, request: Any) -> Any:
        md = () if credential is None else (("authorization", f"Bearer {credential}"),)
        return getattr(self.stub, method)(request, metadata=md, timeout=5)

    def fails(self, credential: str | None, method: str, request: Any) -> Failure:
        with pytest.raises(grpc.RpcError) as info:
            self.call(credential, method, request)
        return failure(info.value)

    def get(self, credential: str | None, session: str = "s", key: str = "k") -> Any:
        return self.call(credential, "Get", svc.GetRequest(session_id=session, key=key))

    def get_fails(self, credential: str | None, session: str = "s") -> Failure:
        return self.fails(credential, "Get", svc.GetRequest(session_id=session, key="k"))

    def close(self) -> None:
        self.channel.close()


@pytest.fixture
def servers(redis_server: EmbeddedRedis, s3_server: EmbeddedS3) -> Iterator[Any]:
    """Start servers with production auth settings (plus overrides); stop them after."""
    started: list[ServerThread] = []
    callers: list[Caller] = []

    def start(redis_url: str = redis_server.url, **overrides: Any) -> tuple[ServerThread, Caller]:
        settings = {
            "auth_cache_seconds": REFRESH_SECONDS,
            "auth_max_failures_per_peer": 20,
            "auth_max_failures_per_key": 10,
            **overrides,
        }
        srv = start_server(redis_url, s3_server, **settings)
        started.append(srv)
        caller = Caller(srv.address)
        callers.append(caller)
        return srv, caller

    yield start
    for c in callers:
        c.close()
    for s in started:
        s.stop()


@pytest.fixture
def own_redis(tmp_path: Any) -> Iterator[EmbeddedRedis]:
    """A Redis of this test alone, so its command counts are this server's only."""
    with EmbeddedRedis(tmp_path / "redis") as server:
        yield server


def _admin(url: str) -> Any:

    from redis.asyncio import Redis

    def run(method: str, *args: Any, **kwargs: Any) -> Any:
        async def go() -> Any:
            client = Redis.from_url(url)
            try:
                return await getattr(ApiKeys(client), method)(*args, **kwargs)
            finally:
                await client.aclose()

        return run_in_thread(go())

    return run


@pytest.fixture
def admin(redis_server: EmbeddedRedis) -> Iterator[Any]:
    """Run ApiKeys calls the way the CLI does: its own Redis client, outside any server."""
    yield _admin(redis_server.url)


def _commandstats(url: str) -> dict[str, int]:
    client = redis_sync.Redis.from_url(url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return {name: int(v["calls"]) for name, v in stats.items()}


def _made_up_key() -> str:
    return f"smk_{secrets.token_hex(6)}_{secrets.token_urlsafe(32)}"


def test_a_flood_of_unknown_keys_makes_no_redis_call_per_attempt(
    servers: Any, own_redis: EmbeddedRedis
) -> None:
    # No throttle: every key is checked.
    _, caller = servers(own_redis.url, auth_max_failures_per_peer=0)
    key = _admin(own_redis.url)("create", "flood-victim")
    assert caller.get(key).found is False  # warm: the key is loaded
    attempts = 500
    before = _commandstats(own_redis.url)
    started = time.monotonic()
    for _ in range(attempts):
        f = caller.get_fails(_made_up_key())
        assert (f.code, f.reason) == (grpc.StatusCode.UNAUTHENTICATED, "API_KEY_INVALID")
    took = time.monotonic() - started
    after = _commandstats(own_redis.url)
    delta = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    total = sum(delta.values())
    # No key is looked up per attempt (the old code did one HGET each); what
    # remains is the server's background work (its polls, collector) and at
    # most ten "is it a new key?" version reads a second (tokens.MissBudget). The one
    # HGET a second is the tenant-limits version poll (limits.LimitBook).
    assert delta.get("cmdstat_hget", 0) <= took + 2, (took, delta)
    assert delta.get("cmdstat_hgetall", 0) == 0, delta
    assert delta.get("cmdstat_get", 0) <= 10 * (took + 1) + 2, (took, delta)
    assert total <= 20 * (took + 1) + 10, (total, took, delta)
    assert total < attempts / 5, (total, delta)
    print(f"\n{attempts} wrong keys in {took:.2f} s: {total} Redis commands in all ({delta})")


def test_failures_from_one_address_are_throttled_and_logged_once(
    servers: Any, own_redis: EmbeddedRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sessionmemory_server.auth")
    _, caller = servers(own_redis.url, auth_failure_window_seconds=2.0)
    key = _admin(own_redis.url)("create", "throttled")
    assert caller.get(key).found is False
    reasons = [caller.get_fails(_made_up_key()).reason for _ in range(20)]
    assert reasons == ["API_KEY_INVALID"] * 20
    before = _commandstats(own_redis.url)
    # At once: the server holds each RATE_LIMITED refusal back (its tarpit, up to 1 s).
    request = svc.GetRequest(session_id="s", key="k")
    calls = [
        caller.stub.Get.future(
            request, metadata=(("authorization", f"Bearer {_made_up_key()}"),), timeout=5
        )
        for _ in range(200)
    ]
    for call in calls:
        err = call.exception()
        assert err is not None
        f = failure(err)
        assert (f.code, f.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED")
        assert f.metadata["limit"] == "auth_failures" and f.metadata["scope"] == "address"
        assert f.metadata["burst"] == "20" and f.metadata["window_seconds"] == "2"
        assert f.retry_after is not None and 0 < f.retry_after <= 2.0
    after = _commandstats(own_redis.url)
    # No key lookup per attempt: HGETs here are the tenant-limit poll's (once a second).
    assert after.get("cmdstat_hget", 0) - before.get("cmdstat_hget", 0) <= 3
    # Throttled attempts are refused before their key is looked at: not even
    # the "is it a new key?" read.
    assert after.get("cmdstat_get", 0) - before.get("cmdstat_get", 0) <= 5
    # A valid key from the throttled address is refused too, until the window ends.
    f = caller.get_fails(key)
    assert f.reason == "RATE_LIMITED" and f.retry_after is not None
    assert "failed authentication attempts" in f.message
    time.sleep(f.retry_after + 0.05)
    assert caller.get(key).found is False
    lines = [r for r in caplog.records if r.getMessage() == "authentication failures throttled"]
    assert 1 <= len(lines) <= 2, [r.__dict__ for r in lines]
    assert all(getattr(r, "reason", "") == "address 127.0.0.1" for r in lines)


def test_missing_keys_are_not_counted_as_guesses(servers: Any, admin: Any) -> None:
    _, caller = servers(auth_max_failures_per_peer=3)
    for _ in range(10):
        assert caller.get_fails(None).reason == "API_KEY_MISSING"
    assert caller.get(admin("create", "patient")).found is False


def test_wrong_secrets_for_one_key_id_are_throttled_but_its_secret_works(
    servers: Any, admin: Any
) -> None:
    _, caller = servers(auth_max_failures_per_peer=0)
    key = admin("create", "guessed")
    key_id = key.split("_")[1]
    forged = [f"smk_{key_id}_{secrets.token_urlsafe(32)}" for _ in range(12)]
    assert [caller.get_fails(k).reason for k in forged[:10]] == ["API_KEY_INVALID"] * 10
    for k in forged[10:]:
        f = caller.get_fails(k)
        assert f.reason == "RATE_LIMITED" and f.metadata["scope"] == "key"
        assert f.retry_after is not None
    assert caller.get(key).found is False  # the right secret is not locked out


def test_failed_session_tokens_count_as_failures(servers: Any, admin: Any) -> None:
    _, caller = servers(auth_max_failures_per_peer=5)
    key = admin("create", "token-guesser")
    issued = caller.call(
        key,
        "CreateSessionToken",
        svc.CreateSessionTokenRequest(session_id="s", permissions=[svc.TOKEN_PERMISSION_READ]),
    )
    tampered = issued.token[:-2] + ("AA" if not issued.token.endswith("AA") else "BB")
    assert [caller.get_fails(tampered).reason for _ in range(5)] == ["TOKEN_INVALID"] * 5
    assert caller.get_fails(tampered).reason == "RATE_LIMITED"
    assert caller.get_fails(issued.token).reason == "RATE_LIMITED"


async def test_watch_rechecks_and_expired_credentials_are_no_failed_logins(
    servers: Any, admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watch, "RECHECK_SECONDS", 0.2)
    srv, caller = servers(auth_max_failures_per_peer=3)
    key = admin("create", "long-watcher")
    issued = caller.call(
        key,
        "CreateSessionToken",
        svc.CreateSessionTokenRequest(session_id="s", permissions=[svc.TOKEN_PERMISSION_READ]),
    )
    # Five Watch streams whose token is revoked: each stream's re-check ends it,
    # and none of them is a failed login of this address.
    async with grpc.aio.insecure_channel(srv.address) as channel:
        stub = svc_grpc.MemoryServiceStub(channel)
        md = (("authorization", f"Bearer {issued.token}"),)
        calls = [
            stub.Watch(svc.WatchRequest(session_id="s"), metadata=md, timeout=10) for _ in range(5)
        ]
        for call in calls:
            await call.read()
        caller.call(
            key, "RevokeSessionToken", svc.RevokeSessionTokenRequest(token_id=issued.token_id)
        )
        for call in calls:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await asyncio.wait_for(call.read(), 5)
            assert failure(err.value).reason == "TOKEN_REVOKED"
    assert caller.get(key).found is False  # not RATE_LIMITED
    # An expired token or key is no guess either.
    short = caller.call(
        key,
        "CreateSessionToken",
        svc.CreateSessionTokenRequest(
            session_id="s", permissions=[svc.TOKEN_PERMISSION_READ], ttl_seconds=1
        ),
    ).token
    expiring = admin("create", "long-watcher", expires_in=0.5)
    assert caller.get(short).found is False and caller.get(expiring).found is False
    await asyncio.sleep(1.05)
    assert [caller.get_fails(short).reason for _ in range(5)] == ["TOKEN_EXPIRED"] * 5
    assert [caller.get_fails(expiring).reason for _ in range(5)] == ["API_KEY_EXPIRED"] * 5
    assert caller.get(key).found is False
    # Guesses still count.
    assert [caller.get_fails(_made_up_key()).reason for _ in range(3)] == ["API_KEY_INVALID"] * 3
    assert caller.get_fails(key).reason == "RATE_LIMITED"


def test_a_revoked_key_dies_within_the_refresh_interval_on_every_process(
    servers: Any, admin: Any
) -> None:
    _, one = servers()
    _, two = servers()
    key = admin("create", "revoked-everywhere")
    # A key created elsewhere works at once (an unknown id triggers a reload).
    assert one.get(key).found is False and two.get(key).found is False
    assert admin("revoke", [key.split("_")[1]]) == 1
    revoked_at = time.monotonic()

    def refused(caller: Caller) -> bool:
        try:
            caller.get(key)
        except grpc.RpcError as err:
            assert failure(err).reason == "API_KEY_INVALID"
            return True
        return False

    assert wait_until(lambda: refused(one) and refused(two), timeout=5)
    assert time.monotonic() - revoked_at <= REFRESH_SECONDS + 0.5


def test_an_expired_key_is_refused_with_api_key_expired(servers: Any, admin: Any) -> None:
    _, caller = servers()
    key = admin("create", "short-lived", expires_in=0.6)
    assert caller.get(key).found is False
    time.sleep(0.7)
    f = caller.get_fails(key)
    assert (f.code, f.reason) == (grpc.StatusCode.UNAUTHENTICATED, "API_KEY_EXPIRED")
    infos = {i.key_id: i for i in admin("list")}
    assert infos[key.split("_")[1]].expired()


def test_rotate_keeps_the_old_key_for_its_grace_only(servers: Any, admin: Any) -> None:
    _, caller = servers()
    old = admin("create", "rotating")
    old_id = old.split("_")[1]
    assert caller.get(old).found is False
    new = admin("rotate", old_id, 1.0)
    assert new != old and new.startswith("smk_")
    infos = {i.key_id: i for i in admin("list")}
    assert infos[new.split("_")[1]].tenant == "rotating"
    assert infos[new.split("_")[1]].expires_at is None
    # Both work during the grace period, and see the same tenant's data.
    caller.call(old, "Set", svc.SetRequest(session_id="s", key="k", string_value="v"))
    assert caller.get(new).entry.value.string_value == "v"
    assert caller.get(old).found is True
    time.sleep(1.1)
    assert caller.get_fails(old).reason == "API_KEY_EXPIRED"
    assert caller.get(new).found is True
    # A rotation never extends an expiry a key already has.
    short = admin("create", "rotating", expires_in=5)
    short_id = short.split("_")[1]
    admin("rotate", short_id, 3600)
    info = {i.key_id: i for i in admin("list")}[short_id]
    assert info.expires_at is not None and info.expires_at - time.time() < 5
    with pytest.raises(LookupError):
        admin("rotate", "000000000000", 10)


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sessionmemory_server.cli", *args, "--redis-url", url],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_keys_cli_expiry_rotate_and_json_list(redis_server: EmbeddedRedis) -> None:
    created = _cli(redis_server.url, "keys", "create", "cli-tenant", "--expires-in", "30d")
    assert created.returncode == 0, created.stderr
    key = created.stdout.strip()
    key_id = key.split("_")[1]
    rotated = _cli(redis_server.url, "keys", "rotate", key_id, "--grace", "1h")
    assert rotated.returncode == 0, rotated.stderr
    new_id = rotated.stdout.strip().split("_")[1]
    listed = _cli(redis_server.url, "keys", "list", "--json")
    rows = {r["key_id"]: r for r in json.loads(listed.stdout)}
    assert rows[key_id]["tenant"] == rows[new_id]["tenant"] == "cli-tenant"
    assert rows[key_id]["status"] == rows[new_id]["status"] == "active"
    assert rows[key_id]["expires"].endswith("Z") and rows[new_id]["expires"] is None
    text = _cli(redis_server.url, "keys", "list").stdout
    line = next(ln for ln in text.splitlines() if ln.startswith(key_id))
    assert line.split()[1:] == [  # a table: KEY ID, TENANT, CREATED, EXPIRES, STATUS
        "cli-tenant",
        rows[key_id]["created"],
        rows[key_id]["expires"],
        "active",
    ]
    assert key not in text
    assert _cli(redis_server.url, "keys", "rotate", "nope").returncode == 3  # not found
    bad = _cli(redis_server.url, "keys", "create", "x", "--expires-in", "soon")
    assert bad.returncode == 2 and "not a duration" in bad.stderr
