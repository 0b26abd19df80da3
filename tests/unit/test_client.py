"""Client conversion, error mapping and public surface, without any server."""

from __future__ import annotations

import inspect
import io
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2

import sessionmemory
from sessionmemory import _convert as c
from sessionmemory.errors import (
    ConflictError,
    DeadlineExceededError,
    InvalidArgumentError,
    LimitExceededError,
    MemoryApiError,
    MemoryTypeError,
    NotANumberError,
    ServiceUnavailableError,
    from_grpc,
)
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
            "SchemaInfo",
            "SchemaViolationError",
            "Session",
            "SetItem",
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
    ("value", "kind", "default", "expected"),
    [
        ("3", "string", 0, 3),
        ("-12", "string", 0, -12),
        (3, "number", 0.0, 3.0),
        (3, "number", "", "3"),
        (2.5, "number", "", "2.5"),
        (True, "boolean", "", "true"),
        ("false", "string", True, False),
        ("2.5", "string", 0.0, 2.5),
        ({"a": 1}, "json", {}, {"a": 1}),
        ("x", "string", None, "x"),
    ],
)
def test_coerce_exact(value: Any, kind: str, default: Any, expected: Any) -> None:
    result = c.coerce(value, kind, default, "k")
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize(
    ("value", "kind", "default"),
    [
        ("abc", "string", 0),
        (2.5, "number", 0),
        (True, "boolean", 0),
        ("1", "string", True),
        ({"a": 1}, "json", ""),
        ("nan", "string", 0.0),
        ("x", "string", {}),
    ],
)
def test_coerce_refuses_inexact(value: Any, kind: str, default: Any) -> None:
    with pytest.raises(MemoryTypeError):
        c.coerce(value, kind, default, "k")


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
    if retry:  # these three travel with a RetryInfo
        details.append(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=1)))
    err = from_grpc(FakeError(code, "refused", *details))
    assert type(err) is cls
    assert (err.code, err.status) == (name, code)
    assert err.is_rate_limit() is retry


def test_rate_limit_and_retry_after() -> None:
    retry = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=2))
    info = error_details_pb2.ErrorInfo(reason="RATE_LIMITED")
    err = from_grpc(FakeError(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down", info, retry))
    assert isinstance(err, LimitExceededError)
    assert err.is_rate_limit() and err.retry_after == 2.0
    full = from_grpc(
        FakeError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "full",
            error_details_pb2.ErrorInfo(reason="SESSION_FULL"),
        )
    )
    assert not full.is_rate_limit()


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
