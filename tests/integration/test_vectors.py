"""The shared vectors (tests/vectors/*.json), run through the Python client."""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path
from typing import Any

import pytest

from sessionmemory import AsyncMemoryClient, MemoryApiError

VECTORS = Path(__file__).parent.parent / "vectors"
CASES = [case for path in sorted(VECTORS.glob("*.json")) for case in json.loads(path.read_text())]
_NUMBERS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf, "-0": -0.0}


def decode(value: Any) -> Any:
    """Expand the vector encodings ($repeat, $number, $keys)."""
    if isinstance(value, dict):
        if "$repeat" in value:
            text, count = value["$repeat"]
            return text * count
        if "$number" in value:
            return _NUMBERS[value["$number"]]
        if "$keys" in value:
            return [f"k{i}" for i in range(value["$keys"])]
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value


async def run_step(memory: Any, op: str, a: dict[str, Any]) -> Any:
    if op == "set":
        return await memory.set(
            a["key"], a["value"], ttl=a.get("ttl"), if_version=a.get("if_version"),
            only_if_absent=a.get("only_if_absent", False),
        )  # fmt: skip
    if op == "set_json":
        return await memory.set_json(a["key"], a["value"], ttl=a["ttl"])
    if op == "get":
        return await memory.get(a["key"])
    if op == "increment":
        return await memory.increment(
            a["key"], a["delta"], ttl=a.get("ttl"), request_id=a.get("request_id")
        )
    if op == "delete":
        return await memory.delete(a["keys"])
    if op == "touch":
        return await memory.touch(a["keys"], ttl=a["ttl"])
    if op == "get_many":
        return await memory.get_many(a["keys"])
    raise AssertionError(f"unknown op {op}")


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
async def test_vector(case: dict[str, Any], server: Any, api_key: str) -> None:
    async with AsyncMemoryClient(server.address, api_key=api_key) as client:
        memory = client.session(f"vector-{uuid.uuid4().hex}")
        for i, step in enumerate(case["steps"]):
            expect = decode(step["expect"])
            try:
                result = await run_step(memory, step["op"], decode(step["args"]))
            except MemoryApiError as err:
                assert "error" in expect, f"step {i}: unexpected {err}"
                assert (err.code, err.status.name) == (expect["error"], expect["status"]), i
                continue
            assert "error" not in expect, f"step {i}: expected {expect['error']}, got {result}"
            if "value" in expect:
                assert result == expect["value"], f"step {i}"
