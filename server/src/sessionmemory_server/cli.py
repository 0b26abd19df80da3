"""The ``session-memory`` command: serve, dev, keys, tokens, tenants, bench."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import secrets
import sys
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import grpc
import pydantic
from redis.asyncio import Redis, RedisCluster

from sessionmemory._base import env_settings
from sessionmemory.v1 import memory_service_pb2

from . import limits
from .auth import ApiKeys, UnknownKey
from .config import Settings
from .errors import DomainError
from .limits import FIELD_NAMES, WHOLE_NUMBER_FIELDS, TenantLimits
from .tokens import SessionTokens

_DEV_KEY_FILE = "dev-api-key"


def _add_server_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--listen", help="host:port to serve on (env SESSION_MEMORY_LISTEN)")
    p.add_argument("--workers", type=int, help="processes sharing the port (SO_REUSEPORT)")
    p.add_argument("--grace-seconds", type=float, help="shutdown grace for in-flight calls")
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR")
    p.add_argument("--log-format", choices=["json", "text"])
    p.add_argument(
        "--metrics-listen", metavar="HOST:PORT", help="serve Prometheus metrics on /metrics here"
    )
    p.add_argument(
        "--otlp-endpoint", metavar="URL", help="export traces by OTLP/gRPC to this collector"
    )
    p.add_argument(
        "--access-log-sample-rate",
        type=float,
        metavar="RATE",
        help="share of successful calls logged (failed calls always are); 0 to 1",
    )
    p.add_argument("--tls-cert", metavar="PEM", help="certificate chain: serve gRPC over TLS")
    p.add_argument("--tls-key", metavar="PEM", help="private key of --tls-cert")
    p.add_argument(
        "--tls-client-ca", metavar="PEM", help="require client certificates signed by it (mTLS)"
    )
    p.add_argument(
        "--health-listen",
        metavar="HOST:PORT",
        help="also serve grpc.health.v1 alone, in plaintext, here (for probes without TLS)",
    )


def _add_s3_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--s3-endpoint", help="host:port of the S3 API (env SESSION_MEMORY_S3_ENDPOINT)")
    p.add_argument(
        "--s3-public-endpoint", help="scheme://host:port for presigned URLs (what clients reach)"
    )
    p.add_argument("--s3-bucket", help="bucket for file bytes (created if missing)")
    p.add_argument("--s3-secure", action="store_true", default=None, help="HTTPS to the S3 API")


def _add_redis_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--redis-url", help="Redis URL (env SESSION_MEMORY_REDIS_URL)")
    p.add_argument("--redis-cluster", action="store_true", default=None, help="Redis Cluster")
    p.add_argument("--redis-timeout-seconds", type=float, help="timeout of every Redis call")


_SECRET_PARAMS: Final = ("pass", "secret", "token", "key", "auth", "credential")


def _redact_url(text: str) -> str:
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


def _redacted(settings: Settings) -> dict[str, Any]:
    """The settings as JSON values, every secret replaced (a URL keeps all but its secrets)."""
    shown: dict[str, Any] = settings.model_dump(mode="json")  # SecretStr -> "**********"
    shown["redis_url"] = _redact_url(settings.redis_url.get_secret_value())
    if settings.otlp_endpoint is not None:
        shown["otlp_endpoint"] = _redact_url(settings.otlp_endpoint)
    return shown


def _serve(args: argparse.Namespace) -> int:
    if args.env_file is not None and not args.env_file.is_file():
        print(f"--env-file {args.env_file}: no such file", file=sys.stderr)
        return 2
    try:
        settings = _settings(args, _env_file=args.env_file)
    except pydantic.ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"])
            print(f"setting {where}: {error['msg']}", file=sys.stderr)
        return 2
    if not _tls_files_fit(settings):
        return 2
    if args.check_config:
        print(json.dumps(_redacted(settings), indent=2, sort_keys=True))
        return 0
    from .app import serve  # noqa: PLC0415

    serve(settings)
    return 0


def _tls_files_fit(settings: Settings) -> bool:
    """Check the TLS files before serving: a bad one is a message, not a traceback."""
    from .tls import TlsConfigError, check  # noqa: PLC0415

    try:
        check(settings)
    except TlsConfigError as exc:
        print(f"TLS: {exc}", file=sys.stderr)
        return False
    return True


def _settings(args: argparse.Namespace, **fixed: Any) -> Settings:
    names = (
        "listen",
        "workers",
        "grace_seconds",
        "log_level",
        "log_format",
        "redis_url",
        "redis_cluster",
        "redis_timeout_seconds",
        "s3_endpoint",
        "s3_public_endpoint",
        "s3_bucket",
        "s3_secure",
        "metrics_listen",
        "otlp_endpoint",
        "access_log_sample_rate",
        "tls_cert",
        "tls_key",
        "tls_client_ca",
        "health_listen",
    )
    given = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    given.update(fixed)
    return Settings(**given)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="session-memory", description="Typed, expiring, per-conversation memory over gRPC."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server against an existing Redis and S3")
    _add_server_flags(serve)
    _add_redis_flags(serve)
    _add_s3_flags(serve)
    serve.add_argument(
        "--env-file",
        type=Path,
        help="read SESSION_MEMORY_* settings from this file (the environment and flags win)",
    )
    serve.add_argument(
        "--check-config",
        action="store_true",
        help="print the effective settings (secrets redacted) as JSON and exit",
    )

    dev = sub.add_parser("dev", help="run the server with an embedded Redis and a dev API key")
    _add_server_flags(dev)
    dev.add_argument("--data-dir", type=Path, default=Path(".session-memory"))
    dev.add_argument("--redis-port", type=int, default=0, help="port of the embedded Redis")

    _add_keys_parser(sub)
    _add_tokens_parser(sub)
    _add_tenants_parser(sub)
    _add_health_parser(sub)

    bench = sub.add_parser(
        "bench", help="benchmark calls against a bare grpc.aio + Redis floor, and the document"
    )
    bench.add_argument("--duration", type=float, default=5.0, help="seconds per load level")
    bench.add_argument("--inflight", default="1,16,64", help="calls in flight, comma-separated")
    bench.add_argument("--workers", type=int, default=1, help="server processes for ours")
    bench.add_argument(
        "--ops",
        help="calls to measure against the floor, comma-separated from get,set,increment"
        " (default: get, or none with --document)",
    )
    bench.add_argument(
        "--server-src",
        metavar="DIR[:DIR...]",
        help="run our server with these source dirs first on PYTHONPATH (an older checkout's"
        " server/src:clients/python/src)",
    )
    bench.add_argument(
        "--document",
        action="store_true",
        help="PatchDocument vs SetJson and GetDocument vs GetMany on a 20-key session",
    )
    watch = sub.add_parser(
        "bench-watch", help="Watch: idle watchers' cost and delivery latency under writes"
    )
    from .bench_watch import add_arguments as add_watch_arguments  # noqa: PLC0415

    add_watch_arguments(watch)
    limits_bench = sub.add_parser(
        "bench-limits", help="the rate limiter: cost per call, accuracy over 2 processes, fairness"
    )
    from .bench_limits import add_arguments as add_limits_arguments  # noqa: PLC0415

    add_limits_arguments(limits_bench)
    put = sub.add_parser("put-file", help="upload a file into a session (with a progress bar)")
    get = sub.add_parser("get-file", help="download a file of a session, or print its URL")
    for p in (put, get):
        p.add_argument("--addr", help="server address (env SESSION_MEMORY_ADDR)")
        p.add_argument("--api-key", help="API key (env SESSION_MEMORY_API_KEY)")
        p.add_argument("--session", required=True, help="session id")
        p.add_argument("--key", required=True, help="key of the file")
    put.add_argument("path", type=Path, help="file to upload")
    put.add_argument("--mime", help="MIME type (default: guessed from the file name)")
    put.add_argument("--ttl", type=int, default=86_400, help="seconds to keep it (max 604800)")
    get.add_argument("--output", "-o", type=Path, help="where to save (default: the key)")
    get.add_argument("--url", action="store_true", help="print the presigned URL instead")

    files = sub.add_parser("bench-files", help="server peak RSS under concurrent 10 MiB uploads")
    files.add_argument("--uploads", type=int, default=20, help="concurrent uploads")
    files.add_argument("--size-mib", type=int, default=10, help="size of each upload")
    obs = sub.add_parser(
        "bench-observability", help="what metrics, tracing and the access log cost per Get"
    )
    from .bench_obs import add_arguments as add_obs_arguments  # noqa: PLC0415

    add_obs_arguments(obs)
    return parser


_DURATION_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def parse_duration(text: str) -> float:
    """Seconds of ``30d``, ``12h``, ``90m``, ``45s`` or a plain ``3600``."""
    text = text.strip().lower()
    unit = _DURATION_UNITS.get(text[-1:], 0)
    try:
        seconds = float(text[:-1] if unit else text) * (unit or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: use e.g. 30d, 12h, 90m, 45s or 3600"
        ) from None
    if seconds < 0:
        raise argparse.ArgumentTypeError("a duration cannot be negative")
    return seconds


def _add_keys_parser(sub: Any) -> None:
    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key for a tenant and print it once")
    create.add_argument("tenant", nargs="?", help="the tenant the key belongs to")
    create.add_argument("--tenant", dest="tenant_flag", metavar="TENANT", help=argparse.SUPPRESS)
    create.add_argument(
        "--expires-in", type=parse_duration, help="the key stops working after this (30d, 12h)"
    )
    rotate = keys_sub.add_parser(
        "rotate", help="print a new key for a key's tenant; the old one works for --grace"
    )
    rotate.add_argument("key_id")
    rotate.add_argument(
        "--grace",
        type=parse_duration,
        default=3600.0,
        help="how long the old key keeps working (default 1h)",
    )
    rotate.add_argument("--expires-in", type=parse_duration, help="an expiry for the new key")
    listing = keys_sub.add_parser("list", help="list key ids, tenants, times and status")
    listing.add_argument("--json", action="store_true", help="one JSON array")
    revoke = keys_sub.add_parser("revoke", help="revoke keys by id")
    revoke.add_argument("key_ids", nargs="+")
    for p in (create, rotate, listing, revoke):
        _add_redis_flags(p)


def _admin_client(settings: Settings) -> Redis | RedisCluster:
    cls: type[Redis] | type[RedisCluster] = RedisCluster if settings.redis_cluster else Redis
    return cls.from_url(
        settings.redis_url.get_secret_value(),
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_timeout_seconds,
    )


def _utc(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(seconds))


async def _keys(args: argparse.Namespace) -> int:
    client = _admin_client(_settings(args))
    api_keys = ApiKeys(client)
    try:
        if args.keys_command == "create":
            tenant = args.tenant or args.tenant_flag
            if not tenant:
                print("name the tenant: session-memory keys create <tenant>", file=sys.stderr)
                return 2
            key = await api_keys.create(tenant, expires_in=args.expires_in)
            print(key)
            until = "" if args.expires_in is None else f", expires in {args.expires_in:g} s"
            print(f"(tenant {tenant}{until}; this key is shown only once)", file=sys.stderr)
        elif args.keys_command == "rotate":
            key = await api_keys.rotate(args.key_id, args.grace, expires_in=args.expires_in)
            print(key)
            print(
                f"(the old key {args.key_id} works for {args.grace:g} s more;"
                " this key is shown only once)",
                file=sys.stderr,
            )
        elif args.keys_command == "list":
            now = time.time()
            infos = await api_keys.list()
            if args.json:
                rows = [
                    {
                        "key_id": i.key_id,
                        "tenant": i.tenant,
                        "created": _utc(i.created_at),
                        "expires": None if i.expires_at is None else _utc(i.expires_at),
                        "status": "expired" if i.expired(now) else "active",
                    }
                    for i in infos
                ]
                print(json.dumps(rows))
            else:
                for i in infos:
                    status = "expired" if i.expired(now) else "active"
                    print(
                        f"{i.key_id}\t{i.tenant}\t{_utc(i.created_at)}\t{_utc(i.expires_at)}"
                        f"\t{status}"
                    )
        else:
            count = await api_keys.revoke(args.key_ids)
            print(f"revoked {count} of {len(args.key_ids)}")
            return 0 if count == len(args.key_ids) else 1
    except UnknownKey as exc:
        print(f"error: there is no key {exc.args[0]!r} (see keys list)", file=sys.stderr)
        return 1
    except (ValueError, DomainError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        await client.aclose()
    return 0


def _add_tokens_parser(sub: Any) -> None:
    tokens = sub.add_parser("tokens", help="manage the keys that sign session tokens")
    tokens_sub = tokens.add_subparsers(dest="tokens_command", required=True)
    rotate = tokens_sub.add_parser(
        "rotate-key", help="add a signing key for new tokens; older keys keep verifying"
    )
    retire = tokens_sub.add_parser(
        "retire-key", help="delete a signing key: tokens it signed stop working"
    )
    retire.add_argument("kid")
    listing = tokens_sub.add_parser("keys", help="list the signing keys (never their secrets)")
    for p in (rotate, retire, listing):
        _add_redis_flags(p)


async def _tokens(args: argparse.Namespace) -> int:
    client = _admin_client(_settings(args))
    tokens = SessionTokens(client)
    try:
        if args.tokens_command == "rotate-key":
            kid = await tokens.rotate_key()
            print(kid)
            print("(every server signs new tokens with it within a second)", file=sys.stderr)
        elif args.tokens_command == "retire-key":
            if not await tokens.retire_key(args.kid):
                print(f"error: there is no signing key {args.kid!r}", file=sys.stderr)
                return 1
            print(f"retired {args.kid}")
        else:
            for info in await tokens.signing_keys():
                mark = "\tcurrent" if info.current else ""
                print(f"{info.kid}\t{_utc(info.created_at)}{mark}")
    finally:
        await client.aclose()
    return 0


def _add_tenants_parser(sub: Any) -> None:
    tenants = sub.add_parser("tenants", help="show and change a tenant's rate limits and quotas")
    tenants_sub = tenants.add_subparsers(dest="tenants_command", required=True)
    set_limits = tenants_sub.add_parser(
        "set-limits",
        help="override some of a tenant's limits (0 = unlimited); the rest follow the defaults",
    )
    set_limits.add_argument("tenant")
    for name in FIELD_NAMES:
        number = int if name in WHOLE_NUMBER_FIELDS else float
        set_limits.add_argument("--" + name.replace("_", "-"), type=number, dest=name)
    _add_redis_flags(set_limits)
    reset = tenants_sub.add_parser("reset", help="drop a tenant's overrides (all, or --field)")
    reset.add_argument("tenant")
    reset.add_argument(
        "--field", action="append", choices=FIELD_NAMES, help="only this limit (repeatable)"
    )
    _add_redis_flags(reset)
    show = tenants_sub.add_parser(
        "show", help="a tenant's effective limits, overrides marked (defaults from this env)"
    )
    show.add_argument("tenant")
    show.add_argument("--json", action="store_true", help="print JSON")
    _add_redis_flags(show)
    listing = tenants_sub.add_parser("list", help="the tenants that have overrides")
    _add_redis_flags(listing)


async def _tenants(args: argparse.Namespace) -> int:
    settings = _settings(args)
    cls: type[Redis] | type[RedisCluster] = RedisCluster if settings.redis_cluster else Redis
    client = cls.from_url(
        settings.redis_url.get_secret_value(),
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_timeout_seconds,
    )
    try:
        command = args.tenants_command
        if command == "set-limits":
            values = {n: getattr(args, n) for n in FIELD_NAMES if getattr(args, n) is not None}
            if not values:
                print("name at least one limit, e.g. --reads-per-second 100", file=sys.stderr)
                return 2
            await limits.set_overrides(client, args.tenant, values)
        elif command == "reset":
            await limits.clear_overrides(client, args.tenant, args.field)
        elif command == "list":
            for tenant, values in sorted((await limits.all_overrides(client)).items()):
                print(f"{tenant}\t{json.dumps(values, sort_keys=True)}")
            return 0
        if command in ("set-limits", "reset", "show"):
            own = await limits.overrides(client, args.tenant)
            effective = limits.apply_overrides(TenantLimits.from_settings(settings), own)
            if getattr(args, "json", False):
                print(
                    json.dumps(
                        {
                            "tenant": args.tenant,
                            "limits": dataclasses.asdict(effective),
                            "overridden": sorted(own),
                        }
                    )
                )
            else:
                for name in FIELD_NAMES:
                    value = getattr(effective, name)
                    text = str(int(value)) if value == int(value) else f"{value:g}"
                    if value == 0 and name not in limits.AT_LEAST_ONE_FIELDS:
                        text += " (unlimited)"
                    mark = "  (override)" if name in own else ""
                    print(f"{name:<22} {text}{mark}")
    except (ValueError, DomainError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        await client.aclose()
    return 0


async def _dev_key(url: str, data_dir: Path) -> str:
    """Reuse the dev key kept in the data folder, or create one."""
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


def _dev(args: argparse.Namespace) -> int:
    from .app import serve  # noqa: PLC0415
    from .embedded import EmbeddedRedis, EmbeddedS3  # noqa: PLC0415

    data_dir: Path = args.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret_file = data_dir / "s3-secret"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_hex(16))
        secret_file.chmod(0o600)
    with (
        EmbeddedRedis(data_dir / "redis", port=args.redis_port, persist=True) as embedded,
        EmbeddedS3(
            data_dir / "s3", access_key="dev", secret_key=secret_file.read_text().strip()
        ) as s3,
    ):
        key = asyncio.run(_dev_key(embedded.url, data_dir))
        settings = _settings(
            args,
            redis_url=embedded.url,
            log_format=args.log_format or "text",
            s3_endpoint=s3.endpoint,
            s3_access_key=s3.access_key,
            s3_secret_key=s3.secret_key,
            spool_dir=str(data_dir / "spool"),
            # Dev shows everything: metrics on, every call in the access log.
            metrics_listen=args.metrics_listen or "127.0.0.1:9464",
            access_log_sample_rate=(
                1.0 if args.access_log_sample_rate is None else args.access_log_sample_rate
            ),
        )
        if not _tls_files_fit(settings):
            return 2
        print(
            f"Session Memory dev server\n"
            f"  gRPC address : {settings.listen}\n"
            f"  API key      : {key}\n"
            f"  Redis        : {embedded.url} (data in {embedded.data_dir})\n"
            f"  S3 (files)   : http://{s3.endpoint} (SeaweedFS, data in {s3.data_dir})\n"
            f"  Metrics      : http://{settings.metrics_listen}/metrics\n"
            f"Try: export SESSION_MEMORY_ADDR={settings.listen} SESSION_MEMORY_API_KEY={key}\n"
            "Stop with Ctrl-C.",
            flush=True,
        )
        serve(settings)
    return 0


class _Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, label: str) -> None:
        self._label = label

    def __call__(self, done: int, total: int | None) -> None:
        if total:
            filled = int(30 * done / total)
            bar = "#" * filled + "-" * (30 - filled)
            text = f"{bar} {done / total:6.1%} of {total / 1048576:.1f} MiB"
        else:
            text = f"{done / 1048576:.1f} MiB"
        print(f"\r{self._label} {text}", end="", file=sys.stderr, flush=True)

    def done(self) -> None:
        print(file=sys.stderr)


def _file_command(args: argparse.Namespace) -> int:
    import mimetypes  # noqa: PLC0415

    from sessionmemory import MemoryApiError, MemoryClient  # noqa: PLC0415

    address, api_key = env_settings()
    client = MemoryClient(args.addr or address, api_key=args.api_key or api_key)
    memory = client.session(args.session)
    try:
        if args.command == "put-file":
            mime = args.mime or mimetypes.guess_type(args.path.name)[0]
            if mime is None:
                print("cannot guess the MIME type; pass --mime", file=sys.stderr)
                return 2
            progress = _Progress(f"uploading {args.path.name}")
            info = memory.set_file(args.key, args.path, ttl=args.ttl, mime=mime, progress=progress)
            progress.done()
            print(
                f"stored {info.key}: {info.mime_type}, {info.size_bytes} bytes,"
                f" sha256 {info.sha256}, version {info.version}, expires {info.expires_at}"
            )
            return 0
        handle = memory.get_file(args.key)
        if handle is None:
            print(f"no file under {args.key!r}", file=sys.stderr)
            return 1
        if args.url:
            print(handle.to_url())
            return 0
        output = args.output or Path(args.key)
        progress = _Progress(f"downloading {args.key}")
        done = handle.save(output, progress=progress)
        progress.done()
        print(f"saved {output} ({done} bytes, sha256 {handle.info.sha256})")
        return 0
    except MemoryApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        client.close()


def _add_health_parser(sub: Any) -> None:
    health = sub.add_parser(
        "health",
        help="ask a server's grpc.health.v1 for a service's status: exit 0 when SERVING,"
        " 1 otherwise (container health checks; needs no API key)",
    )
    health.add_argument(
        "--addr",
        metavar="HOST:PORT",
        help="ask this address, in plaintext (default: the server's settings: health_listen"
        " in plaintext, else listen, over TLS when tls_cert is set; a wildcard host means"
        " this machine)",
    )
    health.add_argument(
        "--service",
        default=memory_service_pb2.DESCRIPTOR.services_by_name["MemoryService"].full_name,
        help='the service whose status is asked: the default is readiness; "" is liveness',
    )
    health.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for it")
    health.add_argument(
        "--env-file", type=Path, help="the SESSION_MEMORY_* file the server was started with"
    )


def _loopback(address: str) -> str:
    """``address`` with a wildcard host (what a server binds) made this machine's."""
    host, _, port = address.rpartition(":")
    if host in ("", "0.0.0.0"):
        return f"127.0.0.1:{port}"
    if host in ("[::]", "::"):
        return f"[::1]:{port}"
    return address


def _health_channel(args: argparse.Namespace, settings: Settings) -> tuple[str, grpc.Channel]:
    """The address to ask and a channel to it.

    The probe port (health_listen) in plaintext when there is one, else the gRPC
    port, over TLS when the server serves TLS. The client's SESSION_MEMORY_TLS_*
    variables are not read: in the server's environment they are the server's files.
    """
    if args.addr is not None:
        return args.addr, grpc.insecure_channel(args.addr)
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


def _health(args: argparse.Namespace) -> int:
    from grpc_health.v1 import health_pb2  # noqa: PLC0415

    what = f"service {args.service!r}" if args.service else "liveness ('')"
    try:
        settings = Settings(_env_file=args.env_file)  # type: ignore[call-arg]
        address, channel = _health_channel(args, settings)
    except (ValueError, OSError) as exc:  # pydantic.ValidationError is a ValueError
        if isinstance(exc, pydantic.ValidationError):
            error = exc.errors()[0]
            reason = f"setting {'.'.join(map(str, error['loc']))}: {error['msg']}"
        else:
            reason = str(exc)
        print(f"UNKNOWN: {what}: cannot tell where to ask ({reason})", file=sys.stderr)
        return 1
    request = health_pb2.HealthCheckRequest(service=args.service)
    with channel:
        check = channel.unary_unary(
            "/grpc.health.v1.Health/Check",
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        try:
            reply = check(request, timeout=args.timeout)
        except grpc.RpcError as exc:
            code, details = (
                (exc.code(), exc.details()) if isinstance(exc, grpc.Call) else (None, "")
            )
            name = code.name if code is not None else "ERROR"
            print(f"{name}: {what} at {address}: {details or exc}", file=sys.stderr)
            return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    serving = reply.status == health_pb2.HealthCheckResponse.SERVING
    print(f"{status}: {what} at {address}", file=sys.stdout if serving else sys.stderr)
    return 0 if serving else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``session-memory`` console script."""
    args = _parser().parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    if args.command == "dev":
        return _dev(args)
    if args.command == "health":
        return _health(args)
    if args.command == "tenants":
        return asyncio.run(_tenants(args))
    if args.command == "keys":
        return asyncio.run(_keys(args))
    if args.command == "tokens":
        return asyncio.run(_tokens(args))
    if args.command in ("put-file", "get-file"):
        return _file_command(args)
    if args.command == "bench-observability":
        from .bench_obs import main as bench_obs_main  # noqa: PLC0415

        return bench_obs_main(args)
    if args.command == "bench-files":
        from .bench_files import main as bench_files_main  # noqa: PLC0415

        return bench_files_main(args)
    if args.command == "bench-limits":
        from .bench_limits import main as bench_limits_main  # noqa: PLC0415

        return bench_limits_main(args)
    if args.command == "bench-watch":
        from .bench_watch import main as bench_watch_main  # noqa: PLC0415

        return bench_watch_main(args)
    from .bench import main as bench_main  # noqa: PLC0415

    return bench_main(args)


if __name__ == "__main__":
    sys.exit(main())
