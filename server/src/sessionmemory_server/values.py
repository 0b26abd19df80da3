"""The value model: what a stored value is, once, for every module.

`core` states the limits and checks values against them; this module holds the
shapes that pass between the rules, the store and the transport: a validated
write, a stored record, the results of writes, and a file record's payload (its
keys are also read by the Lua scripts: ``o`` object name, ``s`` size).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

from .core import Kind


@dataclass(frozen=True, slots=True)
class Write:
    """One validated write: the canonical payload text and its TTL."""

    key: str
    kind: Kind
    payload: str
    ttl_seconds: int
    if_version: int | None = None


@dataclass(frozen=True, slots=True)
class Erase:
    """One validated delete of a key (in a batch with writes: PatchDocument)."""

    key: str
    if_version: int | None = None


@dataclass(frozen=True, slots=True)
class Guard:
    """Session-level conditions and effects of a write.

    Attributes:
        binding: The schema binding the caller validated against ("" = none). A
            session bound otherwise refuses the write (the caller re-validates).
        if_revision: Write only if the session's revision is this.
        must_exist: Write only if the session has a live key.
        bind: "" keeps the binding, "-" unbinds, a name binds to that schema.
    """

    binding: str = ""
    if_revision: int | None = None
    must_exist: bool = False
    bind: str = ""


@dataclass(frozen=True, slots=True)
class Record:
    """A stored value as read back from the store."""

    key: str
    kind: Kind
    version: int
    expires_ms: int
    payload: str


@dataclass(frozen=True, slots=True)
class RecordInfo:
    """A stored value's description without the payload (for List)."""

    key: str
    kind: Kind
    size_bytes: int
    version: int
    expires_ms: int


@dataclass(frozen=True, slots=True)
class Written:
    """Version and expiry of one written value."""

    version: int
    expires_ms: int


@dataclass(frozen=True, slots=True)
class Committed:
    """The outcome of a write batch.

    Attributes:
        results: One per entry: a write's version and expiry; a delete's revision
            (0 when the key did not exist) and expiry 0.
        released: Collection members of the files the batch replaced or deleted.
        revision: The session's revision after the batch.
        deleted: How many deleted keys existed.
    """

    results: list[Written]
    released: list[str]
    revision: int
    deleted: int


@dataclass(frozen=True, slots=True)
class Touched:
    """The outcome of a Touch.

    Attributes:
        count: How many of the keys existed (and got the new expiry).
        files: Collection members of the files among them -> the new expiry (ms).
        names: The keys that existed.
        sizes: Their payloads' bytes (a file's: its size), in the order of ``names``.
        revision: The session's revision when they were touched.
        expires_ms: The new expiry.
    """

    count: int
    files: dict[str, int]
    names: list[str]
    sizes: list[int]
    revision: int
    expires_ms: int


@dataclass(frozen=True, slots=True)
class Cleared:
    """The outcome of a Clear.

    Attributes:
        count: How many keys were deleted.
        released: Collection members of the deleted files.
        names: The deleted keys.
        revision: The revision of the last delete (0 when nothing was deleted).
    """

    count: int
    released: list[str]
    names: list[str]
    revision: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A consistent read of a session (or of some of its keys).

    Attributes:
        revision: The session's revision.
        binding: The schema the session is bound to ("" = none).
        live: How many live keys the session has.
        records: The records read, by key (only the live ones).
    """

    revision: int
    binding: str
    live: int
    records: dict[str, Record]


@dataclass(frozen=True, slots=True)
class Change:
    """One change of a session's key, as Watch reports it.

    Attributes:
        key: The key.
        operation: "set", "delete" or "expire".
        kind: The written value's kind; None for deletes and expiries.
        version: The key's new version (set) or the version it had (delete).
        revision: The change's session revision (0 for expiries: they have none).
        expires_ms: When the written value expires; 0 otherwise.
    """

    key: str
    operation: str
    kind: Kind | None
    version: int
    revision: int
    expires_ms: int


@dataclass(frozen=True, slots=True)
class SchemaRecord:
    """A registered schema as stored: its version, when it was put, its size and text."""

    name: str
    version: int
    updated_ms: int
    size_bytes: int
    text: str = ""


@dataclass(frozen=True, slots=True)
class Incremented:
    """The result of an Increment."""

    text: str
    version: int
    expires_ms: int


@dataclass(frozen=True, slots=True)
class FileMeta:
    """A stored file's description."""

    key: str
    mime_type: str
    size_bytes: int
    sha256: str
    created_ms: int
    expires_ms: int
    version: int
    upload_id: str
    object_name: str


def file_meta(record: Record) -> FileMeta:
    """Decode a file record."""
    p = json.loads(record.payload)
    return FileMeta(
        key=record.key,
        mime_type=p["m"],
        size_bytes=p["s"],
        sha256=p["h"],
        created_ms=p["c"],
        expires_ms=record.expires_ms,
        version=record.version,
        upload_id=p["u"],
        object_name=p["o"],
    )


# What every value costs Redis beyond its payload, key and session id (its Redis
# key's overhead, record header, index entry and quota-ledger entry), counted
# against the stored-bytes quota so that a tenant cannot fill Redis with millions
# of one-byte values for free.
VALUE_OVERHEAD_BYTES: Final = 192


def stored_bytes(session: str, key: str, kind: Kind, payload: str) -> int:
    """The bytes a value counts against its tenant's stored-bytes quota.

    A value counts its payload (the canonical text, UTF-8), a file its size,
    each plus the UTF-8 bytes of its key and session id (every Redis key of it
    holds them) and `VALUE_OVERHEAD_BYTES`.
    """
    if kind is Kind.FILE:
        body = int(json.loads(payload)["s"])
    else:
        body = len(payload.encode("utf-8", "surrogatepass"))
    return body + named_bytes(session, key)


def named_bytes(session: str, key: str) -> int:
    """What a value of ``key`` in ``session`` counts beyond its payload or file size."""
    names = len(key.encode("utf-8", "surrogatepass")) + len(
        session.encode("utf-8", "surrogatepass")
    )
    return names + VALUE_OVERHEAD_BYTES


def file_payload(
    object_name: str, mime_type: str, size: int, sha256: str, created_ms: int, upload_id: str
) -> str:
    """The payload of a file record (the inverse of `file_meta`)."""
    return json.dumps(
        {"o": object_name, "m": mime_type, "s": size, "h": sha256, "c": created_ms,
         "u": upload_id},
        separators=(",", ":"),
    )  # fmt: skip
