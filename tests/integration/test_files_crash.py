"""SIGKILL in the middle of 20 uploads, restart: after one collection period there are
zero orphan objects and zero file records pointing at a missing object."""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid
from typing import Any

import redis as redis_sync
from minio import Minio

from sessionmemory import MemoryClient
from sessionmemory_server.embedded import EmbeddedRedis, EmbeddedS3, free_port

from ..conftest import cli_env, serve_cli

MIB = 1024 * 1024
INTERVAL = 1.0


def _audit(redis_url: str, s3: EmbeddedS3, bucket: str, run: str) -> tuple[set[str], set[str]]:
    """(orphan objects, records whose object is missing) of this run's sessions."""
    r = redis_sync.Redis.from_url(redis_url)
    referenced = set()
    for key in r.scan_iter(match=f"sm:{{acme|{run}-*}}:v:*", count=1000):
        raw = r.get(key)
        if raw and raw[:1] == b"f":
            referenced.add(json.loads(raw.split(b":", 2)[2])["o"])
    r.close()
    store = Minio(s3.endpoint, access_key=s3.access_key, secret_key=s3.secret_key,
                  secure=False, region="us-east-1")  # fmt: skip
    stored = {o.object_name for o in store.list_objects(bucket, prefix="files/", recursive=True)}
    return stored - referenced, referenced - stored


def test_sigkill_mid_uploads_leaves_no_orphans_and_no_dangling(
    redis_server: EmbeddedRedis, s3_server: EmbeddedS3, api_key: str
) -> None:
    run = f"crash-{uuid.uuid4().hex[:8]}"
    bucket = run
    address = f"127.0.0.1:{free_port()}"
    env = cli_env(
        redis_server.url, s3_server, address, s3_bucket=bucket, collect_interval_seconds=INTERVAL
    )
    proc = serve_cli(env)
    outcomes: list[str] = []

    def upload(i: int) -> None:
        # Slow chunks keep the uploads in flight when the kill comes.
        def chunks() -> Any:
            yield b"%PDF-1.4\n"
            for _ in range(6):
                time.sleep(0.05 * (i % 5))
                yield b"x" * MIB

        try:
            with MemoryClient(address, api_key=api_key, timeout=30, max_attempts=1) as client:
                client.session(f"{run}-{i % 4}").set_file(
                    f"doc{i}", chunks(), ttl=600, mime="application/pdf"
                )
            outcomes.append("ok")
        except Exception as exc:
            outcomes.append(type(exc).__name__)

    try:
        threads = [threading.Thread(target=upload, args=(i,)) for i in range(20)]
        for t in threads:
            t.start()
        time.sleep(0.8)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        for t in threads:
            t.join(30)
        assert len(outcomes) == 20
        assert outcomes.count("ok") < 20, "the kill interrupted uploads"
        proc = serve_cli(env)
        # Leases are 2 collection periods; give the restarted collector one more.
        deadline = time.monotonic() + 3 * INTERVAL + 10
        while True:
            orphans, dangling = _audit(redis_server.url, s3_server, bucket, run)
            if not orphans or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        assert dangling == set()
        assert orphans == set()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
