"""Prometheus metrics: every metric the server exports is defined here, once.

Two families:

- The standard gRPC server metrics, named as go-grpc-prometheus and
  py-grpc-prometheus name them, so existing dashboards and alerts work:
  ``grpc_server_started_total``, ``grpc_server_handled_total`` (by
  ``grpc_code``, the `grpc.StatusCode` name such as ``OK`` or
  ``INVALID_ARGUMENT``) and the ``grpc_server_handling_seconds`` histogram, each
  by ``grpc_type``, ``grpc_service`` and ``grpc_method``; plus
  ``sessionmemory_calls_in_flight``. They cover ``sessionmemory.v1.MemoryService``
  (health and reflection are not counted).
- Ours, prefixed ``sessionmemory_``: rejections by ErrorInfo reason, auth
  failures, rate-limit refusals, Redis command latency and errors, uploads,
  the blob collector and the access log.

Recording on the call path (the gRPC metrics and Redis timing) happens only
when someone can read it: a server with ``metrics_listen`` set (or a worker of
a supervisor that serves them). `MethodMetrics` holds a method's labelled
children, so a call looks nothing up by label. Rare events (uploads, the
collector, dropped log lines) are always counted: they cost nothing per call.

Serving: one process serves its own registry (`serve_metrics` with
``multiprocess=False``; `build_server` does this when ``workers == 1``). Under
``--workers N`` the supervisor calls `prepare_multiprocess` before it spawns
the workers, so each worker's values live in files in that directory
(prometheus_client's multiprocess mode, chosen when prometheus_client is first
imported, which a spawned worker does afresh), serves their sum with
``multiprocess=True``, and calls `worker_died` when a worker exits so its
live gauges stop counting.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterator
from itertools import accumulate
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any, Final, Protocol
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

import grpc
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client import multiprocess as prom_multiprocess
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import make_wsgi_app
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"

# Seconds. Get takes about a millisecond; uploads and ReadFile streams up to minutes.
HANDLING_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0, 60.0, 300.0,
)  # fmt: skip
# Seconds. One Redis round trip is typically 0.1 to 1 ms.
REDIS_BUCKETS: Final = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)  # fmt: skip
# Redis commands are named by our code, so few; this bounds the label anyway.
MAX_REDIS_COMMANDS: Final = 64

_GRPC_LABELS: Final = ("grpc_type", "grpc_service", "grpc_method")

# --- recorded on every call: the gRPC server metrics and Redis timing ---------------
#
# Alone, a process keeps these in plain integers that only its event loop
# touches, and `_LocalCollector` turns them into metrics when /metrics is read:
# a call costs a few additions, where prometheus_client's objects would take a
# lock per counter and per histogram bucket (a few percent of a Get's CPU,
# measured with `make bench-obs`). A worker of a supervisor
# records into prometheus_client's objects below instead, whose multi-process
# mode keeps them in the files the supervisor sums. The objects are registered
# nowhere: in one process the collector exports these names.

_STARTED_DOC: Final = "RPCs started on the server."
_HANDLED_DOC: Final = "RPCs completed on the server, regardless of success or failure."
_HANDLING_DOC: Final = "Time from the start of an RPC to its status, in seconds."
_IN_FLIGHT_DOC: Final = "MemoryService calls in progress (Watch streams included)."
_REDIS_DOC: Final = (
    "Redis command round trips, in seconds (EVALSHA runs our Lua scripts; MULTI is a"
    " transaction, PIPELINE a pipeline)."
)

STARTED: Final = Counter("grpc_server_started_total", _STARTED_DOC, _GRPC_LABELS, registry=None)
HANDLED: Final = Counter(
    "grpc_server_handled_total", _HANDLED_DOC, (*_GRPC_LABELS, "grpc_code"), registry=None
)
HANDLING_SECONDS: Final = Histogram(
    "grpc_server_handling_seconds",
    _HANDLING_DOC,
    _GRPC_LABELS,
    buckets=HANDLING_BUCKETS,
    registry=None,
)
CALLS_IN_FLIGHT: Final = Gauge(
    "sessionmemory_calls_in_flight", _IN_FLIGHT_DOC, multiprocess_mode="livesum", registry=None
)
REDIS_SECONDS: Final = Histogram(
    "sessionmemory_redis_command_seconds",
    _REDIS_DOC,
    ("command",),
    buckets=REDIS_BUCKETS,
    registry=None,
)

# --- ours ----------------------------------------------------------------------------

REJECTIONS: Final = Counter(
    "sessionmemory_rejections_total",
    "Failed calls by method, status code and google.rpc.ErrorInfo reason.",
    ("grpc_method", "grpc_code", "reason"),
)
AUTH_FAILURES: Final = Counter(
    "sessionmemory_auth_failures_total",
    "Calls refused for their credentials: UNAUTHENTICATED by reason (API_KEY_INVALID,"
    " API_KEY_EXPIRED, TOKEN_EXPIRED, ...) and PERMISSION_DENIED (a session token used"
    " outside its grant).",
    ("reason",),
)
RATE_LIMITED: Final = Counter(
    "sessionmemory_rate_limited_total",
    "Calls refused with RATE_LIMITED, by bucket: reads, writes, file_bytes (a tenant's"
    " rates) or auth_failures (too many failed authentications).",
    ("bucket",),
)
REDIS_ERRORS: Final = Counter(
    "sessionmemory_redis_command_errors_total",
    "Redis commands that failed, by command and error class (ConnectionError,"
    " TimeoutError, ResponseError, ...).",
    ("command", "error"),
)
UPLOADS_IN_PROGRESS: Final = Gauge(
    "sessionmemory_uploads_in_progress",
    "SetFile uploads admitted and not yet finished.",
    multiprocess_mode="livesum",
)
UPLOAD_SPOOL_BYTES: Final = Gauge(
    "sessionmemory_upload_spool_bytes",
    "Bytes of uploads in progress held in spool files.",
    multiprocess_mode="livesum",
)
UPLOAD_BYTES: Final = Counter("sessionmemory_upload_bytes_total", "File bytes received by SetFile.")
DOWNLOAD_BYTES: Final = Counter(
    "sessionmemory_download_bytes_total", "File bytes sent by ReadFile."
)
UPLOAD_REJECTIONS: Final = Counter(
    "sessionmemory_upload_rejections_total",
    "SetFile calls that failed, by ErrorInfo reason (TOO_MANY_UPLOADS, SPOOL_FULL,"
    " UPLOAD_TOO_SLOW, UPLOAD_TIMEOUT, QUOTA_EXCEEDED, ...).",
    ("reason",),
)
COLLECTOR_BACKLOG: Final = Gauge(
    "sessionmemory_collector_backlog",
    "Blob collection entries that were due when this process's last collection pass started.",
    multiprocess_mode="livemax",
)
COLLECTOR_DELETED: Final = Counter(
    "sessionmemory_collector_deleted_objects_total",
    "Objects deleted from the object store: by a collection pass (expired, orphaned) or"
    " released at once by the call that replaced or deleted their file.",
    ("cause",),
)
COLLECTOR_FAILURES: Final = Counter(
    "sessionmemory_collector_failures_total",
    "Collection entries or passes that failed (retried later).",
)
ACCESS_LOG_DROPPED: Final = Counter(
    "sessionmemory_access_log_dropped_total",
    "Access log lines not written because of the per-second cap.",
)

_UNARY: Final = "UNARY"


def grpc_type(client_streaming: bool, server_streaming: bool) -> str:
    """The ``grpc_type`` label of a method: UNARY, CLIENT_STREAM, SERVER_STREAM or BIDI_STREAM."""
    if client_streaming and server_streaming:
        return "BIDI_STREAM"
    if client_streaming:
        return "CLIENT_STREAM"
    if server_streaming:
        return "SERVER_STREAM"
    return _UNARY


class _Inc(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class MethodMetrics:
    """One RPC method's metrics: `start` and `done` are all a call does for them.

    Labelled children are looked up once (per code or reason: on first use).
    Made by `method_metrics`, which picks where the values live.
    """

    __slots__ = ("_failed", "method")

    def __init__(self, method: str) -> None:
        self.method = method
        self._failed: dict[tuple[grpc.StatusCode, str], list[_Inc]] = {}

    def start(self) -> None:
        """A call started."""
        raise NotImplementedError

    def done(self, code: grpc.StatusCode, reason: str | None, seconds: float) -> None:
        """A call ended with ``code`` (and ErrorInfo ``reason``) after ``seconds``."""
        raise NotImplementedError

    def _rejected(self, code: grpc.StatusCode, reason: str) -> None:
        found = self._failed.get((code, reason))
        if found is None:
            found = [REJECTIONS.labels(self.method, code.name, reason)]
            if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                found.append(AUTH_FAILURES.labels(reason))
            if self.method == "SetFile":
                found.append(UPLOAD_REJECTIONS.labels(reason))
            self._failed[(code, reason)] = found
        for counter in found:
            counter.inc()


class _Histo:
    """A histogram in plain numbers: counts per bucket (the last is +Inf) and the sum."""

    __slots__ = ("_les", "bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0
        # The "le" labels as prometheus_client's own histograms write them.
        self._les = [*(floatToGoString(b) for b in bounds), "+Inf"]  # type: ignore[no-untyped-call]

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # le is inclusive
        self.total += value

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative (le, count) pairs, +Inf last, as the exposition format wants them."""
        counts = list(self.counts)  # one snapshot (the event loop keeps counting)
        return list(zip(self._les, accumulate(counts), strict=True))


class _LocalCalls:
    """One method's calls in this process, in plain numbers (see `_LocalCollector`)."""

    __slots__ = ("handled", "handling", "started")

    def __init__(self) -> None:
        self.started = 0
        self.handled: dict[str, int] = {}
        self.handling = _Histo(HANDLING_BUCKETS)


# By (grpc_type, grpc_service, grpc_method), and by Redis command: shared by every
# server of the process, as prometheus_client's own metrics would be.
_local_calls: dict[tuple[str, str, str], _LocalCalls] = {}
_local_redis: dict[str, _Histo] = {}


class _LocalMethodMetrics(MethodMetrics):
    __slots__ = ("_calls",)

    def __init__(self, service: str, method: str, kind: str) -> None:
        super().__init__(method)
        self._calls = _local_calls.setdefault((kind, service, method), _LocalCalls())

    def start(self) -> None:
        self._calls.started += 1

    def done(self, code: grpc.StatusCode, reason: str | None, seconds: float) -> None:
        calls = self._calls
        name = code.name
        calls.handled[name] = calls.handled.get(name, 0) + 1
        calls.handling.observe(seconds)
        if code is not grpc.StatusCode.OK:
            self._rejected(code, reason or "")


class _SharedMethodMetrics(MethodMetrics):
    """prometheus_client's objects, for a worker whose supervisor sums every worker's."""

    __slots__ = ("_handled", "_handling", "_labels", "_started")

    def __init__(self, service: str, method: str, kind: str) -> None:
        super().__init__(method)
        self._labels = (kind, service, method)
        self._started = STARTED.labels(*self._labels)
        self._handling = HANDLING_SECONDS.labels(*self._labels)
        self._handled: dict[grpc.StatusCode, _Inc] = {}

    def start(self) -> None:
        self._started.inc()
        CALLS_IN_FLIGHT.inc()

    def done(self, code: grpc.StatusCode, reason: str | None, seconds: float) -> None:
        CALLS_IN_FLIGHT.dec()
        handled = self._handled.get(code)
        if handled is None:
            handled = self._handled[code] = HANDLED.labels(*self._labels, code.name)
        handled.inc()
        self._handling.observe(seconds)
        if code is not grpc.StatusCode.OK:
            self._rejected(code, reason or "")


def method_metrics(service: str, method: str, kind: str) -> MethodMetrics:
    """The metrics of one RPC method (``kind``: its `grpc_type`)."""
    if multiprocess_worker():
        return _SharedMethodMetrics(service, method, kind)
    return _LocalMethodMetrics(service, method, kind)


class _LocalCollector(Collector):
    """Turns this process's plain-number call and Redis metrics into metric families."""

    def collect(self) -> Iterator[Metric]:
        """The families, read when /metrics is."""
        started = CounterMetricFamily(
            "grpc_server_started_total", _STARTED_DOC, labels=_GRPC_LABELS
        )
        handled = CounterMetricFamily(
            "grpc_server_handled_total", _HANDLED_DOC, labels=(*_GRPC_LABELS, "grpc_code")
        )
        handling = HistogramMetricFamily(
            "grpc_server_handling_seconds", _HANDLING_DOC, labels=_GRPC_LABELS
        )
        in_flight = 0
        for labels, calls in list(_local_calls.items()):
            begun = calls.started
            started.add_metric(labels, begun)
            ended = 0
            for code, count in list(calls.handled.items()):
                handled.add_metric((*labels, code), count)
                ended += count
            in_flight += begun - ended
            handling.add_metric(labels, calls.handling.buckets(), calls.handling.total)
        redis = HistogramMetricFamily(
            "sessionmemory_redis_command_seconds", _REDIS_DOC, labels=("command",)
        )
        for command, histo in list(_local_redis.items()):
            redis.add_metric((command,), histo.buckets(), histo.total)
        yield started
        yield handled
        yield handling
        yield GaugeMetricFamily("sessionmemory_calls_in_flight", _IN_FLIGHT_DOC, max(in_flight, 0))
        yield redis


def rate_limited(bucket: str) -> None:
    """Count a RATE_LIMITED refusal of ``bucket`` (its ErrorInfo ``limit``)."""
    RATE_LIMITED.labels(bucket).inc()


# --- Redis --------------------------------------------------------------------------

Execute = Callable[..., Awaitable[Any]]


class _RedisTimer:
    """Times the commands of one client, by command name."""

    def __init__(self) -> None:
        self._shared = multiprocess_worker()
        self._observers: dict[object, Callable[[float], None]] = {}

    def observer(self, command: object) -> Callable[[float], None]:
        found = self._observers.get(command)
        if found is None:
            name = str(command).upper() if len(self._observers) < MAX_REDIS_COMMANDS else "OTHER"
            if self._shared:
                found = REDIS_SECONDS.labels(name).observe
            else:
                found = _local_redis.setdefault(name, _Histo(REDIS_BUCKETS)).observe
            self._observers[command] = found
        return found

    def wrap(self, execute: Execute, fixed: str | None = None) -> Execute:
        """``execute`` timed, by ``fixed`` or by its first argument (the command name)."""
        observer = self.observer

        async def timed(*args: Any, **options: Any) -> Any:
            name = fixed if fixed is not None else (args[0] if args else "?")
            start = time.perf_counter()
            try:
                return await execute(*args, **options)
            except Exception as exc:
                REDIS_ERRORS.labels(str(name).upper(), type(exc).__name__).inc()
                raise
            finally:
                observer(name)(time.perf_counter() - start)

        return timed


def instrument_redis(client: Any) -> None:
    """Time every command a redis-py asyncio client (Redis or RedisCluster) sends.

    Everything goes through ``execute_command`` (Lua scripts too: a registered
    Script calls ``evalsha`` on its client); pipelines and transactions run
    through their own ``execute``, timed as one round trip named PIPELINE or
    MULTI. Wraps the instance, not the class: other clients are untouched.
    """
    timer = _RedisTimer()
    client.execute_command = timer.wrap(client.execute_command)
    make_pipeline = client.pipeline

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = make_pipeline(*args, **kwargs)
        name = "MULTI" if getattr(pipe, "is_transaction", False) else "PIPELINE"
        pipe.execute = timer.wrap(pipe.execute, name)
        return pipe

    client.pipeline = pipeline


# --- serving ------------------------------------------------------------------------


def split_listen(listen: str) -> tuple[str, int]:
    """``host:port`` as (host, port): ``[::1]:9464`` is ("::1", 9464), ``:9464`` every IPv4 address.

    Raises:
        ValueError: it is not host:port with a port number.
    """
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{listen!r} is not host:port")
    return host.strip("[]") or "0.0.0.0", int(port)


# Scrapers are few (one Prometheus, a person with curl): more connections at once
# are closed unanswered, and one that sends no request within the timeout is closed,
# so a client that opens connections and sends nothing cannot pile up threads.
MAX_SCRAPE_CONNECTIONS: Final = 16
SCRAPE_TIMEOUT_SECONDS: Final = 5.0


class _ScrapeHandler(WSGIRequestHandler):
    """prometheus_client's WSGI app behind a read timeout, without request logging."""

    timeout = SCRAPE_TIMEOUT_SECONDS

    def log_message(self, format: str, *args: Any) -> None:
        """Log nothing: scrapes are routine."""


class _BoundedServer(ThreadingMixIn, WSGIServer):
    """A thread per connection, at most MAX_SCRAPE_CONNECTIONS at once."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily) -> None:
        self.address_family = family
        self._slots = threading.BoundedSemaphore(MAX_SCRAPE_CONNECTIONS)
        super().__init__(address, _ScrapeHandler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve the connection on a thread if a slot is free, else close it at once."""
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Say nothing: a scraper that times out or hangs up is not worth a traceback."""

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        """Serve one connection; give its slot back however it ends."""
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class MetricsServer:
    """The /metrics HTTP endpoint, on a daemon thread; `close` stops it."""

    def __init__(self, listen: str, registry: CollectorRegistry) -> None:
        host, port = split_listen(listen)
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[
            0
        ][0]
        self._httpd = _BoundedServer((host, port), family)
        self._httpd.set_app(make_wsgi_app(registry))
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        self.port: int = self._httpd.server_port

    def close(self) -> None:
        """Stop serving and free the port."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


def serve_metrics(listen: str, *, multiprocess: bool) -> MetricsServer:
    """Serve GET /metrics on ``listen`` (port 0: a free port, see ``.port``).

    ``multiprocess=False`` serves this process's metrics (and prometheus_client's
    process and Python collectors); ``multiprocess=True`` serves the sum of every
    worker's files in the directory `prepare_multiprocess` set up.

    Raises:
        ValueError: ``multiprocess`` without `prepare_multiprocess` first.
        OSError: the address cannot be bound.
    """
    if not multiprocess:
        return MetricsServer(listen, REGISTRY)
    directory = os.environ.get(MULTIPROC_ENV)
    if not directory:
        raise ValueError("serve_metrics(multiprocess=True) needs prepare_multiprocess() first")
    registry = CollectorRegistry()
    prom_multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return MetricsServer(listen, registry)


def prepare_multiprocess(directory: Path) -> None:
    """Make ``directory`` the (emptied) home of the metrics of workers spawned from now on.

    Call in the supervisor before it spawns workers: a worker's metric values are
    files there when its environment names the directory at its first import of
    prometheus_client (spawned processes import afresh; forked ones would not).
    """
    if directory.is_dir():
        for entry in directory.iterdir():
            if entry.is_dir():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    directory.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(directory)


_dead_lock = threading.Lock()


def worker_died(pid: int) -> None:
    """Stop counting a dead worker's live gauges (in flight, uploads, spool, backlog).

    Its counters and histograms stay: they still count what it did.
    """
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        with _dead_lock:
            prom_multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


def multiprocess_worker() -> bool:
    """True in a process whose metric values go to a supervisor's directory."""
    return bool(os.environ.get(MULTIPROC_ENV))


if not multiprocess_worker():
    REGISTRY.register(_LocalCollector())
