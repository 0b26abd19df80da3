"""Tenants never see each other, whatever the session ids and keys are."""

from __future__ import annotations

from typing import Any

import pytest

from sessionmemory import AuthenticationError, ConflictError, SetItem


@pytest.fixture(scope="module")
def other_key(server: Any) -> str:
    return str(server.create_key("globex"))


async def test_tenants_are_isolated(make_memory: Any, sid: str, other_key: str) -> None:
    acme = make_memory(sid)
    globex = make_memory(sid, key=other_key)
    await acme.set("secret", "acme-only")
    await acme.set_json("cart", {"items": [1]}, ttl=60)
    await acme.increment("pin")
    # Reads: a miss, not an error.
    assert await globex.get("secret") is None
    assert await globex.get_many(["secret", "cart", "pin"]) == {}
    assert await globex.list() == []
    # Writes land in globex's own space.
    await globex.set("secret", "globex", only_if_absent=True)
    assert await globex.increment("pin") == 1
    assert await globex.touch(["cart"], ttl=5) == 0
    assert await globex.delete(["secret", "cart"]) == 1
    assert await globex.clear() == 1
    with pytest.raises(ConflictError):
        await globex.set_many([SetItem("cart", 1, if_version=1)])
    # acme is untouched.
    assert await acme.get("secret") == "acme-only"
    assert await acme.get_json("cart") == {"items": [1]}
    assert await acme.get("pin") == 1
    assert [i.key for i in await acme.list()] == ["cart", "pin", "secret"]


async def test_revoked_key_stops_working(make_memory: Any, server: Any, sid: str) -> None:
    from sessionmemory_server.auth import ApiKeys

    key = server.create_key("initech")
    memory = make_memory(sid, key=key)
    await memory.set("k", "v")
    key_id = key.split("_")[1]
    assert server.run(ApiKeys(server.built.redis).revoke([key_id])) == 1
    with pytest.raises(AuthenticationError) as info:
        await memory.get("k")
    assert info.value.code == "API_KEY_INVALID"


async def test_keys_are_stored_only_as_hashes(server: Any, redis: Any) -> None:
    key = server.create_key("hooli")
    secret = key.split("_", 2)[2]
    stored = await redis.hgetall("sm:apikeys")
    assert stored, "keys live in the sm:apikeys hash"
    assert all(secret.encode() not in v and key.encode() not in v for v in stored.values())
