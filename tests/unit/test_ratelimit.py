"""Rate limits without a server: GCRA math, leases, local refusals, shaping, the tarpit."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import pytest
import redis.exceptions

from sessionmemory_server import ratelimit
from sessionmemory_server.access import Bucket
from sessionmemory_server.errors import DomainError
from sessionmemory_server.interceptors import _Tarpit
from sessionmemory_server.limits import (
    FIELD_NAMES,
    LimitBook,
    TenantLimits,
    apply_overrides,
    decode_overrides,
    set_overrides,
)
from sessionmemory_server.ratelimit import RateLimiter, bucket_key, gcra, lease_size
from sessionmemory_server.stores.redis_store import Status

T = 1000.0  # 1 token per 1000 time units: a rate of 1 per 1000


def limits(**values: float) -> TenantLimits:
    base = TenantLimits(
        reads_per_second=0,
        read_burst=1,
        writes_per_second=0,
        write_burst=1,
        file_bytes_per_second=0,
        file_bytes_burst=1,
        max_sessions=0,
        max_stored_bytes=0,
        max_uploads=0,
    )
    return apply_overrides(base, values)


# --- GCRA -------------------------------------------------------------------


def test_a_full_bucket_grants_up_to_the_burst_at_once() -> None:
    tat, granted, wait = gcra(0, 10_000, T, burst=20, owed=0, need=1, want=50)
    assert (granted, wait) == (20, 0)
    assert tat == 10_000 + 20 * T


def test_an_empty_bucket_says_when_the_wanted_tokens_are_free() -> None:
    tat, _, _ = gcra(0, 0, T, burst=5, owed=0, need=1, want=5)
    same, granted, wait = gcra(tat, 0, T, burst=5, owed=0, need=1, want=3)
    assert (same, granted) == (tat, 0)
    assert wait == 3 * T
    # After that wait exactly the wanted tokens are there.
    _, granted, _ = gcra(tat, wait, T, burst=5, owed=0, need=1, want=3)
    assert granted == 3


def test_tokens_accrue_at_the_rate_and_never_above_the_burst() -> None:
    tat, _, _ = gcra(0, 0, T, burst=4, owed=0, need=1, want=4)
    _, granted, _ = gcra(tat, 2.5 * T, T, burst=4, owed=0, need=1, want=4)
    assert granted == 2
    _, granted, _ = gcra(tat, 100 * T, T, burst=4, owed=0, need=1, want=10)
    assert granted == 4


def test_owed_tokens_are_charged_even_past_the_limit() -> None:
    tat, _, _ = gcra(0, 0, T, burst=2, owed=0, need=1, want=2)
    tat2, granted, wait = gcra(tat, 0, T, burst=2, owed=3, need=1, want=1)
    assert granted == 0
    assert tat2 == tat + 3 * T
    assert wait == 4 * T  # the 3 owed, then the 1 wanted


def test_sustained_demand_gets_rate_times_time_plus_burst() -> None:
    tat, total = 0.0, 0
    for step in range(10_000):  # 10,000 time units, asking every unit
        tat, granted, _ = gcra(tat, float(step), T / 100, burst=50, owed=0, need=1, want=7)
        total += granted
    assert total == pytest.approx(50 + 100 * 10, abs=7)


def test_a_carried_count_raises_the_tat_but_never_lowers_it() -> None:
    tat, granted, _ = gcra(0, 10_000, T, burst=5, owed=0, need=1, want=5, carry=3 * T)
    assert (tat, granted) == (10_000 + 5 * T, 2)  # 3 of the 5 already spent elsewhere
    tat, _, _ = gcra(20_000 + 4 * T, 20_000, T, burst=5, owed=0, need=1, want=1, carry=T)
    assert tat == 20_000 + 5 * T  # the stored TAT was further ahead


@pytest.mark.parametrize(
    ("rate", "burst", "lease"),
    [(1000, 2000, 50), (200, 20, 5), (1, 1, 1), (0.5, 10, 1), (20 * 2**20, 32 * 2**20, 2**20)],
)
def test_lease_size(rate: float, burst: int, lease: int) -> None:
    assert lease_size(rate, burst) == pytest.approx(lease, abs=1)


def test_bucket_key_is_in_the_tenants_slot() -> None:
    assert bucket_key("acme", Bucket.READS) == "sm:{acme}:rl:reads"
    assert bucket_key("acme", Bucket.FILE_BYTES) == "sm:{acme}:rl:file_bytes"


# --- the limiter, against a Redis simulated with the same math -------------


class FakeScript:
    """stores/rate.lua over an in-memory dict, with the process clock as Redis TIME.

    ``full``: Redis is over maxmemory, so a reply that had to store is STORE_FULL.
    """

    def __init__(self) -> None:
        self.tat: dict[str, float] = {}
        self.calls = 0
        self.down = False
        self.full = False

    async def __call__(self, keys: list[str], args: list[Any]) -> list[int]:
        self.calls += 1
        await asyncio.sleep(0)
        if self.down:
            raise redis.exceptions.ConnectionError("Redis is down")
        interval = float(args[0])
        burst, owed, need, want, carry = (int(a) for a in args[1:])
        now = time.monotonic() * 1e6
        stored = self.tat.get(keys[0], 0)
        start = max(stored, now + carry)
        ahead = start + owed * interval - now
        tat, granted, wait = gcra(stored, now, interval, burst, owed, need, want, carry)
        if owed or granted or (start > stored and start > now):
            if self.full:
                return [Status.STORE_FULL, 0, 0, int(ahead)]
            self.tat[keys[0]] = tat
        return [Status.OK, granted, int(wait), int(ahead)]


def limiter_of(**values: float) -> tuple[RateLimiter, FakeScript, LimitBook]:
    book = LimitBook(limits(**values))
    limiter = RateLimiter(book)
    script = FakeScript()
    limiter._script = script
    return limiter, script, book


async def admitted(limiter: RateLimiter, n: int, bucket: Bucket = Bucket.READS) -> int:
    ok = 0
    for _ in range(n):
        try:
            await limiter.acquire("acme", bucket)
            ok += 1
        except DomainError as exc:
            assert exc.reason == "RATE_LIMITED"
    return ok


async def test_a_rate_of_zero_is_unlimited_and_never_asks_redis() -> None:
    limiter, script, _ = limiter_of(reads_per_second=0)
    assert await admitted(limiter, 1000) == 1000
    assert script.calls == 0


async def test_refusals_carry_the_limit_and_are_decided_without_redis() -> None:
    limiter, script, _ = limiter_of(reads_per_second=1, read_burst=3)
    assert await admitted(limiter, 3) == 3
    await asyncio.sleep(0.01)  # the background refill learns the bucket is empty
    calls = script.calls
    with pytest.raises(DomainError) as info:
        await limiter.acquire("acme", Bucket.READS)
    err = info.value
    assert err.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.reason == "RATE_LIMITED"
    assert err.metadata == {"limit": "reads", "rate": "1", "burst": "3", "window_seconds": "1"}
    assert err.retry_after is not None and 0.5 < err.retry_after <= 1.0
    assert await admitted(limiter, 500) == 0
    assert script.calls == calls
    await limiter.close()


async def test_the_first_call_of_an_idle_bucket_does_not_wait_for_redis() -> None:
    limiter, script, _ = limiter_of(reads_per_second=100, read_burst=100)
    await limiter.acquire("acme", Bucket.READS)
    assert script.calls == 0  # admitted; the charge is on its way
    await asyncio.sleep(0.01)
    assert script.calls == 1
    assert script.tat  # charged
    await limiter.close()


async def test_reads_and_writes_are_separate_buckets() -> None:
    limiter, _, _ = limiter_of(reads_per_second=1, read_burst=2, writes_per_second=1, write_burst=2)
    assert await admitted(limiter, 10, Bucket.READS) == 2
    assert await admitted(limiter, 10, Bucket.WRITES) == 2
    await limiter.close()


async def test_the_rate_holds_over_time_with_two_processes() -> None:
    one, script, book = limiter_of(reads_per_second=200, read_burst=20)
    two = RateLimiter(book)
    two._script = script  # the same "Redis"
    ok = 0
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        ok += await admitted(one, 5) + await admitted(two, 5)
        await asyncio.sleep(0.002)
    assert ok == pytest.approx(200 * 1.0 + 20, rel=0.1)
    await one.close()
    await two.close()


async def test_leased_tokens_pass_while_redis_is_down_then_calls_fail() -> None:
    limiter, script, _ = limiter_of(reads_per_second=1000, read_burst=2000)
    await limiter.acquire("acme", Bucket.READS)
    await asyncio.sleep(0.01)  # lease of 50 arrived
    script.down = True
    assert await admitted(limiter, 40) == 40
    with pytest.raises(redis.exceptions.ConnectionError):
        for _ in range(20):
            await limiter.acquire("acme", Bucket.READS)
    script.down = False
    await asyncio.sleep(ratelimit.FAILURE_BACKOFF_SECONDS)
    assert await admitted(limiter, 10) == 10
    await limiter.close()


async def flood_for(limiter: RateLimiter, seconds: float) -> int:
    """Reads asked every millisecond for ``seconds``: how many passed."""
    ok = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ok += await admitted(limiter, 1)
        await asyncio.sleep(0.001)
    return ok


async def test_over_maxmemory_each_process_holds_the_rate_on_its_own() -> None:
    one, script, book = limiter_of(reads_per_second=100, read_burst=20)
    two = RateLimiter(book)
    two._script = script
    script.full = True  # nothing is stored: each process counts for itself
    passed = await asyncio.gather(flood_for(one, 1.0), flood_for(two, 1.0))
    assert script.tat == {}
    for ok in passed:  # up to N x (rate x time + burst), documented
        assert ok == pytest.approx(100 * 1.0 + 20, rel=0.1)
    await one.close()
    await two.close()


async def test_over_maxmemory_the_local_limit_starts_from_what_redis_held() -> None:
    limiter, script, _ = limiter_of(reads_per_second=10, read_burst=10)
    assert await admitted(limiter, 8) == 8  # stored while Redis had room
    await asyncio.sleep(0.01)
    script.full = True
    assert await flood_for(limiter, 0.2) == pytest.approx(2 + 2, abs=1)  # not a fresh burst
    await limiter.close()


async def test_the_local_count_goes_back_to_redis_once_it_stores_again() -> None:
    limiter, script, _ = limiter_of(reads_per_second=10, read_burst=10)
    key = bucket_key("acme", Bucket.READS)
    script.full = True
    assert await admitted(limiter, 20) == 10
    await asyncio.sleep(0.01)
    assert key not in script.tat
    state = limiter._states["acme", Bucket.READS]
    assert state.local_tat is not None
    script.full = False
    await asyncio.sleep(state.empty_until - time.monotonic() + 0.01)
    assert await admitted(limiter, 1) == 1
    await asyncio.sleep(0.01)
    assert state.local_tat is None  # Redis holds the bucket again
    # ... with what this process admitted while it was full: still about empty.
    assert script.tat[key] > time.monotonic() * 1e6 + 8 * 1e5
    assert await admitted(limiter, 5) <= 1
    await limiter.close()


async def test_new_limits_apply_to_the_local_state() -> None:
    limiter, _, book = limiter_of(reads_per_second=1, read_burst=1)
    assert await admitted(limiter, 5) == 1
    book._limits["acme"] = limits(reads_per_second=0)
    assert await admitted(limiter, 5) == 5
    await limiter.close()


async def test_per_process_state_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ratelimit, "MAX_BUCKETS", 10)
    limiter, _, _ = limiter_of(reads_per_second=100, read_burst=100)
    for i in range(50):
        await limiter.acquire(f"t{i}", Bucket.READS)
    assert len(limiter._states) == 10
    await limiter.close()


async def test_throttle_shapes_costs_larger_than_the_burst() -> None:
    limiter, _, _ = limiter_of(file_bytes_per_second=100_000, file_bytes_burst=10_000)
    start = time.monotonic()
    await limiter.throttle("acme", Bucket.FILE_BYTES, 30_000, max_wait=5)
    took = time.monotonic() - start
    assert 0.15 < took < 0.4  # (30,000 - 10,000) / 100,000 s = 0.2 s
    await limiter.close()


async def test_throttle_refuses_what_would_wait_too_long_at_once() -> None:
    limiter, script, _ = limiter_of(file_bytes_per_second=1000, file_bytes_burst=1000)
    start = time.monotonic()
    with pytest.raises(DomainError) as info:
        await limiter.throttle("acme", Bucket.FILE_BYTES, 100_000, max_wait=2)
    assert time.monotonic() - start < 0.1
    assert info.value.metadata["limit"] == "file_bytes"
    assert info.value.retry_after is not None
    assert script.calls == 0
    await limiter.close()


# --- the tarpit -------------------------------------------------------------


def limited(
    retry_after: float, rate: float = 10, tenant: str = "acme", burst: int = 1000
) -> DomainError:
    return ratelimit.rate_limited(tenant, Bucket.READS, rate, burst, retry_after)


async def test_the_tarpit_holds_a_refusal_and_keeps_its_retry_info_right() -> None:
    tarpit = _Tarpit(1.0, 8)
    err = limited(0.3)
    start = time.monotonic()
    await tarpit.hold(err)
    held = time.monotonic() - start
    assert 0.29 < held < 0.65  # once to twice the time until a call would pass
    assert err.retry_after == pytest.approx(0.001)  # a call would pass by now
    assert tarpit.by_subject == {}


def test_the_tarpit_paces_a_subjects_refusals_at_its_rate() -> None:
    tarpit = _Tarpit(1.0, 256)
    # One refusal of a tenant at 200/s that refills in 1 ms: answered within ms.
    assert tarpit.delay(limited(0.001, rate=200), held=0) <= 0.01
    # With 63 of its refusals already held: 64 / 200 s to twice that, so 64
    # calls in flight are refused at most 200 times a second, not thousands.
    delays = [tarpit.delay(limited(0.001, rate=200), held=63) for _ in range(200)]
    assert min(delays) >= 0.32 - 1e-9 and max(delays) <= 0.64 + 1e-9
    # Never longer than the maximum, never shorter than the time to a pass.
    assert tarpit.delay(limited(0.001, rate=1), held=1000) <= 1.0
    assert tarpit.delay(limited(0.5, rate=1000), held=0) >= 0.5
    # ... and never longer than the bucket takes to fill (20 / 200 s here).
    assert tarpit.delay(limited(0.001, rate=200, burst=20), held=63) <= 0.1


async def test_the_tarpit_spreads_refusals_out() -> None:
    tarpit = _Tarpit(1.0, 64)
    ends: list[float] = []

    async def one() -> None:
        await tarpit.hold(limited(0.05, rate=10_000))
        ends.append(time.monotonic())

    await asyncio.gather(*(one() for _ in range(32)))
    assert max(ends) - min(ends) > 0.02  # not one burst when they end


async def test_the_tarpit_answers_at_once_when_full_or_for_other_errors() -> None:
    tarpit = _Tarpit(0.2, 1)
    held = asyncio.create_task(tarpit.hold(limited(1)))
    await asyncio.sleep(0.01)
    start = time.monotonic()
    await tarpit.hold(limited(1))
    busy = DomainError(grpc.StatusCode.RESOURCE_EXHAUSTED, "SERVER_BUSY", "busy", retry_after=1)
    await tarpit.hold(busy)
    assert time.monotonic() - start < 0.05
    await held
    assert tarpit.pending == 0


# --- overrides --------------------------------------------------------------


def test_overrides_decode_to_typed_values() -> None:
    assert decode_overrides(b'{"reads_per_second": 2.5, "read_burst": 20.0}') == {
        "reads_per_second": 2.5,
        "read_burst": 20,
    }
    got = apply_overrides(limits(), {"read_burst": 7})
    assert got.read_burst == 7
    assert isinstance(got.read_burst, int)


@pytest.mark.parametrize(
    "values",
    [{"reads": 1}, {"read_burst": 0}, {"reads_per_second": -1}, {"max_sessions": 1.5}],
)
async def test_bad_overrides_are_refused_before_redis(values: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="|".join((*FIELD_NAMES, "must"))):
        await set_overrides(None, "acme", values)  # type: ignore[arg-type]
