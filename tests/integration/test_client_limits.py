"""The Python client against the real server: rate limits, quotas' limits, session tokens.

A tenant with low limits (5 reads and 5 writes per second, bursts of 5) is driven
over them: the client reports ``is_rate_limit()`` and ``retry_after`` and does
not retry by itself. Session tokens work in place of an API key, on their one
session only, until revoked.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from sessionmemory import (
    AsyncMemoryClient,
    AuthenticationError,
    LimitExceededError,
    MemoryClient,
    PermissionDeniedError,
)
from sessionmemory_server.limits import set_overrides
from sessionmemory_server.testing import LIMITED_TENANT_LIMITS
from tests.conftest import ServerThread


def limited_key(server: ServerThread) -> str:
    """An API key of a fresh tenant with `LIMITED_TENANT_LIMITS`."""
    tenant = f"limited-{uuid.uuid4().hex[:12]}"
    server.run(set_overrides(server.built.redis, tenant, LIMITED_TENANT_LIMITS))
    return server.create_key(tenant)


@pytest.fixture
async def limited(server: ServerThread) -> AsyncIterator[AsyncMemoryClient]:
    """An async client of a tenant with low rate limits."""
    async with AsyncMemoryClient(server.address, api_key=limited_key(server), timeout=5) as client:
        yield client


@pytest.fixture
async def tenant(server: ServerThread, api_key: str) -> AsyncIterator[AsyncMemoryClient]:
    """An async client of tenant "acme" (default limits)."""
    async with AsyncMemoryClient(server.address, api_key=api_key, timeout=5) as client:
        yield client


async def until_limited(call: Callable[[], Awaitable[Any]], seconds: float = 5.0) -> Any:
    """Call until the server refuses with a rate limit; that error."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            await call()
        except LimitExceededError as err:
            if err.is_rate_limit():
                return err
            raise
    pytest.fail(f"no RATE_LIMITED within {seconds} s")


async def test_writes_over_the_limit_are_rate_limited_with_retry_after(
    limited: AsyncMemoryClient,
) -> None:
    memory = limited.session(f"conv-{uuid.uuid4().hex}")
    err = await until_limited(lambda: memory.set("step", "confirm"))
    assert err.code == "RATE_LIMITED" and not err.is_quota_exceeded()
    assert err.retry_after is not None and 0 < err.retry_after <= 1.0
    assert err.metadata["limit"] == "writes"
    # Waiting what the server said lets the next call pass (nothing retried for us).
    await asyncio.sleep(err.retry_after)
    await memory.set("step", "confirm")
    assert await memory.get("step") == "confirm"


async def test_reads_and_writes_have_their_own_limits(limited: AsyncMemoryClient) -> None:
    memory = limited.session(f"conv-{uuid.uuid4().hex}")
    err = await until_limited(lambda: memory.get("step"))
    assert err.is_rate_limit() and err.metadata["limit"] == "reads"
    await memory.set("step", "start")  # the write bucket is untouched


async def test_get_limits_reports_the_tenants_limits_and_usage(
    limited: AsyncMemoryClient, tenant: AsyncMemoryClient
) -> None:
    # Overrides reach every server process within about a second.
    deadline = time.monotonic() + 3
    while (own := (await limited.get_limits()).tenant_limits).reads_per_second != 5:
        assert time.monotonic() < deadline, f"the overrides are not in force: {own}"
        await asyncio.sleep(0.1)
    assert (own.reads_per_second, own.read_burst) == (5, 5)
    assert (own.writes_per_second, own.write_burst) == (5, 5)
    await tenant.session(f"conv-{uuid.uuid4().hex}").set("k", "v")
    limits = await tenant.get_limits()
    assert limits.tenant_limits.read_burst != 5  # acme follows the defaults
    assert limits.tenant_usage.sessions >= 1 and limits.max_key_length > 0


async def test_another_tenant_is_not_limited(
    limited: AsyncMemoryClient, tenant: AsyncMemoryClient
) -> None:
    sid = f"conv-{uuid.uuid4().hex}"
    await until_limited(lambda: limited.session(sid).set("k", "v"))
    for _ in range(20):
        await tenant.session(sid).set("k", "v")


# --- session tokens -------------------------------------------------------------


async def wait_refused(call: Callable[[], Awaitable[Any]], seconds: float = 2.0) -> Any:
    """Call until it fails with an authentication error (within ``seconds``); that error."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            await call()
        except AuthenticationError as err:
            return err
        if time.monotonic() > deadline:
            pytest.fail(f"the revoked token still worked after {seconds} s")
        await asyncio.sleep(0.05)


async def test_a_session_token_works_on_its_session_only(
    server: ServerThread, tenant: AsyncMemoryClient
) -> None:
    sid, other = f"conv-{uuid.uuid4().hex}", f"conv-{uuid.uuid4().hex}"
    await tenant.session(sid).set("name", "Ada")
    issued = await tenant.create_session_token(sid, ["read", "write"], ttl_seconds=600)
    assert issued.token.startswith("smt_") and issued.token_id
    assert 590 < issued.expires_at.timestamp() - time.time() <= 601

    async with AsyncMemoryClient(server.address, api_key=issued.token) as browser:
        memory = browser.session(sid)
        assert await memory.get("name") == "Ada"
        await memory.set("step", "confirm")
        assert await tenant.session(sid).get("step") == "confirm"

        with pytest.raises(PermissionDeniedError) as caught:
            await browser.session(other).get("name")
        assert caught.value.code == "PERMISSION_DENIED"
        with pytest.raises(PermissionDeniedError):
            await memory.set_file("f", b"hello", ttl=60, mime="text/plain")  # no "files"
        with pytest.raises(PermissionDeniedError):
            await browser.create_session_token(sid)  # a token cannot mint tokens
        with pytest.raises(PermissionDeniedError):
            await browser.list_schemas()

        await tenant.revoke_session_token(token_id=issued.token_id)
        err = await wait_refused(lambda: memory.get("name"))
        assert err.code == "TOKEN_REVOKED"


async def test_a_read_token_cannot_write_and_revoking_a_session_stops_its_tokens(
    server: ServerThread, tenant: AsyncMemoryClient
) -> None:
    sid = f"conv-{uuid.uuid4().hex}"
    issued = await tenant.create_session_token(sid)  # read only, 15 minutes
    async with AsyncMemoryClient(server.address, api_key=issued.token) as browser:
        memory = browser.session(sid)
        assert await memory.get("missing", "none") == "none"
        with pytest.raises(PermissionDeniedError) as caught:
            await memory.set("k", "v")
        assert caught.value.metadata["permission"] == "write"
        await tenant.revoke_session_token(session_id=sid)
        assert (await wait_refused(lambda: memory.get("k"))).code == "TOKEN_REVOKED"


def test_the_sync_client_takes_a_token_from_the_environment(
    server: ServerThread, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = f"conv-{uuid.uuid4().hex}"
    with MemoryClient(server.address, api_key=api_key) as client:
        issued = client.create_session_token(sid, ("read", "write", "files"), ttl_seconds=60)
        with pytest.raises(ValueError, match="exactly one"):
            client.revoke_session_token()
    monkeypatch.setenv("SESSION_MEMORY_ADDR", server.address)
    monkeypatch.setenv("SESSION_MEMORY_API_KEY", issued.token)
    with MemoryClient.from_env() as browser:
        memory = browser.session(sid)
        assert memory.available
        memory.set_json("cart", {"items": 2}, ttl=60)
        assert memory.get("cart.items") == 2
        assert memory.set_file("note", b"hi", ttl=60, mime="text/plain").size_bytes == 2
        with pytest.raises(PermissionDeniedError):
            browser.session("another").get("cart")
