"""One tenant's costly schema must not hold the server's event loop for the others.

Through the real server: PutSchema refuses the schemas that multiply or recurse in
place, and a schema that passes but is costly against a large document stops at
the validation budget (SCHEMA_UNUSABLE), while another tenant's reads keep going.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from sessionmemory.v1 import memory_service_pb2 as svc
from sessionmemory.v1 import memory_service_pb2_grpc as svc_grpc

from ..conftest import ServerThread


class Tenant:
    """The raw stub with one tenant's key on every call."""

    def __init__(self, channel: grpc.aio.Channel, key: str) -> None:
        self.stub = svc_grpc.MemoryServiceStub(channel)
        self.md = (("authorization", f"Bearer {key}"),)

    async def put_schema(self, name: str, schema: Any) -> svc.PutSchemaResponse:
        return await self.stub.PutSchema(
            svc.PutSchemaRequest(name=name, json_schema=json.dumps(schema)),
            metadata=self.md,
            timeout=30,
        )

    async def patch(self, sid: str, patch: Any, schema: str) -> svc.PatchDocumentResponse:
        return await self.stub.PatchDocument(
            svc.PatchDocumentRequest(
                session_id=sid, merge_patch=json.dumps(patch), ttl_seconds=600, schema=schema
            ),
            metadata=self.md,
            timeout=30,
        )


def failure(err: grpc.aio.AioRpcError) -> tuple[str, str]:
    """(status name, ErrorInfo reason) of a failed call."""
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return err.code().name, info.reason
    raise AssertionError(f"no ErrorInfo in {err}")


def doubling_chain(n: int) -> dict[str, Any]:
    defs: dict[str, Any] = {
        f"a{i}": {"allOf": [{"$ref": f"#/$defs/a{i + 1}"}, {"$ref": f"#/$defs/a{i + 1}"}]}
        for i in range(n)
    }
    defs[f"a{n}"] = {"type": "object"}
    return {"$defs": defs, "$ref": "#/$defs/a0"}


# Passes PutSchema (an empty document is cheap), but every object in an array
# misses 3,000 required members: without a budget, 4.5 million errors per write.
COSTLY = {
    "type": "object",
    "additionalProperties": {
        "type": "array",
        "items": {"required": [f"r{i}" for i in range(3000)]},
    },
}


@pytest.fixture
async def tenants(server: ServerThread) -> Any:
    async with (
        grpc.aio.insecure_channel(server.address) as one,
        grpc.aio.insecure_channel(server.address) as other,
    ):
        yield (
            Tenant(one, server.create_key(f"evil-{uuid.uuid4().hex[:8]}")),
            Tenant(other, server.create_key(f"good-{uuid.uuid4().hex[:8]}")),
        )


async def test_put_schema_refuses_schemas_that_multiply_or_loop(tenants: Any) -> None:
    evil, _ = tenants
    for schema in (doubling_chain(19), {"allOf": [{"$ref": "#"}]}):
        start = time.perf_counter()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await evil.put_schema("chain", schema)
        assert failure(info.value) == ("INVALID_ARGUMENT", "SCHEMA_INVALID")
        assert time.perf_counter() - start < 2


async def test_a_costly_schema_does_not_hold_other_tenants(tenants: Any) -> None:
    evil, good = tenants
    await evil.put_schema("costly", COSTLY)
    sid = f"good-{uuid.uuid4().hex}"
    await good.stub.Set(
        svc.SetRequest(session_id=sid, key="k", string_value="v", ttl_seconds=600),
        metadata=good.md,
        timeout=10,
    )
    stop = asyncio.Event()
    latencies: list[float] = []

    async def read() -> None:
        while not stop.is_set():
            start = time.perf_counter()
            await good.stub.Get(
                svc.GetRequest(session_id=sid, key="k"), metadata=good.md, timeout=30
            )
            latencies.append(time.perf_counter() - start)
            await asyncio.sleep(0.005)

    reader = asyncio.create_task(read())
    try:
        for _ in range(10):
            start = time.perf_counter()
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await evil.patch(f"evil-{uuid.uuid4().hex}", {"k": [{}] * 1500}, "costly")
            assert failure(info.value) == ("FAILED_PRECONDITION", "SCHEMA_UNUSABLE")
            assert "too costly" in (info.value.details() or "")
            assert time.perf_counter() - start < 2
    finally:
        stop.set()
        await reader
    assert latencies
    # Each refused write holds the loop for about the budget (~50 ms); allow for a
    # loaded test machine, far below the seconds an unbounded evaluation took.
    assert max(latencies) < 0.5, sorted(latencies)[-5:]
