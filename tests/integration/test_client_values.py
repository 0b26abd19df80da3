"""Reads at the edges of the value model, sync and async, through the real server.

- A JSON null (stored with set_json, or found at a path) is a value: it reads as None,
  never as an error, and a typed default refuses it with a readable MemoryTypeError.
- A miss hands out a fresh copy of a dict or list default, so a caller that mutates
  what it got cannot change what the next miss returns.
- ``timeout=math.inf`` means "no deadline", not an instant DEADLINE_EXCEEDED.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

import pytest

from sessionmemory import MemoryClient, MemoryTypeError

from ..conftest import ServerThread


async def test_a_stored_json_null_reads_as_none_not_as_an_error(memory: Any) -> None:
    await memory.set_json("cleared", None, ttl=60)
    await memory.set_json("profile", {"nickname": None, "age": 7}, ttl=60)
    assert await memory.get("cleared") is None
    assert await memory.get("profile.nickname") is None
    assert await memory.get_json("cleared") is None
    assert await memory.get_json("cleared", {"fallback": True}) is None  # found, not a miss
    entry = await memory.get_entry("cleared")
    assert entry is not None and entry.kind == "json" and entry.value is None
    path = await memory.get_entry("profile.nickname")
    assert path is not None and path.value is None
    # Unlike a missing key, a null one is in get_many's result.
    got = await memory.get_many(["cleared", "profile.nickname", "profile.age", "absent"])
    assert got == {"cleared": None, "profile.nickname": None, "profile.age": 7}


@pytest.mark.parametrize("default", [0, 0.0, "", False, {}, []])
async def test_a_json_null_never_converts_to_a_typed_default(memory: Any, default: Any) -> None:
    await memory.set_json("cleared", None, ttl=60)
    with pytest.raises(MemoryTypeError, match=r"key 'cleared' holds JSON null, which cannot be"):
        await memory.get("cleared", default)


async def test_a_miss_hands_out_a_fresh_copy_of_a_container_default(memory: Any) -> None:
    empty_cart: dict[str, Any] = {"items": [], "total": 0}
    cart = await memory.get_json("cart", empty_cart)
    assert cart == empty_cart and cart is not empty_cart
    cart["items"].append("apple")
    assert empty_cart == {"items": [], "total": 0}
    assert await memory.get_json("cart", empty_cart) == {"items": [], "total": 0}
    tags: list[str] = []
    got = await memory.get("tags", tags)
    got.append("x")
    assert tags == [] and await memory.get("tags", tags) == []
    prefs = await memory.get("prefs", empty_cart)
    prefs["items"].append("pear")
    assert empty_cart == {"items": [], "total": 0}
    # Anything else is returned as it is: a sentinel still compares by identity.
    missing = object()
    assert await memory.get_json("nothing", missing) is missing


async def test_an_infinite_timeout_is_no_deadline(memory: Any) -> None:
    await memory.set("k", "v", timeout=math.inf)
    assert await memory.get("k", "", timeout=math.inf) == "v"
    assert await memory.get("k", "", timeout=1e12) == "v"


@pytest.mark.timeout(30)
def test_a_watch_with_an_infinite_timeout_delivers(server: ServerThread, api_key: str) -> None:
    with MemoryClient(server.address, api_key=api_key, timeout=math.inf) as client:
        memory = client.session(f"values-{uuid.uuid4().hex}")
        memory.set("k", "v")
        with memory.watch(after_revision=0, timeout=math.inf) as changes:
            change = next(changes)
        assert (change.key, change.operation) == ("k", "set")
