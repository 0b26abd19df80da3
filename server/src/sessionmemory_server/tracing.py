"""OpenTelemetry traces: a server span per call, Redis and S3 calls as its children.

Off (``otlp_endpoint`` unset) the server makes no span object and reads no
trace context: the call wrapper holds ``None`` instead of a `MethodTracer`.

On, `setup` builds a `Tracing`: its own SDK TracerProvider (``service.name`` =
``otel_service_name``; further resource attributes from the standard
``OTEL_RESOURCE_ATTRIBUTES``), a BatchSpanProcessor and an OTLP/gRPC exporter
to ``otlp_endpoint`` (``http://`` for plaintext, ``https://`` for TLS). Each
call gets a SERVER span named ``sessionmemory.v1.MemoryService/<Method>`` with
the rpc semantic-convention attributes, whose parent is the W3C trace context
(``traceparent``/``tracestate``) in the call's metadata. A caller's sampling
decision is followed; of the calls without a trace context,
``trace_sample_ratio`` start a recorded trace and the others get no span at all
(see `MethodTracer`). Spans that would start a trace outside a call (the
collector, readiness probes, key refreshes) are not recorded. Status follows the gRPC semantic
conventions for servers: ERROR only for codes that mean the server failed
(UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS);
every failed call carries its ErrorInfo reason as ``error.type``.

Redis commands become child spans through opentelemetry-instrumentation-redis,
applied to the server's own client only (``instrument_client`` with this
provider). S3 requests become child spans through
opentelemetry-instrumentation-urllib3, which can only patch urllib3 for the
whole process: it is applied once per process, to a tracer that forwards to the
`Tracing` activated last that is still open (or to nothing). So one process
traces S3 for one server at a time: with several traced servers in one process
(tests), the S3 spans of all go to the newest. The global TracerProvider is
never set: tracing stays this server's, not the process's.
"""

from __future__ import annotations

import contextlib
import contextvars
import random
import threading
from collections.abc import Iterator, Sequence
from typing import Any, Final

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.redis import RedisInstrumentor
from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor
from opentelemetry.propagators.textmap import Getter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
)
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes

from .config import Settings

# How long closing a server may wait for its last spans to be exported.
FLUSH_SECONDS: Final = 5.0
# Each OTLP export gives up after this long (it runs on the processor's thread).
EXPORT_TIMEOUT_SECONDS: Final = 5.0

# The gRPC semantic conventions' server-side errors; other codes are the caller's.
_SERVER_FAULTS: Final = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
_PROPAGATOR: Final = TraceContextTextMapPropagator()

Metadata = Sequence[tuple[str, str | bytes]]


class _MetadataGetter(Getter[Metadata]):
    """Reads W3C trace context headers from gRPC invocation metadata."""

    def get(self, carrier: Metadata, key: str) -> list[str] | None:
        found = [v if isinstance(v, str) else v.decode("latin-1") for k, v in carrier if k == key]
        return found or None

    def keys(self, carrier: Metadata) -> list[str]:
        return [k for k, _ in carrier]


_GETTER: Final = _MetadataGetter()


class _ServerRoots(Sampler):
    """Roots: a call's SERVER span is recorded (`MethodTracer` drew the ratio); others dropped."""

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[trace.Link] | None = None,
        trace_state: trace.TraceState | None = None,
    ) -> SamplingResult:
        """Decide for a root span: only SERVER spans (calls) may start a trace."""
        if kind is not SpanKind.SERVER:
            return SamplingResult(Decision.DROP)
        return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)

    def get_description(self) -> str:
        """The sampler's name, as OTel samplers describe themselves."""
        return "ServerRoots"


_NO_PARENT: Final = Context()


class MethodTracer:
    """Starts and ends the server spans of one RPC method.

    A call that brings a valid W3C trace context gets a span whose parent is the
    caller's (recorded when the caller sampled it: ParentBased). One that does
    not starts a trace with probability ``ratio``; otherwise it gets no span at
    all: no span object, no context, and its Redis commands skip their
    instrumentation (`Tracing.instrument_redis`), so sampling costs next to
    nothing for the calls it leaves out.
    """

    __slots__ = ("_attributes", "_name", "_ratio", "_tracer")

    def __init__(self, tracer: trace.Tracer, service: str, method: str, ratio: float) -> None:
        self._tracer = tracer
        self._ratio = ratio
        self._name = f"{service}/{method}"
        self._attributes: dict[str, str] = {
            "rpc.system": "grpc",
            "rpc.service": service,
            "rpc.method": method,
        }

    def start(
        self, metadata: Any, start_time: int | None = None
    ) -> tuple[trace.Span, object] | None:
        """Start a call's span (parent: ``metadata``'s trace context) and make it current.

        ``metadata`` is the call's invocation metadata: (key, value) pairs, or None;
        ``start_time`` the call's start in ns since the epoch (default: now).

        Returns the span and the token that `end` needs to restore the context;
        None when the call is not traced.
        """
        parent = _NO_PARENT
        for key, _ in metadata or ():
            if key == "traceparent":
                found = _PROPAGATOR.extract(metadata, _NO_PARENT, _GETTER)
                if trace.get_current_span(found).get_span_context().is_valid:
                    parent = found
                break
        if parent is _NO_PARENT:
            ratio = self._ratio
            if ratio < 1.0 and (ratio <= 0.0 or random.random() >= ratio):
                return None
        span = self._tracer.start_span(
            self._name, parent, SpanKind.SERVER, attributes=self._attributes, start_time=start_time
        )
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        return span, token

    @staticmethod
    def end(span: trace.Span, token: object, code: grpc.StatusCode, reason: str | None) -> None:
        """End a call's span with its status, and restore the context."""
        if span.is_recording():
            span.set_attribute("rpc.grpc.status_code", code.value[0])
            if code is not grpc.StatusCode.OK:
                span.set_attribute("error.type", reason or code.name)
                if code in _SERVER_FAULTS:
                    span.set_status(Status(StatusCode.ERROR, reason or code.name))
        span.end()
        # A stream's generator may be closed from another context than the one it
        # attached in; the context it left behind dies with that one anyway.
        # (otel_context.detach would log a traceback for it, at a rate clients choose.)
        if isinstance(token, contextvars.Token):
            with contextlib.suppress(ValueError):
                token.var.reset(token)
        else:
            otel_context.detach(token)  # type: ignore[arg-type]  # the token attach returned


def trace_id(span: trace.Span) -> str | None:
    """A span's trace id as 32 hex digits, as trace UIs show it; None when invalid."""
    ctx = span.get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


class Tracing:
    """One server's tracing: its provider, its server spans, its Redis client's spans."""

    def __init__(self, provider: TracerProvider, ratio: float) -> None:
        self.provider = provider
        self.ratio = ratio
        self._tracer = provider.get_tracer("sessionmemory_server")

    def method(self, service: str, method: str) -> MethodTracer:
        """The span maker of one RPC method."""
        return MethodTracer(self._tracer, service, method, self.ratio)

    def instrument_redis(self, client: Any) -> None:
        """Make the commands of ``client`` (Redis or RedisCluster) spans of this provider.

        Only within a recorded span: a command's span would be dropped anyway
        when its parent is not sampled (or when it has none, outside a call),
        so then the command skips the instrumentation and costs nothing extra.
        """
        plain = client.execute_command
        RedisInstrumentor.instrument_client(client, tracer_provider=self.provider)
        traced = client.execute_command
        current_span = trace.get_current_span

        async def execute_command(*args: Any, **options: Any) -> Any:
            if current_span().is_recording():
                return await traced(*args, **options)
            return await plain(*args, **options)

        client.execute_command = execute_command

    def flush(self, timeout: float = FLUSH_SECONDS) -> bool:
        """Export the spans ended so far; False when that took longer than ``timeout``."""
        return self.provider.force_flush(int(timeout * 1000))

    def close(self, timeout: float = FLUSH_SECONDS) -> None:
        """Export what is left (within about ``timeout`` seconds) and stop.

        Blocks: call it off the event loop.
        """
        _switch.deactivate(self.provider)
        self.provider.force_flush(int(timeout * 1000))
        self.provider.shutdown()


def setup(settings: Settings, *, exporter: SpanExporter | None = None) -> Tracing | None:
    """The tracing of a server with ``settings``; None when tracing is off.

    Tracing is on when ``settings.otlp_endpoint`` is set, or when a test passes
    its own ``exporter`` (e.g. an InMemorySpanExporter): everything else is
    the same as in production.
    """
    if exporter is None:
        if settings.otlp_endpoint is None:
            return None
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # noqa: PLC0415
            OTLPSpanExporter,  # imported only when used: it loads grpc's sync stack
        )

        exporter = OTLPSpanExporter(endpoint=settings.otlp_endpoint, timeout=EXPORT_TIMEOUT_SECONDS)
    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: settings.otel_service_name}),
        sampler=ParentBased(root=_ServerRoots()),
    )
    provider.add_span_processor(BatchSpanProcessor(exporter))
    _instrument_urllib3()
    _switch.activate(provider)
    return Tracing(provider, settings.trace_sample_ratio)


# --- urllib3 (the object store's HTTP): instrumented once per process -------------


class _SwitchTracer(trace.Tracer):
    """A tracer that forwards to the active provider's tracer, or to none."""

    def __init__(self, switch: _Switch, args: tuple[Any, ...]) -> None:
        self._switch = switch
        self._args = args
        self._cached: tuple[TracerProvider | None, trace.Tracer] = (None, trace.NoOpTracer())

    def _tracer(self) -> trace.Tracer:
        provider = self._switch.active
        if provider is None:
            return _NOOP
        cached_for, tracer = self._cached
        if cached_for is not provider:
            tracer = provider.get_tracer(*self._args)
            self._cached = (provider, tracer)  # one assignment: safe across threads
        return tracer

    def start_span(self, *args: Any, **kwargs: Any) -> trace.Span:
        """Start a span on the active provider's tracer."""
        return self._tracer().start_span(*args, **kwargs)

    @contextlib.contextmanager
    def start_as_current_span(  # type: ignore[override]  # the base's manager is also a decorator
        self, *args: Any, **kwargs: Any
    ) -> Iterator[trace.Span]:
        """Start a span on the active provider's tracer and make it current."""
        with self._tracer().start_as_current_span(*args, **kwargs) as span:
            yield span


class _Switch(trace.TracerProvider):
    """The tracer provider urllib3's instrumentation holds: the active `Tracing`'s, or none.

    The active one is the one activated last that is not closed yet.
    """

    def __init__(self) -> None:
        self.active: TracerProvider | None = None
        self._live: list[TracerProvider] = []
        self._lock = threading.Lock()

    def get_tracer(
        self,
        instrumenting_module_name: str,
        instrumenting_library_version: str | None = None,
        schema_url: str | None = None,
        attributes: Attributes = None,
    ) -> trace.Tracer:
        """A tracer that follows the active provider."""
        args = (instrumenting_module_name, instrumenting_library_version, schema_url, attributes)
        return _SwitchTracer(self, args)

    def activate(self, provider: TracerProvider) -> None:
        with self._lock:
            self._live.append(provider)
            self.active = provider

    def deactivate(self, provider: TracerProvider) -> None:
        with self._lock:
            self._live = [p for p in self._live if p is not provider]
            self.active = self._live[-1] if self._live else None


_NOOP: Final = trace.NoOpTracer()
_switch: Final = _Switch()
_instrumented: Final = threading.Event()
_instrument_lock: Final = threading.Lock()


def _instrument_urllib3() -> None:
    with _instrument_lock:
        if not _instrumented.is_set():
            URLLib3Instrumentor().instrument(tracer_provider=_switch)
            _instrumented.set()
