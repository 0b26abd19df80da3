r"""The blob collector: every object in the store is either referenced or collected.

Protocol (``sm:gc:<bucket>`` is one Redis sorted set per bucket, member ``"<object>\t<value key>"``,
score = when to look at it next, in ms):

1. Before an upload puts its object, it registers the member with a short lease
   and renews it while it works, so a server killed mid-upload leaves an entry
   whose lease lapses within two collection periods.
2. After the metadata switch (one Lua script) the entry is rescheduled to the
   file's expiry. Objects the switch replaced (and those of Delete/Clear) are
   deleted right after the script returned, before the call answers, so a
   presigned URL handed out earlier stops working at once; then their entries
   go. If the store does not answer, the entries are made due now, so the
   next pass retries; if the server dies in between, each entry still comes due
   at its file's old expiry and the pass below finds it unreferenced.
3. Every server runs `Collector.run`: it claims due entries (a Lua script that
   pushes them one lease ahead, so concurrent collectors do not double up and a
   crashed one leaves them to the next), and for each asks Redis whether the
   value key still points at that object. If it does (a Touch may have extended
   it), the entry moves to the current expiry; if not, the object is deleted and
   then the entry. An upload whose lease lapsed (its server died) is swept twice,
   a lease apart, because the dead server's last request to the store may still
   create the object after the first sweep (seen with SeaweedFS under SIGKILL).
   Metadata never points at a missing object: objects are written before the
   switch and deleted only when nothing references them.
4. A file above 5 MiB sends parts to the store before its checks end, as a
   multipart upload that only becomes an object when completed; a failed upload
   aborts it at once. One that an abort missed (the store refused it, the server
   died) is aborted by `Collector.run` once it is older than any upload may live
   (``stale_upload_seconds``: the upload budget plus ten store timeouts).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from . import metrics
from .core import Kind
from .stores.blob_store import BlobStore
from .stores.redis_store import RedisStore

log = logging.getLogger("sessionmemory_server.collector")

_BATCH = 100
# Where the files' objects live in the bucket: ``files/<tenant>/<random>``.
FILES_PREFIX = "files/"
_SWEPT = metrics.COLLECTOR_DELETED.labels("sweep")
_RELEASED = metrics.COLLECTOR_DELETED.labels("release")


def _now_ms() -> int:
    return int(time.time() * 1000)


def object_of(payload: str) -> str:
    """The object name inside a file record's payload."""
    name: str = json.loads(payload)["o"]
    return name


@dataclass
class Lease:
    """An upload's hold on its object while it is not referenced yet."""

    member: str
    last_renewed: float = field(default_factory=time.monotonic)
    # Set while the metadata switch may have happened without us knowing (its
    # reply was lost): then a failure must not delete the object.
    in_doubt: bool = False

    def fresh(self, within: float) -> bool:
        """True when the lease was renewed within ``within`` seconds."""
        return time.monotonic() - self.last_renewed < within


class Collector:
    """Collects expired, released and orphaned objects; safe with many servers."""

    def __init__(
        self,
        store: RedisStore,
        blobs: BlobStore,
        *,
        interval: float,
        stale_upload_seconds: float | None = None,
    ) -> None:
        self._store = store
        self._blobs = blobs
        self.interval = interval
        self._lease_ms = int(2 * interval * 1000)
        self._stale_upload_seconds = stale_upload_seconds

    @contextlib.asynccontextmanager
    async def lease(self, name: str, value_key: str) -> AsyncIterator[Lease]:
        """Hold ``name`` for an upload; on error the object is removed at once.

        Not when the lease is ``in_doubt``: then the lapsed lease lets the
        collector decide by looking at the metadata. The entry is kept for a
        second sweep a lease later: a request to the store that timed out here
        may still create the object after this delete.
        """
        lease = Lease(f"{name}\t{value_key}")
        await self._store.gc_schedule({lease.member: _now_ms() + self._lease_ms})
        renew = asyncio.create_task(self._renew(lease))
        try:
            yield lease
        except BaseException:
            renew.cancel()
            if not lease.in_doubt:
                # Best effort; if this fails the lapsed lease lets the collector do it.
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._drop_twice(name, lease.member))
            raise
        renew.cancel()

    async def _renew(self, lease: Lease) -> None:
        while True:
            await asyncio.sleep(self.interval / 2)
            with contextlib.suppress(Exception):
                await self._store.gc_schedule({lease.member: _now_ms() + self._lease_ms})
                lease.last_renewed = time.monotonic()

    def lease_is_safe(self, lease: Lease) -> bool:
        """True while no other server can have collected the leased object."""
        return lease.fresh(self.interval / 2 + self.interval / 4)

    async def committed(self, lease: Lease, expires_ms: int, released: list[str]) -> None:
        """The object is referenced now: look at it again when it expires.

        ``released`` are the entries of the objects the same write replaced;
        they are deleted as by `release`. Never raises: the upload is committed
        whatever happens here (a lease left unrescheduled lapses, and the
        collector then finds the object referenced and reschedules it).
        """
        try:
            await self._store.gc_schedule({lease.member: expires_ms + 1})
        except Exception as exc:  # the commit stands; the collector repairs it
            log.warning("could not reschedule an upload's entry", extra={"error": repr(exc)})
        await self.release(released)

    async def retime(self, expires: dict[str, int]) -> None:
        """Look at these entries when their files now expire (ms); never raises.

        After a Touch: a shortened TTL must also shorten the object's life (a
        URL never outlives its file). Should this fail, the entry comes due at
        the old expiry and is collected then.
        """
        try:
            await self._store.gc_schedule({m: at + 1 for m, at in expires.items()})
        except Exception as exc:  # the Touch stands; the old schedule still collects
            log.warning("could not reschedule touched files", extra={"error": repr(exc)})

    async def release(self, members: list[str]) -> None:
        """Delete the objects of entries no longer referenced, now; never raises.

        One S3 multi-object delete and one ZREM. Whatever fails is made due
        now, so the collector retries it on its next pass. Shielded: a call
        cancelled meanwhile (its deadline passed) still gets its objects deleted.
        """
        if members:
            await asyncio.shield(self._release(members))

    async def _release(self, members: list[str]) -> None:
        names = {m.partition("\t")[0]: m for m in members}
        try:
            failed = await self._blobs.delete_many(list(names))
        except Exception as exc:  # the collector retries them (below)
            log.warning("could not delete released objects", extra={"error": repr(exc)})
            failed = list(names)
        done = [m for n, m in names.items() if n not in failed]
        _RELEASED.inc(len(done))
        try:
            await self._store.gc_done(*done)
            await self._store.gc_schedule({names[n]: _now_ms() for n in failed})
        except Exception as exc:  # every entry still comes due at its file's expiry
            log.warning("could not update released entries", extra={"error": repr(exc)})

    async def _drop_twice(self, name: str, member: str) -> None:
        """Delete now, and again a lease later (a late write may recreate it)."""
        await self._blobs.delete(name)
        await self._store.gc_replace(member, f"{member}\tswept", _now_ms() + self._lease_ms)

    async def _drop(self, name: str, member: str) -> None:
        await self._blobs.delete(name)
        await self._store.gc_done(member)

    async def collect_once(self) -> int:
        """One pass over the due entries; returns how many objects were deleted.

        An entry that fails (the store or Redis refusing, Redis over maxmemory
        refusing a reschedule) stays claimed and comes back a lease later; the
        others go on.
        """
        deleted = failed = 0
        error: Exception | None = None
        for member in await self._store.gc_claim(self._lease_ms, _BATCH):
            try:
                deleted += await self._collect(member)
            except Exception as exc:  # retried when the claim lapses
                failed += 1
                error = exc
        _SWEPT.inc(deleted)
        if error is not None:
            metrics.COLLECTOR_FAILURES.inc(failed)
            log.warning(
                "collection entries failed", extra={"entries": failed, "error": repr(error)}
            )
        return deleted

    async def _collect(self, member: str) -> int:
        name, _, rest = member.partition("\t")
        value_key, _, swept = rest.partition("\t")
        if swept:
            # Second pass over a lapsed upload: anything its dead writer's last
            # request created after the first sweep goes too.
            await self._drop(name, member)
            return 0
        if value_key:
            record = await self._store.record_at(value_key)
            if (
                record is not None
                and record.kind is Kind.FILE
                and object_of(record.payload) == name
            ):
                await self._store.gc_schedule({member: record.expires_ms + 1})
                return 0
            # A lapsed upload lease: its writer may have died with a request to the
            # store still in flight, so look once more a lease from now.
            await self._drop_twice(name, member)
            return 1
        await self._drop(name, member)
        return 1

    async def run(self) -> None:
        """Collect every interval until cancelled; failures are logged and retried."""
        while True:
            try:
                metrics.COLLECTOR_BACKLOG.set(await self._store.gc_due(_now_ms()))
                while (count := await self.collect_once()) == _BATCH:
                    log.info("collected", extra={"objects": count})
                if count:
                    log.info("collected", extra={"objects": count})
                if self._stale_upload_seconds is not None:
                    aborted = await self._blobs.abort_stale_uploads(
                        FILES_PREFIX, self._stale_upload_seconds
                    )
                    if aborted:
                        log.info("aborted stale multipart uploads", extra={"uploads": aborted})
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                metrics.COLLECTOR_FAILURES.inc()
                log.warning("collection failed", extra={"error": repr(exc)})
            await asyncio.sleep(self.interval)
