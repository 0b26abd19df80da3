"""What mypy --strict infers for the sync client (see README.md; checked, never run)."""

from __future__ import annotations

from typing import Any, TypedDict, assert_type, reveal_type

from sessionmemory import Json, MemoryClient, Session, Value, WriteResult


class Cart(TypedDict):
    items: list[str]
    total: float


EMPTY_CART: Cart = {"items": [], "total": 0.0}


def check_get(memory: Session) -> None:
    reveal_type(memory.get("b", False))  # N: Revealed type is "bool"
    reveal_type(memory.get("n", 0))  # N: Revealed type is "int | float"
    reveal_type(memory.get("x", 0.0))  # N: Revealed type is "float"
    reveal_type(memory.get("s", ""))  # N: Revealed type is "str"
    assert_type(memory.get("k"), Value | None)
    assert_type(memory.get("k", None), Value | None)
    assert_type(memory.get("cart", {}), dict[str, Any])
    assert_type(memory.get("tags", []), list[Any])
    assert_type(memory.get("n", 0, timeout=2.5), int | float)
    memory.get("n", (1, 2))  # E: No overload variant of "get" of "Session" matches argument types "str", "tuple[int, int]"  [call-overload]


def check_get_json(memory: Session) -> None:
    assert_type(memory.get_json("k"), Json | None)
    reveal_type(memory.get_json("cart", EMPTY_CART))  # N: Revealed type is "TypedDict(tests.typing.check_sync.Cart, {'items': list[str], 'total': float})"
    assert_type(memory.get_json("cart", EMPTY_CART, timeout=1), Cart)
    assert_type(memory.get_json("n", 0), int)
    # A JSON null is a value (None), present in get_many's result and in an Entry.
    assert_type(memory.get_many(["a", "b"]), dict[str, Value | None])
    entry = memory.get_entry("k")
    assert entry is not None
    assert_type(entry.value, Value | None)


def check_from_env() -> None:
    client = MemoryClient.from_env(address="127.0.0.1:50051", api_key="smk_id_secret", timeout=3)
    assert_type(client, MemoryClient)
    MemoryClient.from_env(timout=3)  # E: Unexpected keyword argument "timout" for "from_env" of "MemoryClient"; did you mean "timeout"?  [call-arg]
    MemoryClient.from_env(timeout="3")  # E: Argument "timeout" to "from_env" of "MemoryClient" has incompatible type "str"; expected "float"  [arg-type]


def check_timeouts(client: MemoryClient, memory: Session) -> None:
    assert_type(memory.set("k", "v", ttl=60, timeout=2), WriteResult)
    # A wrong assert_type is reported: so every other one above holds.
    assert_type(memory.get("n", 0), int)  # E: Expression is of type "int | float", not "int"  [assert-type]
    memory.list(timeout=0.5)
    memory.increment("n", timeout=1)
    client.get_limits(timeout=1)
    memory.watch(timeout=30).close()
    memory.clear(5)  # E: Too many positional arguments for "clear" of "Session"  [call-arg]
