"""build_server(): the aio server with our service, health, reflection and error mapping.

`serve()` runs it until SIGTERM/SIGINT: it stops accepting new calls, lets
in-flight calls finish within the grace period, then closes Redis.
`--workers N` runs N such processes on one port (SO_REUSEPORT), supervised by
this one (supervisor.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry.sdk.trace.export import SpanExporter
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.maint_notifications import MaintNotificationsConfig

from sessionmemory.v1 import memory_service_pb2

from . import logs
from .auth import ApiKeys, Authenticator
from .aux_services import CappedHealth, add_reflection, probe_server
from .collector import Collector
from .config import Settings
from .core import LIMITS
from .files import Files
from .interceptors import CallCap, add_service
from .limits import LimitBook, TenantLimits
from .memory import Memory
from .metrics import MetricsServer
from .observe import Observer
from .quotas import Quotas
from .ratelimit import RateLimiter
from .readiness import Readiness
from .schema_registry import SchemaRegistry
from .servicer import MemoryServicer
from .stores.autopipeline import AutoPipelineRedis, AutoPipelineRedisCluster
from .stores.blob_store import READ_CHUNK, BlobStore
from .stores.redis_store import RedisStore
from .supervisor import WorkerLink, supervise
from .tls import ServerTls, server_tls
from .tokens import SessionTokens
from .tracing import Tracing
from .uploads import UploadCaps
from .watch import ChangeHub

log = logging.getLogger("sessionmemory_server.server")

SERVICE = memory_service_pb2.DESCRIPTOR.services_by_name["MemoryService"]
SERVICE_NAME = SERVICE.full_name
_INT_MAX = 2**31 - 1


def redis_client(settings: Settings) -> Redis | RedisCluster:
    """A Redis client whose every command and connect has a timeout and no hidden retry.

    Retries are the caller's business: a blind retry of a timed-out Increment
    could count twice, so the server fails fast with UNAVAILABLE instead.
    """
    cls: type[Redis] | type[RedisCluster] = (
        AutoPipelineRedisCluster if settings.redis_cluster else AutoPipelineRedis
    )
    return cls.from_url(
        settings.redis_url.get_secret_value(),
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_timeout_seconds,
        retry=Retry(NoBackoff(), 0),
        max_connections=settings.redis_max_connections,
        # With maintenance notifications on ("auto" by default in redis-py 8) the
        # pool skips its check that a pooled connection is still open, so after a
        # Redis restart every idle connection is handed out dead and its first
        # command fails. Off, a connection Redis closed is replaced before use.
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
    )


def pubsub_client(settings: Settings) -> Redis:
    """The client of the change feed's one Pub/Sub connection.

    Its reads wait for published changes, so they have no socket timeout; a
    health check every 30 s finds a dead connection instead. With a Cluster it
    connects to the node of ``redis_url``: classic PUBLISH reaches every node.
    """
    return Redis.from_url(
        settings.redis_url.get_secret_value(),
        socket_connect_timeout=settings.redis_timeout_seconds,
        socket_timeout=None,
        health_check_interval=30,
        retry=Retry(NoBackoff(), 0),
        maint_notifications_config=MaintNotificationsConfig(enabled=False),
    )


def blob_store(settings: Settings) -> BlobStore:
    """The object store client for the settings."""
    return BlobStore(
        endpoint=settings.s3_endpoint,
        access_key=settings.s3_access_key.get_secret_value(),
        secret_key=settings.s3_secret_key.get_secret_value(),
        bucket=settings.s3_bucket,
        secure=settings.s3_secure,
        region=settings.s3_region,
        timeout=settings.s3_timeout_seconds,
        threads=settings.blob_threads,
        public_endpoint=settings.s3_public_endpoint,
    )


def _ms(seconds: float) -> int:
    return min(int(seconds * 1000), _INT_MAX)


def server_options(settings: Settings) -> list[tuple[str, int]]:
    """Grpc core channel args: connection and stream caps, keepalive enforcement.

    Names are grpc core's (include/grpc/impl/channel_arg_names.h). A connection
    that never finishes its HTTP/2 setup is closed after the handshake timeout
    (grpc's default is 120 s), one without calls after max_connection_idle, and
    every connection after max_connection_age (+ grace for calls in flight).
    """
    return [
        ("grpc.so_reuseport", 1),
        ("grpc.http2.bdp_probe", 0),
        ("grpc.max_concurrent_streams", settings.max_concurrent_streams),
        # What a call may hold before it is even authenticated: grpc buffers a
        # request message whole, so a call that never sends its last byte pins it.
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_connection_idle_ms", _ms(settings.max_connection_idle_seconds)),
        ("grpc.max_connection_age_ms", _ms(settings.max_connection_age_seconds)),
        ("grpc.max_connection_age_grace_ms", _ms(settings.max_connection_age_grace_seconds)),
        ("grpc.server_handshake_timeout_ms", _ms(settings.handshake_timeout_seconds)),
        (
            "grpc.http2.min_ping_interval_without_data_ms",
            _ms(settings.keepalive_min_ping_seconds),
        ),
        ("grpc.http2.max_ping_strikes", settings.keepalive_ping_strikes),
        # Pings on a connection without calls are fine (they do not reset the
        # idle timer); only their rate is enforced.
        ("grpc.keepalive_permit_without_calls", 1),
    ]


@dataclass
class Built:
    """A built, started server and what it owns."""

    server: grpc.aio.Server
    port: int
    redis: Redis | RedisCluster
    health: CappedHealth
    blobs: BlobStore
    collector: Collector
    collecting: asyncio.Task[None]
    hub: ChangeHub
    limit_book: LimitBook
    limiter: RateLimiter
    auth: Authenticator
    quotas: Quotas
    calls: CallCap
    readiness: Readiness
    # TLS of the main port (None: plaintext) and the plaintext probe port (health only).
    tls: ServerTls | None = None
    health_server: grpc.aio.Server | None = None
    health_port: int | None = None
    # Observability: the /metrics endpoint (one process) and tracing (None: off).
    metrics_server: MetricsServer | None = None
    tracing: Tracing | None = None

    async def stop(self, grace: float | None) -> None:
        """Stop accepting calls, wait up to ``grace`` seconds for in-flight ones, close."""
        await self.readiness.close()
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        if self.health_server is not None:
            # Probes saw NOT_SERVING while calls drained; now the probe port goes too.
            await self.health_server.stop(None)
        self.collecting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.collecting
        await self.hub.close()
        await self.auth.close()
        await self.limiter.close()
        await self.quotas.close()
        await self.limit_book.close()
        self.blobs.close()
        await self.redis.aclose()
        if self.tracing is not None:
            await asyncio.to_thread(self.tracing.close)  # flushes; bounded by FLUSH_SECONDS
        if self.metrics_server is not None:
            self.metrics_server.close()


async def build_server(  # noqa: PLR0915 - the one place that wires the server
    settings: Settings,
    *,
    api_keys_cache: float | None = None,
    span_exporter: SpanExporter | None = None,
) -> Built:
    """Build and start the server on ``settings.listen`` (port 0 picks a free port).

    Raises:
        TlsConfigError: a TLS file is missing, unreadable, or does not fit.
        OSError: ``listen``, ``health_listen`` or ``metrics_listen`` cannot be bound.
    """
    # Read first: TLS files that do not fit stop the start before anything opens.
    port_tls = server_tls(settings)
    client = redis_client(settings)
    observer = Observer.for_server(settings, client, span_exporter=span_exporter)
    auth_refresh = settings.auth_cache_seconds if api_keys_cache is None else api_keys_cache
    api_keys = ApiKeys(client, refresh_seconds=auth_refresh)
    # What calls hold before they are authenticated (a request message is
    # buffered whole) is bounded by grpc's cap on calls; short calls are capped at
    # max_calls_in_flight by add_service, Watch streams by the hub.
    server = grpc.aio.server(
        options=server_options(settings),
        maximum_concurrent_rpcs=settings.max_calls_in_flight + LIMITS.max_watchers,
    )
    store = RedisStore(client, bucket=settings.s3_bucket)
    limit_book = LimitBook(TenantLimits.from_settings(settings), client)
    limiter = RateLimiter(limit_book, client)
    quotas = Quotas(store, limit_book, upload_max_seconds=settings.upload_max_seconds)
    tokens = SessionTokens(
        client, refresh_seconds=auth_refresh, max_revocations=settings.token_max_revocations
    )
    authenticator = Authenticator(
        api_keys,
        tokens,
        max_failures_per_peer=settings.auth_max_failures_per_peer,
        max_failures_per_key=settings.auth_max_failures_per_key,
        window_seconds=settings.auth_failure_window_seconds,
    )
    schemas = SchemaRegistry(store)
    hub = ChangeHub(
        pubsub_client(settings),
        store,
        max_watchers=LIMITS.max_watchers,
        max_tenant_watchers=LIMITS.max_tenant_watchers,
    )
    blobs = blob_store(settings)
    collector = Collector(
        store,
        blobs,
        interval=settings.collect_interval_seconds,
        # No upload lives longer than its budget, nor its abort past a few store
        # timeouts: a multipart upload older than that was left behind.
        stale_upload_seconds=settings.upload_max_seconds + 10 * settings.s3_timeout_seconds,
    )
    memory = Memory(
        store,
        release=collector.release,
        retime=collector.retime,
        schemas=schemas,
        quotas=quotas,
    )
    files = Files(
        memory,
        blobs,
        collector,
        spool_dir=Path(settings.spool_dir or tempfile.gettempdir()) / "session-memory-spool",
        upload_max_seconds=settings.upload_max_seconds,
        caps=UploadCaps(
            max_uploads=settings.max_uploads,
            max_spool_bytes=settings.max_spool_bytes,
            min_upload_bytes=settings.min_upload_bytes,
            upload_rate_window_seconds=settings.upload_rate_window_seconds,
        ),
        quotas=quotas,
    )
    removed = files.clean_spool()
    if removed:
        log.info("removed spool files of dead processes", extra={"files": removed})
    try:
        await blobs.ensure_bucket()
    except Exception as exc:
        log.error("object store unreachable at start", extra={"error": repr(exc)})
    servicer = MemoryServicer(
        memory,
        files,
        schemas,
        hub,
        auth=authenticator,
        tokens=tokens,
        limiter=limiter,
        limit_book=limit_book,
        quotas=quotas,
        upload_idle_seconds=settings.upload_idle_seconds,
    )
    calls = CallCap(settings.max_calls_in_flight, settings.max_tenant_calls_in_flight)
    health_servicer = CappedHealth()
    readiness = Readiness(
        health_servicer,
        SERVICE_NAME,
        client,
        blobs,
        interval=settings.readiness_interval_seconds,
        timeout=settings.readiness_timeout_seconds,
    )
    add_service(
        server,
        servicer,
        SERVICE,
        cap=calls,
        long_lived=frozenset({"Watch"}),
        on_backend_down=readiness.nudge,
        observer=observer,
    )
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    add_reflection(server, (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME))
    try:
        if port_tls is None:
            port = server.add_insecure_port(settings.listen)
        else:
            port = server.add_secure_port(settings.listen, port_tls.credentials)
    except RuntimeError:  # grpcio's "Failed to bind to address" (it used to return 0)
        port = 0
    if port == 0:
        raise OSError(f"cannot listen on {settings.listen}: taken, or not this host's address")
    # Bound before anything starts: a taken metrics port fails the start like a taken
    # gRPC port (it used to be bound after server.start(), and the error was lost in a
    # half-started server that never logged "serving").
    metrics_server = observer.serve_metrics(settings.metrics_listen)
    probe, probe_port = (
        (None, None)
        if settings.health_listen is None
        else probe_server(settings.health_listen, health_servicer, server_options(settings))
    )
    hub.start()
    await limit_book.start()
    quotas.start()
    await authenticator.start()
    await server.start()
    if probe is not None:
        await probe.start()
    # Liveness: this process serves. Readiness: its backends answer (checked now,
    # then every few seconds and whenever a call finds one unreachable).
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await readiness.start()
    collecting = asyncio.create_task(collector.run())
    return Built(
        server,
        port,
        client,
        health_servicer,
        blobs,
        collector,
        collecting,
        hub,
        limit_book=limit_book,
        limiter=limiter,
        auth=authenticator,
        quotas=quotas,
        calls=calls,
        readiness=readiness,
        tls=port_tls,
        health_server=probe,
        health_port=probe_port,
        metrics_server=metrics_server,
        tracing=observer.tracing,
    )


async def _serve(settings: Settings, link: WorkerLink | None = None) -> None:
    built = await build_server(settings)
    host = settings.listen.rsplit(":", 1)[0]
    serving = {"listen": f"{host}:{built.port}", "tls": built.tls.mode if built.tls else "off"}
    if settings.health_listen is not None:
        serving["health_listen"] = f"{settings.health_listen.rsplit(':', 1)[0]}:{built.health_port}"
    log.info("serving", extra=serving)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # SIGHUP too: a server whose terminal went away drains instead of dying mid-call.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    if link is None:
        await stop.wait()
    else:  # a supervised worker: counted as serving, ready only with all its siblings
        await link.run(built.readiness, stop)
    log.info("shutting down", extra={"grace_seconds": settings.grace_seconds})
    await built.stop(settings.grace_seconds)
    log.info("stopped")


def _tune_malloc() -> None:
    """Return large upload buffers to the OS at once (glibc only).

    glibc raises its mmap threshold after the first large free, after which
    1 MiB chunk buffers come from arenas and RSS only grows; a fixed threshold
    and two arenas keep peak memory near the live data. The threshold sits above
    the 256 KiB chunks files move in (READ_CHUNK, the clients' upload chunks):
    at 128 KiB every such buffer was a fresh mmap, zeroed and faulted in, which
    cost a 10 MiB ReadFile about 4 ms of the event loop's CPU. Upload memory
    measured the same at both (`make bench-files`).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_mmap_threshold, m_arena_max = -3, -8
    libc.mallopt(m_mmap_threshold, 2 * READ_CHUNK)
    libc.mallopt(m_arena_max, 2)


def _raise_fd_limit() -> None:
    """Raise the soft open-files limit to the hard one.

    Each connection, spool file and backend socket is a descriptor, and the
    usual soft limit (1,024) is far below the hard one. Raising the soft limit
    needs no privilege and nothing here uses select(), which breaks above 1,024;
    grpc and asyncio poll with epoll.
    """
    try:
        import resource  # noqa: PLC0415 - POSIX only
    except ImportError:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _run_one(settings: Settings, link: WorkerLink | None = None) -> None:
    """One serving process: the whole server, or worker ``link.number`` under --workers."""
    if link is not None:
        link.attach()
    _tune_malloc()
    _raise_fd_limit()
    logs.setup(settings.log_level, settings.log_format, worker=link.number if link else None)
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up

        uvloop.run(_serve(settings, link))
    except ImportError:
        asyncio.run(_serve(settings, link))


def serve(settings: Settings) -> None:
    """Serve until SIGTERM/SIGINT, in ``settings.workers`` processes sharing the port.

    With more than one worker this process serves no calls: it supervises the
    workers (supervisor.py), respawning one that dies and draining them all on
    SIGTERM/SIGINT.

    Raises:
        ValueError: ``--workers`` with port 0.
        SystemExit: status 1 when no worker could start.
    """
    if settings.workers == 1:
        _run_one(settings)
        return
    if settings.listen.endswith(":0"):
        raise ValueError("--workers needs a fixed port: processes share it with SO_REUSEPORT")
    status = supervise(settings, _run_one)
    if status:
        raise SystemExit(status)
