"""What each call leaves behind when it ends: its metrics, its span, its access log line.

The call wrapper (`interceptors`) keeps one `Call` per call in a context
variable; the servicer reports who called and on which session, file RPCs
their bytes, the error mapping the status. A server's `Observer` gives each
method a `MethodObserver`, or None when metrics, tracing and the access log are
all off, so such a server does no observation work per call at all.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final

import grpc

from .accesslog import AccessLog
from .config import Settings
from .metrics import (
    MethodMetrics,
    MetricsServer,
    grpc_type,
    instrument_redis,
    method_metrics,
    multiprocess_worker,
    rate_limited,
    serve_metrics,
)
from .tracing import MethodTracer, Tracing, trace_id
from .tracing import setup as tracing_setup

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span

_OK: Final = grpc.StatusCode.OK
_TRIED: Final = object()  # Call.token once its span was considered and not started


class Call:
    """One call in progress: what is known about it so far.

    Attributes:
        cap: The CallCap it is counted in (``interceptors``); None before.
        counted: The tenant whose share of the cap it is counted against, if any.
        tenant: The caller's tenant, once authenticated.
        session_id: The session the call is on (logged only as a keyed hash).
        bytes_in: File bytes received (SetFile).
        bytes_out: File bytes sent (ReadFile).
        code: Its status code once it failed; None while it has not (OK at the end).
        reason: The ErrorInfo reason it failed with.
        bucket: The rate limit (ErrorInfo ``limit``) of a RATE_LIMITED refusal.
        start: `time.perf_counter` at its start (0 when nothing observes it).
        span: Its server span when tracing; token: the context token to restore.
        observer: What records it when it ends (`finish`); None when nothing does.
        metadata: Its invocation metadata once read (grpc builds it anew on each read).
    """

    __slots__ = (
        "bucket",
        "bytes_in",
        "bytes_out",
        "cap",
        "code",
        "counted",
        "metadata",
        "observer",
        "reason",
        "session_id",
        "span",
        "start",
        "tenant",
        "token",
    )

    def __init__(self, observer: MethodObserver | None = None) -> None:
        self.observer = observer
        self.metadata: Any = None
        self.cap: Any = None
        self.counted: str | None = None
        self.tenant: str | None = None
        self.session_id: str | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.code: grpc.StatusCode | None = None
        self.reason: str | None = None
        self.bucket: str | None = None
        self.start = 0.0
        self.span: Span | None = None
        self.token: object = None

    def finish(self) -> None:
        """Record the call's end, once (later calls do nothing).

        The error mapping calls it before it sends a failed call's status, so a
        client that has its answer also finds it counted; the call wrapper
        calls it when the call is over in any other way.
        """
        observer = self.observer
        if observer is not None:
            self.observer = None
            observer.end(self)


class MethodObserver:
    """Observes the calls of one RPC method: `begin` at their start, `end` at their status."""

    __slots__ = ("_access", "_bytes_in", "_bytes_out", "_metrics", "_tracer", "method")

    def __init__(
        self,
        method: str,
        metrics: MethodMetrics | None,
        tracer: MethodTracer | None,
        access: AccessLog | None,
    ) -> None:
        self.method = method
        self._metrics = metrics
        self._tracer = tracer
        self._access = access
        self._bytes_in = method == "SetFile"
        self._bytes_out = method == "ReadFile"

    def begin(self, call: Call, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """A call started: count it (its span waits until the caller is authenticated)."""
        call.start = time.perf_counter()
        if self._metrics is not None:
            self._metrics.start()

    def authenticated(self, call: Call, metadata: Any) -> None:
        """The caller is known: start the call's span, dated from the call's start.

        Not before: a caller's sampled trace context is followed (ParentBased), so
        anyone who can reach the port could otherwise make every call, keyless
        ones included, pay for a recorded and exported span.
        """
        tracer = self._tracer
        if tracer is None or call.token is not None:
            return
        call.token = _TRIED
        started_ns = time.time_ns() - int((time.perf_counter() - call.start) * 1e9)
        started = tracer.start(metadata, start_time=started_ns)
        if started is not None:
            call.span, call.token = started

    def end(self, call: Call) -> None:
        """A call has its status: record it, end its span, maybe write its line."""
        seconds = time.perf_counter() - call.start
        code = call.code or _OK
        if self._metrics is not None:
            self._metrics.done(code, call.reason, seconds)
            if call.bucket is not None:
                rate_limited(call.bucket)
        span = call.span
        if span is not None:
            MethodTracer.end(span, call.token, code, call.reason)
        access = self._access
        if access is not None and access.wanted(code is _OK):
            access.write(
                self.method,
                code.name,
                seconds,
                reason=call.reason,
                tenant=call.tenant,
                session_id=call.session_id,
                bytes_in=call.bytes_in if self._bytes_in else None,
                bytes_out=call.bytes_out if self._bytes_out else None,
                trace_id=trace_id(span) if span is not None else None,
            )


class Observer:
    """A server's observation: metrics on or off, its tracing, its access log."""

    @classmethod
    def for_server(
        cls, settings: Settings, redis: Any, *, span_exporter: SpanExporter | None = None
    ) -> Observer:
        """The observation ``settings`` ask for; instruments the server's ``redis`` client.

        Tracing is on with an OTLP endpoint (or a test's ``span_exporter``).
        Metrics are recorded when someone can read them: this process serves
        them (``metrics_listen``) or it is a worker whose supervisor does.
        """
        record = settings.metrics_listen is not None or multiprocess_worker()
        traced = tracing_setup(settings, exporter=span_exporter)
        # Spans first: OpenTelemetry reads the connection's address from the
        # bound method it wraps, which our timing wrapper would hide.
        if traced is not None:
            traced.instrument_redis(redis)
        if record:
            instrument_redis(redis)
        access = (
            AccessLog(
                sample_rate=settings.access_log_sample_rate,
                max_lines_per_second=settings.access_log_max_lines_per_second,
                hash_key=settings.log_hash_key.get_secret_value().encode(),
            )
            if settings.access_log
            else None
        )
        return cls(metrics=record, tracing=traced, access=access)

    def serve_metrics(self, listen: str | None) -> MetricsServer | None:
        """This process's /metrics endpoint on ``listen``; None when unset or a supervisor's worker.

        A supervisor (``--workers N``) serves its workers' metrics itself.

        Raises:
            OSError: ``listen`` cannot be bound.
        """
        if listen is None or multiprocess_worker():
            return None
        return serve_metrics(listen, multiprocess=False)

    def __init__(
        self,
        *,
        metrics: bool = False,
        tracing: Tracing | None = None,
        access: AccessLog | None = None,
    ) -> None:
        self.metrics = metrics
        self.tracing = tracing
        self.access = access

    def method(
        self, service: str, method: str, *, client_streaming: bool, server_streaming: bool
    ) -> MethodObserver | None:
        """The observer of one method; None when nothing is observed."""
        if not self.metrics and self.tracing is None and self.access is None:
            return None
        kind = grpc_type(client_streaming, server_streaming)
        return MethodObserver(
            method,
            method_metrics(service, method, kind) if self.metrics else None,
            self.tracing.method(service, method) if self.tracing is not None else None,
            self.access,
        )


OFF: Final = Observer()
