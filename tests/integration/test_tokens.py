"""Session tokens against the real server and Redis (raw gRPC stubs).

A token reaches one session with the permissions it carries and nothing else;
expired, revoked (on every process within the refresh interval) and tampered
tokens are refused; signing keys rotate without a restart. A process reads the
revocations in bounded batches and refuses tokens until it has read them all; a
Redis that hangs at start makes calls fail fast rather than queue.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
import redis.exceptions
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from sessionmemory.v1 import memory_service_pb2 as svc
from sessionmemory.v1 import memory_service_pb2_grpc as svc_grpc
from sessionmemory_server import tokens, watch
from sessionmemory_server.access import Permission
from sessionmemory_server.auth import ApiKeys, Authenticator
from sessionmemory_server.embedded import EmbeddedRedis, EmbeddedS3
from sessionmemory_server.errors import DomainError
from sessionmemory_server.tokens import SessionTokens, kid_of

from ..conftest import ServerThread, run_in_thread, start_server, wait_until
from .test_auth import REFRESH_SECONDS, Caller, failure

READ, WRITE, FILES = (
    svc.TOKEN_PERMISSION_READ,
    svc.TOKEN_PERMISSION_WRITE,
    svc.TOKEN_PERMISSION_FILES,
)


@pytest.fixture
def caller(server: ServerThread) -> Iterator[Caller]:
    c = Caller(server.address)
    yield c
    c.close()


def issue(
    caller: Caller, key: str, session: str, permissions: list[Any], ttl: int | None = None
) -> Any:
    request = svc.CreateSessionTokenRequest(session_id=session, permissions=permissions)
    if ttl is not None:
        request.ttl_seconds = ttl
    return caller.call(key, "CreateSessionToken", request)


def set_value(caller: Caller, credential: str, session: str, value: str = "v") -> Any:
    return caller.call(
        credential, "Set", svc.SetRequest(session_id=session, key="k", string_value=value)
    )


def test_a_token_works_on_its_session_with_its_permissions(
    caller: Caller, api_key: str, sid: str
) -> None:
    set_value(caller, api_key, sid, "from the backend")
    issued = issue(caller, api_key, sid, [READ, WRITE], ttl=60)
    assert issued.token.startswith("smt_") and len(issued.token_id) == 16
    assert abs(issued.expires_at.seconds - (time.time() + 60)) < 5
    token = issued.token
    assert caller.get(token, sid).entry.value.string_value == "from the backend"
    set_value(caller, token, sid, "from the browser")
    assert caller.get(api_key, sid).entry.value.string_value == "from the browser"
    listed = caller.call(token, "List", svc.ListRequest(session_id=sid))
    assert [e.key for e in listed.entries] == ["k"]
    assert caller.call(token, "GetLimits", svc.GetLimitsRequest()).limits.max_keys_per_session


def test_a_token_cannot_leave_its_grant(
    caller: Caller, server: ServerThread, api_key: str, sid: str
) -> None:
    read_only = issue(caller, api_key, sid, [READ]).token
    other = f"{sid}-other"
    set_value(caller, api_key, other, "secret")

    def denied(method: str, request: Any) -> dict[str, str]:
        f = caller.fails(read_only, method, request)
        assert (f.code, f.reason) == (grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")
        return f.metadata

    # Another session of the same tenant.
    assert denied("Get", svc.GetRequest(session_id=other, key="k"))["session"] == other
    # A permission it does not carry.
    assert denied("Set", svc.SetRequest(session_id=sid, key="k", string_value="x")) == {
        "permission": "write"
    }
    denied("GetFile", svc.GetFileRequest(session_id=sid, key="f"))
    # Tenant-wide calls: schemas, tokens.
    denied("PutSchema", svc.PutSchemaRequest(name="s", json_schema="{}"))
    denied("ListSchemas", svc.ListSchemasRequest())
    denied("CreateSessionToken", svc.CreateSessionTokenRequest(session_id=sid, permissions=[READ]))
    denied("RevokeSessionToken", svc.RevokeSessionTokenRequest(session_id=sid))
    # Another tenant: its token names acme, so it only ever sees acme's data.
    globex = server.create_key("globex")
    set_value(caller, globex, sid, "globex only")
    assert caller.get(read_only, sid).found is False


def test_set_file_checks_the_token_against_the_header(
    caller: Caller, api_key: str, sid: str
) -> None:
    files = issue(caller, api_key, sid, [FILES]).token
    read = issue(caller, api_key, sid, [READ]).token

    def upload(token: str, session: str) -> Any:
        messages = [
            svc.SetFileRequest(
                header=svc.FileHeader(
                    session_id=session, key="f", mime_type="text/plain", ttl_seconds=60
                )
            ),
            svc.SetFileRequest(chunk=b"hello", finish_write=True),
        ]
        return caller.stub.SetFile(
            iter(messages), metadata=(("authorization", f"Bearer {token}"),), timeout=10
        )

    for token, session in ((read, sid), (files, f"{sid}-other")):
        with pytest.raises(grpc.RpcError) as info:
            upload(token, session)
        assert failure(info.value).reason == "PERMISSION_DENIED"
    assert upload(files, sid).file.size_bytes == 5


def test_create_rejects_bad_requests(caller: Caller, api_key: str, sid: str) -> None:
    def bad(permissions: list[Any], ttl: int | None = None, session: str = sid) -> Any:
        request = svc.CreateSessionTokenRequest(session_id=session, permissions=permissions)
        if ttl is not None:
            request.ttl_seconds = ttl
        f = caller.fails(api_key, "CreateSessionToken", request)
        assert f.code == grpc.StatusCode.INVALID_ARGUMENT
        return f

    assert bad([]).reason == "INVALID_TOKEN_REQUEST" and bad([]).metadata["field"] == "permissions"
    assert bad([READ, READ]).reason == "INVALID_TOKEN_REQUEST"
    assert bad([READ, 9]).reason == "INVALID_TOKEN_REQUEST"
    for ttl in (0, 3601):
        f = bad([READ], ttl)
        assert f.reason == "TTL_OUT_OF_RANGE" and f.metadata["field"] == "ttl_seconds"
    assert bad([READ], session="").reason == "INVALID_SESSION_ID"
    assert issue(caller, api_key, sid, [READ], ttl=3600).token
    f = caller.fails(api_key, "RevokeSessionToken", svc.RevokeSessionTokenRequest())
    assert f.reason == "INVALID_TOKEN_REQUEST"
    f = caller.fails(api_key, "RevokeSessionToken", svc.RevokeSessionTokenRequest(token_id="x"))
    assert (f.reason, f.metadata["field"]) == ("INVALID_TOKEN_REQUEST", "token_id")


def test_an_expired_token_is_refused(caller: Caller, api_key: str, sid: str) -> None:
    token = issue(caller, api_key, sid, [READ], ttl=1).token
    assert caller.get(token, sid).found is False
    time.sleep(1.05)
    f = caller.get_fails(token, sid)
    assert (f.code, f.reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_EXPIRED")


def test_a_tampered_token_is_refused(caller: Caller, api_key: str, sid: str) -> None:
    token = issue(caller, api_key, sid, [READ]).token
    body, sig = token.removeprefix("smt_").split(".")
    middle = len(body) // 2
    swapped = "A" if body[middle] != "A" else "B"
    for forged in (
        f"smt_{body[:middle]}{swapped}{body[middle + 1 :]}.{sig}",
        f"smt_{body}.{sig[::-1]}",
        f"smt_{body}",
        token + "x",
    ):
        f = caller.get_fails(forged, sid)
        assert (f.code, f.reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")


@pytest.fixture
def two_servers(redis_server: EmbeddedRedis, s3_server: EmbeddedS3) -> Iterator[Any]:
    """Two server processes on one Redis with the production refresh interval."""
    servers = [
        start_server(redis_server.url, s3_server, auth_cache_seconds=REFRESH_SECONDS)
        for _ in range(2)
    ]
    callers = [Caller(s.address) for s in servers]
    yield servers, callers
    for c in callers:
        c.close()
    for s in servers:
        s.stop()


def _refused_everywhere(callers: list[Caller], token: str, sid: str, reason: str) -> float:
    """Seconds until every caller sees ``token`` refused with ``reason``."""
    started = time.monotonic()

    def refused(c: Caller) -> bool:
        try:
            c.get(token, sid)
        except grpc.RpcError as err:
            assert failure(err).reason == reason
            return True
        return False

    assert wait_until(lambda: all(refused(c) for c in callers), timeout=5)
    return time.monotonic() - started


def test_revocation_by_id_and_by_session_reaches_every_process(two_servers: Any) -> None:
    servers, (one, two) = two_servers
    key = servers[0].create_key("revoker")
    sid = f"rev-{uuid.uuid4().hex}"
    first = issue(one, key, sid, [READ])
    second = issue(two, key, sid, [READ])
    keep = issue(one, key, f"{sid}-kept", [READ])
    for c in (one, two):
        assert c.get(first.token, sid).found is False and c.get(second.token, sid).found is False

    one.call(key, "RevokeSessionToken", svc.RevokeSessionTokenRequest(token_id=first.token_id))
    assert one.get_fails(first.token, sid).reason == "TOKEN_REVOKED"  # at once where revoked
    took = _refused_everywhere([one, two], first.token, sid, "TOKEN_REVOKED")
    assert took <= REFRESH_SECONDS + 0.5
    assert two.get(second.token, sid).found is False  # its sibling still works

    two.call(key, "RevokeSessionToken", svc.RevokeSessionTokenRequest(session_id=sid))
    took = _refused_everywhere([one, two], second.token, sid, "TOKEN_REVOKED")
    assert took <= REFRESH_SECONDS + 0.5
    # Tokens issued afterwards, and other sessions' tokens, work.
    fresh = issue(two, key, sid, [READ])
    assert one.get(fresh.token, sid).found is False
    assert two.get(fresh.token, sid).found is False
    assert one.get(keep.token, f"{sid}-kept").found is False


def test_revocations_per_tenant_are_capped(
    redis_server: EmbeddedRedis, s3_server: EmbeddedS3
) -> None:
    server = start_server(redis_server.url, s3_server, token_max_revocations=3)
    caller = Caller(server.address)
    try:
        key = server.create_key(f"capped-{uuid.uuid4().hex[:8]}")
        ids = [issue(caller, key, "s", [READ]).token_id for _ in range(4)]
        for token_id in ids[:3]:
            caller.call(key, "RevokeSessionToken", svc.RevokeSessionTokenRequest(token_id=token_id))
        f = caller.fails(key, "RevokeSessionToken", svc.RevokeSessionTokenRequest(token_id=ids[3]))
        assert (f.code, f.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "QUOTA_EXCEEDED")
        assert f.metadata == {"quota": "revocations", "limit": "3", "actual": "3"}
        assert f.retry_after is None
        # Revoking one again is no new revocation.
        caller.call(key, "RevokeSessionToken", svc.RevokeSessionTokenRequest(token_id=ids[0]))
    finally:
        caller.close()
        server.stop()


def _tokens_admin(url: str, method: str, *args: Any) -> Any:
    async def go() -> Any:
        client = Redis.from_url(url)
        try:
            return await getattr(SessionTokens(client), method)(*args)
        finally:
            await client.aclose()

    return run_in_thread(go())


def test_signing_keys_rotate_without_a_restart(
    two_servers: Any, redis_server: EmbeddedRedis
) -> None:
    servers, (one, two) = two_servers
    key = servers[0].create_key("rotator")
    before = issue(one, key, "s", [READ]).token
    old_kid = kid_of(before)
    new_kid = _tokens_admin(redis_server.url, "rotate_key")
    assert new_kid != old_kid

    def signs_with_new() -> bool:
        return all(kid_of(issue(c, key, "s", [READ]).token) == new_kid for c in (one, two))

    assert wait_until(signs_with_new, timeout=5)
    after = issue(two, key, "s", [READ]).token
    for c in (one, two):
        assert c.get(before, "s").found is False  # signed before the rotation: still good
        assert c.get(after, "s").found is False
    assert _tokens_admin(redis_server.url, "retire_key", old_kid) is True
    _refused_everywhere([one, two], before, "s", "TOKEN_INVALID")
    assert one.get(after, "s").found is False


def test_tokens_cli_rotates_lists_and_retires_keys(redis_server: EmbeddedRedis) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "sessionmemory_server.cli", "tokens", *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    url = ("--redis-url", redis_server.url)
    made = cli("rotate-key", *url)
    assert made.returncode == 0, made.stderr
    kid = made.stdout.strip()
    listed = cli("keys", *url).stdout.splitlines()
    assert listed[-1].split()[::2] == [kid, "current"]  # KID, CREATED, STATUS
    assert cli("retire-key", kid, *url).returncode == 0
    assert kid not in cli("keys", *url).stdout
    assert cli("retire-key", kid, *url).returncode == 3  # not found


async def test_a_watch_with_a_token_ends_when_the_token_is_revoked(
    server: ServerThread, api_key: str, sid: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watch, "RECHECK_SECONDS", 0.2)
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = svc_grpc.MemoryServiceStub(channel)
        md = (("authorization", f"Bearer {api_key}"),)
        issued = await stub.CreateSessionToken(
            svc.CreateSessionTokenRequest(session_id=sid, permissions=[READ]), metadata=md
        )
        call = stub.Watch(
            svc.WatchRequest(session_id=sid),
            metadata=(("authorization", f"Bearer {issued.token}"),),
            timeout=10,
        )
        await call.read()
        await stub.RevokeSessionToken(
            svc.RevokeSessionTokenRequest(token_id=issued.token_id), metadata=md
        )
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await asyncio.wait_for(call.read(), 5)
        f = failure(err.value)
        assert (f.code, f.reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_REVOKED")


@pytest.fixture
def own_redis(tmp_path: Any) -> Iterator[EmbeddedRedis]:
    """A Redis of this test alone: revocation caps count every tenant's revocations."""
    with EmbeddedRedis(tmp_path / "redis") as server:
        yield server


def _client(url: str) -> Redis:
    # As the server's (app.redis_client): short timeouts, no hidden retries.
    return Redis.from_url(
        url, socket_timeout=0.5, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)
    )


@pytest.fixture
async def clients(own_redis: EmbeddedRedis) -> AsyncIterator[Any]:
    made: list[Redis] = []

    def make() -> Redis:
        made.append(_client(own_redis.url))
        return made[-1]

    yield make
    for c in made:
        await c.aclose()


def _refused(error: pytest.ExceptionInfo[DomainError]) -> tuple[grpc.StatusCode, str]:
    return error.value.code, error.value.reason


async def test_a_new_process_refuses_tokens_until_it_has_read_every_revocation(
    own_redis: EmbeddedRedis, clients: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tokens, "LOAD_BATCH", 10)
    writer = SessionTokens(clients())
    kept = await writer.create("acme", "kept", [Permission.READ], 600)
    revoked = await writer.create("acme", "chat", [Permission.READ], 600)
    for i in range(34):  # another tenant's revocations come first in the log
        await writer.revoke_session("evil", f"{i:08d}" + "x" * 248)
    await writer.revoke_token("acme", revoked.token_id)  # the 35th and last

    # A fresh process whose reads of the log time out after two batches (the
    # attack: many tenants at their cap make one unbounded read time out).
    client = clients()
    reads: list[dict[str, Any]] = []
    real = client.zrangebyscore
    budget = [2]

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        reads.append(kwargs)
        if len(reads) > budget[0]:
            raise redis.exceptions.TimeoutError("Timeout reading from socket")
        return await real(*args, **kwargs)

    monkeypatch.setattr(client, "zrangebyscore", flaky)
    reader = SessionTokens(client, refresh_seconds=60)
    await reader.start()  # the load fails (counted in the log, not raised)
    try:
        assert not reader.ready
        for token in (kept.token, revoked.token):  # it has signing keys, but not every revocation
            with pytest.raises(DomainError) as info:
                reader.verify(token)
            assert _refused(info) == (grpc.StatusCode.UNAVAILABLE, "BACKEND_UNAVAILABLE")
            assert info.value.retry_after
        assert reader._seq == 20  # what the two batches read is kept
        budget[0] = 10**9
        await reader.refresh()  # goes on from there
        assert reader.ready and len(reads) == 3 + 2
        assert all(r["num"] == 10 and r["start"] == 0 for r in reads)  # every read bounded
        assert reader.verify(kept.token).session == "kept"
        with pytest.raises(DomainError) as info:
            reader.verify(revoked.token)
        assert _refused(info) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_REVOKED")
        # Once up to date, a failing poll keeps the state last read.
        budget[0] = 0
        await writer.revoke_session("acme", "other")
        with pytest.raises(DomainError) as info:
            await reader.refresh()
        assert _refused(info) == (grpc.StatusCode.UNAVAILABLE, "BACKEND_UNAVAILABLE")
        assert reader.ready and reader.verify(kept.token).session == "kept"
    finally:
        await reader.close()
    # One command per batch: the drop time is in the log entry, no ZMSCORE.
    stats = await clients().info("commandstats")
    assert "cmdstat_zmscore" not in stats


async def test_revocations_of_all_tenants_together_are_capped(
    clients: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="sessionmemory_server.tokens")
    capped = SessionTokens(clients(), max_held=3)
    issued = await capped.create("c", "s", [Permission.READ], 600)
    await capped.revoke_session("a", "s")
    await capped.revoke_session("b", "s")
    await capped.revoke_token("c", issued.token_id)
    with pytest.raises(DomainError) as info:
        await capped.revoke_session("d", "s")
    assert _refused(info) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "QUOTA_EXCEEDED")
    assert info.value.metadata == {"quota": "revocations", "limit": "3", "actual": "3"}
    assert info.value.retry_after is None and "of all tenants" in info.value.message
    assert any(
        r.getMessage() == "session-token revocations of all tenants at their maximum"
        for r in caplog.records
    )
    await capped.revoke_session("a", "s")  # revoking again is no new revocation

    # A process that may hold fewer than Redis has (a lowered cap) refuses
    # tokens rather than forget revocations.
    small = SessionTokens(clients(), refresh_seconds=60, max_held=2)
    await small.start()
    try:
        assert not small.ready and small._held() == 2
        with pytest.raises(DomainError) as info:
            small.verify(issued.token)
        assert _refused(info) == (grpc.StatusCode.UNAVAILABLE, "BACKEND_UNAVAILABLE")
    finally:
        await small.close()
    roomy = SessionTokens(clients(), refresh_seconds=60, max_held=3)
    await roomy.refresh()
    with pytest.raises(DomainError) as info:
        roomy.verify(issued.token)
    assert info.value.reason == "TOKEN_REVOKED"


async def test_a_hung_redis_at_start_fails_calls_fast_instead_of_queueing_them(
    own_redis: EmbeddedRedis, clients: Any
) -> None:
    admin = clients()
    key = await ApiKeys(admin).create("acme")
    token = (await SessionTokens(admin).create("acme", "s", [Permission.READ], 600)).token
    client = clients()
    auth = Authenticator(
        ApiKeys(client, refresh_seconds=60),
        SessionTokens(client, refresh_seconds=60),
        max_failures_per_peer=3,
    )
    assert own_redis.process is not None
    os.kill(own_redis.process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        results = await asyncio.gather(
            *(auth.authenticate(f"Bearer {c}", "ipv4:10.0.0.1:1") for c in [key, token] * 20),
            return_exceptions=True,
        )
        took = time.monotonic() - started
        for r in results:
            assert isinstance(r, DomainError), r
            assert (r.code, r.reason) == (grpc.StatusCode.UNAVAILABLE, "BACKEND_UNAVAILABLE")
        # One load per kind shared by all (each 0.5 s), not forty in a row.
        assert took < 1.5, took
        # Within the back-off: refused at once, no Redis call.
        started = time.monotonic()
        for c in (key, token, "smk_000000000000_" + "x" * 43):
            with pytest.raises(DomainError) as info:
                await auth.authenticate(f"Bearer {c}", "ipv4:10.0.0.1:1")
            assert info.value.reason == "BACKEND_UNAVAILABLE"
        assert time.monotonic() - started < 0.1
    finally:
        os.kill(own_redis.process.pid, signal.SIGCONT)
    await asyncio.sleep(1.05)  # the back-off is over
    # Refusals while Redis could not be read were no failed logins.
    assert (await auth.authenticate(f"Bearer {key}", "ipv4:10.0.0.1:1")).tenant == "acme"
    assert (await auth.authenticate(f"Bearer {token}", "ipv4:10.0.0.1:1")).session == "s"
    await auth.close()
