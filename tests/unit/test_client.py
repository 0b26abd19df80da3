"""Client conversion, error mapping and public surface, without any server."""

from __future__ import annotations

import asyncio
import inspect
import io
import time
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

import sessionmemory
from sessionmemory import _convert as c
from sessionmemory.errors import (
    AuthenticationError,
    ConflictError,
    DeadlineExceededError,
    InvalidArgumentError,
    LimitExceededError,
    MemoryApiError,
    MemoryTypeError,
    NotANumberError,
    PermissionDeniedError,
    ServiceUnavailableError,
    from_grpc,
)
from sessionmemory.v1 import memory_service_pb2 as svc
from sessionmemory.v1.error_reason_pb2 import ErrorReason


def test_public_names_are_pinned() -> None:
    assert sorted(sessionmemory.__all__) == sorted(
        [
            "AsyncChangeStream",
            "AsyncFileHandle",
            "AsyncMemoryClient",
            "AsyncSession",
            "AuthenticationError",
            "Change",
            "ChangeStream",
            "ConflictError",
            "DeadlineExceededError",
            "Document",
            "Entry",
            "EntryInfo",
            "FailedPreconditionError",
            "FileHandle",
            "FileInfo",
            "InternalServerError",
            "InvalidArgumentError",
            "Json",
            "LimitExceededError",
            "Limits",
            "MemoryApiError",
            "MemoryClient",
            "MemoryTypeError",
            "MemoryUnavailableError",
            "NotANumberError",
            "NotFoundError",
            "PermissionDeniedError",
            "ServiceUnavailableError",
            "SessionToken",
            "TenantLimits",
            "TenantUsage",
            "SchemaInfo",
            "SchemaViolationError",
            "Session",
            "SetItem",
            "Value",
            "WriteResult",
        ]
    )


def _public(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and callable(member)
    }


@pytest.mark.parametrize(
    ("sync", "aio"),
    [
        (sessionmemory.MemoryClient, sessionmemory.AsyncMemoryClient),
        (sessionmemory.Session, sessionmemory.AsyncSession),
    ],
)
def test_sync_and_async_have_the_same_methods(sync: type, aio: type) -> None:
    s, a = _public(sync), _public(aio)
    assert s.keys() == a.keys()
    for name in s:
        assert list(s[name].parameters) == list(a[name].parameters), name
        if name not in ("session", "from_env", "stub", "watch"):
            assert inspect.iscoroutinefunction(getattr(aio, name)), name


@pytest.mark.parametrize(
    ("value", "default", "expected"),
    [
        ("3", 0, 3),
        ("-12", 0, -12),
        ("2.5", 0, 2.5),  # a number default reads any number: no int-only rule
        (2.5, 0, 2.5),
        (3.0, 0, 3),  # whole: an int
        (2.0**60, 0, 2.0**60),  # whole but past 2**53: stays a float
        (2.0**53 - 1, 0, 2**53 - 1),  # the largest whole number a double holds exactly
        # 2**53 is also what 2**53 + 1 reads as: an int would claim a unit it lacks
        # (the server's JSON writes integers below 2**53 only, too).
        (2.0**53, 0, 2.0**53),
        ("9007199254740993", 0, 2.0**53),
        (-(2.0**53), 0, -(2.0**53)),
        ("1e-400", 0, 0),  # underflows to 0, as Number() and ParseFloat do
        ("+.5", 0, 0.5),
        ("5.e3", 0, 5000),
        ("-0", 0.0, -0.0),
        ("1e3", 0, 1000),
        (3, 0.0, 3.0),  # a float default: always a float
        ("7", 0.0, 7.0),
        (3, "", "3"),
        (2.5, "", "2.5"),
        (1e-7, "", "1e-7"),
        (-0.0, "", "0"),
        (1e21, "", "1e+21"),
        (True, "", "true"),
        ("false", True, False),
        ({"a": 1}, {}, {"a": 1}),
        ([1], [], [1]),
        ("x", None, "x"),
    ],
)
def test_coerce_exact(value: Any, default: Any, expected: Any) -> None:
    result = c.coerce(value, default, "k")
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize(
    ("value", "default"),
    [
        ("abc", 0),
        ("1_000", 0),  # float() would take these four
        (" 12", 0),
        ("\u0661\u0662", 0),
        ("infinity", 0.0),
        ("nan", 0.0),
        ("1e400", 0),  # not finite
        (True, 0),
        (None, 0),  # JSON null
        ("1", True),
        ({"a": 1}, ""),
        ([1], 0),
        ("x", {}),
        ([1], {}),  # a dict default reads an object only
        ({"a": 1}, []),
        (10**400, ""),  # a JSON integer no double holds: a type error, not OverflowError
        (10**400, 0),
    ],
)
def test_coerce_refuses_inexact(value: Any, default: Any) -> None:
    with pytest.raises(MemoryTypeError, match="key 'k' holds"):
        c.coerce(value, default, "k")


def test_set_rejects_non_scalars_and_conflicting_conditions() -> None:
    with pytest.raises(TypeError):
        c.plan_set("s", "k", {"a": 1}, None, None, False)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="either"):
        c.plan_set("s", "k", 1, None, 3, True)
    assert c.plan_set("s", "k", 1, None, None, False).idempotent
    assert not c.plan_set("s", "k", 1, None, None, True).idempotent
    assert c.plan_increment("s", "k", 1, None, None).request.request_id
    assert c.plan_increment("s", "k", 1, None, "r-1").request.request_id == "r-1"
    assert not c.plan_increment("s", "k", 1, None, "").idempotent  # a retry could count twice
    conditional = [c.SetItem("a", 1), c.SetItem("b", 2, if_version=4)]
    assert not c.plan_set_many("s", conditional, None).idempotent
    assert c.plan_set_many("s", {"a": 1, "b": 2}, None).idempotent


def test_set_file_plan() -> None:
    def upload(data: Any = b"hello", **kw: Any) -> c.UploadPlan:
        options: dict[str, Any] = {
            "mime": "text/plain", "ttl": 60, "upload_id": None, "if_version": None,
            "only_if_absent": False, "progress": None, **kw,
        }  # fmt: skip
        return c.plan_set_file("s", "k", data, **options)

    with pytest.raises(ValueError, match="either"):
        upload(if_version=3, only_if_absent=True)
    plan = upload(only_if_absent=True)
    header, chunk, last = list(plan.requests())
    assert header.header.if_version == 0 and header.header.size_bytes == 5
    assert header.header.upload_id  # generated, and the same on every attempt
    assert next(plan.requests()).header.upload_id == header.header.upload_id
    assert chunk.chunk == b"hello" and last.finish_write and plan.retryable
    assert not upload(io.BytesIO(b"hello")).retryable  # a stream cannot be sent twice


class FakeError(grpc.RpcError):
    """A grpc.RpcError as the channel raises it: code, details, trailing metadata."""

    def __init__(self, code: grpc.StatusCode, message: str, *details: Any) -> None:
        self._code, self._message = code, message
        packed = []
        for d in details:
            a = any_pb2.Any()
            a.Pack(d)
            packed.append(a)
        status = status_pb2.Status(code=code.value[0], message=message, details=packed)
        self._md = (("grpc-status-details-bin", status.SerializeToString()),) if details else ()

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._message

    def trailing_metadata(self) -> Any:
        return self._md


def test_from_grpc_maps_by_reason_then_code() -> None:
    info = error_details_pb2.ErrorInfo(
        reason="NOT_A_NUMBER", domain="sessionmemory", metadata={"key": "k"}
    )
    err = from_grpc(FakeError(grpc.StatusCode.FAILED_PRECONDITION, "nope", info))
    assert isinstance(err, NotANumberError)
    assert (err.code, err.metadata, err.message) == ("NOT_A_NUMBER", {"key": "k"}, "nope")
    err = from_grpc(
        FakeError(grpc.StatusCode.ABORTED, "x", error_details_pb2.ErrorInfo(reason="KEY_EXISTS"))
    )
    assert isinstance(err, ConflictError)
    err = from_grpc(FakeError(grpc.StatusCode.UNAVAILABLE, "down"))
    assert isinstance(err, ServiceUnavailableError) and err.code is None
    err = from_grpc(FakeError(grpc.StatusCode.DATA_LOSS, "?"))
    assert type(err) is MemoryApiError


NEWER_REASONS = [
    (ErrorReason.STORE_FULL, "RESOURCE_EXHAUSTED", LimitExceededError, False),
    (ErrorReason.REQUEST_ID_REUSED, "INVALID_ARGUMENT", InvalidArgumentError, False),
    (ErrorReason.MALFORMED_REQUEST, "INVALID_ARGUMENT", InvalidArgumentError, False),
    (ErrorReason.TOO_MANY_UPLOADS, "RESOURCE_EXHAUSTED", LimitExceededError, True),
    (ErrorReason.SPOOL_FULL, "RESOURCE_EXHAUSTED", LimitExceededError, True),
    (ErrorReason.SERVER_BUSY, "RESOURCE_EXHAUSTED", LimitExceededError, True),
    (ErrorReason.UPLOAD_TOO_SLOW, "DEADLINE_EXCEEDED", DeadlineExceededError, False),
    (ErrorReason.RATE_LIMITED, "RESOURCE_EXHAUSTED", LimitExceededError, True),
    (ErrorReason.QUOTA_EXCEEDED, "RESOURCE_EXHAUSTED", LimitExceededError, False),
    (ErrorReason.API_KEY_EXPIRED, "UNAUTHENTICATED", AuthenticationError, False),
    (ErrorReason.TOKEN_INVALID, "UNAUTHENTICATED", AuthenticationError, False),
    (ErrorReason.TOKEN_EXPIRED, "UNAUTHENTICATED", AuthenticationError, False),
    (ErrorReason.TOKEN_REVOKED, "UNAUTHENTICATED", AuthenticationError, False),
    (ErrorReason.PERMISSION_DENIED, "PERMISSION_DENIED", PermissionDeniedError, False),
    (ErrorReason.INVALID_TOKEN_REQUEST, "INVALID_ARGUMENT", InvalidArgumentError, False),
]


@pytest.mark.parametrize(
    ("reason", "status", "cls", "retry"),
    NEWER_REASONS,
    ids=[ErrorReason.Name(r[0]) for r in NEWER_REASONS],
)
def test_from_grpc_maps_the_newer_reasons(
    reason: ErrorReason.ValueType, status: str, cls: type[MemoryApiError], retry: bool
) -> None:
    name, code = ErrorReason.Name(reason), grpc.StatusCode[status]
    details: list[Any] = [error_details_pb2.ErrorInfo(reason=name, domain="sessionmemory")]
    if retry:  # these travel with a RetryInfo
        details.append(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=1)))
    err = from_grpc(FakeError(code, "refused", *details))
    assert type(err) is cls
    assert (err.code, err.status) == (name, code)
    assert err.retry_after == (1.0 if retry else None)
    # A rate limit is exactly RATE_LIMITED: a RetryInfo alone (SERVER_BUSY) is not one.
    assert err.is_rate_limit() is (name == "RATE_LIMITED")
    assert err.is_quota_exceeded() is (name == "QUOTA_EXCEEDED")


def test_rate_limit_and_retry_after() -> None:
    retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(nanos=250_000_000))
    info = error_details_pb2.ErrorInfo(
        reason="RATE_LIMITED", metadata={"limit": "writes", "rate": "5", "burst": "5"}
    )
    err = from_grpc(FakeError(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down", info, retry))
    assert isinstance(err, LimitExceededError)
    assert err.is_rate_limit() and not err.is_quota_exceeded()
    assert err.retry_after == 0.25 and err.metadata["limit"] == "writes"
    quota = from_grpc(
        FakeError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "too many sessions",
            error_details_pb2.ErrorInfo(reason="QUOTA_EXCEEDED", metadata={"quota": "sessions"}),
        )
    )
    assert quota.is_quota_exceeded() and not quota.is_rate_limit() and quota.retry_after is None
    full = from_grpc(
        FakeError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "full",
            error_details_pb2.ErrorInfo(reason="SESSION_FULL"),
        )
    )
    assert not full.is_rate_limit()


class FakeStub:
    """A stub whose ``Get`` fails with scripted errors, then answers; records timeouts."""

    def __init__(self, *errors: FakeError) -> None:
        self.errors = list(errors)
        self.calls = 0

    def Get(self, request: Any, timeout: float, metadata: Any) -> Any:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return svc.GetResponse(found=False)

    def Set(self, request: Any, timeout: float, metadata: Any) -> Any:
        self.calls += 1
        raise self.errors.pop(0)


def _unavailable(retry_seconds: float | None) -> FakeError:
    details: list[Any] = [error_details_pb2.ErrorInfo(reason="BACKEND_UNAVAILABLE")]
    if retry_seconds is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(retry_seconds * 1e9))
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    return FakeError(grpc.StatusCode.UNAVAILABLE, "down", *details)


def _rate_limited() -> FakeError:
    return FakeError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "slow down",
        error_details_pb2.ErrorInfo(reason="RATE_LIMITED"),
        error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=1)),
    )


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the client's retry sleeps instead of sleeping."""
    slept: list[float] = []
    monkeypatch.setattr(time, "sleep", slept.append)
    return slept


def test_retry_waits_the_servers_retry_info(sleeps: list[float]) -> None:
    client = sessionmemory.MemoryClient("unused:1", api_key="smt_token", timeout=5)
    client._stub = stub = FakeStub(_unavailable(0.7), _unavailable(None))  # type: ignore[assignment]
    assert client.session("s").get("k", "x") == "x"
    assert stub.calls == 3
    assert sleeps[0] == 0.7  # the server's RetryInfo, not the client's 25-75 ms backoff
    assert 0.05 <= sleeps[1] <= 0.15  # no RetryInfo: the client's own backoff
    client.close()


def test_retry_gives_up_when_retry_info_passes_the_deadline(sleeps: list[float]) -> None:
    client = sessionmemory.MemoryClient("unused:1", api_key="k", timeout=1)
    client._stub = stub = FakeStub(_unavailable(3.0))  # type: ignore[assignment]
    with pytest.raises(ServiceUnavailableError) as caught:
        client.session("s").get("k")
    assert (stub.calls, sleeps, caught.value.retry_after) == (1, [], 3.0)
    client.close()


def test_rate_limited_is_not_retried(sleeps: list[float]) -> None:
    client = sessionmemory.MemoryClient("unused:1", api_key="k", timeout=5)
    client._stub = stub = FakeStub(_rate_limited(), _rate_limited())  # type: ignore[assignment]
    with pytest.raises(LimitExceededError) as caught:
        client.session("s").get("k")
    assert caught.value.is_rate_limit() and caught.value.retry_after == 1.0
    assert (stub.calls, sleeps) == (1, [])
    client.close()


async def test_async_retry_waits_the_servers_retry_info(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def fake_sleep(delay: float) -> None:
        slept.append(delay)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)

    class AsyncStub(FakeStub):
        async def Get(self, request: Any, **kwargs: Any) -> Any:
            return super().Get(request, **kwargs)

    client = sessionmemory.AsyncMemoryClient("unused:1", api_key="k", timeout=5)
    client._stub = stub = AsyncStub(_unavailable(0.4))  # type: ignore[assignment]
    assert await client.session("s").get("k") is None
    assert (stub.calls, slept) == (2, [0.4])
    await client.close()


def test_watch_resumes_after_the_servers_retry_info() -> None:
    assert c.watch_backoff(3, 0.3) == 0.3
    assert c.watch_backoff(0, None) < 0.1
    assert c.watch_backoff(30, None) == c.WATCH_MAX_BACKOFF


def test_session_token_plans() -> None:
    plan = c.plan_create_session_token("s", ["read", "write"], 60)
    assert plan.method == "CreateSessionToken" and not plan.idempotent
    assert list(plan.request.permissions) == [svc.TOKEN_PERMISSION_READ, svc.TOKEN_PERMISSION_WRITE]
    assert plan.request.ttl_seconds == 60
    assert not c.plan_create_session_token("s", "files", None).request.HasField("ttl_seconds")
    with pytest.raises(ValueError, match="unknown permission 'admin'"):
        c.plan_create_session_token("s", ["admin"], None)  # type: ignore[list-item]
    assert c.plan_revoke_session_token("t1", None).request.token_id == "t1"
    assert c.plan_revoke_session_token(None, "s").request.session_id == "s"
    with pytest.raises(ValueError):
        c.plan_revoke_session_token("t1", "s")
    with pytest.raises(ValueError):
        c.plan_revoke_session_token(None, None)


def test_limits_carry_the_tenants_limits_and_usage() -> None:
    response = svc.GetLimitsResponse(
        tenant_limits=svc.TenantLimits(reads_per_second=5, read_burst=5, max_sessions=10),
        tenant_usage=svc.TenantUsage(sessions=3, stored_bytes=1024),
    )
    limits = c.plan_limits().convert(response)
    assert limits.tenant_limits.reads_per_second == 5 and limits.tenant_limits.max_sessions == 10
    assert limits.tenant_usage == sessionmemory.TenantUsage(
        sessions=3, stored_bytes=1024, uploads=0
    )


def test_presigned_urls_use_the_public_endpoint() -> None:
    from sessionmemory_server.stores.blob_store import BlobStore

    store = BlobStore(
        endpoint="127.0.0.1:1",
        access_key="a",
        secret_key="b" * 16,
        bucket="bkt",
        secure=False,
        region="us-east-1",
        timeout=1,
        threads=1,
        public_endpoint="https://files.example.com",
    )
    try:
        url = store.presign("files/acme/x", 60)  # local computation, no request
    finally:
        store.close()
    assert url.startswith("https://files.example.com/bkt/files/acme/x?")
    assert "X-Amz-Expires=60" in url


def test_set_file_splits_large_chunks_of_an_iterator() -> None:
    from sessionmemory._convert import CHUNK_SIZE, file_source

    source = file_source(iter([b"a" * (CHUNK_SIZE * 2 + 5), b"b" * 10]))
    sizes = [len(c) for c in source.chunks()]
    assert sizes == [CHUNK_SIZE, CHUNK_SIZE, 5, 10]
