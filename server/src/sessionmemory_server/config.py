"""Server settings: one frozen object, from CLI flags and SESSION_MEMORY_* variables.

Nothing else in the server reads ``os.environ``.
"""

from __future__ import annotations

from pydantic import Field, SecretStr
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
    redis_max_connections: int = Field(256, gt=0, description="Redis connections per process")
    workers: int = Field(1, ge=1, le=64, description="server processes sharing the port")
    grace_seconds: float = Field(10.0, ge=0, description="shutdown grace for in-flight calls")
    auth_cache_seconds: float = Field(
        5.0, ge=0, description="how long a verified API key is cached (revocation delay)"
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
    release_grace_seconds: float = Field(
        30.0, ge=0, description="released blobs stay readable this long (in-flight reads)"
    )
    collect_interval_seconds: float = Field(10.0, gt=0, description="blob collector period")
    spool_dir: str | None = Field(None, description="where uploads are spooled (default tmp)")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR")
    log_format: str = Field("json", pattern="^(json|text)$", description="json or text")
