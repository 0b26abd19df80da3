r"""The Redis store: key layout, Lua scripts and record decoding.

Layout, for tenant T and session S (S escaped so '}' cannot end the hash tag):

    sm:{T|S}:v:<key>    one record per value (see prelude.lua), PXAT its expiry
    sm:{T|S}:i          sorted set: key name -> expiry ms (List, Clear, key count)
    sm:{T|S}:n          version counter of the session
    sm:{T|S}:r:<id>     Increment request-id record (expires after the window)
    sm:gc:<bucket>      blob collection set (one key per bucket):
                        "<object>\t<value key>" -> when to check it (see collector.py)

Every key of a session shares the hash tag ``{T|S}``, so they sit in one Redis
Cluster slot and every script stays single-slot. Reads are one plain GET/MGET;
writes are one EVALSHA of a script loaded once. Because each value is its own
key with its own expiry and the index lists them, a later "whole session as one
JSON document" view is a read of the index plus an MGET: no data migration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Final, cast

from redis.asyncio import Redis, RedisCluster
from redis.commands.core import AsyncScript

from ..core import KIND_BY_TAG, LIMITS, Kind, Record, RecordInfo, Write

_ESCAPES: Final = str.maketrans({"%": "%25", "}": "%7D"})


def _script(name: str) -> str:
    pkg = resources.files(__package__)
    return (pkg / "prelude.lua").read_text() + "\n" + (pkg / f"{name}.lua").read_text()


class PreconditionFailed(Exception):
    """A write's `if_version` did not match (index into the batch, current version)."""

    def __init__(self, index: int, current_version: int) -> None:
        super().__init__(index, current_version)
        self.index = index
        self.current_version = current_version


class SessionFull(Exception):
    """The write would give the session more keys than allowed."""


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


@dataclass(frozen=True, slots=True)
class Written:
    """Version and expiry of one written value."""

    version: int
    expires_ms: int


@dataclass(frozen=True, slots=True)
class Incremented:
    """The result of an Increment."""

    text: str
    version: int
    expires_ms: int


def _decode(key: str, raw: bytes) -> Record:
    head, expires, payload = raw.split(b":", 2)
    return Record(
        key=key,
        kind=KIND_BY_TAG[chr(head[0])],
        version=int(head[1:]),
        expires_ms=int(expires),
        payload=payload.decode("utf-8"),
    )


class RedisStore:
    """Session values in Redis (standalone or Cluster)."""

    def __init__(self, client: Redis | RedisCluster, *, bucket: str = "") -> None:
        self._redis = client
        # One collection set per bucket: servers that share Redis but not a bucket
        # must never collect each other's objects.
        self._gc_key = f"sm:gc:{bucket}"
        self._write: AsyncScript = client.register_script(_script("write"))
        self._incr: AsyncScript = client.register_script(_script("incr"))
        self._touch: AsyncScript = client.register_script(_script("touch"))
        self._delete: AsyncScript = client.register_script(_script("delete"))
        self._list: AsyncScript = client.register_script(_script("list"))
        self._clear: AsyncScript = client.register_script(_script("clear"))
        self._gc_claim: AsyncScript = client.register_script(_script("gc_claim"))

    @staticmethod
    def prefix(tenant: str, session: str) -> str:
        """The key prefix (with hash tag) of one tenant's session."""
        return f"sm:{{{tenant}|{session.translate(_ESCAPES)}}}:"

    async def get(self, tenant: str, session: str, key: str) -> Record | None:
        """Read one value; None when missing or expired."""
        raw = cast(bytes | None, await self._redis.get(self.prefix(tenant, session) + "v:" + key))
        return None if raw is None else _decode(key, raw)

    async def get_many(self, tenant: str, session: str, keys: Sequence[str]) -> list[Record]:
        """Read several values in one MGET; only the ones that exist, in order."""
        p = self.prefix(tenant, session) + "v:"
        raws = cast(list[bytes | None], await self._redis.mget([p + k for k in keys]))
        return [_decode(k, raw) for k, raw in zip(keys, raws, strict=True) if raw is not None]

    @classmethod
    def value_key(cls, tenant: str, session: str, key: str) -> str:
        """The Redis key of one value."""
        return cls.prefix(tenant, session) + "v:" + key

    async def write(
        self, tenant: str, session: str, writes: Sequence[Write]
    ) -> tuple[list[Written], list[str]]:
        """Write values all or nothing, checking every precondition first.

        Returns the results and the object names of files the write replaced.

        Raises:
            PreconditionFailed: an ``if_version`` did not match; nothing written.
            SessionFull: the session would exceed its key limit; nothing written.
        """
        p = self.prefix(tenant, session)
        keys = [p + "i", p + "n"]
        args: list[str | int] = [LIMITS.max_keys_per_session]
        for w in writes:
            keys.append(p + "v:" + w.key)
            args += [
                w.key,
                w.kind.value,
                w.payload,
                w.ttl_seconds * 1000,
                "" if w.if_version is None else w.if_version,
            ]
        out = await self._write(keys=keys, args=args)
        if out[0] == 1:
            raise PreconditionFailed(int(out[1]) - 1, int(out[2]))
        if out[0] == 2:
            raise SessionFull
        written = [Written(int(out[i]), int(out[i + 1])) for i in range(2, len(out), 2)]
        return written, [name.decode() for name in out[1]]

    async def increment(
        self, tenant: str, session: str, key: str, delta: str, ttl_seconds: int, request_id: str
    ) -> Incremented:
        """Add ``delta`` (canonical number text) atomically; dedupe by request id.

        Raises:
            NotANumber: the key holds another kind.
            IncrementOutOfLimits: the result breaks the number limits.
            SessionFull: a new key would exceed the session's key limit.
        """
        p = self.prefix(tenant, session)
        keys = [p + "i", p + "n", p + "v:" + key]
        if request_id:
            keys.append(p + "r:" + request_id)
        args: list[str | int] = [
            LIMITS.max_keys_per_session,
            key,
            delta,
            ttl_seconds * 1000,
            LIMITS.request_id_window_seconds * 1000,
        ]
        out = await self._incr(keys=keys, args=args)
        status = out[0]
        if status == 1:
            raise NotANumber(KIND_BY_TAG[out[1].decode()])
        if status in (2, 3):
            raise IncrementOutOfLimits(out[1].decode(), too_precise=status == 3)
        if status == 4:
            raise SessionFull
        return Incremented(out[1].decode(), int(out[2]), int(out[3]))

    async def touch(
        self, tenant: str, session: str, keys: Sequence[str], ttl_seconds: int, allowed: str
    ) -> int:
        """Give existing keys a new expiry; returns how many existed.

        Raises:
            TtlNotAllowed: a key's kind does not allow the TTL; nothing changed.
        """
        p = self.prefix(tenant, session)
        redis_keys = [p + "i", p + "n", *(p + "v:" + k for k in keys)]
        out = await self._touch(keys=redis_keys, args=[ttl_seconds * 1000, allowed, *keys])
        if out[0] == 1:
            raise TtlNotAllowed(int(out[1]) - 1, KIND_BY_TAG[out[2].decode()])
        return int(out[1])

    async def delete(self, tenant: str, session: str, keys: Sequence[str]) -> tuple[int, list[str]]:
        """Delete keys; returns how many existed and the object names of deleted files."""
        p = self.prefix(tenant, session)
        redis_keys = [p + "i", *(p + "v:" + k for k in keys)]
        out = await self._delete(keys=redis_keys, args=list(keys))
        return int(out[0]), [name.decode() for name in out[1]]

    async def list_keys(self, tenant: str, session: str) -> list[RecordInfo]:
        """Describe every live key of a session, sorted by key."""
        p = self.prefix(tenant, session)
        out = await self._list(keys=[p + "i"], args=[p + "v:"])
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

    async def clear(self, tenant: str, session: str) -> tuple[int, list[str]]:
        """Delete every key of a session; returns the count and the deleted files' objects."""
        p = self.prefix(tenant, session)
        out = await self._clear(keys=[p + "i"], args=[p + "v:"])
        return int(out[0]), [name.decode() for name in out[1]]

    # --- blob collection set ---------------------------------------------------

    async def record_at(self, value_key: str) -> Record | None:
        """The record stored under a full value key (for the collector)."""
        raw = cast(bytes | None, await self._redis.get(value_key))
        return None if raw is None else _decode(value_key.rsplit(":", 1)[-1], raw)

    async def gc_schedule(self, members: dict[str, int]) -> None:
        """Set when each collection entry is to be checked (ms since the epoch)."""
        if members:
            await self._redis.zadd(self._gc_key, members)

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

    async def gc_done(self, member: str) -> None:
        """Drop a collection entry whose object is gone."""
        await self._redis.zrem(self._gc_key, member)
