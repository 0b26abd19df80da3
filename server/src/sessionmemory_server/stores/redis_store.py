r"""The Redis store: key layout, Lua scripts and record decoding.

Layout, for tenant T and session S (S escaped so '}' cannot end the hash tag):

    sm:{T|S}:v:<key>    one record per value (see prelude.lua), PXAT its expiry
    sm:{T|S}:i          sorted set: key name -> expiry ms (List, Clear, key count)
    sm:{T|S}:n          version counter of the session
    sm:{T|S}:r:<id>     request-id record of an Increment or an upload: the call's
                        fingerprint and first result (see prelude.lua)
    sm:{T|S}:s          the schema the session is bound to (its name)
    sm:{T|S}:w          change log (a stream: the last changes, id = revision), kept
                        a minute after the last change, a day while the session is
                        watched; also the Pub/Sub channel changes are published on
    sm:{T|S}:wm         "watched": set by every Watch start, catch-up and idle
                        recheck of a session that exists, for a day but never
                        past its version counter's expiry
    sm:{T}:x:<name>     a tenant's schema: hash v (version), t (updated ms), j (JSON)
    sm:{T}:xi           the tenant's schema names (sorted set)
    sm:{T}:xn           the tenant's schema version counter
    sm:{T}:ss           the tenant's live sessions (quota): session -> registered
                        until (ms); see quotas.py
    sm:{T}:up           the tenant's uploads in progress (quota): upload -> lease end
    sm:{T}:kb           the tenant's stored-bytes ledger (quota): a value's member
                        (16 characters, see quotas._member) -> "<bytes> <revision>
                        <expiry revision>"
    sm:{T}:ke           the ledger's expiries: member -> expires ms
    sm:{T}:kt           the ledger's total: the tenant's stored bytes
    sm:gc:<bucket>      blob collection set (one key per bucket):
                        "<object>\t<value key>" -> when to check it (see collector.py)

Every key of a session shares the hash tag ``{T|S}``, so they sit in one Redis
Cluster slot and every script stays single-slot (a tenant's schemas share
``{T}``). Reads are one plain GET/MGET; writes are one EVALSHA of a script
loaded once. Scripts that add data refuse to run over Redis' ``maxmemory``
(STORE_FULL) before they change anything; Delete, Clear and Touch add nothing
and keep working, so space can be freed. Because each value is its own key with
its own expiry and the index lists them, the "whole session as one JSON
document" view is one script that reads the index and the records. Every write
appends its changes to the session's change log and publishes them (Watch).
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Sequence
from importlib import resources
from typing import Any, Final, TypeVar, cast

import redis.exceptions
from redis.asyncio import Redis, RedisCluster

from ..core import KIND_BY_TAG, LIMITS, Kind, RequestId
from ..values import (
    Change,
    Cleared,
    Committed,
    Erase,
    Guard,
    Incremented,
    Record,
    RecordInfo,
    SchemaRecord,
    Snapshot,
    Touched,
    Write,
    Written,
)
from .autopipeline import LuaScript

_ESCAPES: Final = str.maketrans({"%": "%25", "}": "%7D"})
T = TypeVar("T")


class Status(enum.IntEnum):
    """The first element of a script's reply; the scripts know the same names."""

    OK = 0
    PRECONDITION_FAILED = 1
    SESSION_FULL = 2
    NOT_A_NUMBER = 3
    OUT_OF_RANGE = 4
    TOO_PRECISE = 5
    TTL_NOT_ALLOWED = 6
    STORE_FULL = 7
    REQUEST_ID_REUSED = 8
    REPLAYED = 9
    SCHEMA_BOUND = 10
    REVISION_MISMATCH = 11
    SESSION_NOT_FOUND = 12
    TOO_MANY_SCHEMAS = 13
    QUOTA_EXCEEDED = 14


# How long a session's change log is kept after its last change: while it is
# watched (a Watch started within this time), and otherwise.
LOG_KEEP_WATCHED_MS: Final = 86_400_000
LOG_KEEP_MS: Final = 60_000
# How long a schema binding or a version counter without a value to follow lives.
_LONE_KEY_MS: Final = LIMITS.max_json_ttl_seconds * 1000
# Every script starts with these named constants (one home: here and core.LIMITS).
_CONSTANTS_LUA: Final = (
    f"local {', '.join(s.name for s in Status)} = {', '.join(str(s.value) for s in Status)}\n"
    f"local LOG_KEEP_WATCHED_MS, LOG_KEEP_MS = {LOG_KEEP_WATCHED_MS}, {LOG_KEEP_MS}\n"
    f"local MAX_KEYS, LOG_LENGTH, LONE_KEY_MS = {LIMITS.max_keys_per_session},"
    f" {LIMITS.watch_log_changes}, {_LONE_KEY_MS}\n"
    f"local NUMBER_BOUND, NUMBER_FORMAT = {LIMITS.number_abs_bound!r},"
    f" '%.{LIMITS.max_number_digits}g'\n"
)


def _script(name: str) -> str:
    pkg = resources.files(__package__)
    return (
        _CONSTANTS_LUA
        + (pkg / "prelude.lua").read_text()
        + "\n"
        + (pkg / f"{name}.lua").read_text()
    )


async def retry_stale(client: Redis | RedisCluster, call: Callable[[], Awaitable[T]]) -> T:
    """Run a command that may run twice, once more if its connection broke.

    The pool replaces connections Redis closed before handing them out (see
    app.redis_client); this covers the rest, a connection that breaks under the
    command (Redis restarted between the pool's check and the reply). Only
    commands whose second run cannot change what the caller sees come here:
    reads, Touch and calls with a request id (a second run replays the first).
    Writes without one never do: their first run may have happened, and a second
    could report a refusal for a write that was made, or lose what it released.
    The idle connections are dropped first, so the second try gets a new one.
    """
    try:
        return await call()
    except _NOT_STALE:
        raise
    except redis.exceptions.ConnectionError:
        if isinstance(client, Redis):
            await client.connection_pool.disconnect(inuse_connections=False)
        return await call()


# Connection errors that a new connection does not cure: retrying would only
# double the load (the pool's own cap, a Redis still loading its data).
_NOT_STALE: Final = (redis.exceptions.MaxConnectionsError, redis.exceptions.BusyLoadingError)


class PreconditionFailed(Exception):
    """A write's `if_version` did not match (index into the batch, current version)."""

    def __init__(self, index: int, current_version: int) -> None:
        super().__init__(index, current_version)
        self.index = index
        self.current_version = current_version


class SessionFull(Exception):
    """The write would give the session more keys than allowed."""


class StoreFull(Exception):
    """Redis is over its maxmemory: the write was refused before changing anything."""


class RequestIdReused(Exception):
    """The request id was already used in the session for another call."""


class SchemaBound(Exception):
    """The session's schema binding is not the one the caller validated against."""

    def __init__(self, binding: str) -> None:
        super().__init__(binding)
        self.binding = binding


class RevisionMismatch(Exception):
    """The session's revision is not the one the write was conditioned on."""

    def __init__(self, revision: int) -> None:
        super().__init__(revision)
        self.revision = revision


class TooLarge(Exception):
    """A read would return more than the bytes allowed (``size`` is what it would be)."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


class SessionNotFound(Exception):
    """The write required a live session and there is none."""


class TooManySchemas(Exception):
    """The tenant already has the maximum number of schemas."""


class QuotaExceeded(Exception):
    """A tenant quota is reached (``actual``: the usage counted before the call)."""

    def __init__(self, actual: int) -> None:
        super().__init__(actual)
        self.actual = actual


# One quota bookkeeping operation of quota_flush.lua: op, member, and three numbers.
QuotaOp = tuple[str, str, int, int, int]


class Replayed(Exception):
    """The request id was already used for this very call: its first result."""

    def __init__(self, record: Record) -> None:
        super().__init__(record)
        self.record = record


class NotANumber(Exception):
    """Increment found a value of another kind."""

    def __init__(self, kind: Kind) -> None:
        super().__init__(kind)
        self.kind = kind


class IncrementOutOfLimits(Exception):
    """The Increment result is out of range (``too_precise`` False) or too precise."""

    def __init__(self, result: str, *, too_precise: bool) -> None:
        super().__init__(result)
        self.result = result
        self.too_precise = too_precise


class TtlNotAllowed(Exception):
    """Touch hit a key whose kind does not allow the TTL (index into the batch)."""

    def __init__(self, index: int, kind: Kind) -> None:
        super().__init__(index, kind)
        self.index = index
        self.kind = kind


def _refused(status: int, out: list[Any]) -> Exception | None:
    """The exception of a status every writing script may return, else None."""
    if status == Status.SCHEMA_BOUND:
        return SchemaBound(out[1].decode())
    if status == Status.REVISION_MISMATCH:
        return RevisionMismatch(int(out[1]))
    if status == Status.SESSION_NOT_FOUND:
        return SessionNotFound()
    if status == Status.SESSION_FULL:
        return SessionFull()
    if status == Status.STORE_FULL:
        return StoreFull()
    if status == Status.REQUEST_ID_REUSED:
        return RequestIdReused()
    return None


def _decode(key: str, raw: bytes) -> Record:
    head, expires, payload = raw.split(b":", 2)
    return Record(
        key=key,
        kind=KIND_BY_TAG[chr(head[0])],
        version=int(head[1:]),
        expires_ms=int(expires),
        payload=payload.decode("utf-8"),
    )


NO_GUARD: Final = Guard()


def _revision(guard: Guard) -> str:
    return "" if guard.if_revision is None else str(guard.if_revision)


def _guard(guard: Guard) -> str:
    """A write's guard as write.lua reads it ("" = the session must be unbound)."""
    if guard == NO_GUARD:
        return ""
    must = "1" if guard.must_exist else ""
    return f"{guard.binding}\n{_revision(guard)}\n{must}\n{guard.bind}"


_OPERATIONS: Final = {"s": "set", "d": "delete", "b": "begin"}


def decode_change(line: str) -> Change:
    """Decode one change-log line (see log_change in prelude.lua).

    Operation "begin" marks where the session's version counter started.
    """
    rev, op, kind, ver, exp, key = line.split(" ", 5)
    return Change(
        key=key,
        operation=_OPERATIONS[op],
        kind=KIND_BY_TAG.get(kind),
        version=int(ver),
        revision=int(rev),
        expires_ms=int(exp),
    )


class RedisStore:
    """Session values in Redis (standalone or Cluster)."""

    def __init__(self, client: Redis | RedisCluster, *, bucket: str = "") -> None:
        self._redis = client
        # One collection set per bucket: servers that share Redis but not a bucket
        # must never collect each other's objects.
        self._gc_key = f"sm:gc:{bucket}"
        self._write = LuaScript(client, _script("write"))
        self._incr = LuaScript(client, _script("incr"))
        self._touch = LuaScript(client, _script("touch"))
        self._request = LuaScript(client, _script("request"))
        self._doc = LuaScript(client, _script("doc"))
        self._changes = LuaScript(client, _script("changes"))
        self._schema_put = LuaScript(client, _script("schema_put"))
        self._schema_list = LuaScript(client, _script("schema_list"))
        self._list = LuaScript(client, _script("list"))
        self._clear = LuaScript(client, _script("clear"))
        self._gc_claim = LuaScript(client, _script("gc_claim"))
        self._quota_session = LuaScript(client, _script("quota_session"))
        self._quota_upload = LuaScript(client, _script("quota_upload"))
        self._quota_flush = LuaScript(client, _script("quota_flush"))

    @staticmethod
    def prefix(tenant: str, session: str) -> str:
        """The key prefix (with hash tag) of one tenant's session."""
        return f"sm:{{{tenant}|{session.translate(_ESCAPES)}}}:"

    async def get(self, tenant: str, session: str, key: str) -> Record | None:
        """Read one value; None when missing or expired."""
        name = self.prefix(tenant, session) + "v:" + key
        raw = cast(bytes | None, await retry_stale(self._redis, lambda: self._redis.get(name)))
        return None if raw is None else _decode(key, raw)

    async def get_many(self, tenant: str, session: str, keys: Sequence[str]) -> list[Record]:
        """Read several values in one MGET; only the ones that exist, in order."""
        p = self.prefix(tenant, session) + "v:"
        names = [p + k for k in keys]
        raws = cast(
            list[bytes | None], await retry_stale(self._redis, lambda: self._redis.mget(names))
        )
        return [_decode(k, raw) for k, raw in zip(keys, raws, strict=True) if raw is not None]

    @classmethod
    def value_key(cls, tenant: str, session: str, key: str) -> str:
        """The Redis key of one value."""
        return cls.prefix(tenant, session) + "v:" + key

    async def write(
        self,
        tenant: str,
        session: str,
        entries: Sequence[Write | Erase],
        request: RequestId | None = None,
        guard: Guard = NO_GUARD,
    ) -> Committed:
        r"""Write and delete values all or nothing, checking every condition first.

        With ``request``, the first entry's record is remembered under the request
        id. Every change is appended to the session's change log and published.

        Raises:
            PreconditionFailed: an ``if_version`` did not match; nothing written.
            SessionFull: the session would exceed its key limit; nothing written.
            StoreFull: Redis is over maxmemory; nothing written.
            RequestIdReused: ``request`` names another call; nothing written.
            Replayed: ``request`` was already written; nothing written again.
            SchemaBound: the session's binding is not ``guard.binding``.
            RevisionMismatch: the revision is not ``guard.if_revision``.
            SessionNotFound: ``guard.must_exist`` and the session has no live key.
        """
        p = self.prefix(tenant, session)
        keys = [p + "i", p + "n", p + "r:" + (request.value if request else "")]
        args: list[str | int] = [
            request.fingerprint if request else "",
            request.keep_ms if request else 0,
            _guard(guard),
        ]
        for e in entries:
            keys.append(p + "v:" + e.key)
            cond = "" if e.if_version is None else e.if_version
            if isinstance(e, Erase):
                args += [e.key, "x", "", 0, cond]
            else:
                args += [e.key, e.kind.value, e.payload, e.ttl_seconds * 1000, cond]
        out = await self._write(keys=keys, args=args)
        status = out[0]
        if status == Status.PRECONDITION_FAILED:
            raise PreconditionFailed(int(out[1]) - 1, int(out[2]))
        if status == Status.REPLAYED:
            raise Replayed(_decode(entries[0].key, out[1]))
        if (refused := _refused(status, out)) is not None:
            raise refused
        return Committed(
            results=[Written(int(out[i]), int(out[i + 1])) for i in range(4, len(out), 2)],
            released=[member.decode() for member in out[1]],
            revision=int(out[2]),
            deleted=int(out[3]),
        )

    async def read(
        self, tenant: str, session: str, names: Sequence[str] = (), *, most_bytes: int = 0
    ) -> Snapshot:
        """Read the session's revision, binding and records (all live ones, or ``names``).

        Raises:
            TooLarge: the records are more than ``most_bytes`` (when not 0); they
                were not sent.
        """
        p = self.prefix(tenant, session)
        keys = [p + "i", p + "n", p + "s"]
        args: list[str | int] = [p + "v:", most_bytes, *names]
        out = await retry_stale(self._redis, lambda: self._doc(keys=keys, args=args))
        if len(out) == 4:  # {revision, binding, live, -bytes}: records come in pairs
            raise TooLarge(-int(out[3]))
        records = {}
        for i in range(3, len(out), 2):
            name = out[i].decode()
            records[name] = _decode(name, out[i + 1])
        return Snapshot(int(out[0]), out[1].decode(), int(out[2]), records)

    async def changes(self, tenant: str, session: str, after: int) -> tuple[int, list[Change]]:
        """The session's revision and the logged changes after revision ``after``.

        Marks the session watched (its change log is kept longer, see prelude.lua).
        """
        p = self.prefix(tenant, session)
        keys = [p + "n", p + "w"]
        args = [str(after + 1)]
        out = await retry_stale(self._redis, lambda: self._changes(keys=keys, args=args))
        return int(out[0]), [decode_change(line.decode()) for line in out[1:]]

    @classmethod
    def channel(cls, tenant: str, session: str) -> str:
        """The Pub/Sub channel a session's changes are published on."""
        return cls.prefix(tenant, session) + "w"

    @staticmethod
    def channel_and_key(name: str) -> tuple[str, str] | None:
        """The session channel and key of a full value key name; None for other names.

        Keys hold no ':', so the last ':v:' starts the key even when the session
        id holds one.
        """
        at = name.rfind(":v:")
        if at <= 0 or not name.startswith("sm:{"):
            return None
        return name[: at + 1] + "w", name[at + 3 :]

    async def request_result(
        self, tenant: str, session: str, key: str, request: RequestId
    ) -> Record | None:
        """The first result (the record of ``key``) of a write's request id; None when unused.

        Raises:
            RequestIdReused: the id was used for another call.
        """
        keys = [self.prefix(tenant, session) + "r:" + request.value]
        args = [request.fingerprint]
        out = await retry_stale(self._redis, lambda: self._request(keys=keys, args=args))
        if out[0] == Status.REPLAYED:
            return _decode(key, out[1])
        if out[0] == Status.REQUEST_ID_REUSED:
            raise RequestIdReused
        return None

    async def increment(
        self,
        tenant: str,
        session: str,
        key: str,
        delta: str,
        ttl_seconds: int,
        request: RequestId | None,
        guard: Guard = NO_GUARD,
    ) -> Incremented:
        """Add ``delta`` (canonical number text) atomically; dedupe by request id.

        Raises:
            NotANumber: the key holds another kind.
            IncrementOutOfLimits: the result breaks the number limits.
            SessionFull: a new key would exceed the session's key limit.
            StoreFull: Redis is over maxmemory.
            RequestIdReused: the request id was used for another call.
            SchemaBound: the session's binding is not ``guard.binding``.
            RevisionMismatch: the revision is not ``guard.if_revision``.
        """
        p = self.prefix(tenant, session)
        keys = [p + "i", p + "n", p + "v:" + key]
        args: list[str | int] = [
            key,
            delta,
            ttl_seconds * 1000,
            request.keep_ms if request else 0,
            request.fingerprint if request else "",
            "" if guard is NO_GUARD else f"{guard.binding}\n{_revision(guard)}",
        ]
        if request is not None:
            keys.append(p + "r:" + request.value)
        if request is not None:
            out = await retry_stale(self._redis, lambda: self._incr(keys=keys, args=args))
        else:
            out = await self._incr(keys=keys, args=args)
        status = out[0]
        if status == Status.NOT_A_NUMBER:
            raise NotANumber(KIND_BY_TAG[out[1].decode()])
        if status in (Status.OUT_OF_RANGE, Status.TOO_PRECISE):
            raise IncrementOutOfLimits(out[1].decode(), too_precise=status == Status.TOO_PRECISE)
        if (refused := _refused(status, out)) is not None:
            raise refused
        return Incremented(out[1].decode(), int(out[2]), int(out[3]))

    async def touch(
        self, tenant: str, session: str, keys: Sequence[str], ttl_seconds: int, allowed: str
    ) -> Touched:
        """Give existing keys a new expiry.

        Returns how many existed and which, and the collection members of the
        files among them with the new expiry (ms), for the collector to follow.

        Raises:
            TtlNotAllowed: a key's kind does not allow the TTL; nothing changed.
        """
        p = self.prefix(tenant, session)
        redis_keys = [p + "i", p + "n", p + "s", *(p + "v:" + k for k in keys)]
        args: list[str | int] = [ttl_seconds * 1000, allowed, "", *keys]
        out = await retry_stale(self._redis, lambda: self._touch(keys=redis_keys, args=args))
        if out[0] == Status.TTL_NOT_ALLOWED:
            raise TtlNotAllowed(int(out[1]) - 1, KIND_BY_TAG[out[2].decode()])
        expires = int(out[3])
        return Touched(
            count=int(out[1]),
            files={member.decode(): expires for member in out[2]},
            names=[name.decode() for name in out[5]],
            sizes=[int(size) for size in out[6]],
            revision=int(out[4]),
            expires_ms=expires,
        )

    async def list_keys(self, tenant: str, session: str) -> list[RecordInfo]:
        """Describe every live key of a session, sorted by key."""
        p = self.prefix(tenant, session)
        out = await retry_stale(self._redis, lambda: self._list(keys=[p + "i"], args=[p + "v:"]))
        infos = [
            RecordInfo(
                key=out[i].decode(),
                kind=KIND_BY_TAG[out[i + 1].decode()],
                size_bytes=int(out[i + 2]),
                version=int(out[i + 3]),
                expires_ms=int(out[i + 4]),
            )
            for i in range(0, len(out), 5)
        ]
        infos.sort(key=lambda info: info.key)
        return infos

    async def clear(self, tenant: str, session: str) -> Cleared:
        """Delete every key of a session; returns what it deleted."""
        p = self.prefix(tenant, session)
        out = await self._clear(
            keys=[p + "i", p + "n", p + "s", p + "w"],
            args=[p + "v:"],
        )
        return Cleared(
            count=int(out[0]),
            released=[member.decode() for member in out[1]],
            names=[name.decode() for name in out[2]],
            revision=int(out[3]),
        )

    # --- schemas (tenant-wide, in the tenant's slot) --------------------------

    @staticmethod
    def _schemas(tenant: str) -> str:
        return f"sm:{{{tenant}}}:x"

    async def put_schema(self, tenant: str, name: str, text: str) -> SchemaRecord:
        """Register or replace a schema (compact JSON text); returns it with its version.

        Raises:
            TooManySchemas: the tenant has the maximum number of schemas.
            StoreFull: Redis is over maxmemory.
        """
        x = self._schemas(tenant)
        out = await self._schema_put(
            keys=[f"{x}:{name}", x + "i", x + "n"],
            args=[name, text, LIMITS.max_schemas_per_tenant],
        )
        if out[0] == Status.TOO_MANY_SCHEMAS:
            raise TooManySchemas
        if out[0] == Status.STORE_FULL:
            raise StoreFull
        return SchemaRecord(name, int(out[1]), int(out[2]), len(text.encode()), text)

    async def get_schema(self, tenant: str, name: str) -> SchemaRecord | None:
        """A schema with its text; None when it is not registered."""
        key = f"{self._schemas(tenant)}:{name}"
        v, t, j = cast(
            list[bytes | None],
            await retry_stale(self._redis, lambda: self._redis.hmget(key, ["v", "t", "j"])),
        )
        if v is None or t is None or j is None:
            return None
        return SchemaRecord(name, int(v), int(t), len(j), j.decode())

    async def schema_version(self, tenant: str, name: str) -> int | None:
        """A schema's current version; None when it is not registered."""
        key = f"{self._schemas(tenant)}:{name}"
        v = cast(bytes | None, await retry_stale(self._redis, lambda: self._redis.hget(key, "v")))
        return None if v is None else int(v)

    async def list_schemas(self, tenant: str) -> list[SchemaRecord]:
        """Every schema of the tenant (without text), sorted by name."""
        x = self._schemas(tenant)
        out = await retry_stale(
            self._redis, lambda: self._schema_list(keys=[x + "i"], args=[x + ":"])
        )
        return [
            SchemaRecord(out[i].decode(), int(out[i + 1]), int(out[i + 2]), int(out[i + 3]))
            for i in range(0, len(out), 4)
        ]

    async def delete_schema(self, tenant: str, name: str) -> bool:
        """Remove a schema; True when it existed."""
        x = self._schemas(tenant)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(f"{x}:{name}")
            pipe.zrem(x + "i", name)
            deleted, _ = await pipe.execute()
        return bool(deleted)

    # --- tenant quotas (in the tenant's slot; see quotas.py) ----------------------

    @staticmethod
    def _quota(tenant: str) -> str:
        return f"sm:{{{tenant}}}:"

    async def admit_session(self, tenant: str, session: str, keep_ms: int, quota: int) -> int:
        """Register a session as live for ``keep_ms`` more (at least); returns for how long.

        A registered session is extended; a new one is refused when the tenant
        has ``quota`` sessions.

        Raises:
            QuotaExceeded: the session is new and the quota is reached; nothing changed.
            StoreFull: Redis is over maxmemory; nothing changed.
        """
        q = self._quota(tenant)
        out = await self._quota_session(keys=[q + "ss", q + "kt"], args=[session, keep_ms, quota])
        if out[0] == Status.QUOTA_EXCEEDED:
            raise QuotaExceeded(int(out[1]))
        if out[0] == Status.STORE_FULL:
            raise StoreFull
        return int(out[1])

    async def take_upload(self, tenant: str, upload: str, lease_ms: int, quota: int) -> None:
        """Take one of the tenant's ``quota`` upload slots for at most ``lease_ms``.

        Raises:
            QuotaExceeded: the tenant has ``quota`` uploads in progress; nothing changed.
            StoreFull: Redis is over maxmemory; nothing changed.
        """
        q = self._quota(tenant)
        out = await self._quota_upload(keys=[q + "up", q + "kt"], args=[upload, lease_ms, quota])
        if out[0] == Status.QUOTA_EXCEEDED:
            raise QuotaExceeded(int(out[1]))
        if out[0] == Status.STORE_FULL:
            raise StoreFull

    async def give_upload(self, tenant: str, upload: str) -> None:
        """Give back an upload slot (the removal of a set member may run twice)."""
        key = self._quota(tenant) + "up"
        await retry_stale(self._redis, lambda: self._redis.zrem(key, upload))

    async def quota_flush(
        self, tenant: str, ops: Sequence[QuotaOp], *, tombstone_ms: int, prune: int
    ) -> tuple[int, int, int, bool]:
        """Apply quota bookkeeping (see quota_flush.lua).

        Returns (bytes, sessions, uploads, whether expired ledger entries are left
        to drop: ``prune`` are dropped per call).

        Not retried on a broken connection: the caller keeps the operations and
        sends them again (they are ordered by revision, so a second run is harmless).
        """
        q = self._quota(tenant)
        args: list[str | int] = [tombstone_ms, prune]
        for op in ops:
            args.extend(op)
        out = await self._quota_flush(
            keys=[q + "kb", q + "ke", q + "kt", q + "ss", q + "up"], args=args
        )
        return int(out[0]), int(out[1]), int(out[2]), bool(out[3])

    # --- blob collection set ---------------------------------------------------

    async def record_at(self, value_key: str) -> Record | None:
        """The record stored under a full value key (for the collector)."""
        raw = cast(bytes | None, await retry_stale(self._redis, lambda: self._redis.get(value_key)))
        return None if raw is None else _decode(value_key.rsplit(":", 1)[-1], raw)

    async def gc_schedule(self, members: dict[str, int]) -> None:
        """Set when each collection entry is to be checked (ms since the epoch).

        Raises:
            StoreFull: Redis is over maxmemory.
        """
        if members:
            try:
                await self._redis.zadd(self._gc_key, members)
            except redis.exceptions.OutOfMemoryError:
                raise StoreFull from None

    async def gc_due(self, now_ms: int) -> int:
        """How many collection entries are due at ``now_ms`` (the collector's backlog)."""
        return int(await self._redis.zcount(self._gc_key, "-inf", now_ms))

    async def gc_claim(self, lease_ms: int, batch: int) -> list[str]:
        """Claim due collection entries for one lease."""
        out = await self._gc_claim(keys=[self._gc_key], args=[lease_ms, batch])
        return [m.decode() for m in out]

    async def gc_replace(self, member: str, new_member: str, at_ms: int) -> None:
        """Swap a collection entry for another, atomically."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zadd(self._gc_key, {new_member: at_ms})
            pipe.zrem(self._gc_key, member)
            await pipe.execute()

    async def gc_done(self, *members: str) -> None:
        """Drop collection entries whose objects are gone."""
        if members:
            await self._redis.zrem(self._gc_key, *members)
