"""Watch: a session's changes, pushed to this process's streams over one Pub/Sub connection.

Every write script appends its changes to the session's change log (a Redis
stream of the last `LIMITS.watch_log_changes` changes, id = revision) and
publishes them on the session's channel. A `ChangeHub` holds one Pub/Sub
connection per process, subscribes to a channel while at least one stream
watches that session, and hands each published batch to the streams' bounded
buffers. A stream that resumes, falls behind, or outlives a reconnect catches up
from the log; when the log no longer reaches back far enough the stream says so
(`compacted`) and the client re-reads the document. Expiries come from Redis'
keyspace notifications where Redis is configured to send them
(`notify-keyspace-events Ex`); they are live only.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import grpc
import redis.exceptions
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from .errors import BUSY_RETRY_SECONDS, DomainError
from .logs import EventCounter
from .stores.redis_store import RedisStore, decode_change
from .values import Change

log = logging.getLogger("sessionmemory_server.watch")

_EXPIRED: Final = "__keyevent@*__:expired"
# Changes a stream may have waiting before it is marked behind (and catches up
# from the log instead): what a stalled reader can make the server hold.
WATCHER_BUFFER: Final = 1024
# How often an idle stream checks that its API key is still valid.
RECHECK_SECONDS: Final = 10.0
_SUBSCRIBE_TIMEOUT_SECONDS: Final = 5.0
_RECONNECT_SECONDS: Final = 0.5
_down = EventCounter(log, "change feed disconnected", interval_seconds=10.0)


@dataclass(frozen=True, slots=True)
class Batch:
    """One message of a Watch stream (see WatchResponse)."""

    changes: list[Change]
    revision: int
    compacted: bool = False


class Watcher:
    """One stream's buffer of published change batches."""

    def __init__(self, limit: int = WATCHER_BUFFER) -> None:
        self._items: collections.deque[list[Change]] = collections.deque()
        self._held = 0
        self._limit = limit
        self._ready = asyncio.Event()
        self._behind = False

    def push(self, changes: list[Change]) -> None:
        """Add a batch; a full buffer is dropped and the watcher marked behind."""
        if self._behind:
            return
        if self._held + len(changes) > self._limit:
            self.lag()
            return
        self._items.append(changes)
        self._held += len(changes)
        self._ready.set()

    def lag(self) -> None:
        """Mark the watcher behind: what it missed must be read from the log."""
        self._items.clear()
        self._held = 0
        self._behind = True
        self._ready.set()

    async def next(self) -> list[Change] | None:
        """The next batch, or None when the watcher fell behind (catch up from the log)."""
        while not self._items and not self._behind:
            self._ready.clear()
            await self._ready.wait()
        if self._behind:
            self._behind = False
            return None
        changes = self._items.popleft()
        self._held -= len(changes)
        return changes


class ChangeHub:
    """Fans published changes out to this process's Watch streams.

    Args:
        redis: A client for the Pub/Sub connection (one per process; its socket
            must not time out while idle).
        store: The store, for revisions and the change log.
        max_watchers: Streams this process serves at once.
        max_tenant_watchers: Streams one tenant may hold on this process.
    """

    def __init__(
        self, redis: Redis, store: RedisStore, *, max_watchers: int, max_tenant_watchers: int
    ) -> None:
        self._redis = redis
        self._store = store
        self._max = max_watchers
        self._max_tenant = max_tenant_watchers
        self._channels: dict[str, set[Watcher]] = {}
        self._tenants: collections.Counter[str] = collections.Counter()
        self._count = 0
        self._pubsub: PubSub | None = None
        self._confirmed: dict[str, asyncio.Event] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def watchers(self) -> int:
        """How many streams are being served."""
        return self._count

    def start(self) -> None:
        """Start the Pub/Sub reader."""
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        """Stop the reader and close the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._redis.aclose()

    async def stream(
        self,
        tenant: str,
        session: str,
        after: int | None,
        still_allowed: Callable[[], Awaitable[None]],
    ) -> AsyncIterator[Batch]:
        """The Watch stream of a session: the start, the backlog, then live changes.

        ``still_allowed`` is awaited every `RECHECK_SECONDS` while the stream is
        idle and raises to end it (an API key revoked while watching).
        """
        async with self._watch(tenant, session) as watcher:
            if after is None:
                revision, _ = await self._store.changes(tenant, session, 2**62)
                yield Batch([], revision)
            else:
                yield Batch([], after)
                revision = after
                async for batch in self._catch_up(tenant, session, revision):
                    revision = batch.revision
                    yield batch
            while True:
                try:
                    changes = await asyncio.wait_for(watcher.next(), RECHECK_SECONDS)
                except TimeoutError:
                    await still_allowed()
                    # Renews the "watched" marker (it follows the session's life).
                    await self._store.changes(tenant, session, 2**62)
                    continue
                if changes is None:
                    async for batch in self._catch_up(tenant, session, revision):
                        revision = batch.revision
                        yield batch
                    continue
                fresh = []
                for change in changes:
                    if change.operation == "expire":
                        fresh.append(_at_revision(change, revision))
                    elif change.revision > revision:
                        fresh.append(change)
                        revision = change.revision
                if fresh:
                    yield Batch(fresh, revision)

    async def _catch_up(self, tenant: str, session: str, after: int) -> AsyncIterator[Batch]:
        """What came after revision ``after``: the logged changes, or `compacted`."""
        current, logged = await self._store.changes(tenant, session, after)
        if current == after:
            return
        begun = bool(logged) and logged[0].operation == "begin"
        if begun:
            # The session's counter began after ``after``: from revision 0 nothing
            # came before; from an older incarnation of the session, what it held
            # expired unreported, so the watcher must re-read.
            complete, logged = after == 0, logged[1:]
        else:
            complete = bool(logged) and logged[0].revision == after + 1
        if complete and current > after and all(c.operation != "begin" for c in logged):
            if logged:
                yield Batch(logged, logged[-1].revision)
        else:
            yield Batch([], current, compacted=True)

    @contextlib.asynccontextmanager
    async def _watch(self, tenant: str, session: str) -> AsyncIterator[Watcher]:
        if self._count >= self._max:
            raise _too_many("process", self._max)
        if self._tenants[tenant] >= self._max_tenant:
            raise _too_many("tenant", self._max_tenant)
        channel = RedisStore.channel(tenant, session)
        watcher = Watcher()
        self._count += 1
        self._tenants[tenant] += 1
        watchers = self._channels.setdefault(channel, set())
        watchers.add(watcher)
        try:
            await self._subscribed(channel)
            yield watcher
        finally:
            self._count -= 1
            self._tenants[tenant] -= 1
            if self._tenants[tenant] <= 0:
                del self._tenants[tenant]
            watchers.discard(watcher)
            if not watchers and self._channels.get(channel) is watchers:
                del self._channels[channel]
                self._confirmed.pop(channel, None)
                if self._pubsub is not None:
                    with contextlib.suppress(Exception):
                        await self._pubsub.unsubscribe(channel)

    async def _subscribed(self, channel: str) -> None:
        """Wait until Redis confirmed the channel's subscription (first watcher subscribes)."""
        event = self._confirmed.get(channel)
        if event is None:
            event = self._confirmed[channel] = asyncio.Event()
            if self._pubsub is not None:
                with contextlib.suppress(redis.exceptions.RedisError, OSError):
                    await self._pubsub.subscribe(channel)
        try:
            await asyncio.wait_for(event.wait(), _SUBSCRIBE_TIMEOUT_SECONDS)
        except TimeoutError:
            raise DomainError(
                grpc.StatusCode.UNAVAILABLE,
                "BACKEND_UNAVAILABLE",
                "the change feed is not connected to Redis; retry",
                retry_after=1.0,
            ) from None

    async def _run(self) -> None:
        connected_before = False
        while True:
            pubsub = self._redis.pubsub()
            try:
                await pubsub.psubscribe(_EXPIRED)
                for channel in self._confirmed:
                    self._confirmed[channel].clear()
                if self._channels:
                    await pubsub.subscribe(*self._channels)
                self._pubsub = pubsub
                if connected_before:
                    # Changes published while disconnected were missed: catch up.
                    for watchers in self._channels.values():
                        for watcher in watchers:
                            watcher.lag()
                connected_before = True
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._dispatch(message)
            except asyncio.CancelledError:
                self._pubsub = None
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
                raise
            except (redis.exceptions.RedisError, OSError) as exc:
                _down.count(type(exc).__name__)
            except Exception:  # a bug must not end the feed of every watcher for good
                log.exception("change feed failed; reconnecting")
            self._pubsub = None
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
            await asyncio.sleep(_RECONNECT_SECONDS)

    def _dispatch(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        channel = _text(message["channel"])
        if kind == "message":
            watchers = self._channels.get(channel)
            if watchers:
                changes = [decode_change(line) for line in _text(message["data"]).split("\n")]
                for watcher in watchers:
                    watcher.push(changes)
        elif kind == "pmessage":
            expired = RedisStore.channel_and_key(_text(message["data"]))
            if expired is not None:
                watchers = self._channels.get(expired[0])
                if watchers:
                    change = Change(expired[1], "expire", None, 0, 0, 0)
                    for watcher in watchers:
                        watcher.push([change])
        elif kind == "subscribe":
            event = self._confirmed.get(channel)
            if event is not None:
                event.set()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _at_revision(change: Change, revision: int) -> Change:
    return Change(change.key, change.operation, change.kind, 0, revision, 0)


def _too_many(scope: str, limit: int) -> DomainError:
    return DomainError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "TOO_MANY_WATCHERS",
        f"too many Watch streams are open ({scope} limit {limit}); close some or retry later",
        metadata={"scope": scope, "limit": limit},
        retry_after=BUSY_RETRY_SECONDS,
    )
