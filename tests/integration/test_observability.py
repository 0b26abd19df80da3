"""Metrics, traces and the access log of a real server over real Redis and S3.

One server (build_server, as in production) has the /metrics endpoint on a free
port, the access log at a sample rate of 1 and tracing with the test's
in-memory exporter in place of OTLP (sampling 0: only traces a caller samples
are recorded). Each test runs a scripted workload through the raw gRPC stub,
then scrapes /metrics over HTTP (counters as before/after differences), reads
the exported spans and the access log lines the server wrote.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client.parser import text_string_to_metric_families

from sessionmemory.v1 import memory_service_pb2 as svc
from sessionmemory.v1 import memory_service_pb2_grpc as svc_grpc
from sessionmemory_server.app import build_server
from sessionmemory_server.config import Settings
from sessionmemory_server.embedded import EmbeddedRedis, EmbeddedS3
from sessionmemory_server.limits import set_overrides
from sessionmemory_server.logs import JsonFormatter, TextFormatter
from sessionmemory_server.testing import stack_settings

from ..conftest import ServerThread

SERVICE = "sessionmemory.v1.MemoryService"
HASH_KEY = "test-log-hash-key"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


class Observed(ServerThread):
    """A ServerThread whose server exports its spans to ``exporter`` (if any)."""

    def __init__(self, settings: Settings, exporter: InMemorySpanExporter | None = None) -> None:
        self.exporter = exporter
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.built = self.run(build_server(settings, span_exporter=exporter))
        assert (self.built.tracing is None) == (exporter is None)
        self.address = f"127.0.0.1:{self.built.port}"

    def scrape(self) -> Samples:
        """Every sample of GET /metrics."""
        assert self.built.metrics_server is not None
        url = f"http://127.0.0.1:{self.built.metrics_server.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        return {
            (s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def spans(self) -> list[ReadableSpan]:
        """The spans exported so far (after flushing the batch processor)."""
        assert self.built.tracing is not None and self.exporter is not None
        assert self.built.tracing.flush()
        return list(self.exporter.get_finished_spans())


class Lines(logging.Handler):
    """Keeps the access log lines, formatted as the server writes them (JSON)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        self.records.append(record)

    def clear(self) -> None:
        self.lines.clear()
        self.records.clear()


@pytest.fixture(scope="module")
def observed(redis_server: EmbeddedRedis, s3_server: EmbeddedS3) -> Iterator[Observed]:
    settings = stack_settings(
        redis_server.url,
        s3_server,
        metrics_listen="127.0.0.1:0",
        access_log_sample_rate=1.0,
        # Far above what the tests send: no line is dropped (the keyless calls'
        # share is a tenth, and one test sends 20 of them at once).
        access_log_max_lines_per_second=10_000,
        log_hash_key=HASH_KEY,
        trace_sample_ratio=0.0,
        redis_timeout_seconds=0.5,
        s3_timeout_seconds=2.0,
    )
    server = Observed(settings, InMemorySpanExporter())
    yield server
    server.stop()


@pytest.fixture(scope="module")
def access(observed: Observed) -> Iterator[Lines]:
    logger = logging.getLogger("sessionmemory_server.access")
    handler, level = Lines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


class Caller:
    """A fresh tenant with a key and a raw stub; calls return the status code."""

    def __init__(self, server: ServerThread, **limits: float) -> None:
        self.tenant = f"obs-{uuid.uuid4().hex[:10]}"
        self.key = server.create_key(self.tenant)
        self.md: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {self.key}"),)
        self.channel = grpc.insecure_channel(server.address)
        self.stub = svc_grpc.MemoryServiceStub(self.channel)
        self.sid = f"conv-{uuid.uuid4().hex}"
        if limits:
            server.run(set_overrides(server.built.redis, self.tenant, limits))
            server.run(server.built.limit_book.refresh())

    def call(self, method: str, request: Any, md: Any = None, **kwargs: Any) -> grpc.StatusCode:
        try:
            getattr(self.stub, method)(request, metadata=self.md if md is None else md, timeout=10)
        except grpc.RpcError as err:
            return err.code()  # type: ignore[no-any-return]
        return grpc.StatusCode.OK

    def set(self, key: str, value: str = "v", md: Any = None) -> grpc.StatusCode:
        request = svc.SetRequest(session_id=self.sid, key=key, string_value=value, ttl_seconds=600)
        return self.call("Set", request, md)

    def get(self, key: str = "k", md: Any = None) -> grpc.StatusCode:
        return self.call("Get", svc.GetRequest(session_id=self.sid, key=key), md)

    def upload(self, key: str, data: bytes, md: Any = None) -> svc.SetFileResponse:
        header = svc.FileHeader(
            session_id=self.sid,
            key=key,
            mime_type="text/plain",
            ttl_seconds=600,
            sha256=hashlib.sha256(data).hexdigest(),
        )
        messages = [
            svc.SetFileRequest(header=header),
            svc.SetFileRequest(chunk=data, finish_write=True),
        ]
        response: svc.SetFileResponse = self.stub.SetFile(
            iter(messages), metadata=self.md if md is None else md, timeout=20
        )
        return response

    def read(self, key: str, md: Any = None) -> bytes:
        request = svc.ReadFileRequest(session_id=self.sid, key=key)
        stream = self.stub.ReadFile(request, metadata=self.md if md is None else md, timeout=20)
        return b"".join(m.chunk for m in stream if m.WhichOneof("part") == "chunk")

    def close(self) -> None:
        self.channel.close()


@pytest.fixture
def caller(observed: Observed) -> Iterator[Caller]:
    c = Caller(observed)
    yield c
    c.close()


def delta(before: Samples, after: Samples) -> Callable[..., float]:
    """``d(name, **labels)``: how much a sample grew between the two scrapes."""

    def d(name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        return after.get(key, 0.0) - before.get(key, 0.0)

    return d


def grpc_labels(method: str, kind: str = "UNARY", **more: str) -> dict[str, str]:
    return {"grpc_type": kind, "grpc_service": SERVICE, "grpc_method": method, **more}


def reason_of(code_and_err: grpc.RpcError) -> str:
    status = rpc_status.from_call(code_and_err)  # type: ignore[arg-type]
    assert status is not None
    info = error_details_pb2.ErrorInfo()
    status.details[0].Unpack(info)
    return str(info.reason)


def traceparent(trace_id: str, span_id: str, sampled: bool = True) -> tuple[str, str]:
    return ("traceparent", f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}")


# --- metrics ---------------------------------------------------------------------------


def test_metrics_count_a_scripted_workload(observed: Observed, caller: Caller) -> None:
    limited = Caller(observed, reads_per_second=1, read_burst=1)
    wrong_key = (("authorization", "Bearer smk_0000000000000000_notasecret"),)
    before = observed.scrape()

    assert [caller.set(f"k{i}") for i in range(3)] == [grpc.StatusCode.OK] * 3
    assert [caller.get("k0") for _ in range(5)] == [grpc.StatusCode.OK] * 5
    assert [caller.get(md=wrong_key) for _ in range(2)] == [grpc.StatusCode.UNAUTHENTICATED] * 2
    assert caller.get(md=()) == grpc.StatusCode.UNAUTHENTICATED
    assert [caller.set("not a key!") for _ in range(2)] == [grpc.StatusCode.INVALID_ARGUMENT] * 2
    # The limited tenant (1 read/s, burst 1) is refused within a few calls.
    codes = []
    while codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) < 2:
        codes.append(limited.get())
        assert len(codes) < 20
    limited_ok = codes.count(grpc.StatusCode.OK)
    assert limited_ok + 2 == len(codes)
    limited.close()

    d = delta(before, observed.scrape())
    gets = 5 + 3 + len(codes)
    assert d("grpc_server_started_total", **grpc_labels("Get")) == gets
    assert d("grpc_server_started_total", **grpc_labels("Set")) == 5
    assert d("grpc_server_handled_total", **grpc_labels("Get", grpc_code="OK")) == 5 + limited_ok
    assert d("grpc_server_handled_total", **grpc_labels("Get", grpc_code="UNAUTHENTICATED")) == 3
    assert d("grpc_server_handled_total", **grpc_labels("Get", grpc_code="RESOURCE_EXHAUSTED")) == 2
    assert d("grpc_server_handled_total", **grpc_labels("Set", grpc_code="OK")) == 3
    assert d("grpc_server_handled_total", **grpc_labels("Set", grpc_code="INVALID_ARGUMENT")) == 2
    assert d("grpc_server_handling_seconds_count", **grpc_labels("Get")) == gets
    assert d("grpc_server_handling_seconds_bucket", **grpc_labels("Get", le="+Inf")) == gets

    def rejected(method: str, code: str, reason: str) -> float:
        return d(
            "sessionmemory_rejections_total", grpc_method=method, grpc_code=code, reason=reason
        )

    assert rejected("Get", "UNAUTHENTICATED", "API_KEY_INVALID") == 2
    assert rejected("Get", "UNAUTHENTICATED", "API_KEY_MISSING") == 1
    assert rejected("Set", "INVALID_ARGUMENT", "INVALID_KEY") == 2
    assert rejected("Get", "RESOURCE_EXHAUSTED", "RATE_LIMITED") == 2
    assert d("sessionmemory_auth_failures_total", reason="API_KEY_INVALID") == 2
    assert d("sessionmemory_auth_failures_total", reason="API_KEY_MISSING") == 1
    assert d("sessionmemory_rate_limited_total", bucket="reads") == 2
    after = observed.scrape()
    assert after[("sessionmemory_calls_in_flight", frozenset())] == 0
    # Every Get and Set that passed authentication went to Redis.
    redis_calls = sum(
        d("sessionmemory_redis_command_seconds_count", **dict(labels))
        for name, labels in after
        if name == "sessionmemory_redis_command_seconds_count"
    )
    assert redis_calls >= 3 + 5 + limited_ok


def test_file_metrics_count_bytes_and_released_objects(observed: Observed, caller: Caller) -> None:
    data = secrets.token_hex(150 * 1024).encode()
    before = observed.scrape()
    caller.upload("doc", data)
    assert caller.read("doc") == data
    caller.upload("doc", data[:1000])  # replaces the first object: deleted before the answer
    # A stream's status is counted when its handler ends, a moment after the client
    # has read its last message.
    read_ok = grpc_labels("ReadFile", "SERVER_STREAM", grpc_code="OK")
    deadline = time.monotonic() + 5
    while not delta(before, observed.scrape())("grpc_server_handled_total", **read_ok):
        assert time.monotonic() < deadline, "ReadFile was never counted"
        time.sleep(0.05)
    d = delta(before, observed.scrape())
    assert d("sessionmemory_upload_bytes_total") == len(data) + 1000
    assert d("sessionmemory_download_bytes_total") == len(data)
    assert d("sessionmemory_collector_deleted_objects_total", cause="release") == 1
    assert d("grpc_server_handled_total", **grpc_labels("SetFile", "CLIENT_STREAM", grpc_code="OK"))
    assert d(
        "grpc_server_handled_total", **grpc_labels("ReadFile", "SERVER_STREAM", grpc_code="OK")
    )
    after = observed.scrape()
    assert after[("sessionmemory_uploads_in_progress", frozenset())] == 0
    assert after[("sessionmemory_upload_spool_bytes", frozenset())] == 0
    assert ("sessionmemory_collector_backlog", frozenset()) in after


def test_upload_rejections_are_counted_by_reason(observed: Observed, caller: Caller) -> None:
    before = observed.scrape()
    header = svc.FileHeader(session_id=caller.sid, key="f", mime_type="text/plain", ttl_seconds=60)
    chunk_first = [svc.SetFileRequest(chunk=b"x"), svc.SetFileRequest(header=header)]
    with pytest.raises(grpc.RpcError) as err:
        caller.stub.SetFile(iter(chunk_first), metadata=caller.md, timeout=10)
    assert reason_of(err.value) == "INVALID_UPLOAD"
    d = delta(before, observed.scrape())
    assert d("sessionmemory_upload_rejections_total", reason="INVALID_UPLOAD") == 1


def test_redis_errors_are_counted_by_command_and_class(
    tmp_path: Path, s3_server: EmbeddedS3
) -> None:
    redis = EmbeddedRedis(tmp_path / "redis").start()
    settings = stack_settings(
        redis.url, s3_server, metrics_listen="127.0.0.1:0", redis_timeout_seconds=0.5
    )
    server = Observed(settings)
    try:
        caller = Caller(server)
        assert caller.get() == grpc.StatusCode.OK
        before = server.scrape()
        redis.stop()
        assert caller.get() == grpc.StatusCode.UNAVAILABLE
        after = server.scrape()
        d = delta(before, after)
        assert d("grpc_server_handled_total", **grpc_labels("Get", grpc_code="UNAVAILABLE")) == 1
        assert (
            d(
                "sessionmemory_rejections_total",
                grpc_method="Get",
                grpc_code="UNAVAILABLE",
                reason="BACKEND_UNAVAILABLE",
            )
            == 1
        )
        errors = {
            dict(labels)["error"]
            for (name, labels), value in after.items()
            if name == "sessionmemory_redis_command_errors_total" and d(name, **dict(labels)) > 0
        }
        assert errors & {"ConnectionError", "TimeoutError"}, errors
        caller.close()
    finally:
        server.stop()
        redis.stop()


# --- traces ----------------------------------------------------------------------------


def test_a_get_is_a_server_span_under_the_callers_span_with_redis_children(
    observed: Observed, caller: Caller
) -> None:
    assert caller.set("k") == grpc.StatusCode.OK
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    md = (*caller.md, traceparent(trace_id, parent_id))
    assert caller.get("k", md=md) == grpc.StatusCode.OK

    spans = [s for s in observed.spans() if format(s.context.trace_id, "032x") == trace_id]
    [server_span] = [s for s in spans if s.kind is SpanKind.SERVER]
    assert server_span.name == f"{SERVICE}/Get"
    assert server_span.parent is not None
    assert format(server_span.parent.span_id, "016x") == parent_id
    assert server_span.parent.is_remote
    assert dict(server_span.attributes or {}) == {
        "rpc.system": "grpc",
        "rpc.service": SERVICE,
        "rpc.method": "Get",
        "rpc.grpc.status_code": 0,
    }
    assert server_span.status.status_code is StatusCode.UNSET
    assert server_span.resource.attributes["service.name"] == "session-memory"
    children = [s for s in spans if s.parent and s.parent.span_id == server_span.context.span_id]
    redis_children = [s for s in children if (s.attributes or {}).get("db.system") == "redis"]
    assert redis_children, [(s.name, dict(s.attributes or {})) for s in spans]
    assert all(s.kind is SpanKind.CLIENT for s in redis_children)


def test_file_calls_have_s3_children(observed: Observed, caller: Caller) -> None:
    data = secrets.token_hex(5_000).encode()
    ids = {m: (secrets.token_hex(16), secrets.token_hex(8)) for m in ("SetFile", "ReadFile")}
    caller.upload("f", data, md=(*caller.md, traceparent(*ids["SetFile"])))
    assert caller.read("f", md=(*caller.md, traceparent(*ids["ReadFile"]))) == data

    spans = observed.spans()
    for method, http_method in (("SetFile", "PUT"), ("ReadFile", "GET")):
        trace_id = ids[method][0]
        mine = [s for s in spans if format(s.context.trace_id, "032x") == trace_id]
        [server_span] = [s for s in mine if s.kind is SpanKind.SERVER]
        assert server_span.name == f"{SERVICE}/{method}"
        s3 = [
            s
            for s in mine
            if s.parent is not None
            and s.parent.span_id == server_span.context.span_id
            and s.name == http_method
        ]
        assert s3, (method, [(s.name, dict(s.attributes or {})) for s in mine])
        assert all(s.kind is SpanKind.CLIENT for s in s3)


def test_only_traces_a_caller_samples_are_recorded_at_ratio_zero(
    observed: Observed, caller: Caller, access: Lines
) -> None:
    access.clear()
    unsampled_id = secrets.token_hex(16)
    md = (*caller.md, traceparent(unsampled_id, secrets.token_hex(8), sampled=False))
    assert caller.get("k", md=md) == grpc.StatusCode.OK
    assert caller.get("k") == grpc.StatusCode.OK  # no trace context: a root, not sampled
    [unsampled, root] = [json.loads(line) for line in access.lines]
    assert unsampled["trace_id"] == unsampled_id  # the caller's trace, in the log
    assert "trace_id" not in root  # not traced at all
    recorded = {format(s.context.trace_id, "032x") for s in observed.spans()}
    assert unsampled_id not in recorded


def test_at_ratio_one_every_call_starts_a_trace_and_nothing_else_does(
    redis_server: EmbeddedRedis, s3_server: EmbeddedS3
) -> None:
    settings = stack_settings(redis_server.url, s3_server, trace_sample_ratio=1.0)
    server = Observed(settings, InMemorySpanExporter())
    try:
        caller = Caller(server)
        for _ in range(3):
            assert caller.get() == grpc.StatusCode.OK
        time.sleep(1.5)  # the collector (every 0.5 s here) and readiness probes run meanwhile
        spans = server.spans()
        caller.close()
    finally:
        server.stop()
    roots = [s for s in spans if s.parent is None]
    assert [s.name for s in roots] == [f"{SERVICE}/Get"] * 3
    assert all(s.kind is SpanKind.SERVER for s in roots)
    calls = {s.context.trace_id for s in roots}
    assert {s.context.trace_id for s in spans} == calls  # Redis spans only inside the calls
    assert len(spans) > 3


def test_a_failed_call_span_names_its_reason(observed: Observed, caller: Caller) -> None:
    trace_id = secrets.token_hex(16)
    md = (*caller.md, traceparent(trace_id, secrets.token_hex(8)))
    assert caller.set("k", "x" * 256, md=md) == grpc.StatusCode.INVALID_ARGUMENT
    [span] = [
        s
        for s in observed.spans()
        if format(s.context.trace_id, "032x") == trace_id and s.kind is SpanKind.SERVER
    ]
    attributes = dict(span.attributes or {})
    assert attributes["rpc.grpc.status_code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert attributes["error.type"] == "VALUE_TOO_LONG"
    # The caller's fault, not the server's (gRPC semantic conventions for servers).
    assert span.status.status_code is StatusCode.UNSET


def test_a_caller_without_a_valid_key_cannot_make_the_server_trace(
    observed: Observed, caller: Caller
) -> None:
    """A sampled trace context is followed only once the caller is authenticated."""
    trace_id = secrets.token_hex(16)
    md = (("authorization", "Bearer nope"), traceparent(trace_id, secrets.token_hex(8)))
    for _ in range(20):
        assert caller.get(md=md) == grpc.StatusCode.UNAUTHENTICATED
    assert caller.get(md=(*caller.md, traceparent(trace_id, secrets.token_hex(8)))) == (
        grpc.StatusCode.OK
    )
    spans = [
        s
        for s in observed.spans()
        if format(s.context.trace_id, "032x") == trace_id and s.kind is SpanKind.SERVER
    ]
    assert [dict(s.attributes or {})["rpc.grpc.status_code"] for s in spans] == [0]


# --- the access log --------------------------------------------------------------------


def test_access_log_lines_have_the_fields_and_no_secrets(
    observed: Observed, caller: Caller, access: Lines
) -> None:
    access.clear()
    value = f"secret-value-{uuid.uuid4().hex}"
    wrong = f"smk_{secrets.token_hex(8)}_{secrets.token_hex(16)}"
    data = secrets.token_hex(2500).encode()
    trace_id = secrets.token_hex(16)
    assert caller.set("secret_key_name", value) == grpc.StatusCode.OK
    assert caller.get("secret_key_name", md=(*caller.md, traceparent(trace_id, "ab" * 8))) == (
        grpc.StatusCode.OK
    )
    assert caller.get(md=(("authorization", f"Bearer {wrong}"),)) == (
        grpc.StatusCode.UNAUTHENTICATED
    )
    assert caller.set("bad key!") == grpc.StatusCode.INVALID_ARGUMENT
    caller.upload("secret_file_key", data)
    assert caller.read("secret_file_key") == data

    raw = "\n".join(access.lines)
    for secret in (caller.key, wrong, caller.sid, value, "secret_key_name", "secret_file_key"):
        assert secret not in raw, secret
    lines = [json.loads(line) for line in access.lines]
    assert [(x["method"], x["code"]) for x in lines] == [
        ("Set", "OK"),
        ("Get", "OK"),
        ("Get", "UNAUTHENTICATED"),
        ("Set", "INVALID_ARGUMENT"),
        ("SetFile", "OK"),
        ("ReadFile", "OK"),
    ]
    expected_session = hashlib.blake2b(
        caller.sid.encode(), key=HASH_KEY.encode(), digest_size=8
    ).hexdigest()
    for line in lines:
        assert line["logger"] == "sessionmemory_server.access"
        assert line["level"] == "INFO"
        assert isinstance(line["pid"], int)
        assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
        if line["code"] != "UNAUTHENTICATED":
            assert line["tenant"] == caller.tenant
            assert line["session"] == expected_session
    set_ok, get_ok, unauth, invalid, upload, read = lines
    assert get_ok["trace_id"] == trace_id
    assert ["trace_id" in line for line in lines] == [False, True, False, False, False, False]
    assert "reason" not in set_ok
    assert unauth["reason"] == "API_KEY_INVALID"
    assert "tenant" not in unauth and "session" not in unauth
    assert invalid["reason"] == "INVALID_KEY"
    assert upload["bytes_in"] == len(data) and "bytes_out" not in upload
    assert read["bytes_out"] == len(data) and "bytes_in" not in read
    assert "bytes_in" not in get_ok and "bytes_out" not in get_ok
    # The text format keeps the same fields.
    text = TextFormatter().format(access.records[1])
    assert f'session="{expected_session}"' in text and 'method="Get"' in text
