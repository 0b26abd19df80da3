"""The memory service's rules: validate with `core`, call the store, map its outcomes.

Transport-free: takes Python values (from the servicer) and returns domain records.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import grpc

from . import core, document
from .core import Kind, RequestId
from .errors import DomainError, invalid, store_full
from .quotas import Quotas
from .schema_registry import SchemaRegistry, schema_name, schema_not_found
from .schemas import CompiledSchema, violation_error
from .stores.redis_store import (
    NO_GUARD,
    IncrementOutOfLimits,
    NotANumber,
    PreconditionFailed,
    RedisStore,
    RequestIdReused,
    RevisionMismatch,
    SchemaBound,
    SessionFull,
    SessionNotFound,
    StoreFull,
    TooLarge,
    TtlNotAllowed,
)
from .values import (
    Committed,
    Erase,
    Guard,
    Incremented,
    Record,
    RecordInfo,
    Snapshot,
    Write,
    Written,
)

T = TypeVar("T")
# A write that races other writes to its session is re-read and re-applied at
# most this many times (with a short random pause), then refused (WRITE_CONFLICT).
CONFLICT_ATTEMPTS: Final = 16
_JSON_INT_BOUND: Final = 2**53


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
    go when they expire, also when Touch shortened the TTL. Every change goes
    through `_write`, `_increment`, `touch` or `clear`, which admit it under the
    tenant's ``quotas`` and record what it changed.
    """

    def __init__(
        self,
        store: RedisStore,
        release: Release,
        retime: Retime,
        schemas: SchemaRegistry,
        quotas: Quotas,
    ) -> None:
        self._store = store
        self._release = release
        self._retime = retime
        self._schemas = schemas
        self._quotas = quotas
        self._locks = KeyedLocks()

    async def _write(
        self,
        tenant: str,
        session: str,
        entries: Sequence[Write | Erase],
        request: RequestId | None = None,
        guard: Guard = NO_GUARD,
    ) -> Committed:
        """`RedisStore.write` under the tenant's quotas (QUOTA_EXCEEDED: nothing written)."""
        writes = [e for e in entries if isinstance(e, Write)]
        reserved = await self._quotas.admit(tenant, session, writes)
        try:
            done = await self._store.write(tenant, session, entries, request, guard)
        except BaseException:
            self._quotas.unreserve(tenant, reserved)
            raise
        if reserved is not None:
            self._quotas.wrote(tenant, session, entries, done.results, reserved)
        return done

    async def _increment(
        self,
        tenant: str,
        session: str,
        key: str,
        delta: str,
        ttl_seconds: int,
        request: RequestId | None,
        guard: Guard = NO_GUARD,
    ) -> Incremented:
        """`RedisStore.increment` under the tenant's quotas (the delta's size is counted)."""
        reserved = await self._quotas.admit(
            tenant, session, [Write(key, Kind.NUMBER, delta, ttl_seconds)]
        )
        try:
            done = await self._store.increment(
                tenant, session, key, delta, ttl_seconds, request, guard
            )
        except BaseException:
            self._quotas.unreserve(tenant, reserved)
            raise
        if reserved is not None:
            written = Write(key, Kind.NUMBER, done.text, ttl_seconds)
            results = [Written(done.version, done.expires_ms)]
            self._quotas.wrote(tenant, session, [written], results, reserved)
        return done

    async def get(self, tenant: str, session: str, key: str) -> Record | None:
        """Read one value, or the value at a path inside it (``lastOrder.status``)."""
        session = core.session_id(session)
        name, segments = document.parse_path(key)
        record = await self._store.get(tenant, session, name)
        if record is None or not segments:
            return record
        return _at_path(record, key, segments)

    async def get_many(self, tenant: str, session: str, keys: Sequence[str]) -> list[Record]:
        """Read up to 100 values or paths in one round trip (the ones found, in order)."""
        session = core.session_id(session)
        core.batch(len(keys), "keys")
        paths = {k: document.parse_path(k, f"keys[{i}]") for i, k in enumerate(keys)}
        names = list(dict.fromkeys(name for name, _ in paths.values()))
        records = {r.key: r for r in await self._store.get_many(tenant, session, names)}
        found = []
        for path, (name, segments) in paths.items():
            record = records.get(name)
            if record is not None and segments:
                record = _at_path(record, path, segments)
            if record is not None:
                found.append(record)
        return found

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
            try:
                done = await self._write(tenant, session, writes, request)
            except SchemaBound:

                async def act(snap: Snapshot, bound: Bound) -> Committed:
                    if bound.schema is not None:
                        before = _document(snap)
                        after = dict(before)
                        after.update((w.key, _document_value(w, snap.revision)) for w in writes)
                        bound.check(before, after, {w.key for w in writes})
                    return await self._write(tenant, session, writes, request, bound.guard(snap))

                done = await self._bound(tenant, session, act)
            return done.results, done.released
        except PreconditionFailed as failed:
            raise _precondition_error(writes[failed.index], failed.current_version) from None
        except SessionFull:
            raise _session_full() from None
        except StoreFull:
            raise store_full() from None
        except RequestIdReused:
            raise _request_id_reused(request_field) from None

    async def _bound(
        self,
        tenant: str,
        session: str,
        act: Callable[[Snapshot, Bound], Awaitable[T]],
        *,
        bind: str = "",
    ) -> T:
        """Run a write on a session bound to a schema: read, validate, write if unchanged.

        ``act`` validates the write against the document read (with
        `Bound.validate`) and makes it under the guard of what was read (the
        revision and the binding, `Bound.guard`). A write that raced another is
        re-read and re-applied, serialized per session in this process, at most
        CONFLICT_ATTEMPTS times. ``bind`` names a schema to bind the session to.
        """
        async with self._locks.hold((tenant, session)):
            for attempt in range(CONFLICT_ATTEMPTS):
                snap = await self._store.read(tenant, session)
                bound = await self._binding(tenant, snap, bind)
                try:
                    return await act(snap, bound)
                except (RevisionMismatch, SchemaBound):
                    await _pause(attempt)
        raise _write_conflict()

    async def _binding(self, tenant: str, snap: Snapshot, bind: str) -> Bound:
        name = bind or snap.binding
        if not name:
            return Bound(snap.binding, "", None)
        schema = await self._schemas.compiled(tenant, name)
        if schema is None:
            if bind:
                raise schema_not_found(bind)
            # The bound schema was deleted: the session is no longer validated.
            return Bound(snap.binding, "-", None)
        return Bound(snap.binding, bind if bind != snap.binding else "", schema, name)

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
            try:
                return await self._increment(tenant, session, key, delta_text, ttl, request)
            except SchemaBound:

                async def act(snap: Snapshot, bound: Bound) -> Incremented:
                    current = snap.records.get(key)
                    if bound.schema is not None and (
                        current is None or current.kind is Kind.NUMBER
                    ):
                        before = _document(snap)
                        start = float(current.payload) if current is not None else 0.0
                        after = {**before, key: _number(start + float(delta_text))}
                        bound.check(before, after, {key})
                    return await self._increment(
                        tenant, session, key, delta_text, ttl, request, bound.guard(snap)
                    )

                return await self._bound(tenant, session, act)
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
            touched = await self._store.touch(tenant, session, keys, ttl, core.kinds_allowing(ttl))
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
        await self._quotas.touched(tenant, session, touched, ttl)
        if touched.files:
            await self._retime(touched.files)
        return touched.count

    async def delete(self, tenant: str, session: str, keys: Sequence[str]) -> int:
        """Delete keys; returns how many existed."""
        session = core.session_id(session)
        erases = [Erase(k) for k in core.keys(keys)]
        try:
            done = await self._write(tenant, session, erases)
        except SchemaBound:

            async def act(snap: Snapshot, bound: Bound) -> Committed:
                if bound.schema is not None:
                    before = _document(snap)
                    after = dict(before)
                    for e in erases:
                        after.pop(e.key, None)
                    bound.check(before, after, {e.key for e in erases})
                return await self._write(tenant, session, erases, guard=bound.guard(snap))

            done = await self._bound(tenant, session, act)
        if done.released:
            await self._release(done.released)
        return done.deleted

    async def list(self, tenant: str, session: str) -> list[RecordInfo]:
        """Describe the session's live keys."""
        return await self._store.list_keys(tenant, core.session_id(session))

    async def clear(self, tenant: str, session: str) -> int:
        """Delete the whole session."""
        session = core.session_id(session)
        cleared = await self._store.clear(tenant, session)
        await self._quotas.cleared(tenant, session, cleared)
        if cleared.released:
            await self._release(cleared.released)
        return cleared.count

    # --- the document view -------------------------------------------------------

    async def document(
        self, tenant: str, session: str, paths: Sequence[str], omit_defaults: bool
    ) -> DocumentView:
        """The live session as one JSON object (or its projection on ``paths``)."""
        session = core.session_id(session)
        if len(paths) > core.LIMITS.max_batch_keys:
            core.batch(len(paths), "paths")
        parsed = [document.parse_path(p, f"paths[{i}]") for i, p in enumerate(paths)]
        names = list(dict.fromkeys(name for name, _ in parsed))
        limit = core.LIMITS.max_document_bytes
        try:
            # Stored records are a little larger than their JSON; twice the limit
            # is refused before it leaves Redis, the rest is measured exactly below.
            snap = await self._store.read(tenant, session, names, most_bytes=2 * limit)
        except TooLarge as exc:
            raise _document_too_large(limit, exc.size) from None
        doc = _document(snap)
        defaulted: list[str] = []
        if snap.binding and not omit_defaults:
            schema = await self._schemas.compiled(tenant, snap.binding)
            if schema is not None:
                doc, defaulted = schema.with_defaults(doc)
        if parsed:
            doc = document.project(doc, parsed)
            defaulted = [d for d in defaulted if _under_any(d, paths)]
        text = document.dumps(doc)
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > limit:
            raise _document_too_large(limit, size)
        return DocumentView(text, snap.revision, snap.binding, defaulted)

    async def patch(
        self,
        tenant: str,
        session: str,
        patch_text: str,
        ttl_seconds: int | None,
        schema: str,
        if_revision: int | None,
        must_exist: bool,
    ) -> Patched:
        """Apply an RFC 7396 merge patch to the session's document, atomically."""
        session = core.session_id(session)
        patch = document.parse_patch(patch_text, "merge_patch")
        # A patch that only deletes writes nothing that could expire.
        deletes_only = all(value is None for value in patch.values())
        ttl = 0 if deletes_only and ttl_seconds is None else core.ttl(Kind.JSON, ttl_seconds)
        if schema:
            schema_name(schema, "schema")
        if if_revision is not None and if_revision < 0:
            raise invalid(
                "INVALID_PRECONDITION",
                f"if_revision must be a revision (0 or more); got {if_revision}",
                "if_revision",
            )
        try:
            if not schema:
                done = await self._patch_unbound(
                    tenant,
                    session,
                    patch,
                    ttl,
                    Guard(if_revision=if_revision, must_exist=must_exist),
                )
                if done is not None:
                    return done
            return await self._patch_bound(
                tenant, session, patch, ttl, schema, if_revision, must_exist
            )
        except RevisionMismatch as exc:
            raise _revision_mismatch(exc.revision, if_revision) from None
        except SessionNotFound:
            raise _session_not_found() from None
        except SessionFull:
            raise _session_full() from None
        except StoreFull:
            raise store_full() from None

    async def _patch_unbound(
        self, tenant: str, session: str, patch: dict[str, Any], ttl: int, guard: Guard
    ) -> Patched | None:
        """Patch a session without a schema; None when it turns out to be bound.

        Only the patched keys are read; each is written on the condition that its
        version is still the one read, so patches of different fields never
        conflict and a patch that raced another on its field is re-applied.
        """
        # Patches of the same keys queue in this process instead of racing (and
        # pausing) on their versions; other processes' still retry.
        async with self._locks.hold((tenant, session + "\x00" + "\x00".join(sorted(patch)))):
            for attempt in range(CONFLICT_ATTEMPTS):
                snap = await self._store.read(tenant, session, list(patch))
                if snap.binding:
                    return None
                entries = _patch_entries(snap, patch, ttl, versioned=True)
                try:
                    done = await self._write(tenant, session, entries, guard=guard)
                except PreconditionFailed:
                    await _pause(attempt)
                    continue
                except SchemaBound:
                    return None
                return await self._patched(entries, done, "")
            raise _write_conflict()

    async def _patch_bound(
        self,
        tenant: str,
        session: str,
        patch: dict[str, Any],
        ttl: int,
        schema: str,
        if_revision: int | None,
        must_exist: bool,
    ) -> Patched:
        async def act(snap: Snapshot, bound: Bound) -> Patched:
            if schema and snap.binding and snap.binding != schema:
                raise DomainError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "SCHEMA_MISMATCH",
                    f"the session is bound to schema {snap.binding!r}, not {schema!r};"
                    " switch it with BindSchema. Nothing was changed",
                    metadata={"schema": snap.binding, "requested": schema},
                )
            if if_revision is not None and if_revision != snap.revision:
                raise _revision_mismatch(snap.revision, if_revision)
            if must_exist and snap.live == 0:
                raise _session_not_found()
            entries = _patch_entries(snap, patch, ttl, versioned=False)
            if bound.schema is not None:
                before = _document(snap)
                after = dict(before)
                for key, value in patch.items():
                    if value is None:
                        after.pop(key, None)
                    else:
                        after[key] = document.merge_patch(after.get(key), value)
                if bound.bind:  # binding now: the whole document must validate
                    bound.validate(after)
                else:
                    bound.check(before, after, set(patch))
            guard = bound.guard(snap, must_exist=must_exist)
            done = await self._write(tenant, session, entries, guard=guard)
            return await self._patched(entries, done, bound.name)

        bind = schema if schema else ""
        return await self._bound(tenant, session, act, bind=bind)

    async def _patched(
        self, entries: Sequence[Write | Erase], done: Committed, schema: str
    ) -> Patched:
        if done.released:
            await self._release(done.released)
        written = []
        deleted = []
        for entry, result in zip(entries, done.results, strict=True):
            if isinstance(entry, Erase):
                if result.version:
                    deleted.append(entry.key)
            else:
                written.append((entry.key, result))
        return Patched(done.revision, written, deleted, schema)

    async def bind(self, tenant: str, session: str, schema: str) -> int:
        """Bind the session to a schema (its document must validate), or unbind it.

        Binding a session without live values creates it (its binding lives
        ``LIMITS.max_json_ttl_seconds``), so it is admitted under the live-sessions quota like
        a write of that TTL (QUOTA_EXCEEDED: nothing bound).
        """
        session = core.session_id(session)
        if schema:
            schema_name(schema, "schema")

        async def act(snap: Snapshot, bound: Bound) -> int:
            if schema and bound.schema is not None:
                bound.validate(_document(snap))
            if schema and not snap.live:
                await self._quotas.admit_session(tenant, session, core.LIMITS.max_json_ttl_seconds)
            guard = bound.guard(snap) if schema else Guard(binding=snap.binding, bind="-")
            if not schema and not snap.binding:
                return snap.revision
            return (await self._write(tenant, session, [], guard=guard)).revision

        try:
            return await self._bound(tenant, session, act, bind=schema)
        except StoreFull:
            raise store_full() from None


@dataclass(frozen=True, slots=True)
class DocumentView:
    """A session read as one document.

    Attributes:
        json: The document as compact JSON text.
        revision: The session's revision.
        schema: The schema the session is bound to ("" = none).
        defaulted: The dotted paths filled from the schema's defaults.
    """

    json: str
    revision: int
    schema: str
    defaulted: list[str]


@dataclass(frozen=True, slots=True)
class Patched:
    """The outcome of a merge patch.

    Attributes:
        revision: The session's revision after the patch.
        written: The keys written, with their versions and expiries, in patch order.
        deleted: The keys deleted that existed, in patch order.
        schema: The schema the session is bound to ("" = none).
    """

    revision: int
    written: list[tuple[str, Written]]
    deleted: list[str]
    schema: str


@dataclass(frozen=True, slots=True)
class Bound:
    """What a write to a session found about its schema binding.

    Attributes:
        binding: The session's binding as read ("" = none); the write is made on
            the condition that it is still this.
        bind: The binding change the write makes ("" none, "-" unbind, a name).
        schema: The compiled schema to validate against; None: no validation.
        name: The schema's name (for errors and responses).
    """

    binding: str
    bind: str
    schema: CompiledSchema | None
    name: str = ""

    def guard(self, snap: Snapshot, *, must_exist: bool = False) -> Guard:
        """The guard of a write based on ``snap``: same binding, same revision."""
        return Guard(
            binding=self.binding, if_revision=snap.revision, must_exist=must_exist, bind=self.bind
        )

    def validate(self, doc: dict[str, Any]) -> None:
        """Refuse a document the schema does not accept (SCHEMA_VIOLATION)."""
        if self.schema is not None:
            violation = self.schema.validate(doc)
            if violation is not None:
                raise violation_error(violation, self.name)

    def check(self, before: dict[str, Any], after: dict[str, Any], changed: set[str]) -> None:
        """Refuse a write that adds a violation (SCHEMA_VIOLATION).

        A write may not make the document invalid; one that leaves an existing
        violation as it was (a required field that expired) is let through, so
        an expiry never locks a session's unrelated writes.
        """
        if self.schema is not None:
            violation = self.schema.introduced(before, after, changed)
            if violation is not None:
                raise violation_error(violation, self.name)


class KeyedLocks:
    """One asyncio lock per key, alive only while someone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: tuple[str, str]) -> AsyncIterator[None]:
        """Hold the lock of ``key``."""
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


async def _pause(attempt: int) -> None:
    """A short random pause before re-applying a write that raced another."""
    await asyncio.sleep(random.uniform(0, min(0.05, 0.001 * 2**attempt)))


def _write_conflict() -> DomainError:
    return DomainError(
        grpc.StatusCode.ABORTED,
        "WRITE_CONFLICT",
        f"the write raced other writes to the session {CONFLICT_ATTEMPTS} times; nothing"
        " was changed: retry",
        retry_after=0.1,
    )


def _document_too_large(limit: int, size: int) -> DomainError:
    return DomainError(
        grpc.StatusCode.FAILED_PRECONDITION,
        "DOCUMENT_TOO_LARGE",
        f"the document is about {size} bytes; GetDocument returns at most {limit}:"
        " read parts of it with paths",
        metadata={"limit": limit, "actual": size},
    )


def _revision_mismatch(current: int, expected: int | None) -> DomainError:
    return DomainError(
        grpc.StatusCode.ABORTED,
        "REVISION_MISMATCH",
        f"the session is at revision {current}, not {expected}; nothing was changed:"
        " re-read the document and retry",
        metadata={"revision": current, "expected": expected},
    )


def _session_not_found() -> DomainError:
    return DomainError(
        grpc.StatusCode.NOT_FOUND,
        "SESSION_NOT_FOUND",
        "the session has no live key (it ended or expired), so it was not updated",
    )


def _document(snap: Snapshot) -> dict[str, Any]:
    """The document of a snapshot's records (keys sorted)."""
    return {k: document.record_value(snap.records[k]) for k in sorted(snap.records)}


def _document_value(write: Write, revision: int) -> Any:
    """The document value a write will store (a file's version/expiry estimated)."""
    expires = int(time.time() * 1000) + write.ttl_seconds * 1000
    return document.record_value(
        Record(write.key, write.kind, revision + 1, expires, write.payload)
    )


def _number(value: float) -> float | int:
    return int(value) if value.is_integer() and abs(value) < _JSON_INT_BOUND else value


def _patch_entries(
    snap: Snapshot, patch: dict[str, Any], ttl: int, *, versioned: bool
) -> list[Write | Erase]:
    """The writes and deletes a merge patch makes of the records read."""
    entries: list[Write | Erase] = []
    for key, value in patch.items():
        current = snap.records.get(key)
        version = (current.version if current is not None else 0) if versioned else None
        if value is None:
            entries.append(Erase(key, version))
            continue
        if current is not None and current.kind is Kind.FILE:
            raise invalid(
                "INVALID_PATCH",
                f"key {key!r} holds a file: files are written with SetFile; a patch may only"
                " delete it (null). Nothing was changed",
                "merge_patch",
                pointer="/" + key,
            )
        old = document.record_value(current) if current is not None else None
        kind, payload = document.to_stored(key, document.merge_patch(old, value))
        entries.append(Write(key, kind, payload, ttl, version))
    return entries


def _at_path(record: Record, path: str, segments: tuple[str, ...]) -> Record | None:
    """The value at a path inside a record, as a record of its own kind."""
    found, value = document.at_path(document.record_value(record), segments)
    if not found:
        return None
    kind, payload = _typed(value)
    return Record(path, kind, record.version, record.expires_ms, payload)


def _typed(value: Any) -> tuple[Kind, str]:
    if isinstance(value, bool):
        return Kind.BOOLEAN, core.bool_value(value)
    if isinstance(value, str):
        return Kind.STRING, value
    if isinstance(value, float) or (isinstance(value, int) and abs(value) < _JSON_INT_BOUND):
        return Kind.NUMBER, repr(float(value))
    return Kind.JSON, core.compact_json(value)


def _under_any(path: str, prefixes: Sequence[str]) -> bool:
    return any(path == p or path.startswith(p + ".") or p.startswith(path + ".") for p in prefixes)


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
