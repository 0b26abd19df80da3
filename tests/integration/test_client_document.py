"""Structured memory through the Python clients, sync and async, against the real server.

The document view, merge-patch updates from inside and outside the agent, schemas
(also as pydantic models), path reads and the change feed (`watch`), with the
client's own conversions and resume rules tested first, without a server.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from pydantic import BaseModel, ConfigDict, ValidationError

from sessionmemory import (
    AsyncChangeStream,
    AsyncMemoryClient,
    Change,
    ChangeStream,
    ConflictError,
    Document,
    FailedPreconditionError,
    InvalidArgumentError,
    MemoryApiError,
    MemoryClient,
    NotFoundError,
    SchemaInfo,
    SchemaViolationError,
    ServiceUnavailableError,
)
from sessionmemory import _convert as c
from sessionmemory.errors import from_grpc
from sessionmemory.v1 import memory_pb2 as pb
from sessionmemory.v1 import memory_service_pb2 as svc
from sessionmemory_server.embedded import EmbeddedRedis, EmbeddedS3

from ..conftest import AsyncView, ServerThread, start_server

# --- the agent's memory, as a developer would define it ---------------------------------


class User(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    language: str = "en"


class Conversation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    topic: str
    turns: int = 0


class Order(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    status: Literal["placed", "on the way", "delivered"] = "placed"
    trackingNumber: str | None = None


class SupportMemory(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: User
    conversation: Conversation
    order: Order | None = None


def unique(name: str) -> str:
    """Schemas are tenant-wide and the tenant is shared: one name per test."""
    return f"{name}_{uuid.uuid4().hex[:8]}"


# --- without a server: conversions and resume rules -------------------------------------


def test_document_is_a_plain_dict_with_its_revision() -> None:
    doc = Document({"a": 1}, revision=7, schema="s", defaulted=["a"])
    assert doc == {"a": 1} and isinstance(doc, dict)
    assert (doc.revision, doc.schema, doc.defaulted) == (7, "s", ["a"])
    assert "revision=7" in repr(doc)
    plan = c.plan_get_document("s1", "lastOrder.status", defaults=False)
    assert list(plan.request.paths) == ["lastOrder.status"] and plan.request.omit_defaults
    converted = plan.convert(
        svc.GetDocumentResponse(json='{"x":[1]}', revision=3, defaulted_paths=["y"])
    )
    assert converted == {"x": [1]} and converted.revision == 3 and converted.schema is None
    assert converted.defaulted == ["y"]


def test_patches_from_dicts_and_pydantic_models() -> None:
    assert c.patch_text(Order(id="ORD-1")) == '{"id":"ORD-1"}', "set fields only"
    assert c.patch_text(Order(id="ORD-1", status="placed")) == '{"id":"ORD-1","status":"placed"}'
    assert c.patch_text({"order": Order(id="A", trackingNumber=None)}) == (
        '{"order":{"id":"A","trackingNumber":null}}'
    )
    assert c.patch_text({"a": None, "é": "✓"}) == '{"a":null,"é":"✓"}'
    plan = c.plan_patch_document("s1", {"a": 1}, 60, "sch", None, must_exist=True)
    assert plan.idempotent and plan.request.ttl_seconds == 60 and plan.request.must_exist
    conditional = c.plan_patch_document("s1", {"a": 1}, 60, None, 4, must_exist=False)
    assert not conditional.idempotent, "a retried conditional patch would fail on its own"
    assert conditional.request.if_revision == 4 and conditional.request.schema == ""
    assert not c.plan_patch_document("s1", {}, None, None, None, False).request.HasField(
        "ttl_seconds"
    )


def test_schemas_from_dicts_and_pydantic_models() -> None:
    schema = c.json_schema_of(SupportMemory)
    assert schema["required"] == ["user", "conversation"] and "$defs" in schema
    assert c.json_schema_of({"type": "object"}) == {"type": "object"}
    with pytest.raises(TypeError):
        c.json_schema_of(int)
    with pytest.raises(TypeError):
        c.json_schema_of("{}")  # type: ignore[arg-type]
    model = c.validate_model(
        SupportMemory, {"user": {"name": "Ada"}, "conversation": {"topic": "t"}}
    )
    assert isinstance(model, SupportMemory) and model.user.language == "en"
    with pytest.raises(ValidationError):
        c.validate_model(SupportMemory, {"user": {}})


def _response(revision: int, *changes: pb.Change, compacted: bool = False) -> svc.WatchResponse:
    return svc.WatchResponse(changes=changes, revision=revision, compacted=compacted)


def test_watch_cursor_follows_the_revision_and_resets() -> None:
    cursor = c.WatchCursor("s1", None, max_attempts=3)
    assert not cursor.request().HasField("after_revision")
    assert cursor.receive(_response(5)) == []
    assert cursor.request().after_revision == 5
    written = pb.Change(
        key="k", operation=pb.CHANGE_OPERATION_SET, kind=pb.VALUE_KIND_JSON, version=2, revision=6
    )
    written.expires_at.FromSeconds(1_700_000_000)
    deleted = pb.Change(key="k", operation=pb.CHANGE_OPERATION_DELETE, revision=7)
    unknown = pb.Change(key="k", operation=99, revision=8)  # type: ignore[arg-type]
    assert cursor.receive(_response(8, written, deleted, unknown)) == [
        Change("k", "set", "json", 2, 6, datetime.fromtimestamp(1_700_000_000, UTC)),
        Change("k", "delete", None, 0, 7, None),
    ]
    assert cursor.revision == 8, "an unknown operation is skipped, not replayed"
    assert cursor.receive(_response(300, compacted=True)) == [
        Change("", "reset", None, 0, 300, None)
    ]
    assert cursor.request().after_revision == 300


def _error(code: grpc.StatusCode) -> MemoryApiError:
    return MemoryApiError("x", status=code)


def test_watch_cursor_resumes_dropped_streams_and_gives_up() -> None:
    cursor = c.WatchCursor("s1", 4, max_attempts=3)
    assert cursor.request().after_revision == 4
    unavailable = _error(grpc.StatusCode.UNAVAILABLE)
    # Streams that brought messages are resumed however often they drop.
    for _ in range(10):
        cursor.receive(_response(4))
        assert 0 < cursor.ended(unavailable) <= c.WATCH_MAX_BACKOFF
        assert 0 < cursor.ended(None) <= c.WATCH_MAX_BACKOFF  # progress spent: one failure
    cursor.receive(_response(4))
    cursor.ended(None)  # dropped after a message: resumed
    cursor.ended(unavailable)  # the 1st and 2nd streams in a row without a message
    cursor.ended(unavailable)
    with pytest.raises(MemoryApiError) as info:
        cursor.ended(unavailable)  # the third stream in a row without a message
    assert info.value is unavailable
    silent = c.WatchCursor("s1", None, max_attempts=1)
    with pytest.raises(ServiceUnavailableError):
        silent.ended(None)
    refused = _error(grpc.StatusCode.RESOURCE_EXHAUSTED)
    with pytest.raises(MemoryApiError) as info:
        c.WatchCursor("s1", None, max_attempts=5).ended(refused)
    assert info.value is refused, "a refusal is not a dropped stream"


class FakeError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, **metadata: str) -> None:
        self._code = code
        info = error_details_pb2.ErrorInfo(
            reason=metadata.pop("reason"), domain="sessionmemory", metadata=metadata
        )
        status = status_pb2.Status(code=code.value[0], message="refused")
        status.details.add().Pack(info)
        self._md = (("grpc-status-details-bin", status.SerializeToString()),)

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return "refused"

    def trailing_metadata(self) -> Any:
        return self._md


def test_new_reasons_map_to_their_errors() -> None:
    err = from_grpc(
        FakeError(
            grpc.StatusCode.INVALID_ARGUMENT,
            reason="SCHEMA_VIOLATION",
            pointer="/order/status",
            keyword="enum",
            schema="support",
        )
    )
    assert isinstance(err, SchemaViolationError) and isinstance(err, InvalidArgumentError)
    assert (err.pointer, err.keyword, err.schema) == ("/order/status", "enum", "support")
    for reason in ("SESSION_NOT_FOUND", "SCHEMA_NOT_FOUND"):
        assert type(from_grpc(FakeError(grpc.StatusCode.NOT_FOUND, reason=reason))) is (
            NotFoundError
        )
    for reason in ("REVISION_MISMATCH", "WRITE_CONFLICT"):
        assert type(from_grpc(FakeError(grpc.StatusCode.ABORTED, reason=reason))) is (ConflictError)
    mismatch = from_grpc(FakeError(grpc.StatusCode.FAILED_PRECONDITION, reason="SCHEMA_MISMATCH"))
    assert type(mismatch) is FailedPreconditionError


# --- against the server -------------------------------------------------------------------


class SyncClientView:
    """The sync client with the async client's shape: its calls run in a thread."""

    def __init__(self, target: MemoryClient) -> None:
        self.target = target

    def session(self, session_id: str) -> AsyncView:
        return AsyncView(self.target.session(session_id))

    def __getattr__(self, name: str) -> Any:
        return getattr(AsyncView(self.target), name)


@pytest.fixture(params=["sync", "async"])
async def client(
    request: pytest.FixtureRequest, server: ServerThread, api_key: str
) -> AsyncIterator[Any]:
    """The sync or the async client of tenant "acme", with async methods."""
    if request.param == "sync":
        sync = MemoryClient(server.address, api_key=api_key, timeout=5)
        yield SyncClientView(sync)
        sync.close()
    else:
        aio = AsyncMemoryClient(server.address, api_key=api_key, timeout=5)
        yield aio
        await aio.close()


async def reject(coro: Any, cls: type[MemoryApiError], reason: str, status: str) -> Any:
    with pytest.raises(cls) as info:
        await coro
    assert (info.value.code, info.value.status.name) == (reason, status), info.value
    return info.value


async def test_agent_framework_flow(client: Any, sid: str) -> None:
    name = unique("support-agent")
    info = await client.put_schema(name, SupportMemory)
    assert isinstance(info, SchemaInfo) and info.name == name and info.version >= 1
    memory = client.session(sid)
    assert memory.revision is None
    try:
        # The trigger initializes the memory and binds the session to the schema.
        first = await memory.update(
            SupportMemory(
                user=User(name="Ada"),
                conversation=Conversation(topic="refund"),
                order=Order(id="ORD-123"),
            ),
            ttl=3600,
            schema=name,
        )
        assert memory.revision == first > 0
        # A tool returns a partial update: merged, not replaced.
        tool = await memory.update({"order": {"status": "on the way"}}, ttl=3600)
        assert tool > first
        # A webhook updates the memory from outside the agent.
        outside = await client.update_memory(sid, {"order": {"trackingNumber": "1Z999"}}, ttl=600)
        assert outside > tool
        doc = await memory.document()
        assert isinstance(doc, Document) and isinstance(doc, dict)
        assert doc["order"] == {"id": "ORD-123", "status": "on the way", "trackingNumber": "1Z999"}
        assert doc["user"] == {"name": "Ada", "language": "en"}
        assert doc["conversation"] == {"topic": "refund", "turns": 0}
        assert (doc.revision, doc.schema, memory.revision) == (outside, name, outside)
        assert {"user.language", "conversation.turns"} <= set(doc.defaulted)
        stored = await memory.document(defaults=False)
        assert stored["user"] == {"name": "Ada"} and stored.defaulted == []
        model = await memory.document(model=SupportMemory)
        assert isinstance(model, SupportMemory)
        assert model.order is not None and model.order.trackingNumber == "1Z999"
        assert (model.user.language, model.conversation.turns) == ("en", 0)
        # A tool's invalid update is rejected and changes nothing.
        err = await reject(
            memory.update({"conversation": {"turns": "many"}}, ttl=3600),
            SchemaViolationError,
            "SCHEMA_VIOLATION",
            "INVALID_ARGUMENT",
        )
        assert (err.pointer, err.keyword, err.schema) == ("/conversation/turns", "type", name)
        err = await reject(
            memory.update({"order": {"status": "lost"}}, ttl=3600),
            SchemaViolationError,
            "SCHEMA_VIOLATION",
            "INVALID_ARGUMENT",
        )
        assert (err.pointer, err.keyword, err.schema) == ("/order/status", "enum", name)
        # The key/value API cannot make the document invalid either.
        await reject(
            memory.set("stray", "x"), SchemaViolationError, "SCHEMA_VIOLATION", "INVALID_ARGUMENT"
        )
        assert (await memory.document()).revision == outside
        # The conversation ends: an outside update cannot revive it.
        await memory.clear()
        await reject(
            client.update_memory(sid, {"order": {"status": "delivered"}}, ttl=600),
            NotFoundError,
            "SESSION_NOT_FOUND",
            "NOT_FOUND",
        )
        assert await memory.document(defaults=False) == {}
    finally:
        await client.delete_schema(name)


async def test_update_memory_on_a_session_never_used_is_not_found(client: Any) -> None:
    await reject(
        client.update_memory(f"gone-{uuid.uuid4().hex}", {"a": 1}, ttl=60),
        NotFoundError,
        "SESSION_NOT_FOUND",
        "NOT_FOUND",
    )
    # Without must_exist an outside update may start the session.
    sid = f"new-{uuid.uuid4().hex}"
    assert await client.update_memory(sid, {"a": 1}, ttl=60, must_exist=False) > 0
    assert await client.session(sid).get("a", 0) == 1


async def test_workflow_path_reads(client: Any, sid: str) -> None:
    memory = client.session(sid)
    await memory.set_json("lastOrder", {"id": "ORD-123", "status": "on the way"}, ttl=60)
    await memory.set_json("cart", {"items": [{"name": "tea", "qty": 2}]}, ttl=60)
    assert await memory.get("lastOrder.status", "") == "on the way"
    assert await memory.get("cart.items.0.name") == "tea"
    assert await memory.get("cart.items.0.qty", 0) == 2
    assert await memory.get("lastOrder.missing", "none") == "none"
    assert await memory.get("cart.items.5.name") is None
    entry = await memory.get_entry("lastOrder.status")
    assert (entry.key, entry.value, entry.kind) == ("lastOrder.status", "on the way", "string")
    assert await memory.get_many(["lastOrder.id", "lastOrder.nope", "cart.items"]) == {
        "lastOrder.id": "ORD-123",
        "cart.items": [{"name": "tea", "qty": 2}],
    }
    projected = await memory.document(paths=["lastOrder.status", "nothing.here"])
    assert projected == {"lastOrder": {"status": "on the way"}}
    await reject(
        memory.get("lastOrder..status"), InvalidArgumentError, "INVALID_PATH", "INVALID_ARGUMENT"
    )
    # Writes still take plain keys only.
    await reject(
        memory.set("lastOrder.status", "x"), InvalidArgumentError, "INVALID_KEY", "INVALID_ARGUMENT"
    )
    await reject(
        memory.update({"lastOrder.status": "x"}, ttl=60),
        InvalidArgumentError,
        "INVALID_KEY",
        "INVALID_ARGUMENT",
    )


async def test_updates_merge_delete_and_check_revisions(client: Any, sid: str) -> None:
    memory = client.session(sid)
    assert await memory.document() == {} and memory.revision is not None
    r1 = await memory.update({"a": {"b": 1, "c": [1, 2]}, "n": 3, "s": "x"}, ttl=60)
    r2 = await memory.update({"a": {"b": None, "d": True}, "s": None}, ttl=60)
    assert r2 > r1
    assert await memory.document() == {"a": {"c": [1, 2], "d": True}, "n": 3}
    entry = await memory.get_entry("n")
    assert entry.kind == "number"
    # Conditional on the revision read: a stale one changes nothing.
    await reject(
        memory.update({"n": 4}, ttl=60, if_revision=r1),
        ConflictError,
        "REVISION_MISMATCH",
        "ABORTED",
    )
    assert await memory.update({"n": 4}, ttl=60, if_revision=memory.revision) > r2
    await reject(
        memory.update(["not", "an", "object"], ttl=60),
        InvalidArgumentError,
        "INVALID_PATCH",
        "INVALID_ARGUMENT",
    )
    await reject(
        memory.update({"s": "x" * 256}, ttl=60),
        InvalidArgumentError,
        "VALUE_TOO_LONG",
        "INVALID_ARGUMENT",
    )
    await reject(
        memory.update({"s": "x"}, ttl=86401),
        InvalidArgumentError,
        "TTL_OUT_OF_RANGE",
        "INVALID_ARGUMENT",
    )
    assert await memory.get("n", 0) == 4


async def test_schema_crud_round_trip(client: Any) -> None:
    name = unique("crud")
    schema = {
        "type": "object",
        "properties": {"step": {"type": "string", "default": "start"}},
        "additionalProperties": False,
    }
    before = datetime.now(UTC)
    first = await client.put_schema(name, schema)
    assert first.name == name and first.version > 0 and first.size_bytes > 0
    assert before - timedelta(seconds=5) < first.updated_at < before + timedelta(seconds=5)
    assert await client.get_schema(name) == schema
    second = await client.put_schema(name, {**schema, "required": []})
    assert second.version > first.version
    listed = {s.name: s for s in await client.list_schemas()}
    assert listed[name] == second
    assert await client.delete_schema(name) is True
    assert await client.delete_schema(name) is False
    assert name not in {s.name for s in await client.list_schemas()}
    await reject(client.get_schema(name), NotFoundError, "SCHEMA_NOT_FOUND", "NOT_FOUND")
    await reject(
        client.put_schema(name, {"type": 12}),
        InvalidArgumentError,
        "SCHEMA_INVALID",
        "INVALID_ARGUMENT",
    )
    await reject(
        client.put_schema(name, {"$ref": "https://example.com/schema.json"}),
        InvalidArgumentError,
        "SCHEMA_INVALID",
        "INVALID_ARGUMENT",
    )


async def test_bind_schema_validates_binds_and_unbinds(client: Any, sid: str) -> None:
    name, other = unique("steps"), unique("other")
    await client.put_schema(
        name,
        {
            "type": "object",
            "properties": {
                "step": {"type": "string", "default": "start"},
                "count": {"type": "number"},
            },
            "additionalProperties": False,
        },
    )
    await client.put_schema(other, {"type": "object"})
    memory = client.session(sid)
    try:
        await memory.set("stray", True)
        await reject(
            memory.bind_schema(name), SchemaViolationError, "SCHEMA_VIOLATION", "INVALID_ARGUMENT"
        )
        await memory.delete("stray")
        await memory.set("count", 1)
        assert await memory.bind_schema(name) > 0
        doc = await memory.document()
        assert doc == {"count": 1, "step": "start"} and doc.defaulted == ["step"]
        assert doc.schema == name
        err = await reject(
            memory.set("count", "one"),
            SchemaViolationError,
            "SCHEMA_VIOLATION",
            "INVALID_ARGUMENT",
        )
        assert (err.pointer, err.keyword) == ("/count", "type")
        await reject(
            memory.update({"count": 2}, ttl=60, schema=other),
            FailedPreconditionError,
            "SCHEMA_MISMATCH",
            "FAILED_PRECONDITION",
        )
        await reject(
            memory.bind_schema(unique("missing")), NotFoundError, "SCHEMA_NOT_FOUND", "NOT_FOUND"
        )
        await memory.bind_schema(None)
        assert (await memory.document()).schema is None
        await memory.set("count", "one")
    finally:
        await client.delete_schema(name)
        await client.delete_schema(other)


async def test_limits_include_the_structured_memory_bounds(client: Any) -> None:
    limits = await client.get_limits()
    assert limits.max_schema_bytes == 65536 and limits.max_schemas_per_tenant == 100
    assert (limits.max_path_length, limits.max_path_segments) == (1024, 33)
    assert limits.watch_log_changes == 128 and limits.max_watchers > 0


# --- watch ---------------------------------------------------------------------------------


def take(stream: ChangeStream, n: int, timeout: float = 5.0) -> list[Change]:
    """Up to ``n`` changes; fewer when they do not come within ``timeout`` (then closed)."""
    timer = threading.Timer(timeout, stream.close)
    timer.start()
    try:
        return list(itertools.islice(stream, n))
    finally:
        timer.cancel()


async def atake(stream: AsyncChangeStream, n: int, within: float = 5.0) -> list[Change]:
    """Up to ``n`` changes of an async stream within ``within`` seconds."""
    out: list[Change] = []

    async def collect() -> None:
        async for change in stream:
            out.append(change)
            if len(out) == n:
                return

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(collect(), within)
    return out


def ops(changes: list[Change]) -> list[tuple[str, str]]:
    return [(x.operation, x.key) for x in changes]


@pytest.fixture
def sync_client(server: ServerThread, api_key: str) -> Iterator[MemoryClient]:
    with MemoryClient(server.address, api_key=api_key, timeout=5) as client:
        yield client


@pytest.fixture
async def async_client(server: ServerThread, api_key: str) -> AsyncIterator[AsyncMemoryClient]:
    async with AsyncMemoryClient(server.address, api_key=api_key, timeout=5) as client:
        yield client


def test_watch_sees_a_set_and_a_delete_in_order_sync(sync_client: MemoryClient, sid: str) -> None:
    memory = sync_client.session(sid)
    memory.set("greeting", "hi")
    start = memory.document().revision
    written = memory.set("k", "v", ttl=60)
    memory.delete("k")
    with memory.watch(after_revision=start) as stream:
        changes = take(stream, 2)
        assert ops(changes) == [("set", "k"), ("delete", "k")]
        assert changes[0].kind == "string" and changes[0].version == written.version
        assert changes[0].expires_at is not None and changes[1].expires_at is None
        assert start < changes[0].revision < changes[1].revision == stream.revision
        # Live: a write from elsewhere arrives while the stream waits.
        threading.Timer(0.3, lambda: memory.set_json("j", {"a": 1}, ttl=60)).start()
        began = time.monotonic()
        (live,) = take(stream, 1)
        assert (live.operation, live.key, live.kind) == ("set", "j", "json")
        assert time.monotonic() - began < 2
        last = stream.revision
    assert stream.closed
    # Resume from the last revision seen: what happened meanwhile comes first.
    memory.increment("c", 2)
    with memory.watch(after_revision=last) as resumed:
        assert ops(take(resumed, 1)) == [("set", "c")]


async def test_watch_sees_a_set_and_a_delete_in_order_async(
    async_client: AsyncMemoryClient, sid: str
) -> None:
    memory = async_client.session(sid)
    await memory.set("greeting", "hi")
    start = (await memory.document()).revision
    await memory.set("k", "v", ttl=60)
    await memory.delete("k")
    async with memory.watch(after_revision=start) as stream:
        changes = await atake(stream, 2)
        assert ops(changes) == [("set", "k"), ("delete", "k")]
        assert start < changes[0].revision < changes[1].revision == stream.revision

        async def later() -> None:
            await asyncio.sleep(0.3)
            await memory.update({"doc": {"x": 1}}, ttl=60)

        writer = asyncio.create_task(later())
        assert ops(await atake(stream, 1)) == [("set", "doc")]
        await writer
        last = stream.revision
    assert stream.closed
    await memory.clear()
    async with memory.watch(after_revision=last) as resumed:
        assert ops(await atake(resumed, 1)) == [("delete", "doc")]


async def test_watch_from_now_and_a_reset_when_changes_are_gone(
    async_client: AsyncMemoryClient, sid: str
) -> None:
    memory = async_client.session(sid)
    await memory.set("k", 0)
    first = (await memory.document()).revision
    for i in range(140):  # more than the server's change log keeps (128)
        await memory.set("k", i + 1)
    async with memory.watch(after_revision=first) as stream:
        (reset,) = await atake(stream, 1)
        current = (await memory.document()).revision
        assert (reset.operation, reset.key, reset.revision) == ("reset", "", current)
    async with memory.watch() as live:
        task = asyncio.ensure_future(atake(live, 1))
        await asyncio.sleep(0.5)  # the stream is open: only later writes come
        await memory.set("k", "now")
        (change,) = await task
        assert (change.operation, change.key) == ("set", "k") and change.revision > current


async def test_watch_replays_a_new_session_from_revision_0(
    async_client: AsyncMemoryClient, sid: str
) -> None:
    # A new session reads as revision 0; every change since is still in the log, so
    # resuming after 0 replays them (nothing is gone: no reset).
    memory = async_client.session(sid)
    assert (await memory.document()).revision == 0
    await memory.set("a", 1)
    await memory.update({"b": {"c": 2}}, ttl=60)
    async with memory.watch(after_revision=0) as stream:
        assert ops(await atake(stream, 2)) == [("set", "a"), ("set", "b")]


def test_breaking_out_of_a_watch_loop_cancels_the_call(sync_client: MemoryClient, sid: str) -> None:
    calls: list[Any] = []
    opener = sync_client._watcher

    def capture(request: Any, timeout: float | None) -> Any:
        calls.append(opener(request, timeout))
        return calls[-1]

    sync_client._watcher = capture  # type: ignore[method-assign]
    memory = sync_client.session(sid)
    memory.set("greeting", "hi")
    start = memory.document().revision
    memory.set("k", 1)
    for change in memory.watch(after_revision=start):
        assert change.key == "k"
        break
    gc.collect()
    assert len(calls) == 1 and calls[0].cancelled()


async def test_breaking_out_of_an_async_watch_loop_cancels_the_call(
    async_client: AsyncMemoryClient, sid: str
) -> None:
    calls: list[Any] = []
    opener = async_client._watcher

    def capture(request: Any, timeout: float | None) -> Any:
        calls.append(opener(request, timeout))
        return calls[-1]

    async_client._watcher = capture  # type: ignore[method-assign]
    memory = async_client.session(sid)
    await memory.set("greeting", "hi")
    start = (await memory.document()).revision
    await memory.set("k", 1)
    async for change in memory.watch(after_revision=start):
        assert change.key == "k"
        break
    gc.collect()
    await asyncio.sleep(0.1)
    assert len(calls) == 1 and calls[0].cancelled()


@pytest.fixture
def own_server(redis_server: EmbeddedRedis, s3_server: EmbeddedS3) -> Iterator[list[ServerThread]]:
    """Servers of the test's own (on the shared Redis), stopped at the end if still up."""
    servers: list[ServerThread] = [start_server(redis_server.url, s3_server)]
    yield servers
    for srv in servers:
        if srv.loop.is_running():
            srv.stop()


def test_watch_resumes_after_the_server_goes_away_sync(
    own_server: list[ServerThread],
    redis_server: EmbeddedRedis,
    s3_server: EmbeddedS3,
    sync_client: MemoryClient,
    api_key: str,
    sid: str,
) -> None:
    first = own_server[0]
    port = first.built.port
    writer = sync_client.session(sid)  # the shared server, on the same Redis
    writer.set("greeting", "hi")
    start = writer.document().revision
    with MemoryClient(first.address, api_key=api_key, max_attempts=10) as client:
        stream = client.session(sid).watch(after_revision=start)
        writer.set("a", 1)
        assert ops(take(stream, 1)) == [("set", "a")]
        got: list[Change] = []
        reader = threading.Thread(target=lambda: got.extend(take(stream, 2, timeout=30)))
        reader.start()
        first.stop(grace=0.2)
        writer.set("b", 2)
        writer.delete("a")
        time.sleep(0.5)  # the reader retries against nothing meanwhile
        own_server.append(start_server(redis_server.url, s3_server, listen=f"127.0.0.1:{port}"))
        reader.join(35)
        assert ops(got) == [("set", "b"), ("delete", "a")]
        stream.close()


async def test_watch_resumes_after_the_server_goes_away_async(
    own_server: list[ServerThread],
    redis_server: EmbeddedRedis,
    s3_server: EmbeddedS3,
    async_client: AsyncMemoryClient,
    api_key: str,
    sid: str,
) -> None:
    first = own_server[0]
    port = first.built.port
    writer = async_client.session(sid)
    await writer.set("greeting", "hi")
    start = (await writer.document()).revision
    client = AsyncMemoryClient(first.address, api_key=api_key, max_attempts=10)
    async with client, client.session(sid).watch(after_revision=start) as stream:
        await writer.set("a", 1)
        assert ops(await atake(stream, 1)) == [("set", "a")]
        reading = asyncio.ensure_future(atake(stream, 2, within=30))
        await asyncio.to_thread(first.stop, 0.2)
        await writer.set("b", 2)
        await writer.delete("a")
        await asyncio.sleep(0.5)  # the reader retries against nothing meanwhile
        own_server.append(
            await asyncio.to_thread(
                start_server, redis_server.url, s3_server, listen=f"127.0.0.1:{port}"
            )
        )
        assert ops(await reading) == [("set", "b"), ("delete", "a")]


def test_watch_gives_up_when_the_server_stays_away(
    own_server: list[ServerThread], api_key: str, sid: str
) -> None:
    first = own_server[0]
    with MemoryClient(first.address, api_key=api_key, max_attempts=3) as client:
        memory = client.session(sid)
        memory.set("greeting", "hi")
        stream = memory.watch(after_revision=memory.document().revision)
        memory.set("a", 1)
        assert ops(take(stream, 1)) == [("set", "a")]
        first.stop(grace=0.2)
        began = time.monotonic()
        with pytest.raises(ServiceUnavailableError):
            next(stream)
        assert time.monotonic() - began < 10
        assert stream.closed
        assert list(stream) == []
