"""Malformed input: request bodies that do not decode, at every RPC, with and without a key.

Each is INVALID_ARGUMENT with ErrorInfo reason MALFORMED_REQUEST and a message
that names no Python exception or protobuf type; nothing is stored; the server
logs no traceback for them, only a throttled "rejected calls" line with counts.
Calls go through a raw channel that sends bytes as they are (no serializers).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessionmemory import MemoryClient
from sessionmemory.v1 import error_reason_pb2
from sessionmemory.v1 import memory_service_pb2 as svc
from sessionmemory_server import interceptors
from sessionmemory_server.logs import EventCounter

SERVICE = svc.DESCRIPTOR.services_by_name["MemoryService"]
METHODS: list[MethodDescriptor] = list(SERVICE.methods)
UNARY_REQUEST = [m for m in METHODS if not m.client_streaming]
TIMEOUT = 5.0

JUNK = {
    "truncated tag": b"\xff\xff\xff",
    "truncated varint": b"\x08\x80",
    "length past the end": b"\x0a\x05ab",
}
KEYS = ("valid", "none", "garbage", "unknown")

# Every status code error_reason.proto documents for a client's request; never
# UNKNOWN or INTERNAL (nor UNAVAILABLE: the backends are up).
DOCUMENTED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}
REASONS = set(error_reason_pb2.ErrorReason.keys()) - {"ERROR_REASON_UNSPECIFIED", "INTERNAL_ERROR"}
MALFORMED = error_reason_pb2.ErrorReason.Name(error_reason_pb2.MALFORMED_REQUEST)
UNAUTHENTICATED_REASONS = {
    error_reason_pb2.ErrorReason.Name(error_reason_pb2.API_KEY_MISSING),
    error_reason_pb2.ErrorReason.Name(error_reason_pb2.API_KEY_INVALID),
}
# What a decode failure's message must not leak: exception names, module paths, type names.
LEAKS = re.compile(r"DecodeError|google\.protobuf|Traceback|Error parsing|\w+Request\b")


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _len_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def invalid_utf8(message: Descriptor, depth: int = 0) -> bytes | None:
    """A body whose first string field (possibly inside a message field) is not UTF-8."""
    for f in message.fields:
        if f.type == FieldDescriptor.TYPE_STRING:
            return _len_field(f.number, b"\xc3\x28")
    for f in message.fields:
        if f.type == FieldDescriptor.TYPE_MESSAGE and f.message_type is not None and depth < 2:
            inner = invalid_utf8(f.message_type, depth + 1)
            if inner is not None:
                return _len_field(f.number, inner)
    return None


def junk_for(method: MethodDescriptor) -> dict[str, bytes]:
    """The hand-picked undecodable bodies for a method's request type."""
    bodies = dict(JUNK)
    utf8 = invalid_utf8(method.input_type)
    if utf8 is not None:  # GetLimitsRequest has no string field to spoil
        bodies["invalid UTF-8 in a string field"] = utf8
    return bodies


def metadata(which: str, api_key: str) -> tuple[tuple[str, str], ...]:
    return {
        "valid": (("authorization", f"Bearer {api_key}"),),
        "none": (),
        "garbage": (("authorization", "Bearer not a key"),),
        "unknown": (("authorization", "Bearer smk_000000000000_nope"),),
    }[which]


def call(
    channel: grpc.Channel,
    method: MethodDescriptor,
    bodies: Sequence[bytes],
    md: Sequence[tuple[str, str]],
) -> None:
    """Call a method with raw bytes (one body, or a stream of them for SetFile)."""
    path = f"/{SERVICE.full_name}/{method.name}"
    # No serializers: the bytes go on the wire as they are.
    rpc: Any
    if method.client_streaming:
        rpc = channel.stream_unary(path)
        rpc(iter(bodies), metadata=md, timeout=TIMEOUT)
    elif method.server_streaming:
        rpc = channel.unary_stream(path)
        stream = rpc(bodies[0], metadata=md, timeout=TIMEOUT)
        for _ in stream:
            if method.name == "Watch":  # a valid Watch stays open: its first reply is enough
                stream.cancel()
                break
    else:
        rpc = channel.unary_unary(path)
        rpc(bodies[0], metadata=md, timeout=TIMEOUT)


def error_info(err: grpc.RpcError) -> error_details_pb2.ErrorInfo | None:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]  # sync errors are Calls
    for detail in status.details if status is not None else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return info
    return None


def rejected(
    channel: grpc.Channel,
    method: MethodDescriptor,
    bodies: Sequence[bytes],
    md: Sequence[tuple[str, str]],
) -> tuple[grpc.StatusCode, str, str]:
    """The status code, ErrorInfo reason and message of a call that must fail."""
    with pytest.raises(grpc.RpcError) as caught:
        call(channel, method, bodies, md)
    err: Any = caught.value
    info = error_info(err)
    assert info is not None, (method.name, err.code(), err.details())
    assert info.domain == "sessionmemory"
    return err.code(), info.reason, err.details() or ""


@pytest.fixture(scope="module")
def channel(server: Any) -> Iterator[grpc.Channel]:
    ch = grpc.insecure_channel(server.address)
    yield ch
    ch.close()


@pytest.fixture(autouse=True)
def no_tracebacks(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """The server (a thread of this process) logs no error and no traceback for junk."""
    caplog.set_level(logging.INFO)
    yield
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not loud, [(r.name, r.getMessage()) for r in loud]


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("method", UNARY_REQUEST, ids=lambda m: m.name)
def test_an_undecodable_body_is_malformed_request_with_or_without_a_key(
    channel: grpc.Channel, api_key: str, method: MethodDescriptor, key: str
) -> None:
    for what, body in junk_for(method).items():
        code, reason, message = rejected(channel, method, [body], metadata(key, api_key))
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, MALFORMED), what
        assert "could not be decoded" in message and "nothing was changed" in message
        assert not LEAKS.search(message), message


def test_an_undecodable_set_file_message_is_malformed_request(
    channel: grpc.Channel, api_key: str
) -> None:
    set_file = SERVICE.methods_by_name["SetFile"]
    for what, body in junk_for(set_file).items():
        for stream in ([body], [body, body, body]):
            code, reason, message = rejected(channel, set_file, stream, metadata("valid", api_key))
            assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, MALFORMED), what
            assert not LEAKS.search(message), message


@pytest.mark.parametrize("key", ["none", "garbage", "unknown"])
def test_set_file_checks_the_key_before_it_reads_its_stream(
    channel: grpc.Channel, api_key: str, key: str
) -> None:
    # A stream's messages arrive after the call starts; the server does not wait
    # for (or read) an upload from a caller without a valid key.
    set_file = SERVICE.methods_by_name["SetFile"]
    for body in junk_for(set_file).values():
        code, reason, _ = rejected(channel, set_file, [body, body], metadata(key, api_key))
        assert code == grpc.StatusCode.UNAUTHENTICATED and reason in UNAUTHENTICATED_REASONS


def test_junk_in_the_middle_of_an_upload_stores_nothing(
    channel: grpc.Channel, server: Any, api_key: str
) -> None:
    set_file = SERVICE.methods_by_name["SetFile"]
    sid = f"malformed-{uuid.uuid4().hex}"
    header = svc.SetFileRequest(
        header=svc.FileHeader(session_id=sid, key="doc", mime_type="text/plain", ttl_seconds=60)
    ).SerializeToString()
    chunk = svc.SetFileRequest(chunk=b"hello ").SerializeToString()
    last = svc.SetFileRequest(chunk=b"world", finish_write=True).SerializeToString()
    md = metadata("valid", api_key)
    with MemoryClient(server.address, api_key=api_key, timeout=5) as client:
        memory = client.session(sid)
        for stream in ([header, b"\xff\xff\xff"], [header, chunk, b"\x0a\x05ab", last]):
            code, reason, _ = rejected(channel, set_file, stream, md)
            assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, MALFORMED)
            assert memory.get("doc") is None
        call(channel, set_file, [header, chunk, last], md)  # the same upload, well-formed
        handle = memory.get_file("doc")
        assert handle is not None and handle.to_raw() == b"hello world"


def _outcome(
    channel: grpc.Channel, method: MethodDescriptor, bodies: Sequence[bytes], md: Any
) -> str:
    """The reason of a documented error, or "OK"; fails on anything else."""
    try:
        call(channel, method, bodies, md)
    except grpc.RpcError as caught:
        err: Any = caught
        info = error_info(err)
        assert err.code() in DOCUMENTED, (method.name, bodies, err.code(), err.details())
        assert info is not None, (method.name, bodies, err.code(), err.details())
        assert info.reason in REASONS, (method.name, bodies, info.reason)
        assert err.details(), "a message a person can act on"
        return str(info.reason)
    return "OK"


# Random bytes, and well-formed prefixes with random tails (which reach the servicer).
_PREFIXES = [
    svc.GetRequest(session_id="fuzz", key="k").SerializeToString(),
    svc.SetRequest(session_id="fuzz", key="k", string_value="v").SerializeToString(),
    svc.SetFileRequest(
        header=svc.FileHeader(session_id="fuzz", key="f", mime_type="text/plain", ttl_seconds=9)
    ).SerializeToString(),
    b"",
]
bodies = st.binary(max_size=64) | st.builds(
    lambda prefix, tail: prefix + tail, st.sampled_from(_PREFIXES), st.binary(max_size=16)
)


def test_random_bytes_at_every_rpc_get_ok_or_a_documented_error(
    channel: grpc.Channel, server: Any, api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    started = time.monotonic()
    outcomes: dict[str, int] = {}

    def count(outcome: str) -> None:
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    @settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        method=st.sampled_from(UNARY_REQUEST),
        body=bodies,
        key=st.sampled_from(KEYS),
    )
    def unary(method: MethodDescriptor, body: bytes, key: str) -> None:
        count(_outcome(channel, method, [body], metadata(key, api_key)))

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(stream=st.lists(bodies, min_size=1, max_size=4), key=st.sampled_from(KEYS))
    def set_file(stream: list[bytes], key: str) -> None:
        set_file = SERVICE.methods_by_name["SetFile"]
        count(_outcome(channel, set_file, stream, metadata(key, api_key)))

    unary()
    set_file()
    assert outcomes.get(MALFORMED, 0) > 0, outcomes  # the fuzz did reach the decoder

    # The server is still up and serving normal calls.
    health: Any = health_pb2_grpc.HealthStub(channel)
    reply = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    with MemoryClient(server.address, api_key=api_key, timeout=5) as client:
        memory = client.session(f"after-fuzz-{uuid.uuid4().hex}")
        memory.set("step", "ok", ttl=60)
        assert memory.get("step") == "ok"

    # Hundreds of rejections, a handful of log lines: at most one per reason per
    # interval (plus the one an earlier test's counts may flush into this one).
    lines = [r for r in caplog.records if r.getMessage() == "rejected calls"]
    intervals = (time.monotonic() - started) // interceptors.REJECTED_LOG_INTERVAL_SECONDS
    reasons = {MALFORMED, *UNAUTHENTICATED_REASONS}
    assert len(lines) <= len(reasons) * (intervals + 2), [r.__dict__ for r in lines]
    assert {getattr(r, "reason", None) for r in lines} <= reasons
    assert all(r.levelno == logging.WARNING for r in lines)


async def test_rejections_are_logged_as_counts_once_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    counter = EventCounter(
        logging.getLogger("test.rejected"), "rejected calls", interval_seconds=0.3
    )
    for _ in range(50):
        counter.count("MALFORMED_REQUEST")
    counter.count("API_KEY_MISSING")

    def logged() -> list[tuple[str, int]]:
        return [
            (r.reason, r.count)  # type: ignore[attr-defined]
            for r in caplog.records
            if r.name == "test.rejected"
        ]

    assert logged() == [("MALFORMED_REQUEST", 1)]  # the first one at once, the rest counted
    await asyncio.sleep(0.6)  # the burst's tail is logged when the interval ends
    assert logged() == [("MALFORMED_REQUEST", 1), ("MALFORMED_REQUEST", 49), ("API_KEY_MISSING", 1)]
    assert all(
        r.levelno == logging.WARNING and r.interval_seconds == 0.3  # type: ignore[attr-defined]
        for r in caplog.records
        if r.name == "test.rejected"
    )


async def test_an_unexpected_server_fault_still_logs_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The one rejection that is a server fault keeps its traceback (under a request id).
    class Context:
        async def abort(self, code: grpc.StatusCode, details: str, trailers: Any) -> None:
            raise grpc.aio.AbortError

    async def fail() -> None:
        try:
            raise ValueError("boom")
        except ValueError as exc:
            await interceptors._fail(Context(), "/t/T", exc)  # type: ignore[arg-type]

    with pytest.raises(grpc.aio.AbortError):
        await fail()
    [record] = [r for r in caplog.records if r.getMessage() == "internal error"]
    assert record.levelno == logging.ERROR and record.exc_info is not None
    caplog.clear()  # expected here; the autouse check is about junk traffic
