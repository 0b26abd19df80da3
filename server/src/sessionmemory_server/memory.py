"""The memory service's rules: validate with `core`, call the store, map its outcomes.

Transport-free: takes Python values (from the servicer) and returns domain records.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import grpc

from . import core
from .core import Kind, Record, RecordInfo, RequestId, Write
from .errors import DomainError, invalid, store_full
from .stores.redis_store import (
    Incremented,
    IncrementOutOfLimits,
    NotANumber,
    PreconditionFailed,
    RedisStore,
    RequestIdReused,
    SessionFull,
    StoreFull,
    TtlNotAllowed,
    Written,
)


@dataclass(frozen=True, slots=True)
class WriteSpec:
    """An unvalidated write as it arrives: the kind and its raw value."""

    key: str
    kind: Kind | None
    value: str | float | bool | None
    ttl_seconds: int | None
    if_version: int | None
    value_field: str = "value"


def _payload(kind: Kind | None, value: str | float | bool | None, field: str) -> tuple[Kind, str]:
    if kind is Kind.STRING and isinstance(value, str):
        return kind, core.string_value(value, field)
    if kind is Kind.NUMBER and isinstance(value, float):
        return kind, core.number_value(value, field)
    if kind is Kind.BOOLEAN and isinstance(value, bool):
        return kind, core.bool_value(value)
    if kind is Kind.JSON and isinstance(value, str):
        return kind, core.json_value(value, field)
    raise DomainError(
        grpc.StatusCode.INVALID_ARGUMENT,
        "VALUE_REQUIRED",
        f"{field} is required: set a string, number or boolean"
        + (" or JSON value" if kind is Kind.JSON or kind is None else ""),
        field=field,
    )


def _session_full() -> DomainError:
    limit = core.LIMITS.max_keys_per_session
    return DomainError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "SESSION_FULL",
        f"the session already holds the maximum of {limit} keys; delete some first",
        metadata={"limit": limit},
    )


def _request_id_reused(field: str) -> DomainError:
    return invalid(
        "REQUEST_ID_REUSED",
        f"{field} was already used in this session for a different call (another key,"
        " value, TTL or operation); use a new id for a new call. Nothing was changed",
        field,
    )


Release = Callable[[list[str]], Awaitable[None]]
Retime = Callable[[dict[str, int]], Awaitable[None]]


class Memory:
    r"""Session memory operations for one tenant at a time.

    ``release`` is told the collection members (``"<object>\t<value key>"``) of
    files a write, Delete or Clear removed, so their bytes are deleted at once;
    ``retime`` the members of files Touch gave a new expiry (ms), so their bytes
    go when they expire, also when Touch shortened the TTL.
    """

    def __init__(self, store: RedisStore, release: Release, retime: Retime) -> None:
        self._store = store
        self._release = release
        self._retime = retime

    async def get(self, tenant: str, session: str, key: str) -> Record | None:
        """Read one value."""
        return await self._store.get(tenant, core.session_id(session), core.key(key))

    async def get_many(self, tenant: str, session: str, keys: Sequence[str]) -> list[Record]:
        """Read up to 100 values."""
        return await self._store.get_many(tenant, core.session_id(session), core.keys(keys))

    async def write(
        self, tenant: str, session: str, specs: Sequence[WriteSpec], field: str
    ) -> list[Written]:
        """Validate and write values all or nothing.

        ``field`` names where the specs came from ("" for a single write,
        "entries" for a batch) so errors point at the right request field.
        """
        session = core.session_id(session)
        if field:
            core.batch(len(specs), field)
            core.unique_keys((s.key for s in specs), field)
        writes = []
        for i, spec in enumerate(specs):
            at = f"{field}[{i}]." if field else ""
            key = core.key(spec.key, at + "key")
            kind, payload = _payload(spec.kind, spec.value, at + spec.value_field)
            writes.append(
                Write(
                    key=key,
                    kind=kind,
                    payload=payload,
                    ttl_seconds=core.ttl(kind, spec.ttl_seconds, at + "ttl_seconds"),
                    if_version=core.if_version(spec.if_version, at + "if_version"),
                )
            )
        written, released = await self.commit(tenant, session, writes)
        if released:
            await self._release(released)
        return written

    async def commit(
        self,
        tenant: str,
        session: str,
        writes: Sequence[Write],
        request: RequestId | None = None,
        request_field: str = "request_id",
    ) -> tuple[list[Written], list[str]]:
        """Write validated values all or nothing.

        Returns the results and the collection members of files they replaced,
        which the caller releases.

        Raises:
            Replayed: ``request`` was committed before (its first record attached).
            DomainError: ABORTED for a failed precondition, RESOURCE_EXHAUSTED for a
                full session or store, INVALID_ARGUMENT for a reused request id; in
                every case nothing was written.
        """
        try:
            return await self._store.write(tenant, session, writes, request)
        except PreconditionFailed as failed:
            raise _precondition_error(writes[failed.index], failed.current_version) from None
        except SessionFull:
            raise _session_full() from None
        except StoreFull:
            raise store_full() from None
        except RequestIdReused:
            raise _request_id_reused(request_field) from None

    async def first_result(
        self, tenant: str, session: str, key: str, request: RequestId, field: str
    ) -> Record | None:
        """The record a request id's write first stored, or None when the id is unused.

        Raises:
            DomainError: INVALID_ARGUMENT (REQUEST_ID_REUSED) when the id was used
                for another call.
        """
        try:
            return await self._store.request_result(tenant, session, key, request)
        except RequestIdReused:
            raise _request_id_reused(field) from None

    async def increment(
        self,
        tenant: str,
        session: str,
        key: str,
        delta: float,
        ttl_seconds: int | None,
        request_id: str,
    ) -> Incremented:
        """Add ``delta`` to a number atomically (a missing key counts from 0).

        A ``request_id`` is bound to the key, delta and TTL: the same call again
        returns the first result, another call under the same id is refused.
        """
        session = core.session_id(session)
        key = core.key(key)
        delta_text = core.number_value(delta, "delta")
        ttl = core.ttl(Kind.NUMBER, ttl_seconds)
        request = None
        if core.request_id(request_id):
            request = RequestId(
                request_id,
                core.request_fingerprint("increment", key, delta_text, str(ttl)),
                core.LIMITS.request_id_window_seconds * 1000,
            )
        try:
            return await self._store.increment(tenant, session, key, delta_text, ttl, request)
        except NotANumber as exc:
            raise DomainError(
                grpc.StatusCode.FAILED_PRECONDITION,
                "NOT_A_NUMBER",
                f"key {key!r} holds a {exc.kind.name.lower()} value, not a number;"
                " nothing was changed",
                metadata={"key": key, "kind": exc.kind.name.lower()},
            ) from None
        except IncrementOutOfLimits as exc:
            if exc.too_precise:
                message = (
                    f"the result {exc.result} would need more than"
                    f" {core.LIMITS.max_number_digits} significant digits"
                )
                reason, limit = "NUMBER_TOO_PRECISE", str(core.LIMITS.max_number_digits)
            else:
                message = f"the result {exc.result} would reach 10^15 in absolute value"
                reason, limit = "NUMBER_OUT_OF_RANGE", "1e15"
            raise DomainError(
                grpc.StatusCode.FAILED_PRECONDITION,
                reason,
                message + "; nothing was changed",
                metadata={"key": key, "limit": limit, "actual": exc.result},
            ) from None
        except SessionFull:
            raise _session_full() from None
        except StoreFull:
            raise store_full() from None
        except RequestIdReused:
            raise _request_id_reused("request_id") from None

    async def touch(
        self, tenant: str, session: str, keys: Sequence[str], ttl_seconds: int | None
    ) -> int:
        """Give existing keys a new TTL; returns how many existed."""
        session = core.session_id(session)
        keys = core.keys(keys)
        ttl = core.touch_ttl(ttl_seconds)
        try:
            touched, files = await self._store.touch(
                tenant, session, keys, ttl, core.kinds_allowing(ttl)
            )
        except TtlNotAllowed as exc:
            cap = exc.kind.ttl_cap
            raise DomainError(
                grpc.StatusCode.INVALID_ARGUMENT,
                "TTL_OUT_OF_RANGE",
                f"ttl_seconds is {ttl}; key {keys[exc.index]!r} holds a"
                f" {exc.kind.name.lower()} value whose TTL must be between 1 and {cap} seconds;"
                " nothing was changed",
                field="ttl_seconds",
                metadata={"limit": cap, "actual": ttl, "key": keys[exc.index]},
            ) from None
        if files:
            await self._retime(files)
        return touched

    async def delete(self, tenant: str, session: str, keys: Sequence[str]) -> int:
        """Delete keys; returns how many existed."""
        count, released = await self._store.delete(
            tenant, core.session_id(session), core.keys(keys)
        )
        if released:
            await self._release(released)
        return count

    async def list(self, tenant: str, session: str) -> list[RecordInfo]:
        """Describe the session's live keys."""
        return await self._store.list_keys(tenant, core.session_id(session))

    async def clear(self, tenant: str, session: str) -> int:
        """Delete the whole session."""
        count, released = await self._store.clear(tenant, core.session_id(session))
        if released:
            await self._release(released)
        return count


def _precondition_error(write: Write, current: int) -> DomainError:
    """The ABORTED error of a write whose ``if_version`` did not match ``current``."""
    meta: dict[str, object] = {"key": write.key, "version": current}
    if write.if_version == 0:
        return DomainError(
            grpc.StatusCode.ABORTED,
            "KEY_EXISTS",
            f"key {write.key!r} already exists (version {current}); nothing was written",
            metadata=meta,
        )
    meta["expected"] = write.if_version
    now = f"is at version {current}" if current else "does not exist"
    return DomainError(
        grpc.StatusCode.ABORTED,
        "VERSION_MISMATCH",
        f"key {write.key!r} {now}, not version {write.if_version}; nothing was written",
        metadata=meta,
    )
