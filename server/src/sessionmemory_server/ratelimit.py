"""Per-tenant rate limits, held across every server process that shares a Redis.

The algorithm is GCRA, the generic cell rate algorithm, as in redis-cell and
Envoy's global rate limit service: a bucket (tenant x reads / writes / file
bytes) is one Redis key, ``sm:{<tenant>}:rl:<bucket>``, holding its theoretical
arrival time (TAT). A call may pass while TAT - now <= burst x T, where T =
1 / rate, and each token moves TAT on by T; the key expires once the bucket is
full again, so idle buckets cost nothing. Redis TIME is the one clock.

Hot path without Redis: a process does not ask Redis per call. It leases a few
tokens at a time (``stores/rate.lua``; about 50 ms of the rate, at most a
quarter of the burst, at least 1) and spends them locally; when the lease falls
below half it is refilled in the background, one refill at a time per bucket.
A call that finds no lease and no known emptiness passes at once and is charged
to Redis by the refill it starts (``owed``), so a tenant that calls now and
then never waits for Redis either; calls that arrive while that refill is in
flight wait for it. Leased tokens expire after a second, so a process cannot
hoard them. When Redis says the bucket is empty, the process remembers until
when and refuses (RATE_LIMITED, with the time until a call would pass) without
asking Redis again until then. Every admitted call is charged, so over time a
tenant gets rate x time + burst across all processes (while Redis has room: see
below); what the processes hold unused at a moment (under a lease each) is the
error. A rate of 0 is unlimited: no Redis, no state.

Redis down: tokens already leased keep admitting calls (fail open for them);
once they are spent a call waits for a refill, which fails, and the call fails
with the usual backend error (UNAVAILABLE) — such a call would have needed
Redis anyway.

Redis full (over its maxmemory, with noeviction): the script cannot keep the
bucket's state, so it grants nothing and says so (``STORE_FULL``) along with
the state it would have kept. The process then limits that bucket on its own:
the same GCRA, run in memory from that state, decides each refill in place of
Redis, so the limit holds, per process. A process cannot know how many others
there are, so each enforces the tenant's full rate and burst by itself: while
Redis is full, N processes admit up to N x rate (plus N x burst). Each refill
still asks Redis first (the same number of Redis calls as usual) and hands back
what the process counted meanwhile; the first refill that Redis stores again
ends the local limiting.

Per-process state is one small record per (tenant, bucket) in use, at most
`MAX_BUCKETS` of them (the least recently used go first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

import grpc
from redis.asyncio import Redis, RedisCluster

from .access import Bucket
from .errors import DomainError
from .limits import LimitBook, TenantLimits
from .logs import EventCounter
from .stores.autopipeline import LuaScript
from .stores.redis_store import Status

log = logging.getLogger("sessionmemory_server.ratelimit")

# A lease is this much of the rate (and at most burst / LEASE_BURST_SHARE, at
# least 1 token): 2 processes hold at most 2 leases unused, ~10 % of 1 s of the
# rate, and far less next to the burst.
LEASE_SECONDS: Final = 0.05
LEASE_BURST_SHARE: Final = 4
# Unused leased tokens are dropped after this long.
LEASE_TTL_SECONDS: Final = 1.0
# After a refill failed, no background refill of that bucket for this long.
FAILURE_BACKOFF_SECONDS: Final = 0.5
# Per-process bucket records kept (least recently used evicted first).
MAX_BUCKETS: Final = 10_000
# How long one chunk of a file stream may wait for its bytes (then RATE_LIMITED).
FILE_BYTES_MAX_WAIT_SECONDS: Final = 10.0
WINDOW_SECONDS: Final = 1

_SCRIPT: Final = (
    f"local OK, STORE_FULL = {int(Status.OK)}, {int(Status.STORE_FULL)}\n"
    + (resources.files(__package__) / "stores" / "rate.lua").read_text()
)
_failures = EventCounter(log, "rate limit refill failed", interval_seconds=10.0)
_unstored = EventCounter(
    log,
    "rate limit state not stored (Redis is over maxmemory): each process limits on its own",
    interval_seconds=60.0,
)

_NAMES: Final = {
    Bucket.READS: "read calls",
    Bucket.WRITES: "write calls",
    Bucket.FILE_BYTES: "file bytes",
}


def rate_of(limits: TenantLimits, bucket: Bucket) -> tuple[float, int]:
    """The rate (per second, 0 = unlimited) and burst of one of a tenant's buckets."""
    if bucket is Bucket.READS:
        return limits.reads_per_second, limits.read_burst
    if bucket is Bucket.WRITES:
        return limits.writes_per_second, limits.write_burst
    return limits.file_bytes_per_second, limits.file_bytes_burst


def lease_size(rate: float, burst: int) -> int:
    """How many tokens a process leases at a time."""
    return max(1, min(int(rate * LEASE_SECONDS), burst // LEASE_BURST_SHARE))


def bucket_key(tenant: str, bucket: Bucket) -> str:
    """The Redis key of a tenant's bucket (in the tenant's slot)."""
    return f"sm:{{{tenant}}}:rl:{bucket.value}"


def gcra(
    tat: float,
    now: float,
    interval: float,
    burst: int,
    owed: int,
    need: int,
    want: int,
    carry: float = 0.0,
) -> tuple[float, int, float]:
    """One lease, as stores/rate.lua computes it (and the process itself while Redis is full).

    Args:
        tat: The stored theoretical arrival time (0 when there is none).
        now: The time; ``tat`` and ``now`` in the unit of ``interval``.
        interval: Time per token (1 / rate).
        burst: Tokens the bucket holds.
        owed: Tokens already let pass, charged unconditionally.
        need: The fewest tokens worth leasing.
        want: The most tokens to lease.
        carry: The TAT is at least ``now + carry`` (a process's own count).

    Returns:
        The new TAT, the tokens granted, and (when none) the time until
        ``want`` tokens are free.
    """
    tat = max(tat, now + carry) + owed * interval
    limit = now + burst * interval
    avail = math.floor((limit - tat) / interval + 1e-6)
    if avail >= need:
        granted = min(want, avail)
        return tat + granted * interval, granted, 0.0
    return tat, 0, max(1.0, math.ceil(tat + want * interval - limit))


@dataclass(slots=True, eq=False)
class _State:
    """What one process knows about one bucket."""

    key: str
    rate: float
    burst: int
    interval_us: float
    lease: int
    # Leased tokens left; negative: calls let pass not yet charged to Redis.
    tokens: int = 0
    expires: float = 0.0  # monotonic time the leased tokens lapse
    empty_until: float = 0.0  # Redis said empty: refuse locally until then
    quiet_until: float = 0.0  # no background refill before (after a failure)
    # Redis is full: the bucket's TAT as this process keeps it (monotonic
    # microseconds), until a refill is stored in Redis again.
    local_tat: float | None = None
    refill: asyncio.Task[Exception | None] | None = None


Script = Callable[..., Awaitable[Any]]


class RateLimiter:
    """Counts calls and bytes against the tenant's rates (GCRA, leased per process).

    Without a Redis client every call is admitted.
    """

    def __init__(self, book: LimitBook, client: Redis | RedisCluster | None = None) -> None:
        self._book = book
        self._script: Script | None = None if client is None else LuaScript(client, _SCRIPT)
        self._states: OrderedDict[tuple[str, Bucket], _State] = OrderedDict()
        self._tasks: set[asyncio.Task[Exception | None]] = set()

    def _state(self, tenant: str, bucket: Bucket) -> _State | None:
        rate, burst = rate_of(self._book.limits_of(tenant), bucket)
        if rate <= 0 or self._script is None:
            return None
        key = (tenant, bucket)
        state = self._states.get(key)
        if state is not None and state.rate == rate and state.burst == burst:
            self._states.move_to_end(key)
            return state
        # New, or the limits changed: start afresh (Redis keeps the TAT).
        state = _State(
            key=bucket_key(tenant, bucket),
            rate=rate,
            burst=burst,
            interval_us=1e6 / rate,
            lease=lease_size(rate, burst),
        )
        self._states[key] = state
        self._states.move_to_end(key)
        while len(self._states) > MAX_BUCKETS:
            self._states.popitem(last=False)
        return state

    async def acquire(self, tenant: str, bucket: Bucket, cost: int = 1) -> None:
        """Take ``cost`` (at most the burst) from the tenant's bucket or raise RATE_LIMITED.

        Raises:
            DomainError: RESOURCE_EXHAUSTED (RATE_LIMITED) with the time until a
                call would pass.
            redis.exceptions.RedisError: the lease is spent and Redis did not answer.
        """
        state = self._state(tenant, bucket)
        if state is None:
            return
        cost = min(cost, state.burst)
        while True:
            now = time.monotonic()
            if state.tokens > 0 and state.expires <= now:
                state.tokens = 0
            if state.tokens >= cost:
                state.tokens -= cost
                self._prefetch(state, now)
                return
            if now < state.empty_until:
                raise rate_limited(tenant, bucket, state.rate, state.burst, state.empty_until - now)
            if state.refill is None and state.tokens >= 0:
                # Nothing known against it: let it pass, charge it in the background.
                state.tokens -= cost
                self._start_refill(state, 1, state.lease)
                return
            await self._refilled(state, 1, state.lease)

    async def throttle(self, tenant: str, bucket: Bucket, cost: int, max_wait: float) -> None:
        """Wait until ``cost`` tokens (bytes) are granted, taking them in parts as they come.

        Shapes a stream to the tenant's rate; ``cost`` may exceed the burst.

        Raises:
            DomainError: RESOURCE_EXHAUSTED (RATE_LIMITED) when the tokens would
                take longer than ``max_wait`` seconds.
            redis.exceptions.RedisError: Redis did not answer.
        """
        state = self._state(tenant, bucket)
        if state is None or cost <= 0:
            return
        start = time.monotonic()
        deadline = start + max_wait
        # Even from a full bucket, what is above the burst flows at the rate.
        least = (cost - state.burst - max(state.tokens, 0)) / state.rate
        if least > max_wait:
            raise rate_limited(
                tenant,
                bucket,
                state.rate,
                state.burst,
                state.burst / state.rate,
                detail=f"{cost} bytes at once would take {least:.1f} s; send smaller parts",
            )
        remaining = cost
        while True:
            now = time.monotonic()
            if state.tokens > 0 and state.expires <= now:
                state.tokens = 0
            take = min(max(state.tokens, 0), remaining)
            state.tokens -= take
            remaining -= take
            if remaining == 0:
                self._prefetch(state, now)
                return
            if now < state.empty_until:
                if state.empty_until > deadline:
                    raise rate_limited(
                        tenant, bucket, state.rate, state.burst, state.empty_until - now
                    )
                await asyncio.sleep(state.empty_until - now)
                continue
            await self._refilled(state, 1, min(state.burst, max(state.lease, remaining)))

    def _prefetch(self, state: _State, now: float) -> None:
        """Refill in the background once the lease runs below half."""
        if (
            state.tokens * 2 < state.lease
            and state.refill is None
            and now >= state.empty_until
            and now >= state.quiet_until
        ):
            self._start_refill(state, 1, state.lease)

    async def _refilled(self, state: _State, need: int, want: int) -> None:
        """Wait for the bucket's refill (starting one if none is in flight)."""
        task = state.refill or self._start_refill(state, need, want)
        error = await asyncio.shield(task)
        if error is not None:
            raise error

    def _start_refill(self, state: _State, need: int, want: int) -> asyncio.Task[Exception | None]:
        task = asyncio.create_task(self._refill(state, need, want))
        state.refill = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _refill(self, state: _State, need: int, want: int) -> Exception | None:
        """Pay what is owed and lease more; the error (returned) if Redis failed."""
        assert self._script is not None
        owed = max(-state.tokens, 0)
        want = max(min(want, state.burst), need)
        local = state.local_tat
        carry = 0 if local is None else max(math.ceil(local - time.monotonic() * 1e6), 0)
        try:
            status, granted, wait_us, ahead_us = await self._script(
                keys=[state.key],
                args=[repr(state.interval_us), state.burst, owed, need, want, carry],
            )
        except Exception as exc:
            state.quiet_until = time.monotonic() + FAILURE_BACKOFF_SECONDS
            _failures.count(type(exc).__name__)
            return exc
        finally:
            state.refill = None
        now = time.monotonic()
        if status == Status.STORE_FULL:
            # Redis kept nothing: decide here, from the more restrictive of its
            # state (``ahead``, the owed included) and this process's own.
            _unstored.count("STORE_FULL")
            now_us = now * 1e6
            tat = max(now_us + int(ahead_us), state.local_tat or 0.0)
            tat, granted, wait_us = gcra(tat, now_us, state.interval_us, state.burst, 0, need, want)
            state.local_tat = tat
        else:
            state.local_tat = None
        state.tokens += owed
        if state.tokens > 0 and state.expires <= now:
            state.tokens = 0
        if granted:
            state.tokens += int(granted)
            state.expires = now + LEASE_TTL_SECONDS
            state.empty_until = 0.0
        else:
            state.empty_until = now + max(int(wait_us) / 1e6, 0.001)
        return None

    def start(self) -> None:
        """Start background work (refills start on demand)."""

    async def close(self) -> None:
        """Stop refills in flight."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._states.clear()


def rate_limited(
    tenant: str, bucket: Bucket, rate: float, burst: int, retry_after: float, *, detail: str = ""
) -> DomainError:
    """RESOURCE_EXHAUSTED (RATE_LIMITED) for a tenant over one of its rates."""
    what = _NAMES[bucket]
    err = DomainError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "RATE_LIMITED",
        f"this tenant is over its rate limit of {rate:g} {what} per second (burst {burst});"
        f" nothing was done{'; ' + detail if detail else ''}: wait the delay in the error's"
        " retry info, slow down, or ask the operator for a higher limit",
        metadata={
            "limit": bucket.value,
            "rate": f"{rate:g}",
            "burst": burst,
            "window_seconds": WINDOW_SECONDS,
        },
        retry_after=max(retry_after, 0.001),
    )
    err.subject = f"tenant {tenant}"
    return err
