"""A complete stack for other languages' test suites: ``python -m sessionmemory_server.testing``.

Starts a real redis-server and S3 server (SeaweedFS) on free ports and the real
gRPC server (build_server) on a free port, creates API keys for three tenants, prints
one JSON line ``{"address", "api_key", "other_api_key", "limited_api_key"}`` and
serves until its stdin closes or it gets SIGTERM/SIGINT. The TypeScript and Go
suites start it. The limited tenant has `LIMITED_TENANT_LIMITS` (5 reads and 5
writes per second, bursts of 5), so the suites can hit ``RATE_LIMITED``.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from .app import build_server
from .auth import ApiKeys
from .config import Settings
from .embedded import EmbeddedRedis, EmbeddedS3
from .limits import set_overrides

# The limits of the stack's third tenant: low enough for a test to exceed at once.
LIMITED_TENANT_LIMITS: dict[str, float] = {
    "reads_per_second": 5,
    "read_burst": 5,
    "writes_per_second": 5,
    "write_burst": 5,
}


def stack_settings(redis_url: str, s3: EmbeddedS3, **overrides: Any) -> Settings:
    """Settings of a server on a free port over embedded Redis and S3 (test stacks).

    Keys are checked on every call and released objects are collected within
    about a second, so tests see the effects of what they do.
    """
    options: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "redis_url": redis_url,
        "s3_endpoint": s3.endpoint,
        "s3_access_key": s3.access_key,
        "s3_secret_key": s3.secret_key,
        "s3_bucket": "test-bucket",
        "auth_cache_seconds": 0,
        # Suites send wrong keys on purpose from one address: no auth-failure
        # throttle unless a test sets it (tests/integration/test_auth.py).
        "auth_max_failures_per_peer": 0,
        "auth_max_failures_per_key": 0,
        "collect_interval_seconds": 0.5,
        # Suites write thousands of values at once in one tenant: no rate limits
        # unless a test sets them (tests/integration/test_rate_limits.py).
        "tenant_reads_per_second": 0,
        "tenant_writes_per_second": 0,
        "tenant_file_bytes_per_second": 0,
        **overrides,
    }
    return Settings(**options)


async def _serve(redis: EmbeddedRedis, s3: EmbeddedS3) -> None:
    settings = stack_settings(redis.url, s3, log_level="WARNING")
    built = await build_server(settings)
    keys = ApiKeys(built.redis)
    await set_overrides(built.redis, "initech", LIMITED_TENANT_LIMITS)
    print(
        json.dumps(
            {
                "address": f"127.0.0.1:{built.port}",
                "api_key": await keys.create("acme"),
                "other_api_key": await keys.create("globex"),
                "limited_api_key": await keys.create("initech"),
            }
        ),
        flush=True,
    )
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.read(1) else None)
    await stop.wait()
    await built.stop(1.0)


def main() -> None:
    """Run the stack until stdin closes or a signal arrives."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        with (
            EmbeddedRedis(root / "redis") as redis,
            EmbeddedS3(root / "s3", access_key="test", secret_key=uuid.uuid4().hex) as s3,
        ):
            asyncio.run(_serve(redis, s3))


if __name__ == "__main__":
    main()
