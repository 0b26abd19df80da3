"""Property-based: random requests at every RPC; the server stays up and answers each
with OK or a documented error (a known status code and ErrorInfo reason)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sessionmemory.v1 import error_reason_pb2, memory_pb2, memory_service_pb2_grpc
from sessionmemory.v1 import memory_service_pb2 as svc

REASONS = set(error_reason_pb2.ErrorReason.keys()) - {"ERROR_REASON_UNSPECIFIED", "INTERNAL_ERROR"}
CLIENT_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}

sessions = st.sampled_from(["p1", "p2"]) | st.text(max_size=300)
keys = st.sampled_from(["a", "b", "count", "cart"]) | st.text(max_size=140)
numbers = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(10**16), 10**16).map(float)
ttls = st.none() | st.integers(-(2**63), 2**63 - 1) | st.integers(-2, 90_000)
versions = st.none() | st.integers(-(2**63), 2**63 - 1) | st.integers(0, 3)
json_texts = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=20,
).map(lambda v: __import__("json").dumps(v)) | st.text(max_size=60)
values = st.one_of(
    st.builds(memory_pb2.Value, string_value=st.text(max_size=300)),
    st.builds(memory_pb2.Value, number_value=numbers),
    st.builds(memory_pb2.Value, bool_value=st.booleans()),
    st.builds(memory_pb2.Value, json_value=json_texts),
    st.just(memory_pb2.Value()),
)


def _opt(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, Any]:
    sid, key = draw(sessions), draw(keys)
    key_list = draw(st.lists(keys, max_size=105))
    ttl, ver = draw(ttls), draw(versions)
    choice = draw(st.integers(0, 10))
    if choice == 0:
        return "Get", svc.GetRequest(session_id=sid, key=key)
    if choice == 1:
        return "GetMany", svc.GetManyRequest(session_id=sid, keys=key_list)
    if choice == 2:
        value = draw(values)
        which = value.WhichOneof("kind")
        fields = {which: getattr(value, which)} if which and which != "json_value" else {}
        return "Set", svc.SetRequest(
            session_id=sid, key=key, **fields, **_opt(ttl_seconds=ttl, if_version=ver)
        )
    if choice == 3:
        return "SetJson", svc.SetJsonRequest(
            session_id=sid, key=key, json=draw(json_texts), **_opt(ttl_seconds=ttl, if_version=ver)
        )
    if choice == 4:
        entries = draw(
            st.lists(
                st.builds(
                    lambda k, v, t, iv: svc.SetManyEntry(
                        key=k, value=v, **_opt(ttl_seconds=t, if_version=iv)
                    ),
                    keys,
                    values,
                    ttls,
                    versions,
                ),
                max_size=5,
            )
        )
        return "SetMany", svc.SetManyRequest(session_id=sid, entries=entries)
    if choice == 5:
        return "Delete", svc.DeleteRequest(session_id=sid, keys=key_list)
    if choice == 6:
        return "Increment", svc.IncrementRequest(
            session_id=sid,
            key=key,
            delta=draw(numbers),
            request_id=draw(st.text(max_size=140)),
            **_opt(ttl_seconds=ttl),
        )
    if choice == 7:
        return "Touch", svc.TouchRequest(session_id=sid, keys=key_list, **_opt(ttl_seconds=ttl))
    if choice == 8:
        return "List", svc.ListRequest(session_id=sid)
    if choice == 9:
        return "Clear", svc.ClearRequest(session_id=sid)
    return "GetLimits", svc.GetLimitsRequest()


@pytest.fixture(scope="module")
def channel(server: Any) -> Iterator[grpc.Channel]:
    ch = grpc.insecure_channel(server.address)
    yield ch
    ch.close()


@settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(call=requests())
def test_random_requests_get_ok_or_a_documented_error(
    call: tuple[str, Any], channel: grpc.Channel, api_key: str
) -> None:
    method, request = call
    stub = memory_service_pb2_grpc.MemoryServiceStub(channel)
    try:
        getattr(stub, method)(
            request, metadata=(("authorization", f"Bearer {api_key}"),), timeout=10
        )
    except grpc.RpcError as err:
        assert err.code() in CLIENT_ERRORS, (method, err.code(), err.details())
        status = rpc_status.from_call(err)
        info = error_details_pb2.ErrorInfo()
        assert status is not None and status.details[0].Unpack(info)
        assert info.reason in REASONS, info.reason
        assert err.details(), "a message a person can act on"


def test_server_is_still_serving(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    resp = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    assert resp.status == health_pb2.HealthCheckResponse.SERVING
