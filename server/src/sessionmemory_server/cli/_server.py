"""``serve``, ``dev`` and ``health``: run a server, or ask one whether it serves."""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import urllib.parse
from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated, Any, Final, NoReturn

import grpc
import pydantic
import typer

from sessionmemory.v1 import memory_service_pb2

from ..auth import ApiKeys
from ..config import Settings
from ._output import ExitCode, fail, parse_timeout, print_error, print_json

_DEV_KEY_FILE = "dev-api-key"
_SECRET_PARAMS: Final = ("pass", "secret", "token", "key", "auth", "credential")
_MEMORY_SERVICE: Final = memory_service_pb2.DESCRIPTOR.services_by_name["MemoryService"].full_name


class LogFormat(StrEnum):
    """The server's log line format."""

    json = "json"
    text = "text"


# The flags every server command takes; None means "from the environment or the default".
Listen = Annotated[
    str | None, typer.Option(help="host:port to serve on (env SESSION_MEMORY_LISTEN)")
]
Workers = Annotated[
    int | None, typer.Option(help="processes sharing the port (SO_REUSEPORT)", min=1)
]
GraceSeconds = Annotated[float | None, typer.Option(help="shutdown grace for in-flight calls")]
LogLevel = Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING or ERROR")]
LogFormatOption = Annotated[LogFormat | None, typer.Option(help="json or text")]
MetricsListen = Annotated[
    str | None,
    typer.Option(metavar="HOST:PORT", help="serve Prometheus metrics on /metrics here"),
]
OtlpEndpoint = Annotated[
    str | None,
    typer.Option(metavar="URL", help="export traces by OTLP/gRPC to this collector"),
]
AccessLogSampleRate = Annotated[
    float | None,
    typer.Option(
        metavar="RATE", help="share of successful calls logged (failed calls always are); 0 to 1"
    ),
]
TlsCert = Annotated[
    str | None, typer.Option(metavar="PEM", help="certificate chain: serve gRPC over TLS")
]
TlsKey = Annotated[str | None, typer.Option(metavar="PEM", help="private key of --tls-cert")]
TlsClientCa = Annotated[
    str | None,
    typer.Option(metavar="PEM", help="require client certificates signed by it (mTLS)"),
]
HealthListen = Annotated[
    str | None,
    typer.Option(
        metavar="HOST:PORT",
        help="also serve grpc.health.v1 alone, in plaintext, here (for probes without TLS)",
    ),
]
RedisUrl = Annotated[
    str | None, typer.Option(help="Redis URL (env SESSION_MEMORY_REDIS_URL)", show_default=False)
]
RedisClusterFlag = Annotated[bool | None, typer.Option("--redis-cluster", help="Redis Cluster")]
RedisTimeout = Annotated[float | None, typer.Option(help="timeout of every Redis call, seconds")]


def redact_url(text: str) -> str:
    """``text`` with the password of its user info and secret-looking query values as ***.

    redis-py also reads ``?password=`` from a URL, so the query counts too.
    """
    url = urllib.parse.urlsplit(text)
    if url.password is not None:
        netloc = f"{url.username or ''}:***@{url.hostname or ''}"
        netloc += f":{url.port}" if url.port else ""
        url = url._replace(netloc=netloc)
    if url.query:
        pairs = urllib.parse.parse_qsl(url.query, keep_blank_values=True)
        query = urllib.parse.urlencode(
            [
                (k, "***" if any(word in k.lower() for word in _SECRET_PARAMS) else v)
                for k, v in pairs
            ],
            safe="*",
        )
        url = url._replace(query=query)
    return urllib.parse.urlunsplit(url)


def redacted(settings: Settings) -> dict[str, Any]:
    """The settings as JSON values, every secret replaced (a URL keeps all but its secrets)."""
    shown: dict[str, Any] = settings.model_dump(mode="json")  # SecretStr -> "**********"
    shown["redis_url"] = redact_url(settings.redis_url.get_secret_value())
    if settings.otlp_endpoint is not None:
        shown["otlp_endpoint"] = redact_url(settings.otlp_endpoint)
    return shown


def make_settings(given: dict[str, Any], **fixed: Any) -> Settings:
    """Settings from the flags that were given (None: not given), the environment and ``fixed``.

    Raises:
        pydantic.ValidationError: a setting is invalid.
    """
    values = {
        name: value.value if isinstance(value, Enum) else value
        for name, value in given.items()
        if value is not None
    }
    values.update(fixed)
    return Settings(**values)


def settings_or_exit(given: dict[str, Any], **fixed: Any) -> Settings:
    """`make_settings`, invalid settings printed as one line (exit 2).

    ``error: setting <name>: <why>; setting ...: ... (INVALID_SETTING)``.
    """
    try:
        return make_settings(given, **fixed)
    except pydantic.ValidationError as exc:
        why = "; ".join(
            f"setting {'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
    fail(why, "INVALID_SETTING", ExitCode.USAGE)


def _tls_files_fit(settings: Settings) -> bool:
    """Check the TLS files before serving: a bad one is a message, not a traceback."""
    from ..tls import TlsConfigError, check  # noqa: PLC0415

    try:
        check(settings)
    except TlsConfigError as exc:
        print_error(f"TLS: {exc}", "TLS_INVALID")
        return False
    return True


def serve(
    listen: Listen = None,
    workers: Workers = None,
    grace_seconds: GraceSeconds = None,
    log_level: LogLevel = None,
    log_format: LogFormatOption = None,
    metrics_listen: MetricsListen = None,
    otlp_endpoint: OtlpEndpoint = None,
    access_log_sample_rate: AccessLogSampleRate = None,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    tls_client_ca: TlsClientCa = None,
    health_listen: HealthListen = None,
    redis_url: RedisUrl = None,
    redis_cluster: RedisClusterFlag = None,
    redis_timeout_seconds: RedisTimeout = None,
    s3_endpoint: Annotated[
        str | None, typer.Option(help="host:port of the S3 API (env SESSION_MEMORY_S3_ENDPOINT)")
    ] = None,
    s3_public_endpoint: Annotated[
        str | None,
        typer.Option(help="scheme://host:port for presigned URLs (what clients reach)"),
    ] = None,
    s3_bucket: Annotated[
        str | None, typer.Option(help="bucket for file bytes (created if missing)")
    ] = None,
    s3_secure: Annotated[
        bool | None, typer.Option("--s3-secure", help="HTTPS to the S3 API")
    ] = None,
    env_file: Annotated[
        Path | None,
        typer.Option(
            help="read SESSION_MEMORY_* settings from this file (the environment and flags win)"
        ),
    ] = None,
    check_config: Annotated[
        bool,
        typer.Option(
            "--check-config",
            help="print the effective settings (secrets redacted) as JSON and exit",
        ),
    ] = False,
) -> None:
    """Run the server against an existing Redis and S3."""
    given = dict(locals())
    for name in ("env_file", "check_config"):
        given.pop(name)
    if env_file is not None and not env_file.is_file():
        fail(f"--env-file {env_file}: no such file", "USAGE", ExitCode.USAGE)
    settings = settings_or_exit(given, _env_file=env_file)
    if not _tls_files_fit(settings):
        raise typer.Exit(int(ExitCode.USAGE))
    if check_config:
        print(json.dumps(redacted(settings), indent=2, sort_keys=True))
        return
    _run(settings)


def _run(settings: Settings) -> None:
    """Serve until stopped; a port that cannot be bound is one error line and exit 1."""
    from ..app import serve  # noqa: PLC0415

    try:
        serve(settings)
    except OSError as exc:
        fail(f"cannot start the server: {exc}", "LISTEN_FAILED", ExitCode.ERROR)


async def _dev_key(url: str, data_dir: Path) -> str:
    """Reuse the dev key kept in the data folder, or create one."""
    from redis.asyncio import Redis  # noqa: PLC0415

    client = Redis.from_url(url)
    api_keys = ApiKeys(client)
    try:
        path = data_dir / _DEV_KEY_FILE
        if path.exists():
            key = path.read_text().strip()
            if await api_keys.is_valid(key):
                return key
        key = await api_keys.create("dev")
        path.write_text(key + "\n")
        path.chmod(0o600)
        return key
    finally:
        await client.aclose()


def dev(
    listen: Listen = None,
    workers: Workers = None,
    grace_seconds: GraceSeconds = None,
    log_level: LogLevel = None,
    log_format: LogFormatOption = None,
    metrics_listen: MetricsListen = None,
    otlp_endpoint: OtlpEndpoint = None,
    access_log_sample_rate: AccessLogSampleRate = None,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    tls_client_ca: TlsClientCa = None,
    health_listen: HealthListen = None,
    data_dir: Annotated[
        Path, typer.Option(help="where Redis, S3 and the dev key keep their data")
    ] = Path(".session-memory"),
    redis_port: Annotated[int, typer.Option(help="port of the embedded Redis (0: any)")] = 0,
) -> None:
    """Run the server with an embedded Redis and S3, and a dev API key."""
    given = dict(locals())
    for name in ("data_dir", "redis_port", "metrics_listen", "access_log_sample_rate"):
        given.pop(name)
    from ..embedded import EmbeddedRedis, EmbeddedS3  # noqa: PLC0415

    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret_file = data_dir / "s3-secret"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_hex(16))
        secret_file.chmod(0o600)
    with (
        EmbeddedRedis(data_dir / "redis", port=redis_port, persist=True) as embedded,
        EmbeddedS3(
            data_dir / "s3", access_key="dev", secret_key=secret_file.read_text().strip()
        ) as s3,
    ):
        key = asyncio.run(_dev_key(embedded.url, data_dir))
        given["log_format"] = log_format or LogFormat.text
        settings = settings_or_exit(
            given,
            redis_url=embedded.url,
            s3_endpoint=s3.endpoint,
            s3_access_key=s3.access_key,
            s3_secret_key=s3.secret_key,
            spool_dir=str(data_dir / "spool"),
            # Dev shows everything: metrics on, every call in the access log.
            metrics_listen=metrics_listen or "127.0.0.1:9464",
            access_log_sample_rate=(
                1.0 if access_log_sample_rate is None else access_log_sample_rate
            ),
        )
        if not _tls_files_fit(settings):
            raise typer.Exit(int(ExitCode.USAGE))
        # The CLI by its path: `make dev` runs it from .venv/bin, which another shell's
        # PATH does not have.
        script = Path(sys.argv[0])
        cli = str(script.resolve()) if script.name == "session-memory" else "session-memory"
        print(
            f"Session Memory dev server\n"
            f"  gRPC address : {settings.listen}\n"
            f"  API key      : {key}\n"
            f"  Redis        : {embedded.url} (data in {embedded.data_dir})\n"
            f"  S3 (files)   : http://{s3.endpoint} (SeaweedFS, data in {s3.data_dir})\n"
            f"  Metrics      : http://{settings.metrics_listen}/metrics\n"
            f"Try: export SESSION_MEMORY_ADDR={_loopback(settings.listen)}"
            f" SESSION_MEMORY_API_KEY={key}\n"
            f"     {cli} set --session demo step name && {cli} list --session demo\n"
            "Stop with Ctrl-C.",
            flush=True,
        )
        _run(settings)


def _loopback(address: str) -> str:
    """``address`` with a wildcard host (what a server binds) made this machine's."""
    host, _, port = address.rpartition(":")
    if host in ("", "0.0.0.0"):
        return f"127.0.0.1:{port}"
    if host in ("[::]", "::"):
        return f"[::1]:{port}"
    return address


def _health_channel(addr: str | None, settings: Settings) -> tuple[str, grpc.Channel]:
    """The address to ask and a channel to it.

    The probe port (health_listen) in plaintext when there is one, else the gRPC
    port, over TLS when the server serves TLS. The client's SESSION_MEMORY_TLS_*
    variables are not read: in the server's environment they are the server's files.
    """
    if addr is not None:
        return addr, grpc.insecure_channel(addr)
    if settings.health_listen is not None:
        address = _loopback(settings.health_listen)
        return address, grpc.insecure_channel(address)
    address = _loopback(settings.listen)
    if settings.tls_cert is None:
        return address, grpc.insecure_channel(address)
    # Trust the server's own chain (self-signed, or a chain file that ends with its
    # CA); its names must include the loopback address. The probe port (and mTLS,
    # which wants a client certificate) avoid the question.
    pem = Path(settings.tls_cert).read_bytes()
    return address, grpc.secure_channel(address, grpc.ssl_channel_credentials(pem))


_HEALTH_ERRORS: Final = {"NOT_FOUND": "the server does not serve this service"}


def health(
    addr: Annotated[
        str | None,
        typer.Option(
            metavar="HOST:PORT",
            help="ask this address, in plaintext (default: the server's settings: health_listen"
            " in plaintext, else listen, over TLS when tls_cert is set; a wildcard host means"
            " this machine)",
        ),
    ] = None,
    service: Annotated[
        str,
        typer.Option(
            help='the service whose status is asked: the default is readiness; "" is liveness'
        ),
    ] = _MEMORY_SERVICE,
    timeout: Annotated[
        float,
        typer.Option(
            parser=parse_timeout, metavar="SECONDS", help="seconds to wait for the answer"
        ),
    ] = 3.0,
    env_file: Annotated[
        Path | None, typer.Option(help="the SESSION_MEMORY_* file the server was started with")
    ] = None,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json", help="print {service, address, status, serving, error} on stdout instead"
        ),
    ] = False,
) -> None:
    """Ask a server's grpc.health.v1 whether it serves: exit 0 when SERVING, 1 otherwise.

    For container health checks (1 is what Docker and Kubernetes read as unhealthy);
    needs no API key.
    """
    from grpc_health.v1 import health_pb2  # noqa: PLC0415

    what = f"service {service!r}" if service else "liveness ('')"

    def report(status: str, address: str | None, line: str, error: str | None = None) -> NoReturn:
        serving = status == "SERVING"
        if as_json:
            print_json(
                {
                    "service": service,
                    "address": address,
                    "status": status,
                    "serving": serving,
                    "error": error,
                }
            )
        else:
            print(line, file=sys.stdout if serving else sys.stderr)
        raise typer.Exit(0 if serving else int(ExitCode.ERROR))

    try:
        if env_file is not None and not env_file.is_file():  # pydantic would skip it silently
            raise FileNotFoundError(f"--env-file {env_file}: no such file")
        settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
        address, channel = _health_channel(addr, settings)
    except (ValueError, OSError) as exc:  # pydantic.ValidationError is a ValueError
        if isinstance(exc, pydantic.ValidationError):
            error = exc.errors()[0]
            reason = f"setting {'.'.join(map(str, error['loc']))}: {error['msg']}"
        else:
            reason = str(exc)
        report("UNKNOWN", None, f"UNKNOWN: {what}: cannot tell where to ask ({reason})", reason)
    request = health_pb2.HealthCheckRequest(service=service)
    with channel:
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        try:
            reply = check(request, timeout=timeout)
        except grpc.RpcError as exc:
            code, details = (
                (exc.code(), exc.details()) if isinstance(exc, grpc.Call) else (None, "")
            )
            name = code.name if code is not None else "ERROR"
            # The health service answers an unknown service with NOT_FOUND and no details;
            # str() of the error is a multi-line dump.
            text = details or _HEALTH_ERRORS.get(name, name)
            report(name, address, f"{name}: {what} at {address}: {text}", text)
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    report(status, address, f"{status}: {what} at {address}")
