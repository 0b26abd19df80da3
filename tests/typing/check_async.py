"""What mypy --strict infers for the asyncio client (see README.md; checked, never run)."""

from __future__ import annotations

from typing import Any, TypedDict, assert_type, reveal_type

from sessionmemory import AsyncMemoryClient, AsyncSession, Json, Value


class Cart(TypedDict):
    items: list[str]
    total: float


EMPTY_CART: Cart = {"items": [], "total": 0.0}


async def check_get(memory: AsyncSession) -> None:
    reveal_type(await memory.get("b", False))  # N: Revealed type is "bool"
    reveal_type(await memory.get("n", 0))  # N: Revealed type is "int | float"
    reveal_type(await memory.get("x", 0.0))  # N: Revealed type is "float"
    reveal_type(await memory.get("s", ""))  # N: Revealed type is "str"
    assert_type(await memory.get("k"), Value | None)
    assert_type(await memory.get("cart", {}), dict[str, Any])
    assert_type(await memory.get("tags", []), list[Any])
    assert_type(await memory.get("b", True, timeout=2.5), bool)


async def check_get_json(memory: AsyncSession) -> None:
    assert_type(await memory.get_json("k"), Json | None)
    reveal_type(await memory.get_json("cart", EMPTY_CART))  # N: Revealed type is "TypedDict(tests.typing.check_async.Cart, {'items': list[str], 'total': float})"
    assert_type(await memory.get_json("cart", EMPTY_CART, timeout=1), Cart)
    # A JSON null is a value (None), present in get_many's result and in an Entry.
    assert_type(await memory.get_many(["a", "b"]), dict[str, Value | None])
    entry = await memory.get_entry("k")
    assert entry is not None
    assert_type(entry.value, Value | None)


async def check_from_env() -> None:
    client = AsyncMemoryClient.from_env(address="127.0.0.1:50051", api_key="smk_id_secret")
    assert_type(client, AsyncMemoryClient)
    AsyncMemoryClient.from_env(timout=3)  # E: Unexpected keyword argument "timout" for "from_env" of "AsyncMemoryClient"; did you mean "timeout"?  [call-arg]
    await client.close()


async def check_timeouts(client: AsyncMemoryClient, memory: AsyncSession) -> None:
    await memory.set("k", "v", ttl=60, timeout=2)
    await memory.list(timeout=0.5)
    await client.get_limits(timeout=1)
    stream = memory.watch(timeout=30)
    await stream.aclose()
