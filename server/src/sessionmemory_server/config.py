"""Server settings: one frozen object, from CLI flags and SESSION_MEMORY_* variables.

Nothing else in the server reads ``os.environ``.
"""

from __future__ import annotations

import secrets

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the server can be configured with."""

    model_config = SettingsConfigDict(env_prefix="SESSION_MEMORY_", frozen=True, extra="ignore")

    listen: str = Field("127.0.0.1:50051", description="host:port to serve gRPC on")
    redis_url: SecretStr = Field(
        SecretStr("redis://127.0.0.1:6379/0"), description="Redis URL (may hold a password)"
    )
    redis_cluster: bool = Field(False, description="connect to a Redis Cluster")
    redis_timeout_seconds: float = Field(
        1.0, gt=0, description="timeout of every Redis command and connect"
    )
    redis_max_connections: int = Field(
        256,
        ge=2,
        description="Redis connections per process (one per node is the calls' shared one)",
    )
    workers: int = Field(1, ge=1, le=64, description="server processes sharing the port")
    grace_seconds: float = Field(10.0, ge=0, description="shutdown grace for in-flight calls")
    # Authentication (auth.py, tokens.py).
    auth_cache_seconds: float = Field(
        1.0,
        ge=0,
        description="how often each process reloads API keys, token signing keys and token"
        " revocations from Redis: a revoked key or token stops working everywhere within this"
        " many seconds plus one Redis round trip (0: read Redis on every call, for tests)",
    )
    auth_max_failures_per_peer: int = Field(
        20,
        ge=0,
        description="failed authentications (wrong, expired, revoked key or token) per caller"
        " address per window before its calls get RATE_LIMITED until the window ends, valid"
        " keys too (0 = off; raise it behind a proxy, where all callers share an address)",
    )
    auth_max_failures_per_key: int = Field(
        10,
        ge=0,
        description="wrong secrets per API key id per window before further wrong secrets"
        " for it get RATE_LIMITED (its right secret keeps working; 0 = off)",
    )
    auth_failure_window_seconds: float = Field(
        10.0, gt=0, description="the window of the two auth failure limits, in seconds"
    )
    token_max_revocations: int = Field(
        10_000,
        ge=1,
        description="session-token revocations a tenant may have outstanding (each is kept an"
        " hour, the longest a token lives; then QUOTA_EXCEEDED)",
    )
    s3_endpoint: str = Field("127.0.0.1:9000", description="host:port of the S3 API")
    s3_public_endpoint: str | None = Field(
        None, description="scheme://host:port put in presigned URLs (default: the endpoint)"
    )
    s3_access_key: SecretStr = Field(SecretStr("sessionmemory"), description="S3 access key")
    s3_secret_key: SecretStr = Field(SecretStr("change-me-please"), description="S3 secret key")
    s3_bucket: str = Field("session-memory", description="bucket for file bytes")
    s3_secure: bool = Field(False, description="use HTTPS to reach the S3 API")
    s3_region: str = Field("us-east-1", description="S3 region (for signing)")
    s3_timeout_seconds: float = Field(10.0, gt=0, description="timeout of every S3 request")
    blob_threads: int = Field(4, ge=1, le=64, description="concurrent object-store transfers")
    upload_idle_seconds: float = Field(30.0, gt=0, description="cancel an idle SetFile stream")
    upload_max_seconds: float = Field(600.0, gt=0, description="longest a SetFile may take")
    collect_interval_seconds: float = Field(10.0, gt=0, description="blob collector period")
    spool_dir: str | None = Field(None, description="where uploads are spooled (default tmp)")
    max_uploads: int = Field(
        32, ge=1, description="SetFile uploads in progress per process (then TOO_MANY_UPLOADS)"
    )
    max_tenant_uploads: int = Field(
        8,
        ge=0,
        description="default quota: uploads in progress per tenant over all processes (then"
        " QUOTA_EXCEEDED; 0 = unlimited)",
    )
    tenant_reads_per_second: float = Field(
        200.0, ge=0, description="default rate limit: read calls per second per tenant (0 = off)"
    )
    tenant_read_burst: int = Field(
        400, ge=1, description="default: read calls a tenant may make at once above its rate"
    )
    tenant_writes_per_second: float = Field(
        100.0, ge=0, description="default rate limit: write calls per second per tenant (0 = off)"
    )
    tenant_write_burst: int = Field(
        200, ge=1, description="default: write calls a tenant may make at once above its rate"
    )
    tenant_file_bytes_per_second: float = Field(
        20 * 1024 * 1024,
        ge=0,
        description="default rate limit: file bytes per second per tenant through SetFile and"
        " ReadFile (0 = off)",
    )
    tenant_file_bytes_burst: int = Field(
        32 * 1024 * 1024,
        ge=1,
        description="default: file bytes a tenant may move at once above its rate",
    )
    tenant_max_sessions: int = Field(
        100_000, ge=0, description="default quota: live sessions per tenant (0 = unlimited)"
    )
    tenant_max_stored_bytes: int = Field(
        1024**3,
        ge=0,
        description="default quota: bytes of values and files stored per tenant (0 = unlimited)",
    )
    max_spool_bytes: int = Field(
        256 * 1024 * 1024, ge=1, description="bytes spooled per process (then SPOOL_FULL)"
    )
    min_upload_bytes: int = Field(
        64 * 1024,
        ge=0,
        description="an upload must send this many bytes per rate window (then"
        " UPLOAD_TOO_SLOW); 0 turns the floor off",
    )
    upload_rate_window_seconds: float = Field(
        10.0, gt=0, description="the window of min_upload_bytes, in seconds"
    )
    # Generous on purpose: grpc core refuses (REFUSED_STREAM, seen by clients as
    # UNAVAILABLE) streams that race past the cap while earlier ones are still
    # closing, so a cap near a client's real concurrency fails healthy calls; 100
    # failed 3-47 of 200 concurrent Gets on one channel.
    max_calls_in_flight: int = Field(
        512,
        ge=1,
        description="calls (of any kind) in progress per process; more get RESOURCE_EXHAUSTED",
    )
    max_tenant_calls_in_flight: int = Field(
        128,
        ge=1,
        description="calls in progress per tenant per process (a share of max_calls_in_flight);"
        " more get RESOURCE_EXHAUSTED SERVER_BUSY with scope tenant",
    )
    max_message_bytes: int = Field(
        2 * 1024 * 1024,
        ge=64 * 1024,
        description="largest request message (clients send files in 256 KiB chunks)",
    )
    max_concurrent_streams: int = Field(
        1000, ge=1, description="HTTP/2 streams (calls) in flight per connection"
    )
    keepalive_min_ping_seconds: float = Field(
        10.0, gt=0, description="shortest interval between client pings the server accepts"
    )
    keepalive_ping_strikes: int = Field(
        2, ge=0, description="too-frequent pings tolerated before GOAWAY (0: unlimited)"
    )
    max_connection_idle_seconds: float = Field(
        300.0, gt=0, description="a connection without calls for this long gets GOAWAY"
    )
    max_connection_age_seconds: float = Field(
        3600.0, gt=0, description="a connection older than this (±10%) gets GOAWAY"
    )
    max_connection_age_grace_seconds: float = Field(
        30.0, ge=0, description="calls in flight at max age get this long, then it is closed"
    )
    handshake_timeout_seconds: float = Field(
        10.0, gt=0, description="a connection that has not set up HTTP/2 by then is closed"
    )
    readiness_interval_seconds: float = Field(
        2.0,
        gt=0,
        description="how often readiness (grpc.health.v1, sessionmemory.v1.MemoryService)"
        " checks that Redis and the bucket answer; also at once after a backend error",
    )
    readiness_timeout_seconds: float = Field(
        1.0, gt=0, description="how long each readiness check waits for a backend"
    )
    # Operations (issue 11): metrics, traces, access log, TLS, a probe port.
    metrics_listen: str | None = Field(
        None,
        description="host:port of the Prometheus endpoint (GET /metrics); off when unset"
        " (with --workers N the supervisor serves every worker's metrics on it)",
    )
    otlp_endpoint: str | None = Field(
        None,
        description="OTLP/gRPC endpoint of a trace collector (e.g. http://otel-collector:4317);"
        " tracing is off, at no cost per call, when unset",
    )
    otel_service_name: str = Field(
        "session-memory", description="service.name of the exported spans"
    )
    trace_sample_ratio: float = Field(
        1.0,
        ge=0,
        le=1,
        description="share of traces started here that are recorded (a caller's sampled"
        " trace context is always followed)",
    )
    access_log: bool = Field(True, description="one structured log line per call (sampled)")
    access_log_sample_rate: float = Field(
        0.01,
        ge=0,
        le=1,
        description="share of successful calls that get an access log line; failed calls"
        " always do (within access_log_max_lines_per_second)",
    )
    access_log_max_lines_per_second: int = Field(
        200,
        ge=1,
        description="access log lines per second per process; more are counted, not written",
    )
    log_hash_key: SecretStr = Field(
        default_factory=lambda: SecretStr(secrets.token_hex(16)),
        description="key of the hash that stands for a session id in logs (set it to"
        " correlate lines across restarts and servers; default: random per start)",
    )
    tls_cert: str | None = Field(
        None, description="PEM certificate chain of the gRPC port (TLS when set, with tls_key)"
    )
    tls_key: str | None = Field(None, description="PEM private key of tls_cert")
    tls_client_ca: str | None = Field(
        None,
        description="PEM CA bundle: clients must present a certificate it signed (mTLS)",
    )
    tls_reload_seconds: float = Field(
        60.0,
        gt=0,
        description="how often the TLS files are checked for a rotated certificate",
    )
    health_listen: str | None = Field(
        None,
        description="host:port of a plaintext port serving only grpc.health.v1, for"
        " probes that cannot speak TLS (Kubernetes' gRPC probes); off when unset",
    )
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
    log_format: str = Field("json", pattern="^(json|text)$", description="json or text")

    @model_validator(mode="after")
    def _tls_pairs(self) -> Settings:
        """A certificate needs its key; client CAs need a certificate."""
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key are set together")
        if self.tls_client_ca is not None and self.tls_cert is None:
            raise ValueError("tls_client_ca (mTLS) needs tls_cert and tls_key")
        return self
