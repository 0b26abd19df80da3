"""Session tokens' pure parts: signing, verifying, tampering, expiry, key ids; the throttle."""

from __future__ import annotations

import base64
import time

import grpc
import pytest

from sessionmemory_server.access import Permission
from sessionmemory_server.auth import FailureThrottle, peer_address, split_key
from sessionmemory_server.errors import DomainError
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
