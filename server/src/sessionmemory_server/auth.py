"""API keys and the authenticator: every key in memory, failed attempts throttled.

A key looks like ``smk_<id>_<secret>``. The id is public (it names the key in
``keys list``, ``keys revoke`` and ``keys rotate``); the secret never leaves the
``keys create`` output. Redis holds one hash, ``sm:apikeys``: id -> JSON
{tenant, sha256, created, expires?} (Unix seconds), and a counter,
``sm:apikeys:version``, bumped after every create, revoke and rotate.

Every process keeps all key records in memory and polls the counter every
``refresh_seconds`` (setting ``auth_cache_seconds``, 1 s by default), reloading
the hash when it changed. So checking a key, known or not, makes no Redis call,
and a revoked or rotated-out key stops working on every process within
``refresh_seconds`` plus one Redis round trip (at most ``redis_timeout_seconds``).
A key id a process does not know makes it read the version once more (at most
ten times a second, `tokens.MissBudget`), so a key works on its first call.
While Redis is unreachable the poll fails and the keys known last stay in force.
Reloads that callers wait for (nothing loaded yet, an unknown key id) are shared
and back off after a failure (`polling.SingleFlight`): a process that could not
load its keys answers UNAVAILABLE at once rather than queueing every call behind
a slow Redis.

The secret is 256 random bits, so an unsalted SHA-256 of it is as strong as a
password hash would be (salts and slow hashes defend guessable secrets, and a
256-bit one is not guessable) and costs a microsecond to check, which matters
because any caller can make us check one. Comparisons are constant-time.

`Authenticator` also counts failed attempts (a wrong or expired key or token)
per caller address and per key id, see `FailureThrottle`.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import hmac
import ipaddress
import json
import logging
import re
import secrets
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, cast

import grpc
from redis.asyncio import Redis, RedisCluster

from .access import Principal
from .errors import DomainError, invalid, unauthenticated
from .logs import EventCounter
from .polling import Poller, SingleFlight
from .stores.redis_store import retry_stale
from .tokens import PREFIX as TOKEN_PREFIX
from .tokens import MissBudget, SessionTokens

log = logging.getLogger("sessionmemory_server.auth")

KEYS_HASH: Final = "sm:apikeys"
KEYS_VERSION: Final = "sm:apikeys:version"
_PREFIX: Final = "smk_"
_TENANT_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_NO_DIGEST: Final = b"\0" * 32

# Rotate: give the old key an expiry no later than the one it has; only if it
# still exists (a concurrent revoke must not bring it back). Adds the new key.
_ROTATE_LUA: Final = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
if not old then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4])
return 1
"""

_poll_failed = EventCounter(log, "API key refresh failed", interval_seconds=60.0)
# Refusals that are no guess: the credential was valid until it expired.
_NOT_GUESSES: Final = frozenset({"API_KEY_MISSING", "API_KEY_EXPIRED", "TOKEN_EXPIRED"})


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """What is stored about a key (never the key itself).

    Attributes:
        key_id: The public id (``smk_<id>_...``).
        tenant: The tenant the key belongs to.
        created_at: When it was created (Unix seconds).
        expires_at: When it stops working (Unix seconds), or None.
    """

    key_id: str
    tenant: str
    created_at: float
    expires_at: float | None = None

    def expired(self, now: float | None = None) -> bool:
        """True once the key has passed its expiry."""
        return self.expires_at is not None and (now or time.time()) >= self.expires_at


@dataclass(frozen=True, slots=True)
class _Record:
    tenant: str
    digest: bytes
    created: float
    expires: float | None


class UnknownKey(LookupError):
    """``keys rotate`` named a key id that does not exist."""


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def _encode(record: _Record) -> str:
    out: dict[str, object] = {
        "tenant": record.tenant,
        "sha256": record.digest.hex(),
        "created": record.created,
    }
    if record.expires is not None:
        out["expires"] = record.expires
    return json.dumps(out)


def _decode(raw: bytes | str) -> _Record:
    data = json.loads(raw)
    expires = data.get("expires")
    return _Record(
        data["tenant"],
        bytes.fromhex(data["sha256"]),
        float(data["created"]),
        None if expires is None else float(expires),
    )


def check_tenant(tenant: str) -> str:
    """Check a tenant name: 1 to 64 of letters, digits, '_', '.', '-'."""
    if _TENANT_RE.fullmatch(tenant) is None:
        raise invalid(
            "INVALID_KEY",
            f"tenant {tenant[:64]!r} must be 1 to 64 letters, digits, '_', '.' or '-'",
            "tenant",
        )
    return tenant


def split_key(api_key: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed ``smk_<id>_<secret>``, else None."""
    parts = api_key.split("_", 2)
    if len(parts) != 3 or parts[0] != "smk" or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


class ApiKeys:
    """Create, list, rotate, revoke and verify API keys (verification from memory).

    Used as a plain admin object (CLI, tests) it loads the keys on first use;
    the server calls `start` to keep them fresh (see the module doc).
    """

    def __init__(self, client: Redis | RedisCluster, *, refresh_seconds: float = 1.0) -> None:
        self._redis = client
        self._records: dict[str, _Record] = {}
        # Keys checked against the current records: key -> the record it matched.
        self._accepted: dict[str, _Record] = {}
        self._version: bytes | None = None
        self._loaded = False
        self._misses = MissBudget()
        self._flight = SingleFlight(self._load, "the API keys")
        self._poller = Poller(lambda: self._flight.run(force=True), refresh_seconds, _poll_failed)

    # -- admin -----------------------------------------------------------------

    async def create(self, tenant: str, expires_in: float | None = None) -> str:
        """Create a key for a tenant and return it; it is never shown again.

        ``expires_in`` (seconds) gives it an expiry; None: it works until revoked.
        """
        check_tenant(tenant)
        if expires_in is not None and expires_in <= 0:
            raise ValueError("expires_in must be positive")
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        now = time.time()
        record = _Record(
            tenant, _digest(secret), now, None if expires_in is None else now + expires_in
        )
        await self._redis.hset(KEYS_HASH, key_id, _encode(record))
        await self._bump()
        return f"{_PREFIX}{key_id}_{secret}"

    async def rotate(
        self, key_id: str, grace_seconds: float, *, expires_in: float | None = None
    ) -> str:
        """Issue a new key for the tenant of ``key_id``; the old one expires after the grace.

        The old key keeps working for ``grace_seconds`` (never longer than an
        expiry it already has). Returns the new key, shown only once.

        Raises:
            UnknownKey: ``key_id`` does not exist (or was revoked).
        """
        if grace_seconds < 0:
            raise ValueError("grace_seconds must be 0 or more")
        raw = cast(bytes | None, await self._redis.hget(KEYS_HASH, key_id))
        if raw is None:
            raise UnknownKey(key_id)
        old = _decode(raw)
        now = time.time()
        until = now + grace_seconds
        if old.expires is not None:
            until = min(until, old.expires)
        new_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        new = _Record(
            old.tenant, _digest(secret), now, None if expires_in is None else now + expires_in
        )
        retired = _Record(old.tenant, old.digest, old.created, until)
        done = await self._redis.eval(
            _ROTATE_LUA, 1, KEYS_HASH, key_id, _encode(retired), new_id, _encode(new)
        )
        if not int(cast(int, done)):
            raise UnknownKey(key_id)
        await self._bump()
        return f"{_PREFIX}{new_id}_{secret}"

    async def list(self) -> list[ApiKeyInfo]:
        """Every key's id, tenant, creation time and expiry."""
        raw = cast(dict[bytes, bytes], await self._redis.hgetall(KEYS_HASH))
        infos = []
        for key_id, value in raw.items():
            r = _decode(value)
            infos.append(ApiKeyInfo(key_id.decode(), r.tenant, r.created, r.expires))
        return sorted(infos, key=lambda i: (i.tenant, i.created_at))

    async def revoke(self, key_ids: Sequence[str]) -> int:
        """Revoke keys by id; returns how many existed."""
        if not key_ids:
            return 0
        count = int(await self._redis.hdel(KEYS_HASH, *key_ids))
        await self._bump()
        return count

    async def _bump(self) -> None:
        # After the hash changed: a process that sees the new version reloads a
        # hash that already holds the change.
        await self._redis.incr(KEYS_VERSION)

    # -- refresh ---------------------------------------------------------------

    async def start(self) -> None:
        """Load every key, then poll the version every ``refresh_seconds`` (0: per call)."""
        await self._poller.start()

    async def close(self) -> None:
        """Stop polling."""
        await self._poller.close()
        await self._flight.close()

    async def refresh_if_due(self) -> None:
        """Before a check: reload now if nothing polls (interval 0) or nothing is loaded.

        Raises:
            DomainError: UNAVAILABLE when that reload failed, or another one did
                less than `polling.BACKOFF_SECONDS` ago (no Redis call then).
        """
        if self._poller.interval <= 0 and self._loaded:
            # Read on every call, but like the poller keep the last state when
            # Redis cannot be read: the call itself then fails or succeeds on
            # its own, and works again as soon as Redis answers.
            with contextlib.suppress(DomainError):
                await self._flight.run(fresh=True)
        elif self._poller.interval <= 0 or not self._loaded:
            await self._flight.run(fresh=self._poller.interval <= 0)

    async def refresh_on_miss(self) -> bool:
        """After an unknown key id (maybe a key created since the last poll): reload.

        At most `tokens.MISS_REFRESHES_PER_SECOND` a second, so a flood of
        made-up ids costs no Redis call per attempt. Returns True when the keys
        were read again, False when the budget is spent.

        Raises:
            DomainError: UNAVAILABLE when Redis could not be read (now, or less
                than `polling.BACKOFF_SECONDS` ago): the key may be a new one.
        """
        left = self._flight.backing_off()
        if left is not None:
            await self._flight.run()  # raises at once, without spending the budget
        if not self._misses.take():
            return False
        await self._flight.run(fresh=True)
        return True

    async def refresh(self) -> bool:
        """Reload the keys if their version changed (one GET when it did not); True.

        Raises:
            DomainError: UNAVAILABLE when Redis could not be read.
        """
        await self._flight.run(fresh=True, force=True)
        return True

    async def _load(self) -> None:
        version = cast(
            bytes | None, await retry_stale(self._redis, lambda: self._redis.get(KEYS_VERSION))
        )
        if self._loaded and version == self._version:
            return
        raw = cast(
            dict[bytes, bytes],
            await retry_stale(self._redis, lambda: self._redis.hgetall(KEYS_HASH)),
        )
        records: dict[str, _Record] = {}
        for key_id, value in raw.items():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                records[key_id.decode()] = _decode(value)
        self._records, self._version, self._loaded = records, version, True
        self._accepted = {}

    # -- verify ----------------------------------------------------------------

    def known(self, key_id: str) -> bool:
        """True when a key with this id exists (memory only)."""
        return key_id in self._records

    def check(self, api_key: str) -> str:
        """The tenant of a key, from memory only.

        Raises:
            DomainError: UNAUTHENTICATED: API_KEY_INVALID (malformed, unknown,
                revoked, wrong secret), API_KEY_EXPIRED.
        """
        parts = split_key(api_key)
        if parts is None:
            raise unauthenticated(
                "API_KEY_INVALID", "the API key is malformed; keys look like smk_<id>_<secret>"
            )
        key_id, secret = parts
        record = self._records.get(key_id)
        # A key seen to match this very record needs no hashing again (the
        # cache holds at most one entry per record and is emptied on reload).
        if record is None or self._accepted.get(api_key) is not record:
            # Always compare, also for unknown ids, so timing says nothing.
            matches = hmac.compare_digest(
                _digest(secret), record.digest if record is not None else _NO_DIGEST
            )
            if record is None or not matches:
                raise unauthenticated("API_KEY_INVALID", "the API key is unknown or was revoked")
            self._accepted[api_key] = record
        if record.expires is not None and time.time() >= record.expires:
            raise unauthenticated(
                "API_KEY_EXPIRED",
                "the API key has expired (it was rotated or created with an expiry);"
                " use its replacement or create a new one with `session-memory keys create`",
            )
        return record.tenant

    async def is_valid(self, api_key: str) -> bool:
        """True when the key is known, not revoked and not expired."""
        try:
            await self.tenant_of(api_key)
        except DomainError:
            return False
        return True

    async def tenant_of(self, api_key: str) -> str:
        """The tenant a key belongs to (reloading the keys first when they changed).

        Raises:
            DomainError: UNAUTHENTICATED: API_KEY_INVALID for a malformed,
                unknown or revoked key, API_KEY_EXPIRED for an expired one.
        """
        await self.refresh_if_due()
        return self.check(api_key)


@functools.lru_cache(maxsize=4096)  # one entry per connection: parsed once, not per call
def peer_address(peer: str) -> str:
    """The part of ``context.peer()`` failures are counted by.

    ``ipv4:10.0.0.7:5555`` -> ``10.0.0.7``; for IPv6 the /64 network (one host
    usually owns a whole /64): grpc (1.85) reports ``ipv6:%5B2001:db8::1%5D:5555``
    (the brackets percent-encoded; older versions ``ipv6:[2001:db8::1]:5555``),
    -> ``2001:db8::/64``; an IPv4-mapped IPv6 address as its IPv4 address;
    anything else (a Unix socket, a peer that does not parse) as it is.
    """
    text = urllib.parse.unquote(peer)
    kind, _, rest = text.partition(":")
    if kind == "ipv4":
        host = rest.rpartition(":")[0]
        with contextlib.suppress(ValueError):
            return str(ipaddress.IPv4Address(host))
        return text
    if kind == "ipv6":
        # "[host]:port" (or, without brackets, everything before the port).
        host = rest[1:].partition("]")[0] if rest.startswith("[") else rest.rpartition(":")[0]
        host = host.partition("%")[0]  # a zone id (fe80::1%eth0)
        try:
            address = ipaddress.IPv6Address(host)
        except ValueError:
            return text
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network(f"{address}/64", strict=False))
    return text


@dataclass(slots=True)
class _Window:
    start: float
    failures: int


class FailureThrottle:
    """Failed attempts per subject in fixed windows, in bounded memory.

    A subject with ``limit`` failures in the current window of
    ``window_seconds`` is throttled until the window ends. At most
    ``max_subjects`` are tracked; the one that failed longest ago is forgotten
    first (an attacker with that many addresses can push one out early, which
    gives it back ``limit`` attempts, nothing more). ``limit`` 0 turns it off.
    """

    def __init__(self, limit: int, window_seconds: float, max_subjects: int = 65_536) -> None:
        self.limit = limit
        self.window = window_seconds
        self._max = max_subjects
        self._windows: OrderedDict[str, _Window] = OrderedDict()

    def blocked_for(self, subject: str, now: float) -> float | None:
        """Seconds until ``subject`` may try again, or None when it may now."""
        if self.limit <= 0:
            return None
        w = self._windows.get(subject)
        if w is None or w.failures < self.limit:
            return None
        left = w.start + self.window - now
        return left if left > 0 else None

    def fail(self, subject: str, now: float) -> None:
        """Count one failure of ``subject``."""
        if self.limit <= 0:
            return
        w = self._windows.get(subject)
        if w is None or now - w.start >= self.window:
            w = _Window(now, 0)
            self._windows[subject] = w
            while len(self._windows) > self._max:
                self._windows.popitem(last=False)
        w.failures += 1
        self._windows.move_to_end(subject)


class Authenticator:
    """Turns a call's ``authorization`` metadata into a Principal.

    ``Bearer smk_...`` is an API key (every call of its tenant), ``Bearer smt_...``
    a session token (`tokens.SessionTokens`). Both are checked from memory.

    Failed attempts (a wrong, unknown or revoked key or token) are counted per
    caller address (`peer_address`) and, for keys that exist, per key id. Not
    counted: a missing credential, an expired one (API_KEY_EXPIRED,
    TOKEN_EXPIRED: it was valid, so nobody is guessing, and a browser whose
    token just expired must not lock out its address), refusals while Redis
    cannot be read (UNAVAILABLE), and re-checks of a credential accepted
    before (``count_failures=False``: Watch streams every 10 s).

    An address with ``max_failures_per_peer`` failures in ``window_seconds``
    gets RESOURCE_EXHAUSTED / RATE_LIMITED (limit "auth_failures", with
    RetryInfo) for every call until the window ends, without its key even being
    looked at, so a valid key from that address is refused too (an address that
    guesses keys is not trusted with one; a proxy in front of the server makes
    every caller one address, so raise the limit or turn it off with 0 there).
    A key id with ``max_failures_per_key`` failures gets RATE_LIMITED for wrong
    secrets only: its right secret still works, since key ids are not secret
    and refusing it would let anyone who read an id lock its tenant out, while a
    256-bit secret cannot be guessed anyway. Each throttled address or key id is
    logged once per window.
    """

    def __init__(
        self,
        api_keys: ApiKeys,
        tokens: SessionTokens | None = None,
        *,
        max_failures_per_peer: int = 20,
        max_failures_per_key: int = 10,
        window_seconds: float = 10.0,
    ) -> None:
        self._keys = api_keys
        self._tokens = tokens
        self._peers = FailureThrottle(max_failures_per_peer, window_seconds)
        self._key_ids = FailureThrottle(max_failures_per_key, window_seconds)
        self._throttled = EventCounter(
            log, "authentication failures throttled", interval_seconds=window_seconds
        )

    async def start(self) -> None:
        """Load keys (and token state) and start their background refreshes."""
        await self._keys.start()
        if self._tokens is not None:
            await self._tokens.start()

    async def close(self) -> None:
        """Stop the background refreshes."""
        await self._keys.close()
        if self._tokens is not None:
            await self._tokens.close()

    async def authenticate(
        self, authorization: str | None, peer: str, *, count_failures: bool = True
    ) -> Principal:
        """The caller, or an error.

        ``count_failures=False`` re-checks a credential that was accepted before
        (a long Watch stream, to end it once the key or token stopped working):
        a failure then is no attempt to get in, so it is not counted, and a
        throttled address or key id does not refuse it either.

        Raises:
            DomainError: UNAUTHENTICATED (API_KEY_MISSING, API_KEY_INVALID,
                API_KEY_EXPIRED, TOKEN_INVALID, TOKEN_EXPIRED, TOKEN_REVOKED),
                RESOURCE_EXHAUSTED (RATE_LIMITED) for a throttled address or key
                id, or UNAVAILABLE (BACKEND_UNAVAILABLE) while the keys or the
                token revocations could not be read from Redis.
        """
        now = time.monotonic()
        address = peer_address(peer)
        left = self._peers.blocked_for(address, now) if count_failures else None
        if left is not None:
            self._throttled.count(f"address {address}")
            raise self._rate_limited(self._peers, left, "address", address)
        credential = None
        if authorization is not None:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                credential = value.strip()
        if credential is None:
            raise unauthenticated(
                "API_KEY_MISSING",
                "missing API key: send the metadata 'authorization: Bearer <key>'",
            )
        try:
            if credential.startswith(TOKEN_PREFIX) and self._tokens is not None:
                await self._tokens.refresh_if_due()
                await self._tokens.refresh_on_miss(credential)
                return self._tokens.verify(credential)
            await self._keys.refresh_if_due()
            return await self._api_key(credential, now, count_failures)
        except DomainError as err:
            if (
                count_failures
                and err.code == grpc.StatusCode.UNAUTHENTICATED
                and err.reason not in _NOT_GUESSES
            ):
                self._peers.fail(address, now)
            raise

    async def _api_key(self, credential: str, now: float, count_failures: bool) -> Principal:
        parts = split_key(credential)
        key_id = parts[0] if parts is not None else None
        if key_id is not None and not self._keys.known(key_id):
            await self._keys.refresh_on_miss()  # a key created since the last poll?
        try:
            tenant = self._keys.check(credential)
        except DomainError as err:
            # A wrong secret for a key that exists: someone may be guessing it.
            if (
                count_failures
                and err.reason == "API_KEY_INVALID"
                and key_id is not None
                and self._keys.known(key_id)
            ):
                left = self._key_ids.blocked_for(key_id, now)
                self._key_ids.fail(key_id, now)
                if left is not None:
                    self._throttled.count(f"key {key_id}")
                    raise self._rate_limited(self._key_ids, left, "key", key_id) from None
            raise
        assert key_id is not None  # check() accepted it, so it is well-formed
        return Principal(tenant=tenant, key_id=key_id)

    @staticmethod
    def _rate_limited(
        throttle: FailureThrottle, left: float, scope: str, subject: str
    ) -> DomainError:
        whose = "this address" if scope == "address" else "this API key id"
        err = DomainError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "RATE_LIMITED",
            f"too many failed authentication attempts from {whose} ({throttle.limit} in"
            f" {throttle.window:g} s); calls are refused for {left:.1f} s: check the API key"
            " or session token before retrying",
            metadata=_metadata(throttle, scope),
            retry_after=left,
        )
        err.subject = f"{scope} {subject}"
        return err


def _metadata(throttle: FailureThrottle, scope: str) -> Mapping[str, object]:
    return {
        "limit": "auth_failures",
        "rate": f"{throttle.limit / throttle.window:g}",
        "burst": throttle.limit,
        "window_seconds": f"{throttle.window:g}",
        "scope": scope,
    }
