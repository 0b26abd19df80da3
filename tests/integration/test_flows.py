"""Seed flows written the way bot handlers write them, for the sync and async client."""

from __future__ import annotations

from typing import Any


async def test_multi_step_registration(memory: Any) -> None:
    # Turn 1: new user, no step yet.
    assert await memory.get("step", "start") == "start"
    await memory.set("step", "name", ttl=3600)
    # Turn 2: the user sends their name.
    assert await memory.get("step", "start") == "name"
    await memory.set_many({"name": "Ada", "step": "email"}, ttl=3600)
    # Turn 3: email, then done.
    assert await memory.get("step", "start") == "email"
    await memory.set("email", "ada@example.com", ttl=3600)
    profile = await memory.get_many(["name", "email", "phone"])
    assert profile == {"name": "Ada", "email": "ada@example.com"}
    await memory.delete(["step", "name", "email"])
    assert await memory.get("step", "start") == "start"


async def test_shopping_cart_in_json(memory: Any) -> None:
    empty = {"items": [], "total": 0}
    cart = await memory.get_json("cart", empty)
    assert cart == empty
    cart["items"].append({"sku": "tea", "qty": 2, "price": 3.5})
    cart["total"] = 7.0
    await memory.set_json("cart", cart, ttl=86400)
    cart = await memory.get_json("cart", empty)
    assert cart == {"items": [{"sku": "tea", "qty": 2, "price": 3.5}], "total": 7.0}
    cart["items"].append({"sku": "cake", "qty": 1, "price": 4.25})
    cart["total"] = 11.25
    await memory.set_json("cart", cart, ttl=86400)
    assert (await memory.get_json("cart"))["total"] == 11.25
    [info] = await memory.list()
    assert (info.key, info.kind) == ("cart", "json")
    assert await memory.clear() == 1
    assert await memory.get_json("cart", empty) == empty


async def test_pin_attempt_limit(memory: Any) -> None:
    max_attempts = 3
    results = []
    for _ in range(5):
        attempts = await memory.increment("pin_attempts", 1, ttl=1800)
        results.append("locked" if attempts > max_attempts else "try again")
    assert results == ["try again"] * 3 + ["locked"] * 2
    assert await memory.get("pin_attempts", 0) == 5
    await memory.delete("pin_attempts")
    assert await memory.increment("pin_attempts", 1, ttl=1800) == 1
