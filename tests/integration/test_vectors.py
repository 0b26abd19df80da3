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


class CaseState:
    """What the steps of one case share: the schema-name suffix and the last revision."""

    def __init__(self, client: AsyncMemoryClient) -> None:
        self.client = client
        # Schemas are tenant-wide and suites may share a tenant: one suffix per case.
        self.suffix = uuid.uuid4().hex[:8]
        self.revision = 0

    def schema(self, name: str | None) -> str | None:
        """A schema name of the case, made unique (None and "" as they are)."""
        return f"{name}_{self.suffix}" if name else name

    def if_revision(self, value: Any) -> int | None:
        """`{"$revision": d}` is the latest update/document revision + d."""
        if isinstance(value, dict) and "$revision" in value:
            return self.revision + int(value["$revision"])
        return value


async def run_step(memory: Any, op: str, a: dict[str, Any], state: CaseState) -> Any:
    if op == "update":
        state.revision = await memory.update(
            a["patch"], ttl=a.get("ttl"), schema=state.schema(a.get("schema")),
            if_revision=state.if_revision(a.get("if_revision")),
            must_exist=a.get("must_exist", False),
        )  # fmt: skip
        return state.revision
    if op == "document":
        document = await memory.document(paths=a.get("paths"), defaults=a.get("defaults", True))
        state.revision = document.revision
        return dict(document)
    if op == "put_schema":
        return await state.client.put_schema(state.schema(a["name"]), a["schema"])
    if op == "bind_schema":
        return await memory.bind_schema(state.schema(a["name"]))
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
        state = CaseState(client)
        for i, step in enumerate(case["steps"]):
            expect = decode(step["expect"])
            try:
                result = await run_step(memory, step["op"], decode(step["args"]), state)
            except MemoryApiError as err:
                assert "error" in expect, f"step {i}: unexpected {err}"
                assert (err.code, err.status.name) == (expect["error"], expect["status"]), i
                continue
            assert "error" not in expect, f"step {i}: expected {expect['error']}, got {result}"
            if "value" in expect:
                assert result == expect["value"], f"step {i}"
