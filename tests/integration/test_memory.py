"""The behaviour suite: every RPC and limit through the real server, sync and async."""

from __future__ import annotations

import asyncio
import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest

from sessionmemory import (
    ConflictError,
    InvalidArgumentError,
    LimitExceededError,
    MemoryTypeError,
    MemoryUnavailableError,
    NotANumberError,
    SetItem,
)


async def reject(coro: Any, reason: str, exc: type[Exception] = InvalidArgumentError) -> Any:
    with pytest.raises(exc) as info:
        await coro
    assert info.value.code == reason, info.value
    return info.value


# --- reads and typed conversion -------------------------------------------------


async def test_missing_key_is_a_miss_not_an_error(memory: Any) -> None:
    assert await memory.get("nothing") is None
    assert await memory.get("nothing", 7) == 7
    assert await memory.get_entry("nothing") is None
    assert await memory.get_many(["a", "b"]) == {}


async def test_values_round_trip_with_kind_version_and_expiry(memory: Any) -> None:
    before = datetime.now(UTC)
    written = await memory.set("name", "Zoë 🎉", ttl=60)
    entry = await memory.get_entry("name")
    assert entry.value == "Zoë 🎉"
    assert entry.kind == "string"
    assert entry.version == written.version > 0
    assert before + timedelta(seconds=58) < entry.expires_at <= before + timedelta(seconds=62)
    await memory.set("n", 12.5)
    await memory.set("flag", True)
    await memory.set("count", 3)
    assert await memory.get_many(["flag", "n", "count"]) == {"flag": True, "n": 12.5, "count": 3}


async def test_get_converts_to_the_default_type_exactly(memory: Any) -> None:
    await memory.set("s3", "3")
    await memory.set("s", "abc")
    await memory.set("n", 3)
    await memory.set("half", 2.5)
    await memory.set("yes", "true")
    assert await memory.get("s3", 0) == 3
    assert await memory.get("s3", 0.0) == 3.0
    assert await memory.get("n", "") == "3"
    assert await memory.get("n", 0) == 3
    assert await memory.get("yes", False) is True
    assert await memory.get("half", 0) == 2.5  # a number default reads any number
    assert await memory.get("half", "") == "2.5"
    with pytest.raises(MemoryTypeError):
        await memory.get("s", 0)
    with pytest.raises(MemoryTypeError):
        await memory.get("half", False)


async def test_every_write_changes_the_version(memory: Any) -> None:
    v1 = (await memory.set("k", "a")).version
    v2 = (await memory.set("k", "a")).version
    await memory.delete("k")
    v3 = (await memory.set("k", "a")).version
    assert v1 < v2 < v3


# --- limits at their edges -----------------------------------------------------


async def test_string_length_edge(memory: Any) -> None:
    await memory.set("s", "x" * 255)
    assert await memory.get("s") == "x" * 255
    await memory.set("astral", "😀" * 255)  # code points, not UTF-16 units or bytes
    err = await reject(memory.set("s", "y" * 256), "VALUE_TOO_LONG")
    assert err.metadata == {"field": "string_value", "limit": "255", "actual": "256"}
    assert "256 characters; the limit is 255" in err.message
    assert await memory.get("s") == "x" * 255  # unchanged


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (123456789012345, None),
        (0.123456789012345, None),
        (-999999999999999, None),
        (1234567890123456, "NUMBER_OUT_OF_RANGE"),
        (1e15, "NUMBER_OUT_OF_RANGE"),
        (0.1234567890123456, "NUMBER_TOO_PRECISE"),
        (math.nan, "NUMBER_NOT_FINITE"),
        (math.inf, "NUMBER_NOT_FINITE"),
    ],
)
async def test_number_edges(memory: Any, value: float, reason: str | None) -> None:
    if reason is None:
        await memory.set("n", value)
        assert await memory.get("n") == value
    else:
        await reject(memory.set("n", value), reason)
        assert await memory.get("n") is None


async def test_negative_zero_is_stored_as_zero(memory: Any) -> None:
    await memory.set("z", -0.0)
    value = await memory.get("z", 0.0)
    assert value == 0 and math.copysign(1, value) == 1


def _json_of_size(size: int) -> list[str]:
    # ["xxx..."] is 4 bytes of syntax plus the string.
    return ["x" * (size - 4)]


async def test_json_size_edge(memory: Any) -> None:
    ok = _json_of_size(5120)
    assert len(json.dumps(ok, separators=(",", ":"))) == 5120
    await memory.set_json("j", ok, ttl=60)
    err = await reject(memory.set_json("j", _json_of_size(5121), ttl=60), "JSON_TOO_LARGE")
    assert err.metadata["actual"] == "5121"
    # Multi-byte characters count in UTF-8 bytes.
    await reject(memory.set_json("j", ["é" * 2559], ttl=60), "JSON_TOO_LARGE")
    assert await memory.get_json("j") == ok


async def test_json_depth_edge(memory: Any) -> None:
    def nested(depth: int) -> Any:
        value: Any = 1
        for _ in range(depth):
            value = [value]
        return value

    await memory.set_json("d", nested(32), ttl=60)
    await reject(memory.set_json("d", nested(33), ttl=60), "JSON_TOO_DEEP")
    await reject(memory.set_json("d", {"a": nested(32)}, ttl=60), "JSON_TOO_DEEP")


@pytest.mark.parametrize(
    ("ttl", "reason"),
    [
        (None, None),
        (1, None),
        (86_400, None),
        (0, "TTL_OUT_OF_RANGE"),
        (-5, "TTL_OUT_OF_RANGE"),
        (86_401, "TTL_OUT_OF_RANGE"),
    ],
)
async def test_primitive_ttl_edges(memory: Any, ttl: int | None, reason: str | None) -> None:
    if reason:
        await reject(memory.set("k", "v", ttl=ttl), reason)
        return
    await memory.set("k", "v", ttl=ttl)
    entry = await memory.get_entry("k")
    expected = 86_400 if ttl is None else ttl
    left = (entry.expires_at - datetime.now(UTC)).total_seconds()
    assert expected - 2 <= left <= expected


async def test_json_ttl_bounds(memory: Any) -> None:
    await reject(memory.set_json("j", {}, ttl=0), "TTL_OUT_OF_RANGE")
    await reject(memory.set_json("j", {}, ttl=86_401), "TTL_OUT_OF_RANGE")
    await memory.set_json("j", {}, ttl=86_400)


async def test_keys_and_session_ids_are_checked(make_memory: Any, memory: Any) -> None:
    await memory.set("_ok-Key_9", 1)
    await memory.set("k" * 128, 1)
    for bad in ["", "9lives", "a.b", "k" * 129, "sp ace", "é"]:
        await reject(memory.set(bad, 1), "INVALID_KEY")
    await make_memory("s" * 256).set("k", 1)
    await reject(make_memory("s" * 257).set("k", 1), "INVALID_SESSION_ID")
    await reject(make_memory("tab\there").get("k"), "INVALID_SESSION_ID")
    # Braces, colons and percent signs in session ids are just characters.
    a, b = make_memory("x}:v:y"), make_memory("x%7D:v:y")
    await a.set("k", "a")
    await b.set("k", "b")
    assert (await a.get("k"), await b.get("k")) == ("a", "b")


async def test_batches_are_limited_to_100_keys(memory: Any) -> None:
    await memory.get_many([f"k{i}" for i in range(100)])
    await reject(memory.get_many([f"k{i}" for i in range(101)]), "TOO_MANY_KEYS")
    await reject(memory.delete([]), "TOO_MANY_KEYS")
    await reject(memory.set_many({f"k{i}": i for i in range(101)}), "TOO_MANY_KEYS")


# --- writes: all or nothing, preconditions, increment -----------------------------


async def test_set_many_is_all_or_nothing(memory: Any) -> None:
    await memory.set("a", "old")
    await reject(memory.set_many({"a": "new", "b": "x" * 256}), "VALUE_TOO_LONG")
    await reject(
        memory.set_many(
            [
                SetItem("a", "new"),
                SetItem("c", "c", only_if_absent=True),
                SetItem("a2", "x", if_version=12345),
            ]
        ),
        "VERSION_MISMATCH",
        ConflictError,
    )
    await reject(memory.set_many([SetItem("a", 1), SetItem("a", 2)]), "DUPLICATE_KEY")
    assert await memory.get_many(["a", "b", "c", "a2"]) == {"a": "old"}
    results = await memory.set_many(
        [SetItem("a", "new"), SetItem("cart", {"items": []}, ttl=60), SetItem("n", 2)]
    )
    assert [r.key for r in results] == ["a", "cart", "n"]
    assert await memory.get_many(["a", "cart", "n"]) == {"a": "new", "cart": {"items": []}, "n": 2}
    await reject(memory.set_many([SetItem("j", {"x": 1})]), "TTL_REQUIRED")


async def test_preconditions(memory: Any) -> None:
    first = await memory.set("k", "a", only_if_absent=True)
    err = await reject(memory.set("k", "b", only_if_absent=True), "KEY_EXISTS", ConflictError)
    assert err.status == grpc.StatusCode.ABORTED
    second = await memory.set("k", "b", if_version=first.version)
    await reject(memory.set("k", "c", if_version=first.version), "VERSION_MISMATCH", ConflictError)
    await memory.set_json("k", [1], ttl=60, if_version=second.version)
    assert await memory.get_json("k") == [1]
    await reject(memory.set("gone", "x", if_version=5), "VERSION_MISMATCH", ConflictError)
    await reject(memory.set("k", "x", if_version=-1), "INVALID_PRECONDITION")


async def test_concurrent_conditional_sets_exactly_one_wins(make_memory: Any, sid: str) -> None:
    sessions = [make_memory(sid) for _ in range(4)]

    async def attempt(i: int) -> bool:
        try:
            await sessions[i % 4].set("winner", f"w{i}", only_if_absent=True)
        except ConflictError:
            return False
        return True

    outcomes = await asyncio.gather(*(attempt(i) for i in range(40)))
    assert outcomes.count(True) == 1
    winner = outcomes.index(True)
    assert await sessions[0].get("winner") == f"w{winner}"


async def test_concurrent_increments_lose_nothing(make_memory: Any, sid: str) -> None:
    sessions = [make_memory(sid) for _ in range(4)]
    await asyncio.gather(*(sessions[i % 4].increment("hits", 1) for i in range(200)))
    assert await sessions[0].get("hits") == 200


async def test_increment_rules(memory: Any) -> None:
    assert await memory.increment("c", 2.5) == 2.5
    assert await memory.increment("c", -0.5) == 2
    await memory.set("s", "text")
    err = await reject(memory.increment("s"), "NOT_A_NUMBER", NotANumberError)
    assert err.status == grpc.StatusCode.FAILED_PRECONDITION
    await memory.set("big", 999_999_999_999_999)
    await reject(memory.increment("big", 1), "NUMBER_OUT_OF_RANGE", Exception)
    assert await memory.get("big") == 999_999_999_999_999
    await memory.set("f", 0.1)
    await reject(memory.increment("f", 0.2), "NUMBER_TOO_PRECISE", Exception)
    assert await memory.get("f") == 0.1
    await reject(memory.increment("c", math.nan), "NUMBER_NOT_FINITE")


async def test_increment_with_the_same_request_id_counts_once(memory: Any) -> None:
    assert await memory.increment("pin", 1, request_id="turn-1") == 1
    assert await memory.increment("pin", 1, request_id="turn-1") == 1
    assert await memory.increment("pin", 1, request_id="turn-2") == 2
    assert await memory.increment("pin", 1) == 3  # the client makes up a fresh id


# --- delete, touch, list, clear, expiry --------------------------------------------


async def test_delete_counts_what_existed(memory: Any) -> None:
    await memory.set_many({"a": 1, "b": 2})
    assert await memory.delete(["a", "b", "c", "a"]) == 2
    assert await memory.delete("a") == 0


async def test_touch_sets_a_new_ttl_without_rewriting(memory: Any) -> None:
    written = await memory.set("k", "v", ttl=5)
    await memory.set_json("j", {"a": 1}, ttl=5)
    assert await memory.touch(["k", "j", "missing"], ttl=3000) == 2
    entry = await memory.get_entry("k")
    assert entry.version == written.version and entry.value == "v"
    assert (entry.expires_at - datetime.now(UTC)).total_seconds() > 2990
    await reject(memory.touch(["k"], ttl=86_401), "TTL_OUT_OF_RANGE")
    await reject(memory.touch(["k"], ttl=0), "TTL_OUT_OF_RANGE")


async def test_list_and_clear(memory: Any) -> None:
    await memory.set("b", "hello")
    await memory.set("a", 12.5)
    await memory.set("c", True)
    await memory.set_json("d", {"x": [1, 2]}, ttl=60)
    infos = await memory.list()
    assert [(i.key, i.kind, i.size_bytes) for i in infos] == [
        ("a", "number", 4),
        ("b", "string", 5),
        ("c", "boolean", 1),
        ("d", "json", 11),
    ]
    assert await memory.clear() == 4
    assert await memory.list() == []
    assert await memory.clear() == 0


async def test_values_really_expire(memory: Any, redis: Any) -> None:
    await memory.set("short", "x", ttl=1)
    await memory.set("long", "y", ttl=60)
    await asyncio.sleep(1.2)
    assert await memory.get("short") is None
    assert [i.key for i in await memory.list()] == ["long"]
    await memory.delete("long")
    # Nothing of the session is left behind but the version counter and the change
    # log (which expire too).
    keys = await redis.keys(f"*{memory.session_id}*")
    assert all(k.endswith((b":n", b":w")) for k in keys)
    assert all(ttl > 0 for ttl in [await redis.pttl(k) for k in keys])


async def test_every_stored_key_has_a_ttl(memory: Any, redis: Any) -> None:
    await memory.set_many({"a": 1, "b": "x"})
    await memory.set_json("j", [1], ttl=10)
    await memory.increment("c", request_id="r1")
    keys = await redis.keys(f"*{memory.session_id}*")
    assert len(keys) == 8  # 4 values, index, counter, change log, request-id record
    assert all(ttl > 0 for ttl in [await redis.pttl(k) for k in keys])


async def test_session_key_limit(memory: Any) -> None:
    for start in range(0, 1000, 100):
        await memory.set_many({f"k{i}": i for i in range(start, start + 100)})
    err = await reject(memory.set("one_more", 1), "SESSION_FULL", LimitExceededError)
    assert err.status == grpc.StatusCode.RESOURCE_EXHAUSTED and not err.is_rate_limit()
    await reject(memory.increment("one_more"), "SESSION_FULL", LimitExceededError)
    await memory.set("k5", "overwrite is fine")
    await memory.delete("k0")
    await memory.set("one_more", 1)


# --- availability, limits -------------------------------------------------------


async def test_unavailable_without_session_or_key(make_memory: Any) -> None:
    for memory in (make_memory(""), make_memory("s1", key=None)):
        assert memory.available is False
        with pytest.raises(MemoryUnavailableError):
            await memory.get("k")
    assert make_memory("s1").available is True


async def test_get_limits(server: Any, api_key: str) -> None:
    from sessionmemory import AsyncMemoryClient

    async with AsyncMemoryClient(server.address, api_key=api_key) as client:
        limits = await client.get_limits()
    assert limits.max_string_length == 255
    assert limits.max_json_bytes == 5120
    assert limits.max_file_bytes == 10 * 1024 * 1024
    assert "application/pdf" in limits.allowed_mime_types
    assert limits.max_batch_keys == 100
