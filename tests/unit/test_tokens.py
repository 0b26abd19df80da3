"""Session tokens' pure parts: signing, verifying, tampering, expiry, key ids; the throttle;
caller addresses; the shared reload (`polling.SingleFlight`)."""

from __future__ import annotations

import asyncio
import base64
import time

import grpc
import pytest

from sessionmemory_server.access import Permission
from sessionmemory_server.auth import FailureThrottle, peer_address, split_key
from sessionmemory_server.errors import DomainError
from sessionmemory_server.polling import SingleFlight
from sessionmemory_server.tokens import PREFIX, Claims, decode, encode

SECRET = bytes(range(32))
KEYS = {"k1": SECRET}


def claims(**changes: object) -> Claims:
    base: dict[str, object] = {
        "kid": "k1",
        "tenant": "acme",
        "session": "conv-ü 1",
        "permissions": frozenset({Permission.READ, Permission.FILES}),
        "issued_ms": 1_700_000_000_123,
        "ttl_seconds": 900,
        "token_id": base64.urlsafe_b64encode(b"\x01" * 12).decode(),
    }
    base.update(changes)
    return Claims(**base)  # type: ignore[arg-type]


def reason(token: str, keys: dict[str, bytes] = KEYS) -> str:
    with pytest.raises(DomainError) as info:
        decode(token, keys)
    assert info.value.code == grpc.StatusCode.UNAUTHENTICATED
    return info.value.reason


def test_a_signed_token_decodes_to_its_claims() -> None:
    c = claims()
    token = encode(c, SECRET)
    assert token.startswith(PREFIX) and "=" not in token and token.count(".") == 1
    assert decode(token, KEYS) == c
    assert c.expires_ms == c.issued_ms + 900_000


@pytest.mark.parametrize(
    "perms",
    [{Permission.READ}, {Permission.WRITE}, {Permission.FILES}, set(Permission)],
)
def test_every_permission_set_round_trips(perms: set[Permission]) -> None:
    c = claims(permissions=frozenset(perms), session="s" * 256, tenant="t" * 64)
    assert decode(encode(c, SECRET), KEYS) == c


def test_changing_any_character_makes_it_invalid() -> None:
    token = encode(claims(), SECRET)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for i in range(len(PREFIX), len(token)):
        if token[i] == ".":
            continue
        for other in {alphabet[(alphabet.index(token[i]) + d) % 64] for d in (1, 32)}:
            forged = token[:i] + other + token[i + 1 :]
            assert reason(forged) == "TOKEN_INVALID", (i, other)


def test_flipping_any_payload_bit_and_resigning_without_the_key_fails() -> None:
    token = encode(claims(), SECRET)
    body, sig = token[len(PREFIX) :].split(".")
    payload = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    for i in range(len(payload)):
        changed = bytearray(payload)
        changed[i] ^= 0x01
        forged_body = base64.urlsafe_b64encode(bytes(changed)).rstrip(b"=").decode()
        assert reason(f"{PREFIX}{forged_body}.{sig}") == "TOKEN_INVALID"


def test_a_retired_or_unknown_signing_key_is_invalid() -> None:
    token = encode(claims(), SECRET)
    assert reason(token, {}) == "TOKEN_INVALID"
    assert reason(token, {"k2": SECRET}) == "TOKEN_INVALID"
    assert reason(token, {"k1": bytes(32)}) == "TOKEN_INVALID"
    # A token signed with another key verifies with that key (rotation keeps both).
    other = encode(claims(kid="k2"), b"\x07" * 32)
    assert decode(other, {"k1": SECRET, "k2": b"\x07" * 32}).kid == "k2"


@pytest.mark.parametrize(
    "text",
    ["", "smt_", "smt_.", "smt_abc", "smt_a.b.c", "smk_x_y", "smt_!!!.???", "smt_AAAA.AAAA"],
)
def test_malformed_tokens_are_invalid(text: str) -> None:
    assert reason(text) == "TOKEN_INVALID"


def test_non_canonical_base64_is_invalid() -> None:
    token = encode(claims(), SECRET)
    body, sig = token[len(PREFIX) :].split(".")
    # Padding or a second spelling of the same bytes is not the token we signed.
    assert reason(f"{PREFIX}{body}==.{sig}") == "TOKEN_INVALID"
    assert reason(f"{PREFIX}{body}.{sig}=") == "TOKEN_INVALID"


def test_split_key_and_peer_address() -> None:
    assert split_key("smk_abc_s3cr_et") == ("abc", "s3cr_et")
    assert split_key("smk__x") is None and split_key("nope") is None
    assert peer_address("ipv4:127.0.0.1:5555") == "127.0.0.1"
    assert peer_address("ipv6:[2001:db8::1]:5555") == "2001:db8::/64"
    assert peer_address("ipv6:[2001:db8::1:2:3:4]:1") == "2001:db8::/64"
    assert peer_address("unix:/tmp/sock") == "unix:/tmp/sock"


def test_the_throttle_counts_per_window_and_forgets_the_oldest() -> None:
    throttle = FailureThrottle(3, 10.0, max_subjects=2)
    now = time.monotonic()
    for _ in range(2):
        throttle.fail("a", now)
    assert throttle.blocked_for("a", now) is None
    throttle.fail("a", now)
    left = throttle.blocked_for("a", now + 4)
    assert left is not None and left == pytest.approx(6)
    assert throttle.blocked_for("a", now + 10) is None  # the window is over
    throttle.fail("a", now + 10)
    assert throttle.blocked_for("a", now + 10) is None  # a new window, one failure
    throttle.fail("b", now)
    throttle.fail("c", now)  # over max_subjects: "a" failed longest ago and goes
    assert "a" not in throttle._windows and set(throttle._windows) == {"b", "c"}
    assert FailureThrottle(0, 10.0).blocked_for("x", now) is None


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        # What grpc 1.85 reports (brackets percent-encoded), and older versions.
        ("ipv4:127.0.0.1:33792", "127.0.0.1"),
        ("ipv6:%5B::1%5D:33792", "::/64"),
        ("ipv6:%5B2001:db8::1%5D:5555", "2001:db8::/64"),
        ("ipv6:%5B2001:db8::ffff:2%5D:6000", "2001:db8::/64"),
        ("ipv6:[2001:db8::1]:5555", "2001:db8::/64"),
        ("ipv6:%5Bfe80::1%25eth0%5D:1", "fe80::/64"),
        # IPv4 through a dual-stack socket is that IPv4 address, not ::ffff:0:0/64.
        ("ipv6:%5B::ffff:10.0.0.7%5D:1", "10.0.0.7"),
        ("unix:/tmp/sock", "unix:/tmp/sock"),
        ("unix-abstract:%00sm", "unix-abstract:\x00sm"),
        # Garbage comes back as it is (decoded), never as a shared subject.
        ("ipv6:%5Bnot-an-address%5D:1", "ipv6:[not-an-address]:1"),
        ("ipv4:999.1.1.1:1", "ipv4:999.1.1.1:1"),
        ("ipv4:", "ipv4:"),
        ("", ""),
    ],
)
def test_peer_address_groups_what_grpc_reports(peer: str, address: str) -> None:
    assert peer_address(peer) == address


class _Load:
    """A load that counts its runs and fails while ``failing``."""

    def __init__(self, seconds: float = 0.05) -> None:
        self.runs = 0
        self.failing = False
        self.seconds = seconds

    async def __call__(self) -> None:
        self.runs += 1
        await asyncio.sleep(self.seconds)
        if self.failing:
            raise ConnectionError("Redis is down")


async def test_single_flight_shares_one_load_between_concurrent_callers() -> None:
    load = _Load(0.1)
    flight = SingleFlight(load, "the things")
    started = time.monotonic()
    await asyncio.gather(*(flight.run() for _ in range(40)))
    assert load.runs == 1
    assert time.monotonic() - started < 0.5  # one load's time, not forty
    # fresh: a load that started before the call does not count.
    first = asyncio.ensure_future(flight.run())
    await asyncio.sleep(0.01)
    await asyncio.gather(*(flight.run(fresh=True) for _ in range(10)), first)
    assert load.runs == 3


async def test_single_flight_backs_off_after_a_failure() -> None:
    load = _Load(0.1)
    load.failing = True
    flight = SingleFlight(load, "the things", backoff_seconds=0.3)
    results = await asyncio.gather(*(flight.run() for _ in range(20)), return_exceptions=True)
    assert load.runs == 1
    for r in results:
        assert isinstance(r, DomainError)
        assert (r.code, r.reason) == (grpc.StatusCode.UNAVAILABLE, "BACKEND_UNAVAILABLE")
        assert "the things could not be read" in r.message and r.retry_after == 0.3
        assert isinstance(r.__cause__, ConnectionError)
    # During the back-off: refused at once, without a load.
    started = time.monotonic()
    for _ in range(20):
        with pytest.raises(DomainError) as info:
            await flight.run(fresh=True)
        assert info.value.reason == "BACKEND_UNAVAILABLE"
        assert info.value.retry_after is not None and 0 < info.value.retry_after <= 0.3
    assert time.monotonic() - started < 0.05 and load.runs == 1
    assert flight.backing_off() is not None
    # The poller forces a load; a success ends the back-off.
    load.failing = False
    await flight.run(force=True)
    assert load.runs == 2 and flight.backing_off() is None
    await flight.run()
    assert load.runs == 3


async def test_a_cancelled_caller_does_not_cancel_the_shared_load() -> None:
    load = _Load(0.1)
    flight = SingleFlight(load, "the things")
    impatient = asyncio.ensure_future(flight.run())
    patient = asyncio.ensure_future(flight.run())
    await asyncio.sleep(0.02)
    impatient.cancel()
    await patient
    assert load.runs == 1 and flight.backing_off() is None
    await flight.close()
