"""The ``session-memory`` command: serve, dev, keys, bench."""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from sessionmemory._base import env_settings

from .auth import ApiKeys
from .config import Settings

_DEV_KEY_FILE = "dev-api-key"


def _add_server_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--listen", help="host:port to serve on (env SESSION_MEMORY_LISTEN)")
    p.add_argument("--workers", type=int, help="processes sharing the port (SO_REUSEPORT)")
    p.add_argument("--grace-seconds", type=float, help="shutdown grace for in-flight calls")
    p.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR")
    p.add_argument("--log-format", choices=["json", "text"])


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

    dev = sub.add_parser("dev", help="run the server with an embedded Redis and a dev API key")
    _add_server_flags(dev)
    dev.add_argument("--data-dir", type=Path, default=Path(".session-memory"))
    dev.add_argument("--redis-port", type=int, default=0, help="port of the embedded Redis")

    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key for a tenant and print it once")
    create.add_argument("--tenant", required=True)
    _add_redis_flags(create)
    listing = keys_sub.add_parser("list", help="list key ids and tenants")
    _add_redis_flags(listing)
    revoke = keys_sub.add_parser("revoke", help="revoke keys by id")
    revoke.add_argument("key_ids", nargs="+")
    _add_redis_flags(revoke)

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
    return parser


async def _keys(args: argparse.Namespace) -> int:
    settings = _settings(args)
    client = Redis.from_url(
        settings.redis_url.get_secret_value(),
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_timeout_seconds,
    )
    api_keys = ApiKeys(client)
    try:
        if args.keys_command == "create":
            key = await api_keys.create(args.tenant)
            print(key)
            print(f"(tenant {args.tenant}; this key is shown only once)", file=sys.stderr)
        elif args.keys_command == "list":
            for info in await api_keys.list():
                print(f"{info.key_id}\t{info.tenant}\t{info.created_at:.0f}")
        else:
            count = await api_keys.revoke(args.key_ids)
            print(f"revoked {count} of {len(args.key_ids)}")
            return 0 if count == len(args.key_ids) else 1
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
        )
        print(
            f"Session Memory dev server\n"
            f"  gRPC address : {settings.listen}\n"
            f"  API key      : {key}\n"
            f"  Redis        : {embedded.url} (data in {embedded.data_dir})\n"
            f"  S3 (files)   : http://{s3.endpoint} (SeaweedFS, data in {s3.data_dir})\n"
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``session-memory`` console script."""
    args = _parser().parse_args(argv)
    if args.command == "serve":
        from .app import serve  # noqa: PLC0415

        serve(_settings(args))
        return 0
    if args.command == "dev":
        return _dev(args)
    if args.command == "keys":
        return asyncio.run(_keys(args))
    if args.command in ("put-file", "get-file"):
        return _file_command(args)
    if args.command == "bench-files":
        from .bench_files import main as bench_files_main  # noqa: PLC0415

        return bench_files_main(args)
    if args.command == "bench-watch":
        from .bench_watch import main as bench_watch_main  # noqa: PLC0415

        return bench_watch_main(args)
    from .bench import main as bench_main  # noqa: PLC0415

    return bench_main(args)


if __name__ == "__main__":
    sys.exit(main())
