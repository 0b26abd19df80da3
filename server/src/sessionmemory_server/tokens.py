r"""Session tokens: signed, short-lived grants for one session, checked without Redis.

A tenant's backend calls CreateSessionToken with its API key and hands the token
to a browser, which may then call the granted methods on that one session only
(`access.Principal.check`). The format, version 1::

    smt_<payload>.<signature>          both base64url without padding

    payload   = version (1 byte, = 1)
                permissions (1 byte: bit 1 << TokenPermission, so READ 0x02,
                             WRITE 0x04, FILES 0x08)
                issued at (8 bytes, big-endian, Unix milliseconds)
                ttl (2 bytes, big-endian, seconds, 1 to 3600)
                token id (12 random bytes; as text: 16 base64url characters)
                signing key id (1 byte length + ASCII)
                tenant (1 byte length + UTF-8)
                session id (2 bytes big-endian length + UTF-8)
    signature = HMAC-SHA256(signing key, payload)

The token expires at issued at + ttl. A process verifies it from memory: the
signature with the signing key it names, the expiry with its clock, and the
revocation list it keeps. Signing keys and revocations live in Redis and every
process reloads them when their version counter changes (polled every
``refresh_seconds``; see `SessionTokens`), so a revocation or a new signing key
reaches every process within that interval plus one Redis round trip.

A process reads the revocation log in batches of `LOAD_BATCH` (by sequence
number, so each batch is one bounded command and what it read is kept when a
later one fails), and refuses every token with UNAVAILABLE until it has read the
log up to date once: a process that is behind cannot know which tokens were
revoked. At most `MAX_REVOCATIONS_HELD` revocations exist at once (all tenants
together; the script refuses more), which bounds what each process holds.

Redis keys (one hash tag, so the revocation script touches one cluster slot; no
tenant key can look like them, tenants' keys all start ``sm:{``):

    sm:tokens:{t}:keys              hash: key id -> JSON {secret (hex), created (Unix s)}
    sm:tokens:{t}:keys:version      counter, bumped on every signing-key change
    sm:tokens:{t}:revoked           sorted set: revocation -> when it may be dropped (ms)
    sm:tokens:{t}:revoked:log       sorted set: "<drop ms>\t<revocation>" -> sequence number
    sm:tokens:{t}:revoked:count     hash: tenant -> outstanding revocations
    sm:tokens:{t}:revoked:version   the last sequence number

A revocation is ``t\t<tenant>\t<token id>`` (one token) or
``s\t<tenant>\t<session id>`` (every token of the session issued until then).
Since no token lives longer than `MAX_TTL_SECONDS`, a revocation is dropped that
long after it was made; a session's revocation covers the tokens issued up to
that drop time minus `MAX_TTL_SECONDS`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final, cast

import grpc
from redis.asyncio import Redis, RedisCluster

from . import core
from .access import Permission, Principal
from .errors import DomainError, invalid, store_full, unauthenticated, unavailable
from .logs import EventCounter
from .polling import BACKOFF_SECONDS, Poller, SingleFlight
from .stores.autopipeline import LuaScript
from .stores.redis_store import Status, _script, retry_stale

log = logging.getLogger("sessionmemory_server.tokens")

PREFIX: Final = "smt_"
VERSION: Final = 1
DEFAULT_TTL_SECONDS: Final = 900
MAX_TTL_SECONDS: Final = 3600
TOKEN_ID_BYTES: Final = 12
DEFAULT_MAX_REVOCATIONS: Final = 10_000
# Outstanding revocations of all tenants together: what each process may have
# to hold in memory (some 100 MB at most, with 256-character session ids).
MAX_REVOCATIONS_HELD: Final = 200_000
# Revocation log entries read per command.
LOAD_BATCH: Final = 1000

_TAG: Final = "sm:tokens:{t}:"
SIGNING_KEYS: Final = _TAG + "keys"
SIGNING_KEYS_VERSION: Final = _TAG + "keys:version"
REVOKED: Final = _TAG + "revoked"
REVOKED_LOG: Final = _TAG + "revoked:log"
REVOKED_COUNT: Final = _TAG + "revoked:count"
REVOKED_VERSION: Final = _TAG + "revoked:version"

_FIXED: Final = struct.Struct(f">BBQH{TOKEN_ID_BYTES}s")
_LEN1: Final = struct.Struct(">B")
_LEN2: Final = struct.Struct(">H")
_TOKEN_ID_CHARS: Final = len(base64.urlsafe_b64encode(b"\0" * TOKEN_ID_BYTES).rstrip(b"="))
_MAX_TTL_MS: Final = MAX_TTL_SECONDS * 1000
# Replies of token_revoke.lua when the tenant, or all tenants together, have
# their cap of revocations.
_REVOCATIONS_FULL: Final = 100
_REVOCATIONS_FULL_TOTAL: Final = 101
_PRUNE_EVERY_SECONDS: Final = 30.0
# A credential this process does not know yet (an API key created, or a token
# signed with a key added, since the last poll) triggers a reload: at most this
# many a second per process and kind, however many attempts arrive.
MISS_REFRESHES_PER_SECOND: Final = 10.0

_poll_failed = EventCounter(log, "token state refresh failed", interval_seconds=60.0)
# Reasons: new revocations refused; or (Redis holds more than the cap, which
# the script prevents: a lowered cap) session tokens refused until enough expire.
_too_many = EventCounter(
    log, "session-token revocations of all tenants at their maximum", interval_seconds=60.0
)


class MissBudget:
    """A token bucket of reloads caused by unknown credentials (burst = rate = ``per_second``).

    A flood of made-up keys costs at most ``per_second`` Redis reads a second,
    while a key created a moment ago still works on its first call.
    """

    def __init__(self, per_second: float = MISS_REFRESHES_PER_SECOND) -> None:
        self._rate = per_second
        self._tokens = per_second
        self._at = time.monotonic()

    def take(self) -> bool:
        """True (and one reload spent) when a reload may run now."""
        now = time.monotonic()
        self._tokens = min(self._rate, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token as CreateSessionToken returns it."""

    token: str
    token_id: str
    expires_ms: int


@dataclass(frozen=True, slots=True)
class Claims:
    """What a token says (its payload), once its signature verified."""

    kid: str
    tenant: str
    session: str
    permissions: frozenset[Permission]
    issued_ms: int
    ttl_seconds: int
    token_id: str

    @property
    def expires_ms(self) -> int:
        """When the token stops working (Unix milliseconds)."""
        return self.issued_ms + self.ttl_seconds * 1000


@dataclass(frozen=True, slots=True)
class SigningKeyInfo:
    """A signing key as ``tokens keys`` lists it (never its secret)."""

    kid: str
    created_at: float
    current: bool


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    """Decode canonical unpadded base64url; ValueError for anything else.

    Canonical only: a second spelling of the same bytes (other unused trailing
    bits) would let a changed token verify.
    """
    raw = text.encode("ascii")
    data = base64.b64decode(raw + b"=" * (-len(raw) % 4), altchars=b"-_", validate=True)
    if _b64(data) != text:
        raise ValueError("not canonical base64url")
    return data


def _invalid_token(detail: str) -> DomainError:
    return unauthenticated(
        "TOKEN_INVALID", f"the session token is not valid ({detail}); ask for a new one"
    )


def encode(claims: Claims, secret: bytes) -> str:
    """Sign ``claims`` with ``secret`` into a token string (the format is in the module doc)."""
    bits = 0
    for p in claims.permissions:
        bits |= 1 << int(p)
    kid, tenant, session = (s.encode() for s in (claims.kid, claims.tenant, claims.session))
    payload = b"".join(
        (
            _FIXED.pack(
                VERSION, bits, claims.issued_ms, claims.ttl_seconds, _unb64(claims.token_id)
            ),
            _LEN1.pack(len(kid)),
            kid,
            _LEN1.pack(len(tenant)),
            tenant,
            _LEN2.pack(len(session)),
            session,
        )
    )
    signature = hmac.new(secret, payload, hashlib.sha256).digest()
    return f"{PREFIX}{_b64(payload)}.{_b64(signature)}"


def kid_of(token: str) -> str | None:
    """The signing key id a token names, or None if it is not readable that far."""
    if not token.startswith(PREFIX):
        return None
    body = token[len(PREFIX) :].partition(".")[0]
    try:
        payload = _unb64(body)
    except (ValueError, binascii.Error):
        return None
    if len(payload) <= _FIXED.size:
        return None
    n = payload[_FIXED.size]
    return payload[_FIXED.size + 1 : _FIXED.size + 1 + n].decode("ascii", "replace")


def decode(token: str, keys: Mapping[str, bytes]) -> Claims:
    """Check a token's signature and read its claims (not its expiry or revocation).

    Raises:
        DomainError: UNAUTHENTICATED (TOKEN_INVALID) for a malformed token, a
            signature that does not verify, or a signing key not in ``keys``.
    """
    if not token.startswith(PREFIX) or token.count(".") != 1:
        raise _invalid_token("it does not look like smt_<payload>.<signature>")
    body, _, sig_text = token[len(PREFIX) :].partition(".")
    try:
        payload, signature = _unb64(body), _unb64(sig_text)
    except (ValueError, binascii.Error):
        raise _invalid_token("it is not base64url") from None
    if len(payload) < _FIXED.size + 4 or payload[0] != VERSION:
        raise _invalid_token("unknown format version")
    at = _FIXED.size
    kid_len = payload[at]
    kid = payload[at + 1 : at + 1 + kid_len].decode("ascii", "replace")
    secret = keys.get(kid)
    # Compare anyway for an unknown key id, so timing tells nothing.
    expected = hmac.new(secret or b"\0" * 32, payload, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature) or secret is None:
        raise _invalid_token("its signature does not verify")
    try:
        return _claims(payload, kid)
    except (ValueError, struct.error, UnicodeDecodeError):
        # Signed by us but unreadable: a server bug or a newer server's format.
        raise _invalid_token("its payload is unreadable") from None


def _claims(payload: bytes, kid: str) -> Claims:
    _, bits, issued_ms, ttl, token_id = _FIXED.unpack_from(payload)
    at = _FIXED.size + 1 + payload[_FIXED.size]  # past the key id

    def field(size: struct.Struct) -> str:
        nonlocal at
        (n,) = size.unpack_from(payload, at)
        start, at = at + size.size, at + size.size + n
        if at > len(payload):
            raise ValueError("a field runs past the end")
        return payload[start:at].decode()

    tenant, session = field(_LEN1), field(_LEN2)
    if at != len(payload):
        raise ValueError("trailing bytes")
    permissions = frozenset(p for p in Permission if bits & (1 << int(p)))
    if not permissions or sum(1 << int(p) for p in permissions) != bits:
        raise ValueError("unknown permission bits")
    return Claims(kid, tenant, session, permissions, issued_ms, ttl, _b64(token_id))


class SessionTokens:
    """Issue, verify and revoke session tokens.

    Verification (`verify`) reads only memory. `start` loads the signing keys
    and revocations and polls their version counters every ``refresh_seconds``
    (with 0, `refresh_if_due` reads them on every call instead: tests). A new
    signing key (``session-memory tokens rotate-key``) or a revocation therefore
    reaches every process within ``refresh_seconds`` plus one Redis round trip;
    the process that revoked knows at once. Until the revocation log was read up
    to date once (or while Redis holds more than ``max_held`` revocations) every
    token is refused with UNAVAILABLE; once it was, a failing poll keeps the
    state last read.

    ``max_revocations`` caps a tenant's outstanding revocations, ``max_held``
    (default `MAX_REVOCATIONS_HELD`) those of all tenants together.
    """

    def __init__(
        self,
        client: Redis | RedisCluster,
        *,
        refresh_seconds: float = 1.0,
        max_revocations: int = DEFAULT_MAX_REVOCATIONS,
        max_held: int | None = None,
    ) -> None:
        self._redis = client
        self._max_revocations = max_revocations
        self._max_held = MAX_REVOCATIONS_HELD if max_held is None else max_held
        self._revoke = LuaScript(
            client,
            f"local REVOCATIONS_FULL = {_REVOCATIONS_FULL}\n"
            f"local REVOCATIONS_FULL_TOTAL = {_REVOCATIONS_FULL_TOTAL}\n" + _script("token_revoke"),
        )
        self._ensure = LuaScript(
            client, (resources.files(__package__) / "stores" / "token_key.lua").read_text()
        )
        self._keys: dict[str, bytes] = {}
        self._created: dict[str, float] = {}
        self._current: str | None = None
        self._keys_version: bytes | None = None
        self._keys_loaded = False
        self._seq = 0  # the revocation log is read up to this sequence number
        self._synced = False  # it was read up to date at least once
        self._overfull = False  # the last read stopped at max_held
        self._tokens_revoked: dict[tuple[str, str], int] = {}  # -> drop at (ms)
        self._sessions_revoked: dict[tuple[str, str], int] = {}  # -> issued before (ms)
        self._next_prune = 0.0
        self._misses = MissBudget()
        self._flight = SingleFlight(self._load, "the session-token signing keys and revocations")
        self._poller = Poller(lambda: self._flight.run(force=True), refresh_seconds, _poll_failed)

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Load the signing keys and revocations, then keep polling them."""
        await self._poller.start()

    async def close(self) -> None:
        """Stop polling."""
        await self._poller.close()
        await self._flight.close()

    @property
    def ready(self) -> bool:
        """True once tokens can be verified: signing keys and every revocation read."""
        return self._keys_loaded and self._synced and not self._overfull

    async def refresh_if_due(self) -> None:
        """Before a verification: reload now if nothing polls (interval 0) or not `ready`.

        Concurrent callers share one reload (`polling.SingleFlight`).

        Raises:
            DomainError: UNAVAILABLE when the reload failed, or one did less
                than `polling.BACKOFF_SECONDS` ago (then without a Redis call).
        """
        if self._poller.interval <= 0 and self.ready:
            # Read on every call, but like the poller keep the last state when
            # Redis cannot be read: the call itself then fails or succeeds on
            # its own, and works again as soon as Redis answers.
            with contextlib.suppress(DomainError):
                await self._flight.run(fresh=True)
        elif self._poller.interval <= 0 or not self.ready:
            await self._flight.run(fresh=self._poller.interval <= 0)

    async def refresh_on_miss(self, token: str) -> None:
        """Before verifying: reload if the token names a signing key not known here.

        At most `MISS_REFRESHES_PER_SECOND` a second, shared with concurrent
        callers.

        Raises:
            DomainError: UNAVAILABLE when Redis could not be read (now, or less
                than `polling.BACKOFF_SECONDS` ago): the key may be a new one.
        """
        kid = kid_of(token)
        if kid is None or kid in self._keys:
            return
        if self._flight.backing_off() is not None:
            await self._flight.run()  # raises at once, without spending the budget
        if not self._misses.take():
            return
        await self._flight.run(fresh=True)

    async def refresh(self) -> None:
        """Reload what changed: signing keys, new revocations (one MGET when nothing did).

        Raises:
            DomainError: UNAVAILABLE when Redis could not be read.
        """
        await self._flight.run(fresh=True, force=True)

    async def _load(self) -> None:
        versions = cast(
            list[bytes | None],
            await retry_stale(
                self._redis, lambda: self._redis.mget(SIGNING_KEYS_VERSION, REVOKED_VERSION)
            ),
        )
        keys_version, revoked_version = versions
        if keys_version != self._keys_version or not self._keys_loaded:
            raw = cast(
                dict[bytes, bytes],
                await retry_stale(self._redis, lambda: self._redis.hgetall(SIGNING_KEYS)),
            )
            self._set_keys(raw)
            self._keys_version = keys_version
            self._keys_loaded = True
        seq = int(revoked_version or 0)
        if seq < self._seq:  # the counter was reset (Redis emptied): start over
            self._seq = 0
            self._tokens_revoked.clear()
            self._sessions_revoked.clear()
        self._prune()
        if seq > self._seq or self._overfull:
            await self._load_revocations(seq)
        self._synced = True

    def _set_keys(self, raw: Mapping[bytes, bytes]) -> None:
        keys: dict[str, bytes] = {}
        created: dict[str, float] = {}
        for kid, value in raw.items():
            record = json.loads(value)
            keys[kid.decode()] = bytes.fromhex(record["secret"])
            created[kid.decode()] = float(record["created"])
        self._keys, self._created = keys, created
        self._current = max(created, key=lambda k: (created[k], k)) if created else None

    async def _load_revocations(self, seq: int) -> None:
        """Read the log from `_seq` up to at least ``seq``, `LOAD_BATCH` entries a command.

        Each batch advances `_seq`, so a read that fails halfway keeps what it
        read and the next one goes on from there.

        Raises:
            DomainError: UNAVAILABLE when the revocations outgrow ``max_held``.
        """
        self._overfull = False
        while True:
            rows = await self._read_log(self._seq)
            now_ms = int(time.time() * 1000)
            for entry, score in rows:
                drop_text, _, member = entry.decode().partition("\t")
                drop_ms = int(drop_text)
                if drop_ms > now_ms:  # else it is over: nothing to hold
                    if self._held() >= self._max_held and not self._holds(member):
                        self._prune(force=True)
                        if self._held() >= self._max_held:
                            self._overfull = True
                            _too_many.count(
                                f"Redis holds more than {self._max_held}: session tokens refused"
                            )
                            raise unavailable(
                                "this server holds its maximum of session-token revocations,"
                                " so it cannot check session tokens; retry later or use the"
                                " API key",
                                retry_after=BACKOFF_SECONDS,
                            )
                    self._remember(member, drop_ms)
                self._seq = int(score)
            if len(rows) < LOAD_BATCH or self._seq >= seq:
                break
        # Sequence numbers of revocations dropped since are missing from the log.
        self._seq = max(self._seq, seq)

    async def _read_log(self, after: int) -> list[tuple[bytes, float]]:
        """The next `LOAD_BATCH` log entries after sequence number ``after``."""
        return cast(
            list[tuple[bytes, float]],
            await retry_stale(
                self._redis,
                lambda: self._redis.zrangebyscore(
                    REVOKED_LOG, f"({after}", "+inf", start=0, num=LOAD_BATCH, withscores=True
                ),
            ),
        )

    def _held(self) -> int:
        return len(self._tokens_revoked) + len(self._sessions_revoked)

    def _holds(self, member: str) -> bool:
        kind, tenant, name = member.split("\t", 2)
        revoked = self._tokens_revoked if kind == "t" else self._sessions_revoked
        return (tenant, name) in revoked

    def _remember(self, member: str, drop_ms: int) -> None:
        kind, tenant, name = member.split("\t", 2)
        if kind == "t":
            self._tokens_revoked[(tenant, name)] = drop_ms
        else:
            before = drop_ms - _MAX_TTL_MS
            key = (tenant, name)
            self._sessions_revoked[key] = max(before, self._sessions_revoked.get(key, before))

    def _prune(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if now < self._next_prune and not force:
            return
        self._next_prune = now + _PRUNE_EVERY_SECONDS
        now_ms = int(time.time() * 1000)
        for key in [k for k, drop in self._tokens_revoked.items() if drop <= now_ms]:
            del self._tokens_revoked[key]
        for key in [k for k, b in self._sessions_revoked.items() if b + _MAX_TTL_MS <= now_ms]:
            del self._sessions_revoked[key]

    # -- issue and verify ------------------------------------------------------

    async def create(
        self, tenant: str, session_id: str, permissions: Sequence[Permission], ttl: int | None
    ) -> IssuedToken:
        """Issue a token for one session of ``tenant``.

        Raises:
            DomainError: INVALID_ARGUMENT: INVALID_SESSION_ID, INVALID_TOKEN_REQUEST
                (no permission or a repeated one), TTL_OUT_OF_RANGE (ttl not 1 to 3600).
        """
        core.session_id(session_id)
        if not permissions:
            raise invalid(
                "INVALID_TOKEN_REQUEST",
                "permissions is empty; grant at least one of READ, WRITE, FILES",
                "permissions",
            )
        if len(set(permissions)) != len(permissions):
            raise invalid(
                "INVALID_TOKEN_REQUEST",
                "permissions names a permission more than once; list each once",
                "permissions",
            )
        ttl_seconds = DEFAULT_TTL_SECONDS if ttl is None else ttl
        if not 1 <= ttl_seconds <= MAX_TTL_SECONDS:
            raise invalid(
                "TTL_OUT_OF_RANGE",
                f"ttl_seconds is {ttl_seconds}; a session token lives 1 to {MAX_TTL_SECONDS}"
                " seconds",
                "ttl_seconds",
                limit=MAX_TTL_SECONDS,
                actual=ttl_seconds,
            )
        kid = await self._signing_key()
        claims = Claims(
            kid=kid,
            tenant=tenant,
            session=session_id,
            permissions=frozenset(permissions),
            issued_ms=int(time.time() * 1000),
            ttl_seconds=ttl_seconds,
            token_id=_b64(secrets.token_bytes(TOKEN_ID_BYTES)),
        )
        return IssuedToken(encode(claims, self._keys[kid]), claims.token_id, claims.expires_ms)

    async def _signing_key(self) -> str:
        await self.refresh_if_due()
        if self._current is None:
            await self.refresh()
        if self._current is None:
            kid = secrets.token_hex(4)
            record = json.dumps({"secret": secrets.token_hex(32), "created": time.time()})
            await self._ensure(keys=[SIGNING_KEYS, SIGNING_KEYS_VERSION], args=[kid, record])
            await self.refresh()
        if self._current is None:
            raise DomainError(
                grpc.StatusCode.UNAVAILABLE,
                "BACKEND_UNAVAILABLE",
                "no session-token signing key could be created; retry shortly",
                retry_after=1.0,
            )
        return self._current

    def verify(self, token: str) -> Principal:
        """The caller a token names, from memory only.

        Raises:
            DomainError: UNAUTHENTICATED: TOKEN_INVALID (malformed, tampered with,
                or signed with a retired key), TOKEN_EXPIRED, TOKEN_REVOKED;
                UNAVAILABLE (BACKEND_UNAVAILABLE) until this process is `ready`.
        """
        if not self.ready:
            raise unavailable(
                "session tokens cannot be checked yet: this server has not read the"
                " token revocations from Redis; retry in a moment",
                retry_after=BACKOFF_SECONDS,
            )
        claims = decode(token, self._keys)
        now_ms = int(time.time() * 1000)
        if now_ms >= claims.expires_ms:
            raise unauthenticated(
                "TOKEN_EXPIRED",
                "the session token has expired; ask the backend that issued it for a new one",
            )
        if (claims.tenant, claims.token_id) in self._tokens_revoked:
            raise unauthenticated("TOKEN_REVOKED", "the session token was revoked")
        before = self._sessions_revoked.get((claims.tenant, claims.session))
        if before is not None and claims.issued_ms <= before:
            raise unauthenticated(
                "TOKEN_REVOKED", "the session token was revoked (with its session's tokens)"
            )
        return Principal(
            tenant=claims.tenant,
            key_id=claims.token_id,
            session=claims.session,
            permissions=claims.permissions,
            token_id=claims.token_id,
        )

    # -- revoke ----------------------------------------------------------------

    async def revoke_token(self, tenant: str, token_id: str) -> None:
        """Revoke one token of ``tenant`` by its id.

        Raises:
            DomainError: INVALID_TOKEN_REQUEST for a token id CreateSessionToken
                cannot have returned; QUOTA_EXCEEDED (quota "revocations") when the
                tenant has its maximum of outstanding revocations.
        """
        try:
            ok = len(token_id) == _TOKEN_ID_CHARS and len(_unb64(token_id)) == TOKEN_ID_BYTES
        except (ValueError, binascii.Error):
            ok = False
        if not ok:
            raise invalid(
                "INVALID_TOKEN_REQUEST",
                f"token_id {token_id[:32]!r} is not a token id; use the token_id that"
                " CreateSessionToken returned",
                "token_id",
            )
        now_ms = int(time.time() * 1000)
        await self._record(tenant, f"t\t{tenant}\t{token_id}", now_ms + _MAX_TTL_MS, now_ms)

    async def revoke_session(self, tenant: str, session_id: str) -> None:
        """Revoke every token of one session of ``tenant`` issued until now.

        Tokens issued afterwards work. Raises as `revoke_token` does (and
        INVALID_SESSION_ID).
        """
        core.session_id(session_id)
        now_ms = int(time.time() * 1000)
        await self._record(tenant, f"s\t{tenant}\t{session_id}", now_ms + _MAX_TTL_MS, now_ms)

    async def _record(self, tenant: str, member: str, drop_ms: int, now_ms: int) -> None:
        keys = [REVOKED, REVOKED_LOG, REVOKED_COUNT, REVOKED_VERSION]
        args: list[Any] = [member, tenant, now_ms, drop_ms, self._max_revocations, self._max_held]
        reply = cast(list[int], await self._revoke(keys=keys, args=args))
        status = int(reply[0])
        if status == Status.STORE_FULL:
            raise store_full()
        if status == _REVOCATIONS_FULL_TOTAL:
            _too_many.count(f"{self._max_held} held: new revocations refused")
            raise DomainError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "QUOTA_EXCEEDED",
                f"this service holds {int(reply[1])} outstanding token revocations of all"
                f" tenants, its maximum; revocations are dropped {MAX_TTL_SECONDS} s after they"
                " were made: revoke a whole session instead of its tokens one by one, or retry"
                " later",
                metadata={
                    "quota": "revocations",
                    "limit": self._max_held,
                    "actual": int(reply[1]),
                },
            )
        if status == _REVOCATIONS_FULL:
            raise DomainError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "QUOTA_EXCEEDED",
                f"the tenant has {int(reply[1])} outstanding token revocations, the maximum;"
                f" revocations are dropped {MAX_TTL_SECONDS} s after they were made, or revoke"
                " a whole session instead of its tokens one by one",
                metadata={
                    "quota": "revocations",
                    "limit": self._max_revocations,
                    "actual": int(reply[1]),
                },
            )
        # This process knows at once; the others at their next poll.
        self._remember(member, drop_ms)

    # -- signing keys (the CLI) ------------------------------------------------

    async def signing_keys(self) -> list[SigningKeyInfo]:
        """The signing keys, oldest first; the newest signs new tokens."""
        await self.refresh()
        return sorted(
            (SigningKeyInfo(k, c, k == self._current) for k, c in self._created.items()),
            key=lambda i: (i.created_at, i.kid),
        )

    async def rotate_key(self) -> str:
        """Add a new signing key; it signs new tokens, the old ones keep verifying."""
        await self.refresh()
        kid = secrets.token_hex(4)
        created = max([time.time(), *(c + 0.001 for c in self._created.values())])
        record = json.dumps({"secret": secrets.token_hex(32), "created": created})
        await self._redis.hset(SIGNING_KEYS, kid, record)
        await self._redis.incr(SIGNING_KEYS_VERSION)
        return kid

    async def retire_key(self, kid: str) -> bool:
        """Delete a signing key: tokens it signed stop verifying. False when unknown."""
        removed = int(await self._redis.hdel(SIGNING_KEYS, kid))
        if removed:
            await self._redis.incr(SIGNING_KEYS_VERSION)
        return removed > 0
