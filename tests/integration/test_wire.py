"""Raw gRPC callers: what a client in any language sees on the wire."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from sessionmemory.v1 import memory_service_pb2 as svc
from sessionmemory.v1 import memory_service_pb2_grpc as svc_grpc


class Raw:
    def __init__(self, address: str, api_key: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.stub = svc_grpc.MemoryServiceStub(self.channel)
        self.md = (("authorization", f"Bearer {api_key}"),)
        self.sid = f"raw-{uuid.uuid4().hex}"

    def call(self, method: str, request: Any, md: Any = "default") -> Any:
        return getattr(self.stub, method)(
            request, metadata=self.md if md == "default" else md, timeout=5
        )

    def error(self, method: str, request: Any, md: Any = "default") -> tuple[Any, Any]:
        with pytest.raises(grpc.RpcError) as info:
            self.call(method, request, md)
        status = rpc_status.from_call(info.value)
        assert status is not None, "every rejection carries a google.rpc.Status"
        errinfo = error_details_pb2.ErrorInfo()
        assert status.details[0].Unpack(errinfo), "the first detail is an ErrorInfo"
        assert errinfo.domain == "sessionmemory"
        return info.value, errinfo


@pytest.fixture
def raw(server: Any, api_key: str) -> Iterator[Raw]:
    r = Raw(server.address, api_key)
    yield r
    r.channel.close()


def test_json_ttl_is_required(raw: Raw) -> None:
    err, info = raw.error("SetJson", svc.SetJsonRequest(session_id=raw.sid, key="j", json="{}"))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert info.reason == "TTL_REQUIRED"
    assert "ttl_seconds is required" in err.details()


@pytest.mark.parametrize(
    "text", ['{"a":1,"a":2}', "NaN", "[Infinity]", '"\\ud800"', "1e400", "{", "[1,]", "'x'", ""]
)
def test_invalid_json_text_is_rejected(raw: Raw, text: str) -> None:
    request = svc.SetJsonRequest(session_id=raw.sid, key="j", json=text, ttl_seconds=9)
    err, info = raw.error("SetJson", request)
    assert info.reason == "INVALID_JSON", text
    assert "not valid JSON" in err.details()


def test_json_is_stored_compact(raw: Raw) -> None:
    text = ' { "b" : [ 1 , 2.50, "é" ], "a": null } '
    raw.call("SetJson", svc.SetJsonRequest(session_id=raw.sid, key="j", json=text, ttl_seconds=9))
    got = raw.call("Get", svc.GetRequest(session_id=raw.sid, key="j"))
    assert got.entry.value.json_value == '{"b":[1,2.5,"é"],"a":null}'


def test_bad_field_errors_carry_bad_request(raw: Raw) -> None:
    err, info = raw.error(
        "Set", svc.SetRequest(session_id=raw.sid, key="k", string_value="x" * 300)
    )
    status = rpc_status.from_call(err)
    bad = error_details_pb2.BadRequest()
    assert status.details[1].Unpack(bad)
    assert bad.field_violations[0].field == "string_value"
    assert info.metadata["limit"] == "255"


def test_set_without_value_is_rejected(raw: Raw) -> None:
    _, info = raw.error("Set", svc.SetRequest(session_id=raw.sid, key="k"))
    assert info.reason == "VALUE_REQUIRED"


@pytest.mark.parametrize(
    ("md", "reason"),
    [
        (None, "API_KEY_MISSING"),
        ((("authorization", "Basic abc"),), "API_KEY_MISSING"),
        ((("authorization", "Bearer nope"),), "API_KEY_INVALID"),
        ((("authorization", "Bearer smk_000000000000_secret"),), "API_KEY_INVALID"),
    ],
)
def test_unauthenticated_calls(raw: Raw, md: Any, reason: str) -> None:
    for method, request in [
        ("Get", svc.GetRequest(session_id=raw.sid, key="k")),
        ("GetLimits", svc.GetLimitsRequest()),
    ]:
        err, info = raw.error(method, request, md)
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        assert info.reason == reason


def test_wrong_secret_of_a_real_key_is_rejected(raw: Raw, api_key: str) -> None:
    forged = api_key[:-4] + ("AAAA" if not api_key.endswith("AAAA") else "BBBB")
    _, info = raw.error(
        "Get", svc.GetRequest(session_id=raw.sid, key="k"), (("authorization", f"Bearer {forged}"),)
    )
    assert info.reason == "API_KEY_INVALID"


def test_health_and_reflection(raw: Raw) -> None:
    health = health_pb2_grpc.HealthStub(raw.channel)
    for service in ("", "sessionmemory.v1.MemoryService"):
        resp = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    refl = reflection_pb2_grpc.ServerReflectionStub(raw.channel)
    [resp] = list(
        refl.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
    )
    names = {s.name for s in resp.list_services_response.service}
    assert "sessionmemory.v1.MemoryService" in names
