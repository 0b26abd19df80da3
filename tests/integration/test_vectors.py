"""The shared vectors (tests/vectors/*.json), run through the sync and the async client."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sessionmemory import AsyncMemoryClient, MemoryApiError, MemoryClient, MemoryTypeError

from ..conftest import AsyncView, ServerThread

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


def same(result: Any, expected: Any) -> bool:
    """Deep JSON equality, numbers compared numerically, a boolean never equal to a number."""
    if isinstance(expected, bool) or isinstance(result, bool):
        return type(result) is type(expected) and result == expected
    if isinstance(expected, int | float):
        return isinstance(result, int | float) and result == expected
    if isinstance(expected, dict):
        return (
            isinstance(result, dict)
            and result.keys() == expected.keys()
            and all(same(result[k], expected[k]) for k in expected)
        )
    if isinstance(expected, list):
        return (
            isinstance(result, list)
            and len(result) == len(expected)
            and all(same(r, e) for r, e in zip(result, expected, strict=True))
        )
    return type(result) is type(expected) and result == expected


class CaseState:
    """What the steps of one case share: the schema-name suffix and the last revision."""

    def __init__(self, client: Any) -> None:
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
        if "default" in a:  # read converted to the default's type (coercion.json)
            return await memory.get(a["key"], a["default"])
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


@pytest.fixture(params=["sync", "async"])
async def vector_client(
    request: pytest.FixtureRequest, server: ServerThread, api_key: str
) -> AsyncIterator[MemoryClient | AsyncMemoryClient]:
    """The sync or the async client."""
    if request.param == "sync":
        with MemoryClient(server.address, api_key=api_key) as sync:
            yield sync
    else:
        async with AsyncMemoryClient(server.address, api_key=api_key) as aio:
            yield aio


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
async def test_vector(
    case: dict[str, Any], vector_client: MemoryClient | AsyncMemoryClient
) -> None:
    session = vector_client.session(f"vector-{uuid.uuid4().hex}")
    if isinstance(vector_client, MemoryClient):  # the sync client, awaited like the async one
        memory: Any = AsyncView(session)
        state = CaseState(AsyncView(vector_client))
    else:
        memory = session
        state = CaseState(vector_client)
    for i, step in enumerate(case["steps"]):
        expect = decode(step["expect"])
        try:
            result = await run_step(memory, step["op"], decode(step["args"]), state)
        except MemoryApiError as err:
            assert "error" in expect, f"step {i}: unexpected {err}"
            assert (err.code, err.status.name) == (expect["error"], expect["status"]), i
            continue
        except MemoryTypeError as err:
            assert expect.get("type_error"), f"step {i}: unexpected {err!r}"
            assert "key " in str(err) and "cannot be read as" in str(err), err  # readable
            continue
        assert "error" not in expect, f"step {i}: expected {expect['error']}, got {result!r}"
        assert not expect.get("type_error"), f"step {i}: expected a type error, got {result!r}"
        if "value" in expect:
            assert same(result, expect["value"]), f"step {i}: {result!r} != {expect['value']!r}"
