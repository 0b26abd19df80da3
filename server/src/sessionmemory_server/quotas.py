"""Per-tenant quotas over every server process sharing a Redis.

Three quotas (`TenantLimits`): live sessions, stored bytes (values and files)
and uploads in progress. A call over one is refused with RESOURCE_EXHAUSTED
``QUOTA_EXCEEDED`` (metadata ``quota`` = ``sessions`` | ``stored_bytes`` |
``uploads``, ``limit``, and ``actual``: what the call would bring the usage to)
and no RetryInfo, before it changed anything. A quota of 0 is unlimited and is
not tracked at all (costs nothing; its usage reads what was tracked before).
The bookkeeping lives in the tenant's slot (``sm:{T}:...``, see redis_store.py),
apart from the session's keys, so it is always a call of its own.

**Uploads** (exact). A SetFile takes a slot in ``sm:{T}:up`` at its header (one
script: the tenant's count and the new member, atomically) and gives it back
when it ends, however it ends. A slot whose process died frees itself when its
lease ends (``upload_max_seconds`` + a minute).

**Live sessions** (exact at admission; a session counts a little longer than it
lives). ``sm:{T}:ss`` registers each session until the latest expiry written to
it plus a headroom (a quarter of the TTL, between 1 and 60 s). A write to a
session this process does not know as registered runs one admission script: a
new session over the quota is refused, a registered one extended. Writes to a
session the process knows only push its registration forward, in the background
batch, and only when their expiry passes it: a session written every turn costs
no call of its own. So a session holds its place until up to the headroom after
its last value expired. Clear does not free it, nor does deleting every key one
by one: the place frees when the registration ends (so a registration, once
made, is never taken back early and every process's memory of it stays true).
BindSchema on a session without live values creates it (the binding lives a
day) and is admitted like a write of that TTL. A write that was admitted and
then failed for another reason (a failed precondition) leaves a new session
registered for its TTL.

**Stored bytes** (lag: one flush interval). A value counts its payload bytes, a
file its size, each plus the UTF-8 bytes of its key and session id and
``VALUE_OVERHEAD_BYTES`` (values.stored_bytes), until it expires, is
overwritten or deleted. A write's bytes are reserved when it is admitted (so
concurrent writes of one process cannot all pass on the same total), count as
written once it is made and are given back when it fails. Each process keeps
what its writes, deletes, Touches and Clears changed and sends it per tenant
every ``FLUSH_SECONDS`` in scripts of at most ``BATCH_OPS`` operations
(quota_flush.lua) that keep a ledger in ``sm:{T}:kb``/``ke``/``kt`` (a value's
entry is a 16-character digest of its session and key, see `_member`) and
return the tenant's total. A write that adds bytes is refused when that total,
plus what this process wrote or reserved since, plus the write's own bytes pass
the quota (a total older than two intervals is fetched again before a refusal,
so a tenant idle here is not refused on a stale one). The write counts in full
before the value it replaces is credited, so near the quota an overwrite can be
refused. Processes learn of each other's writes at their next flush: together N
processes can pass the quota by what they write in one interval. The first write
of a tenant a process has not seen asks Redis for the total (one call). Ledger
entries carry the session's revision, so batches arriving out of order count
right; Touch does not move the revision, so two Touches of one revision keep the
later expiry: a value whose TTL a Touch shortened counts until the longer one.
A Touch's entry carries the value's bytes, so it counts the value again when an
earlier expiry already dropped it. A deleted value's entry stays
``TOMBSTONE_MS`` (5 s): a batch landing later than that with an older write of
it counts the value again until that write's expiry. Expired entries are dropped
``PRUNE_BATCH`` per script call, until none is left or ``PRUNE_BUDGET_SECONDS``
are spent per flush. A process that dies loses its last interval: those values
go uncounted until they are overwritten, deleted or expire; so do values written
while the quota was 0.

Not thread-safe: everything runs on the server's event loop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Final

import grpc

from .errors import DomainError, store_full
from .limits import LimitBook
from .stores.redis_store import QuotaExceeded, QuotaOp, RedisStore, StoreFull
from .values import Cleared, Erase, Touched, Write, Written, named_bytes, stored_bytes

log = logging.getLogger("sessionmemory_server.quotas")

# How often each process sends its bookkeeping (the stored-bytes lag).
FLUSH_SECONDS: Final = 0.25
# How long a deleted value's ledger entry is kept, so a late batch holding an
# older write of it is ignored: the longest lag of a batch this assumes.
TOMBSTONE_MS: Final = 5000
# Expired ledger entries dropped per script call (bounds its run time), and how
# long one flush of a tenant keeps calling until none is left.
PRUNE_BATCH: Final = 500
PRUNE_BUDGET_SECONDS: Final = 0.05
# Operations per script call (one call stays within a few ms).
BATCH_OPS: Final = 256
# Operations kept per tenant while Redis does not answer; older ones are dropped.
MAX_PENDING: Final = 100_000
# Tenants and sessions this process remembers (least recently used go first).
MAX_TENANTS: Final = 10_000
MAX_SESSIONS: Final = 100_000
# A session registered for less than this is admitted again, not extended in
# the background (its registration could end before the batch lands).
SESSION_MARGIN_MS: Final = 2000
# A session's registration outlives its data by a quarter of the TTL, within these.
HEADROOM_MIN_MS: Final = 1000
HEADROOM_MAX_MS: Final = 60_000
# An upload slot outlives the longest upload by this much.
UPLOAD_LEASE_SLACK_SECONDS: Final = 60.0
_LOG_EVERY_SECONDS: Final = 10.0


@dataclass(frozen=True, slots=True)
class TenantUsage:
    """How much of its quotas a tenant uses."""

    sessions: int
    stored_bytes: int
    uploads: int


def quota_exceeded(quota: str, limit: int, actual: int) -> DomainError:
    """RESOURCE_EXHAUSTED QUOTA_EXCEEDED: ``actual`` is what the call would make the usage."""
    if quota == "sessions":
        what = (
            f"the tenant already has {actual - 1} live sessions, its quota is {limit}; nothing"
            " was written: clear sessions it no longer needs or let them expire"
        )
    elif quota == "uploads":
        what = (
            f"the tenant already has {actual - 1} uploads in progress, its quota is {limit};"
            " nothing was stored: wait for one to finish"
        )
    else:
        what = (
            f"the write would bring the tenant's stored bytes to {actual}, its quota is"
            f" {limit}; nothing was written: delete values or files it no longer needs"
        )
    return DomainError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "QUOTA_EXCEEDED",
        what,
        metadata={"quota": quota, "limit": limit, "actual": actual},
    )


def _revision(op: QuotaOp) -> int:
    """The revision of an S ("S", member, bytes, revision, expiry) or D operation."""
    return int(op[3] if op[0] == "S" else op[2])


def _member(session: str, key: str) -> str:
    """The value's name in this process's bookkeeping (`_wire` hashes it for the ledger)."""
    return f"{session}\n{key}"


def _ledger_member(member: str) -> str:
    """The value's ledger member: 16 characters, however long its session and key."""
    digest = hashlib.blake2b(member.encode("utf-8", "surrogatepass"), digest_size=12).digest()
    return base64.b64encode(digest).decode()


def _wire(ops: Sequence[QuotaOp]) -> list[QuotaOp]:
    """Operations as the ledger takes them: value members hashed (once per flush)."""
    return [
        (op[0], _ledger_member(op[1]), op[2], op[3], op[4]) if op[0] in "SDT" else op for op in ops
    ]


@dataclass(slots=True)
class _Tenant:
    """What this process knows of one tenant and has yet to send."""

    known: bool = False  # total, sessions and uploads came from Redis
    fresh_at: float = 0.0  # when they did (monotonic seconds)
    total: int = 0
    sessions: int = 0
    uploads: int = 0
    ops: list[QuotaOp] = field(default_factory=list)
    # Where in ``ops`` each member's latest S or D operation is: a key written
    # again before the flush replaces it (the ledger keeps only the newest).
    latest: dict[str, int] = field(default_factory=dict)
    # Bytes of the values written since the last flush (by ledger member).
    pending: dict[str, int] = field(default_factory=dict)
    unflushed: int = 0
    # Bytes of this process's writes admitted and not yet made (or failed).
    reserved: int = 0
    wanted: bool = False  # refresh at the next flush even without operations
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Quotas:
    """Live sessions, stored bytes and uploads per tenant (see the module docstring)."""

    def __init__(
        self,
        store: RedisStore,
        book: LimitBook,
        *,
        upload_max_seconds: float,
        flush_seconds: float = FLUSH_SECONDS,
    ) -> None:
        self._store = store
        self._book = book
        self._lease_ms = int((upload_max_seconds + UPLOAD_LEASE_SLACK_SECONDS) * 1000)
        self._interval = flush_seconds
        self._tenants: OrderedDict[str, _Tenant] = OrderedDict()
        # (tenant, session) -> when its registration ends (this process's monotonic ms).
        self._sessions: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._logged = 0.0

    # --- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Start sending the bookkeeping every flush interval."""
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        """Stop the background sends and send what is left (best effort)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        try:
            await self.flush()
        except Exception as exc:  # closing: report, do not fail the stop
            log.warning("quota bookkeeping not sent at close", extra={"error": repr(exc)})
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.flush()
            except Exception as exc:  # kept and sent again next time
                now = time.monotonic()
                if now - self._logged >= _LOG_EVERY_SECONDS:
                    self._logged = now
                    log.warning("quota bookkeeping not sent", extra={"error": repr(exc)})

    # --- writes: admission before, records after -------------------------------------

    async def admit(self, tenant: str, session: str, writes: Sequence[Write]) -> int | None:
        """Check a write's quotas before it is made (deletes need none).

        Returns None when the tenant's stored bytes are not tracked; otherwise the
        bytes reserved for the write, to hand to `wrote` once it is made or to
        `unreserve` when it failed (the write must then be recorded).

        Raises:
            DomainError: QUOTA_EXCEEDED (``stored_bytes`` or ``sessions``) or
                STORE_FULL; nothing was changed.
        """
        limits = await self._book.get(tenant)
        adds = 0
        if writes:
            if limits.max_stored_bytes:
                adds = sum(stored_bytes(session, w.key, w.kind, w.payload) for w in writes)
                await self._check_bytes(tenant, limits.max_stored_bytes, adds, reserve=True)
            if limits.max_sessions:
                ttl_ms = max(w.ttl_seconds for w in writes) * 1000
                try:
                    await self._admit_session(tenant, session, ttl_ms, limits.max_sessions)
                except BaseException:
                    self.unreserve(tenant, adds)
                    raise
        return adds if limits.max_stored_bytes else None

    async def admit_session(self, tenant: str, session: str, ttl_seconds: int) -> None:
        """Admit a session that gets a key of its own but no value (a schema binding).

        Raises:
            DomainError: QUOTA_EXCEEDED (``sessions``) or STORE_FULL; nothing changed.
        """
        quota = (await self._book.get(tenant)).max_sessions
        if quota:
            await self._admit_session(tenant, session, ttl_seconds * 1000, quota)

    def unreserve(self, tenant: str, reserved: int | None) -> None:
        """Give back the bytes `admit` reserved for a write that was not made."""
        if reserved:
            state = self._tenant(tenant)
            state.reserved = max(0, state.reserved - reserved)

    async def check_bytes(self, tenant: str, session: str, key: str, size: int) -> None:
        """Refuse a file of ``size`` bytes early when it would pass the tenant's quota.

        Reserves nothing: the file's write is admitted again when it is stored.

        Raises:
            DomainError: QUOTA_EXCEEDED (``stored_bytes``).
        """
        limit = (await self._book.get(tenant)).max_stored_bytes
        if limit:
            adds = size + named_bytes(session, key)
            await self._check_bytes(tenant, limit, adds, reserve=False)

    async def _check_bytes(self, tenant: str, limit: int, adds: int, *, reserve: bool) -> None:
        state = self._tenant(tenant)
        if not state.known:
            await self._flush_one(tenant, state, unless_known=True)
        used = state.total + state.unflushed + state.reserved
        if used + adds > limit and time.monotonic() - state.fresh_at > 2 * self._interval:
            # Values may have expired or been deleted since (a tenant idle here):
            # refuse only on a fresh total.
            await self._flush_one(tenant, state)
            used = state.total + state.unflushed + state.reserved
        if used + adds > limit:
            state.wanted = True  # learn of frees elsewhere at the next flush
            raise quota_exceeded("stored_bytes", limit, used + adds)
        if reserve:
            # Counted from now on: concurrent writes of this process cannot all
            # pass on the same total (no await between the check and this).
            state.reserved += adds

    async def _admit_session(self, tenant: str, session: str, ttl_ms: int, quota: int) -> None:
        now = time.monotonic() * 1000
        key = (tenant, session)
        until = self._sessions.get(key)
        keep_ms = ttl_ms + min(max(ttl_ms // 4, HEADROOM_MIN_MS), HEADROOM_MAX_MS)
        if until is None or until - now < SESSION_MARGIN_MS:
            try:
                kept = await self._store.admit_session(tenant, session, keep_ms, quota)
            except QuotaExceeded as exc:
                raise quota_exceeded("sessions", quota, exc.actual + 1) from None
            except StoreFull:
                raise store_full() from None
            self._remember(key, now + kept)
        elif until < now + ttl_ms:
            self._queue(tenant, ("E", session, keep_ms, 0, 0))
            self._remember(key, now + keep_ms)
        else:
            self._sessions.move_to_end(key)

    def _remember(self, key: tuple[str, str], until: float) -> None:
        sessions = self._sessions
        sessions[key] = until
        sessions.move_to_end(key)
        while len(sessions) > MAX_SESSIONS:
            sessions.popitem(last=False)

    def wrote(
        self,
        tenant: str,
        session: str,
        entries: Sequence[Write | Erase],
        results: Sequence[Written],
        reserved: int = 0,
    ) -> None:
        """Record what a write admitted with `admit` changed (its results, in order).

        ``reserved``: what `admit` returned; those bytes now count as written.
        """
        state = self._tenant(tenant)
        state.reserved = max(0, state.reserved - reserved)
        for entry, result in zip(entries, results, strict=True):
            member = _member(session, entry.key)
            if isinstance(entry, Erase):
                if result.version:  # 0: the key did not exist
                    self._queue(tenant, ("D", member, result.version, 0, 0))
                    state.unflushed -= state.pending.pop(member, 0)
                continue
            size = stored_bytes(session, entry.key, entry.kind, entry.payload)
            self._queue(tenant, ("S", member, size, result.version, result.expires_ms))
            state.unflushed += size - state.pending.get(member, 0)
            state.pending[member] = size

    async def touched(self, tenant: str, session: str, done: Touched, ttl_seconds: int) -> None:
        """Record a Touch: its keys' new expiry, and the session lives as long.

        Each T operation carries the value's bytes too, so the ledger counts it
        again when a batch with an earlier expiry already dropped its entry.
        """
        if not done.count:
            return
        limits = await self._book.get(tenant)
        if limits.max_stored_bytes:
            for name, size in zip(done.names, done.sizes, strict=True):
                counted = size + named_bytes(session, name)
                member = _member(session, name)
                self._queue(tenant, ("T", member, done.revision, done.expires_ms, counted))
        if limits.max_sessions:
            ttl_ms = ttl_seconds * 1000
            keep_ms = ttl_ms + min(max(ttl_ms // 4, HEADROOM_MIN_MS), HEADROOM_MAX_MS)
            now = time.monotonic() * 1000
            key = (tenant, session)
            until = self._sessions.get(key)
            if until is None or until < now + ttl_ms:
                self._queue(tenant, ("E", session, keep_ms, 0, 0))
                self._remember(key, now + keep_ms)

    async def cleared(self, tenant: str, session: str, done: Cleared) -> None:
        """Record a Clear: its values are gone (the session keeps its place, see above)."""
        limits = await self._book.get(tenant)
        if limits.max_stored_bytes and done.names:
            state = self._tenant(tenant)
            for name in done.names:
                member = _member(session, name)
                self._queue(tenant, ("D", member, done.revision, 0, 0))
                state.unflushed -= state.pending.pop(member, 0)

    def _queue(self, tenant: str, op: QuotaOp) -> None:
        state = self._tenant(tenant)
        kind, member = op[0], str(op[1])
        if kind in "SD":
            at = state.latest.get(member)
            if at is not None:
                if _revision(op) >= _revision(state.ops[at]):
                    state.ops[at] = op
                return
            state.latest[member] = len(state.ops)
        state.ops.append(op)
        if len(state.ops) > MAX_PENDING:
            # Redis has not answered for a long time: drop the oldest (their
            # values go uncounted until overwritten, deleted or expired).
            del state.ops[: len(state.ops) - MAX_PENDING]
            state.latest = {}
            log.warning("quota bookkeeping dropped", extra={"tenant": tenant})

    # --- uploads ---------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def upload(self, tenant: str) -> AsyncIterator[None]:
        """Hold one of the tenant's upload slots while the body runs.

        Raises:
            DomainError: QUOTA_EXCEEDED (``uploads``) or STORE_FULL; nothing changed.
        """
        limit = (await self._book.get(tenant)).max_uploads
        if not limit:
            yield
            return
        upload = uuid.uuid4().hex
        try:
            await self._store.take_upload(tenant, upload, self._lease_ms, limit)
        except QuotaExceeded as exc:
            raise quota_exceeded("uploads", limit, exc.actual + 1) from None
        except StoreFull:
            raise store_full() from None
        try:
            yield
        finally:
            # Given back even when the upload was cancelled; a failure to give it
            # back (Redis gone) only holds the slot until its lease ends.
            task = asyncio.ensure_future(self._store.give_upload(tenant, upload))
            self._background.add(task)
            task.add_done_callback(self._given_back)
            with contextlib.suppress(Exception):
                await asyncio.shield(task)

    def _given_back(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning(
                "upload slot not given back (it ends with its lease)",
                extra={"error": repr(task.exception())},
            )

    # --- usage and the background batch -------------------------------------------

    async def usage(self, tenant: str) -> TenantUsage:
        """The tenant's usage (after sending this process's bookkeeping for it)."""
        state = self._tenant(tenant)
        await self._flush_one(tenant, state)
        return TenantUsage(state.sessions, state.total + state.unflushed, state.uploads)

    async def flush(self) -> None:
        """Send every tenant's bookkeeping now (also refreshes their totals).

        Raises:
            Exception: the first failure (the operations are kept for next time).
        """
        due = [(t, s) for t, s in self._tenants.items() if s.ops or s.wanted]
        failure: BaseException | None = None
        for i in range(0, len(due), 64):
            outcomes = await asyncio.gather(
                *(self._flush_one(t, s) for t, s in due[i : i + 64]), return_exceptions=True
            )
            failure = failure or next((o for o in outcomes if isinstance(o, BaseException)), None)
        if failure is not None:
            raise failure

    async def _flush_one(self, tenant: str, state: _Tenant, *, unless_known: bool = False) -> None:
        async with state.lock:
            if unless_known and state.known:
                return  # a concurrent call just learnt it
            ops, pending = state.ops, state.pending
            state.ops, state.pending, state.unflushed, state.wanted = [], {}, 0, False
            state.latest = {}
            try:
                wire = _wire(ops)
                usage = await self._store.quota_flush(
                    tenant, wire[:BATCH_OPS], tombstone_ms=TOMBSTONE_MS, prune=PRUNE_BATCH
                )
                for i in range(BATCH_OPS, len(wire), BATCH_OPS):
                    usage = await self._store.quota_flush(
                        tenant,
                        wire[i : i + BATCH_OPS],
                        tombstone_ms=TOMBSTONE_MS,
                        prune=PRUNE_BATCH,
                    )
                # Expired entries are dropped PRUNE_BATCH per call (the same
                # script, no operations) until none is left or the budget is spent.
                until = time.monotonic() + PRUNE_BUDGET_SECONDS
                while usage[3] and time.monotonic() < until:
                    usage = await self._store.quota_flush(
                        tenant, [], tombstone_ms=TOMBSTONE_MS, prune=PRUNE_BATCH
                    )
            except BaseException:
                # Sent again next time: every operation is harmless twice.
                state.ops[:0] = ops
                del state.ops[: max(0, len(state.ops) - MAX_PENDING)]
                state.latest = {}
                for member, size in pending.items():
                    state.pending.setdefault(member, size)
                state.unflushed = sum(state.pending.values())
                state.wanted = True
                raise
            state.total, state.sessions, state.uploads, _ = usage
            state.known, state.fresh_at = True, time.monotonic()

    def _tenant(self, tenant: str) -> _Tenant:
        tenants = self._tenants
        state = tenants.get(tenant)
        if state is not None:
            tenants.move_to_end(tenant)
            return state
        state = tenants[tenant] = _Tenant()
        excess = len(tenants) - MAX_TENANTS
        if excess > 0:
            # Forget the least recently used tenants with nothing left to send.
            idle: list[str] = []
            for name, s in tenants.items():
                if len(idle) == excess:
                    break
                if not s.ops and not s.wanted and not s.lock.locked() and name != tenant:
                    idle.append(name)
            for name in idle:
                del tenants[name]
        return state
