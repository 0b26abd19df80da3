"""Readiness that tells the truth: the service is SERVING only while its backends answer.

`grpc.health.v1` carries two answers. The empty service name ``""`` is liveness:
SERVING while the process serves calls (NOT_SERVING only during shutdown).
``sessionmemory.v1.MemoryService`` is readiness: SERVING while Redis answers a
PING and the object store's bucket answers, each within ``timeout`` seconds.
`Readiness` checks both every ``interval`` seconds and at once when a call
failed on an unreachable backend (`nudge`), so the status flips to NOT_SERVING
within a few seconds of a backend loss and back to SERVING when it returns. A
change is logged once (with the backend that failed).

Under ``--workers N`` a worker is also ready only while all N workers serve
(`require_workers`; the count lives in memory shared with the supervisor): a
worker that died and is being replaced, or keeps crashing, makes every worker
report NOT_SERVING until it serves again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final

from grpc_health.v1 import health_pb2
from redis.asyncio import Redis, RedisCluster

from .aux_services import CappedHealth
from .logs import EventCounter
from .polling import Poller
from .stores.blob_store import BlobStore

log = logging.getLogger("sessionmemory_server.health")
_failed = EventCounter(log, "readiness check failed", interval_seconds=60.0)

INTERVAL_SECONDS: Final = 2.0
TIMEOUT_SECONDS: Final = 1.0
# A nudge checks at once, but no more often than this.
MIN_GAP_SECONDS: Final = 0.5

_SERVING: Final = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING: Final = health_pb2.HealthCheckResponse.NOT_SERVING


class Readiness:
    """Sets a service's health status from its backends (see the module doc)."""

    def __init__(
        self,
        health: CappedHealth,
        service: str,
        redis: Redis | RedisCluster,
        blobs: BlobStore,
        *,
        interval: float = INTERVAL_SECONDS,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        self._health = health
        self._service = service
        self._redis = redis
        self._blobs = blobs
        self._timeout = timeout
        self._poller = Poller(self.check, interval, _failed, min_gap=MIN_GAP_SECONDS)
        self._workers: tuple[Callable[[], int], int] | None = None
        self.ready: bool | None = None
        self.failing: tuple[str, ...] = ()

    async def check(self) -> bool:
        """Check both backends now and set the status; True when ready."""
        results = await asyncio.gather(
            asyncio.wait_for(self._redis.ping(), self._timeout),
            asyncio.wait_for(self._blobs.check_bucket(), self._timeout),
            return_exceptions=True,
        )
        failing = tuple(
            f"{name}: {type(r).__name__}"
            for name, r in zip(("redis", "object store"), results, strict=True)
            if isinstance(r, BaseException)
        )
        if self._workers is not None:
            serving, workers = self._workers
            up = serving()  # read after the backends answered: the latest count
            if up < workers:
                failing += (f"workers: {up} of {workers} serving",)
        ready = not failing
        if ready != self.ready:
            await self._health.set(self._service, _SERVING if ready else _NOT_SERVING)
            if ready:
                log.info("ready", extra={"service": self._service})
            else:
                log.warning("not ready", extra={"service": self._service, "failing": failing})
        self.ready, self.failing = ready, failing
        return ready

    async def require_workers(self, serving: Callable[[], int], workers: int) -> None:
        """Under ``--workers``: ready only while ``serving()`` counts all ``workers``; check now.

        Args:
            serving: How many worker processes serve now (this one included).
            workers: How many should.
        """
        self._workers = (serving, workers)
        await self.check()

    def nudge(self) -> None:
        """A call found a backend unreachable: check soon (at most every 0.5 s)."""
        self._poller.nudge()

    async def start(self) -> None:
        """Check now, then keep checking in the background."""
        await self._poller.start()

    async def close(self) -> None:
        """Stop checking (before the server announces its shutdown)."""
        await self._poller.close()
