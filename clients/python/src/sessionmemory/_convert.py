"""Pure proto <-> Python conversion and request plans, shared by sync and async clients.

A `Plan` is everything one call needs except the I/O: the RPC name, the request,
whether it is safe to retry, and how to turn the response into the result. The
sync and async sessions only differ in how they execute a plan.
"""

from __future__ import annotations

import base64
import binascii
import copy
import decimal
import hashlib
import json
import math
import os
import random
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, BinaryIO, Final, Generic, Literal, Protocol, TypeAlias, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from ._base import LOGGER, log_retry
from .errors import MemoryApiError, MemoryTypeError, ServiceUnavailableError
from .v1 import memory_pb2 as pb
from .v1 import memory_service_pb2 as svc

T = TypeVar("T")
Scalar = str | int | float | bool

Json: TypeAlias = dict[str, "Json"] | list["Json"] | str | int | float | bool | None
"""A parsed JSON value: what `Session.get_json` returns, and `set_json` takes."""

# A decimal numeral, the only strings a number default reads (the shared vectors'
# grammar, tests/vectors/coercion.json): no spaces, underscores, hex, words or
# non-ASCII digits, all of which Python's float() would take.
_NUMERAL: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# Whole numbers below this size come back as int (as the server's JSON does): from it
# on a double is no longer exact to the unit (2**53 + 1 reads as 2**53), so an int
# would claim a precision the value does not have.
MAX_SAFE_INTEGER: Final = 2**53
_KIND_NAMES: Final = {
    pb.VALUE_KIND_STRING: "string",
    pb.VALUE_KIND_NUMBER: "number",
    pb.VALUE_KIND_BOOLEAN: "boolean",
    pb.VALUE_KIND_JSON: "json",
    pb.VALUE_KIND_FILE: "file",
}


@dataclass(frozen=True, slots=True)
class Entry:
    """A stored value with its kind, expiry and version."""

    key: str
    value: Value | None
    """The value (see `Value`); None for a JSON ``null`` stored with ``set_json``."""
    kind: str
    expires_at: datetime
    version: int


@dataclass(frozen=True, slots=True)
class FileInfo:
    """A stored file's description (its bytes are read through a `FileHandle`)."""

    key: str
    mime_type: str
    size_bytes: int
    sha256: str
    created_at: datetime
    expires_at: datetime
    version: int

    def to_json(self) -> dict[str, Json]:
        """This description as JSON, as the session's document shows it.

        Times are RFC 3339 UTC with milliseconds (``2025-06-01T12:00:00.000Z``).
        """
        return {
            "key": self.key,
            "mime_type": self.mime_type,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "created_at": _rfc3339(self.created_at),
            "expires_at": _rfc3339(self.expires_at),
            "version": self.version,
        }


Value: TypeAlias = str | int | float | bool | dict[str, Json] | list[Json] | FileInfo
"""A stored value as `Session.get` returns it without a default.

A string, a number (an int when it is whole and below 2**53 in magnitude, else a
float), a boolean, a JSON value stored with `set_json` (parsed), or a file's
`FileInfo`. A JSON ``null`` (stored with ``set_json``, or found at a path) reads as
None, as a miss does: `Session.get_entry` tells them apart.
"""


@dataclass(frozen=True, slots=True)
class EntryInfo:
    """A stored value's description, without the value (see `list`)."""

    key: str
    kind: str
    size_bytes: int
    expires_at: datetime
    version: int


@dataclass(frozen=True, slots=True)
class WriteResult:
    """The version and expiry a write produced."""

    key: str
    version: int
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class SetItem:
    """One entry of `set_many` when it needs its own TTL or precondition."""

    key: str
    value: Any
    ttl: int | None = None
    json: bool = False
    if_version: int | None = None
    only_if_absent: bool = False


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits the server enforces (see `MemoryClient.get_limits`)."""

    max_string_length: int
    number_abs_bound: float
    max_number_digits: int
    max_json_bytes: int
    max_json_depth: int
    default_ttl_seconds: int
    max_primitive_ttl_seconds: int
    max_json_ttl_seconds: int
    max_file_ttl_seconds: int
    max_file_bytes: int
    allowed_mime_types: tuple[str, ...]
    max_session_id_length: int
    max_key_length: int
    key_pattern: str
    max_batch_keys: int
    max_keys_per_session: int
    max_request_id_length: int
    max_schema_bytes: int
    max_schemas_per_tenant: int
    max_path_length: int
    max_path_segments: int
    max_patch_bytes: int
    max_document_bytes: int
    watch_log_changes: int
    max_watchers: int
    tenant_limits: TenantLimits
    """The calling tenant's rate limits and quotas."""
    tenant_usage: TenantUsage
    """The calling tenant's use of its quotas, as the server last counted it."""


@dataclass(frozen=True, slots=True)
class TenantLimits:
    """A tenant's rate limits and quotas (``Limits.tenant_limits``); 0 means unlimited.

    Rates are per second over every server process; a burst is how many calls (or
    bytes) may come at once above the rate. Over a rate: ``is_rate_limit()``; over a
    quota: ``is_quota_exceeded()``.
    """

    reads_per_second: float
    read_burst: int
    writes_per_second: float
    write_burst: int
    file_bytes_per_second: float
    file_bytes_burst: int
    max_sessions: int
    max_stored_bytes: int
    max_uploads: int


@dataclass(frozen=True, slots=True)
class TenantUsage:
    """How much of its quotas a tenant uses (``Limits.tenant_usage``)."""

    sessions: int
    stored_bytes: int
    uploads: int


TokenPermission = Literal["read", "write", "files"]


@dataclass(frozen=True, slots=True)
class SessionToken:
    """A token scoped to one session (see `MemoryClient.create_session_token`).

    Hand ``token`` to the party that must not hold the tenant's API key (a browser
    widget): a client built with ``api_key=token`` can make the calls its
    permissions name on that one session until ``expires_at``.
    """

    token: str = field(repr=False)
    """The token (``smt_...``), sent like an API key (left out of the repr: it is a secret)."""
    token_id: str
    """Its id, for `MemoryClient.revoke_session_token`."""
    expires_at: datetime
    """When it stops working."""


@dataclass(frozen=True, slots=True)
class Plan(Generic[T]):
    """One call, ready to run: method name, request, retry safety, result conversion."""

    method: str
    request: Any
    idempotent: bool
    convert: Callable[[Any], T]


def _time(ts: Timestamp) -> datetime:
    return datetime.fromtimestamp(ts.seconds + ts.nanos / 1e9, tz=UTC)


def _number(value: float) -> int | float:
    """A stored number: an int when it is whole and below 2**53 in magnitude, else the float."""
    return int(value) if value.is_integer() and abs(value) < MAX_SAFE_INTEGER else value


def value_of(value: pb.Value) -> Value | None:
    """The Python value of a proto Value (see `Value`; None for a JSON null or an unset Value).

    Callers that must tell those two apart check ``value.WhichOneof("kind")`` (`entry_of`).
    """
    which = value.WhichOneof("kind")
    if which == "string_value":
        return value.string_value
    if which == "number_value":
        return _number(value.number_value)
    if which == "bool_value":
        return value.bool_value
    if which == "json_value":
        parsed: Value = json.loads(value.json_value)
        return parsed
    if which == "file_value":
        return file_info_of(value.file_value)
    return None


def file_info_of(info: pb.FileInfo) -> FileInfo:
    """Convert a proto FileInfo."""
    return FileInfo(
        info.key,
        info.mime_type,
        info.size_bytes,
        info.sha256,
        _time(info.created_at),
        _time(info.expires_at),
        info.version,
    )


def _rfc3339(moment: datetime) -> str:
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def entry_of(entry: pb.Entry) -> Entry:
    """Convert a proto Entry."""
    which = entry.value.WhichOneof("kind") or ""
    kind = which.removesuffix("_value").replace("bool", "boolean")
    if not which:  # an unset Value: a server newer than this client, or a broken one
        raise MemoryTypeError(f"key {entry.key!r} holds a value of a kind this client cannot read")
    # value_of is None here only for a JSON null, which is a value like any other.
    return Entry(entry.key, value_of(entry.value), kind, _time(entry.expires_at), entry.version)


def _write_result(result: pb.WriteResult) -> WriteResult:
    return WriteResult(result.key, result.version, _time(result.expires_at))


def number_text(number: float) -> str:
    """``number`` as ECMAScript's ``Number.prototype.toString`` writes it.

    So a number read with a string default is the same text in every client:
    ``7`` (not ``7.0``), ``0.000001``, ``1e-7``, ``100000000000000``, ``1e+21``,
    ``-0`` as ``0``. The digits are the shortest that read back as the same double
    (Python's ``repr``), placed by the ECMAScript rules (ECMA-262, Number::toString).
    """
    number = float(number)
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    if number == 0:
        return "0"
    sign = "-" if number < 0 else ""
    _, digit_tuple, exponent = decimal.Decimal(repr(abs(number))).as_tuple()
    assert isinstance(exponent, int)  # finite, so never "n", "N" or "F"
    digits = "".join(map(str, digit_tuple)).lstrip("0")
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped)
    digits = stripped
    k = len(digits)  # the value is 0.<digits> * 10**n
    n = exponent + k
    if k <= n <= 21:
        text = digits + "0" * (n - k)
    elif 0 < n <= 21:
        text = f"{digits[:n]}.{digits[n:]}"
    elif -6 < n <= 0:
        text = f"0.{'0' * -n}{digits}"
    else:
        e = n - 1
        mantissa = digits if k == 1 else f"{digits[0]}.{digits[1:]}"
        text = f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + text


def _finite(value: int | float) -> float | None:
    """``value`` as a finite float, or None (a JSON integer too large for a double)."""
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _read_number(value: object) -> float | None:
    """A stored number, or a string holding a finite decimal numeral, as a float; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return _finite(value)
    if isinstance(value, str) and _NUMERAL.fullmatch(value):
        return _finite(float(value))
    return None


def _describe(value: object) -> str:
    if isinstance(value, FileInfo):
        return "a file"
    if isinstance(value, dict):
        return "a JSON object"
    if isinstance(value, list):
        return "a JSON array"
    if value is None:
        return "JSON null"
    if isinstance(value, bool):
        return f"the boolean {'true' if value else 'false'}"
    if isinstance(value, int | float):
        finite = _finite(value)
        return (
            "a number too large for a double"
            if finite is None
            else f"the number {number_text(finite)}"
        )
    if isinstance(value, str):
        return f"the string {value!r}" if len(value) <= 40 else f"a {len(value)}-character string"
    return f"a {type(value).__name__}"


_TARGETS: Final = (
    (bool, "a boolean (true/false)"),
    (int, "a number"),
    (float, "a number"),
    (str, "a string"),
    (Mapping, "a JSON object"),
    (list, "a JSON array"),
)


def coerce(value: Value | None, default: Any, key: str) -> Any:
    """Convert a stored value to the type of ``default``, exactly or not at all.

    The rules every client follows (the shared vectors, tests/vectors/coercion.json):

    - a bool default reads a boolean, or the strings ``"true"``/``"false"``;
    - a number default reads any number, and a string holding a decimal numeral
      (``[+-]?(digits[.digits?] | .digits)([eE][+-]?digits)?``: no spaces,
      underscores, hex, words or non-ASCII digits) whose value is finite. An int
      default gives an int when the number is whole and below 2**53 in magnitude
      and a float otherwise (``get("n", 0)`` on 2.5 is 2.5); a float default always a float;
    - a str default reads a string as is, a boolean as ``"true"``/``"false"`` and a
      number as ECMAScript writes it (`number_text`: ``"7"``, ``"1e-7"``);
    - a dict (any Mapping) default reads a JSON object, a list default a JSON array;
    - a JSON scalar stored with ``set_json`` converts as the scalar does; a JSON
      object or array never converts to a scalar, nor a JSON null or a file to
      anything;
    - a None default returns the value as it is.

    Raises:
        MemoryTypeError: the value cannot be converted exactly.
    """
    if default is None:
        return value
    result: Any = None
    if isinstance(default, bool):
        if isinstance(value, bool):
            result = value
        elif value in ("true", "false"):
            result = value == "true"
    elif isinstance(default, int | float):
        number = _read_number(value)
        if number is not None:
            result = float(number) if isinstance(default, float) else _number(number)
    elif isinstance(default, str):
        if isinstance(value, str):
            result = value
        elif isinstance(value, bool):
            result = "true" if value else "false"
        elif isinstance(value, int | float) and _finite(value) is not None:
            result = number_text(value)
    elif isinstance(default, Mapping):
        result = value if isinstance(value, dict) else None
    elif isinstance(default, list):
        result = value if isinstance(value, list) else None
    if result is None:
        target = next((name for t, name in _TARGETS if isinstance(default, t)), None)
        wanted = f"as {target}" if target else f"as {type(default).__name__}"
        raise MemoryTypeError(
            f"key {key!r} holds {_describe(value)}, which cannot be read {wanted}"
        )
    return result


def _apply(
    message: svc.SetRequest | svc.SetJsonRequest | svc.SetManyEntry,
    ttl: int | None,
    if_version: int | None,
    only_if_absent: bool,
) -> bool:
    """Set the optional TTL and precondition; True when the write is conditional."""
    if ttl is not None:
        message.ttl_seconds = ttl
    precondition = _precondition(if_version, only_if_absent)
    if precondition is not None:
        message.if_version = precondition
    return precondition is not None


def _precondition(if_version: int | None, only_if_absent: bool) -> int | None:
    """The request's ``if_version``: 0 for only-if-absent, None for none."""
    if only_if_absent:
        if if_version is not None:
            raise ValueError("use either only_if_absent or if_version, not both")
        return 0
    return if_version


def _scalar_field(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"bool_value": value}
    if isinstance(value, int | float):
        return {"number_value": float(value)}
    if isinstance(value, str):
        return {"string_value": value}
    raise TypeError(
        f"set() takes a str, int, float or bool; got {type(value).__name__} (use set_json)"
    )


def _json_text(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def keys_list(keys: str | Iterable[str]) -> list[str]:
    """One key or several, as a list."""
    return [keys] if isinstance(keys, str) else list(keys)


# --- plans --------------------------------------------------------------------


def missing(default: T) -> T:
    """What a miss returns: ``default``, or a deep copy of it when it is a dict or a list.

    A module-level ``EMPTY_CART = {"items": []}`` passed as the default would otherwise
    be handed out itself, and a caller's ``cart["items"].append(...)`` would change what
    every later miss returns. Any other default (a sentinel object too) is returned as is.
    """
    if isinstance(default, dict | list):
        fresh: T = copy.deepcopy(default)
        return fresh
    return default


def plan_get(session: str, key: str, default: Any) -> Plan[Any]:
    """Get a value, converted to the type of ``default`` (`coerce`); the default when missing.

    A miss returns a fresh copy of a dict or list default (`missing`); any other
    Mapping default comes back as a dict, as the overloads type it.
    """

    def convert(resp: svc.GetResponse) -> Any:
        if not resp.found:
            if isinstance(default, Mapping) and not isinstance(default, dict):
                return copy.deepcopy(dict(default))
            return missing(default)
        return coerce(entry_of(resp.entry).value, default, key)

    return Plan("Get", svc.GetRequest(session_id=session, key=key), True, convert)


def plan_get_json(session: str, key: str, default: Any) -> Plan[Any]:
    """Get a JSON value (any stored kind as its JSON equivalent; a file as its description).

    A miss returns ``default`` (a fresh copy of a dict or list: `missing`); a stored
    JSON null returns None.
    """

    def convert(resp: svc.GetResponse) -> Any:
        if not resp.found:
            return missing(default)
        value = entry_of(resp.entry).value
        return value.to_json() if isinstance(value, FileInfo) else value

    return Plan("Get", svc.GetRequest(session_id=session, key=key), True, convert)


def plan_get_entry(session: str, key: str) -> Plan[Entry | None]:
    """Get a value with its kind, version and expiry."""

    def convert(resp: svc.GetResponse) -> Entry | None:
        return entry_of(resp.entry) if resp.found else None

    return Plan("Get", svc.GetRequest(session_id=session, key=key), True, convert)


def plan_get_many(session: str, keys: Iterable[str]) -> Plan[dict[str, Value | None]]:
    """Get several values; missing keys are left out of the result (a JSON null is None)."""

    def convert(resp: svc.GetManyResponse) -> dict[str, Value | None]:
        # An unset Value (a kind this client does not know) is left out; a JSON null is not.
        return {e.key: value_of(e.value) for e in resp.entries if e.value.WhichOneof("kind")}

    return Plan("GetMany", svc.GetManyRequest(session_id=session, keys=list(keys)), True, convert)


def plan_set(
    session: str,
    key: str,
    value: Scalar,
    ttl: int | None,
    if_version: int | None,
    only_if_absent: bool,
) -> Plan[WriteResult]:
    """Set a string, number or boolean."""
    request = svc.SetRequest(session_id=session, key=key, **_scalar_field(value))
    conditional = _apply(request, ttl, if_version, only_if_absent)
    return Plan("Set", request, not conditional, lambda r: _write_result(r.result))


def plan_set_json(
    session: str,
    key: str,
    value: Any,
    ttl: int | None,
    if_version: int | None,
    only_if_absent: bool,
) -> Plan[WriteResult]:
    """Set a JSON value (serialized compactly here, validated by the server)."""
    request = svc.SetJsonRequest(session_id=session, key=key, json=_json_text(value))
    conditional = _apply(request, ttl, if_version, only_if_absent)
    return Plan("SetJson", request, not conditional, lambda r: _write_result(r.result))


def plan_set_many(
    session: str, entries: Mapping[str, Any] | Iterable[SetItem], ttl: int | None
) -> Plan[list[WriteResult]]:
    """Set several values all or nothing."""
    items = (
        [SetItem(k, v, ttl) for k, v in entries.items()]
        if isinstance(entries, Mapping)
        else list(entries)
    )
    pb_entries = []
    conditional = False
    for item in items:
        is_json = item.json or not isinstance(item.value, str | int | float)
        value = (
            pb.Value(json_value=_json_text(item.value))
            if is_json
            else pb.Value(**_scalar_field(item.value))
        )
        entry = svc.SetManyEntry(key=item.key, value=value)
        conditional |= _apply(
            entry, item.ttl if item.ttl is not None else ttl, item.if_version, item.only_if_absent
        )
        pb_entries.append(entry)
    return Plan(
        "SetMany",
        svc.SetManyRequest(session_id=session, entries=pb_entries),
        not conditional,
        lambda r: [_write_result(x) for x in r.results],
    )


def plan_delete(session: str, keys: str | Iterable[str]) -> Plan[int]:
    """Delete one key or several; returns how many existed."""
    request = svc.DeleteRequest(session_id=session, keys=keys_list(keys))
    return Plan("Delete", request, True, lambda r: int(r.deleted_count))


def plan_increment(
    session: str, key: str, delta: float, ttl: int | None, request_id: str | None
) -> Plan[int | float]:
    """Increment a number; a request id makes retries count once."""
    request = svc.IncrementRequest(
        session_id=session,
        key=key,
        delta=float(delta),
        request_id=request_id if request_id is not None else uuid.uuid4().hex,
    )
    if ttl is not None:
        request.ttl_seconds = ttl
    # Without an id (request_id="") a retry could count twice, so none is made.
    return Plan("Increment", request, bool(request.request_id), lambda r: _number(r.value))


def plan_touch(session: str, keys: str | Iterable[str], ttl: int) -> Plan[int]:
    """Set a new TTL on keys; returns how many existed."""
    request = svc.TouchRequest(session_id=session, keys=keys_list(keys), ttl_seconds=ttl)
    return Plan("Touch", request, True, lambda r: int(r.touched_count))


def plan_list(session: str) -> Plan[list[EntryInfo]]:
    """Describe the session's keys."""

    def convert(resp: svc.ListResponse) -> list[EntryInfo]:
        return [
            EntryInfo(
                e.key,
                _KIND_NAMES.get(e.kind, "unknown"),
                e.size_bytes,
                _time(e.expires_at),
                e.version,
            )
            for e in resp.entries
        ]

    return Plan("List", svc.ListRequest(session_id=session), True, convert)


def plan_clear(session: str) -> Plan[int]:
    """Delete the whole session."""
    return Plan("Clear", svc.ClearRequest(session_id=session), True, lambda r: int(r.deleted_count))


def plan_limits() -> Plan[Limits]:
    """Read the limits in force."""

    def convert(resp: svc.GetLimitsResponse) -> Limits:
        lim, tl, tu = resp.limits, resp.tenant_limits, resp.tenant_usage
        values: dict[str, Any] = {
            f.name: getattr(lim, f.name)
            for f in fields(Limits)
            if f.name not in ("tenant_limits", "tenant_usage")
        }
        values["allowed_mime_types"] = tuple(values["allowed_mime_types"])
        return Limits(
            **values,
            tenant_limits=TenantLimits(
                **{f.name: getattr(tl, f.name) for f in fields(TenantLimits)}
            ),
            tenant_usage=TenantUsage(**{f.name: getattr(tu, f.name) for f in fields(TenantUsage)}),
        )

    return Plan("GetLimits", svc.GetLimitsRequest(), True, convert)


_PERMISSIONS: Final[dict[str, svc.TokenPermission.ValueType]] = {
    "read": svc.TOKEN_PERMISSION_READ,
    "write": svc.TOKEN_PERMISSION_WRITE,
    "files": svc.TOKEN_PERMISSION_FILES,
}


def plan_create_session_token(
    session: str, permissions: Iterable[TokenPermission], ttl_seconds: int | None
) -> Plan[SessionToken]:
    """Issue a token for one session.

    Not retried: a retry after a lost response would issue a second token.
    """
    names = [permissions] if isinstance(permissions, str) else list(permissions)
    unknown = [p for p in names if p not in _PERMISSIONS]
    if unknown:
        raise ValueError(f"unknown permission {unknown[0]!r}: use 'read', 'write' or 'files'")
    request = svc.CreateSessionTokenRequest(
        session_id=session, permissions=[_PERMISSIONS[p] for p in names]
    )
    if ttl_seconds is not None:
        request.ttl_seconds = ttl_seconds
    return Plan(
        "CreateSessionToken",
        request,
        False,
        lambda r: SessionToken(r.token, r.token_id, _time(r.expires_at)),
    )


def plan_revoke_session_token(token_id: str | None, session_id: str | None) -> Plan[None]:
    """Revoke one token, or every token issued so far for a session."""
    if token_id is not None and session_id is None:
        request = svc.RevokeSessionTokenRequest(token_id=token_id)
    elif session_id is not None and token_id is None:
        request = svc.RevokeSessionTokenRequest(session_id=session_id)
    else:
        raise ValueError("pass exactly one of token_id= and session_id=")
    return Plan("RevokeSessionToken", request, True, lambda r: None)


def retry_delay(
    error: MemoryApiError, attempt: int, max_attempts: int, retryable: bool, deadline: float
) -> float | None:
    """Seconds to wait before retrying a failed attempt, or None to give up.

    Only UNAVAILABLE is retried (RATE_LIMITED surfaces with ``retry_after`` for the
    caller to back off). The server's RetryInfo, when it sent one, is the delay;
    otherwise a jittered 50 ms doubling. A delay that would end past the deadline
    gives up at once: the error is raised with its ``retry_after``.
    """
    if not retryable or error.status != grpc.StatusCode.UNAVAILABLE or attempt >= max_attempts:
        return None
    delay = backoff(attempt, error.retry_after)
    return delay if time.monotonic() + delay < deadline else None


def backoff(attempt: int, retry_after: float | None) -> float:
    """Seconds to wait before retry ``attempt`` (1-based).

    The server's RetryInfo when it sent one, else 50 ms doubling with jitter.
    """
    if retry_after is not None:
        return retry_after
    base: float = 0.05 * (2 ** (attempt - 1))
    return base * (0.5 + random.random())


# --- structured memory: documents, schemas, changes --------------------------------


class Document(dict[str, Any]):
    """A session's memory as one JSON object: a plain ``dict``, plus its revision.

    Each top-level field is one key of the session (files appear as their FileInfo
    fields). Comparing, copying or serializing it works as for any ``dict``.

    Attributes:
        revision: The session's revision when it was read; pass it as ``if_revision``
            to make an update conditional on nothing having changed since.
        schema: The name of the schema the session is bound to, or None.
        defaulted: The paths (``"user.name"``) filled from the schema's defaults
            rather than from stored values.
    """

    revision: int
    schema: str | None
    defaulted: list[str]

    def __init__(
        self,
        fields: Mapping[str, Any] | None = None,
        *,
        revision: int = 0,
        schema: str | None = None,
        defaulted: Iterable[str] = (),
    ) -> None:
        super().__init__(fields or {})
        self.revision = revision
        self.schema = schema
        self.defaulted = list(defaulted)

    def __repr__(self) -> str:
        return (
            f"Document({dict.__repr__(self)}, revision={self.revision},"
            f" schema={self.schema!r}, defaulted={self.defaulted!r})"
        )


@dataclass(frozen=True, slots=True)
class SchemaInfo:
    """A registered JSON Schema's description (see `MemoryClient.put_schema`)."""

    name: str
    version: int
    size_bytes: int
    updated_at: datetime


ChangeOperation = Literal["set", "delete", "expire", "reset"]


@dataclass(frozen=True, slots=True)
class Change:
    """One change of a session, as `watch` reports it.

    Attributes:
        key: The key that changed; ``""`` for a ``"reset"``.
        operation: ``"set"`` (written), ``"delete"`` (deleted), ``"expire"``
            (expired, reported live only) or ``"reset"``: changes were missed (they
            are older than the server's change log, or the watcher fell behind), so
            re-read the document; the stream goes on from ``revision``.
        kind: The kind written (``"string"``, ``"number"``, ``"boolean"``,
            ``"json"``, ``"file"``); None for deletes, expiries and resets.
        version: The key's new version (sets) or the version it had (deletes, when
            known; 0 otherwise).
        revision: The session revision of this change.
        expires_at: When the written value expires; None for everything but sets.
    """

    key: str
    operation: ChangeOperation
    kind: str | None
    version: int
    revision: int
    expires_at: datetime | None


class SupportsModelDump(Protocol):
    """A pydantic model instance (anything with pydantic's ``model_dump``)."""

    def model_dump(self, *, mode: str = ..., exclude_unset: bool = ...) -> dict[str, Any]:
        """The model's fields as a dict."""
        ...


Partial = Mapping[str, Any] | SupportsModelDump
M = TypeVar("M")


def _is_model_instance(value: Any) -> bool:
    return not isinstance(value, type) and callable(getattr(value, "model_dump", None))


def _dump_model(value: Any) -> Any:
    """json.dumps hook: pydantic models nested in a dict, as their set fields."""
    if _is_model_instance(value):
        return value.model_dump(mode="json", exclude_unset=True)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def patch_text(partial: Any) -> str:
    """A merge patch as compact JSON: a dict as is, a pydantic model by its set fields.

    Anything else JSON-serializable is sent as well, for the server to refuse
    (a merge patch must be an object: INVALID_PATCH).
    """
    if _is_model_instance(partial):
        partial = partial.model_dump(mode="json", exclude_unset=True)
    elif isinstance(partial, Mapping):
        partial = dict(partial)
    return json.dumps(
        partial, ensure_ascii=False, separators=(",", ":"), allow_nan=False, default=_dump_model
    )


def json_schema_of(schema: Mapping[str, Any] | type) -> dict[str, Any]:
    """A JSON Schema as a dict: a dict as is, a pydantic model class by its JSON Schema.

    Raises:
        TypeError: ``schema`` is neither.
    """
    if isinstance(schema, type):
        make = getattr(schema, "model_json_schema", None)
        if not callable(make):
            raise TypeError(
                f"{schema.__name__} has no model_json_schema(); pass a pydantic model"
                " class or a JSON Schema dict"
            )
        result: dict[str, Any] = make()
        return result
    if isinstance(schema, Mapping):
        return dict(schema)
    raise TypeError(
        f"a schema is a JSON Schema dict or a pydantic model class; got {type(schema).__name__}"
    )


def validate_model(model: type[M], document: Mapping[str, Any]) -> M:
    """``model.model_validate(document)`` for a pydantic model class.

    Raises:
        TypeError: ``model`` has no ``model_validate``.
        pydantic.ValidationError: the document does not fit the model.
    """
    validate = getattr(model, "model_validate", None)
    if not callable(validate):
        raise TypeError(f"{model!r} has no model_validate(); pass a pydantic model class")
    result: M = validate(dict(document))
    return result


def _schema_info(info: svc.SchemaInfo) -> SchemaInfo:
    return SchemaInfo(info.name, info.version, info.size_bytes, _time(info.updated_at))


def plan_get_document(
    session: str, paths: str | Iterable[str] | None, defaults: bool
) -> Plan[Document]:
    """Read the session as one document (optionally only some paths)."""
    request = svc.GetDocumentRequest(
        session_id=session,
        paths=keys_list(paths) if paths is not None else [],
        omit_defaults=not defaults,
    )

    def convert(resp: svc.GetDocumentResponse) -> Document:
        return Document(
            json.loads(resp.json) if resp.json else {},
            revision=resp.revision,
            schema=resp.schema or None,
            defaulted=resp.defaulted_paths,
        )

    return Plan("GetDocument", request, True, convert)


def plan_patch_document(
    session: str,
    partial: Any,
    ttl: int | None,
    schema: str | None,
    if_revision: int | None,
    must_exist: bool,
) -> Plan[int]:
    """Merge a partial document into the session; the result is the new revision."""
    request = svc.PatchDocumentRequest(
        session_id=session,
        merge_patch=patch_text(partial),
        schema=schema or "",
        must_exist=must_exist,
    )
    if ttl is not None:  # required: the server says so (TTL_REQUIRED), in every language
        request.ttl_seconds = ttl
    if if_revision is not None:
        request.if_revision = if_revision
    # A merge patch applied twice leaves the same document (like a repeated Set), so
    # an unconditional one is retried; a conditional one is not: if the first attempt
    # was applied, the retry would fail with REVISION_MISMATCH.
    return Plan("PatchDocument", request, if_revision is None, lambda r: int(r.revision))


def plan_put_schema(name: str, schema: Mapping[str, Any] | type) -> Plan[SchemaInfo]:
    """Register or replace a named JSON Schema."""
    request = svc.PutSchemaRequest(name=name, json_schema=_json_text(json_schema_of(schema)))
    return Plan("PutSchema", request, True, lambda r: _schema_info(r.schema))


def plan_get_schema(name: str) -> Plan[dict[str, Any]]:
    """Read a registered schema (the JSON Schema itself)."""

    def convert(resp: svc.GetSchemaResponse) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(resp.json_schema)
        return result

    return Plan("GetSchema", svc.GetSchemaRequest(name=name), True, convert)


def plan_list_schemas() -> Plan[list[SchemaInfo]]:
    """Describe the tenant's schemas, sorted by name."""
    return Plan(
        "ListSchemas",
        svc.ListSchemasRequest(),
        True,
        lambda r: [_schema_info(s) for s in r.schemas],
    )


def plan_delete_schema(name: str) -> Plan[bool]:
    """Remove a schema; True when it existed."""
    return Plan("DeleteSchema", svc.DeleteSchemaRequest(name=name), True, lambda r: r.deleted)


def plan_bind_schema(session: str, name: str | None) -> Plan[int]:
    """Bind the session to a schema (None or "" unbinds); the result is the revision."""
    request = svc.BindSchemaRequest(session_id=session, schema=name or "")
    return Plan("BindSchema", request, True, lambda r: int(r.revision))


_OPERATIONS: Final[dict[int, ChangeOperation]] = {
    pb.CHANGE_OPERATION_SET: "set",
    pb.CHANGE_OPERATION_DELETE: "delete",
    pb.CHANGE_OPERATION_EXPIRE: "expire",
}
# Streams that end with these (or without a status) were dropped, not refused:
# UNAVAILABLE is a server going away, CANCELLED one cancelling its calls on shutdown.
_RESUMABLE: Final = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED)
# Resuming waits longer than a unary retry: a server restart takes seconds, and a
# watcher should ride it out within the client's few attempts.
WATCH_BASE_BACKOFF: Final = 0.5
WATCH_MAX_BACKOFF: Final = 5.0


def watch_backoff(failures: int, retry_after: float | None) -> float:
    """Seconds before reopening a Watch after ``failures`` streams in a row without a message.

    0 failures (a stream that worked dropped): reopen almost at once.
    """
    if retry_after is not None:  # the server's RetryInfo is the delay
        return retry_after
    if failures == 0:
        return backoff(1, None)
    base: float = WATCH_BASE_BACKOFF * (2 ** (failures - 1)) * (0.5 + random.random())
    return min(base, WATCH_MAX_BACKOFF)


def change_of(change: pb.Change) -> Change | None:
    """Convert a proto Change; None for an operation this client does not know."""
    operation = _OPERATIONS.get(change.operation)
    if operation is None:
        return None
    return Change(
        change.key,
        operation,
        _KIND_NAMES.get(change.kind),
        change.version,
        change.revision,
        _time(change.expires_at) if change.HasField("expires_at") else None,
    )


class WatchCursor:
    """Where a Watch stream is, and whether to resume it: shared by sync and async.

    The sync and async change streams only differ in how they read messages and
    sleep; the resume rules live here.
    """

    def __init__(
        self,
        session: str,
        after_revision: int | None,
        max_attempts: int,
        timeout: float | None = None,
    ) -> None:
        self.session = session
        self.revision = after_revision
        self._max_attempts = max(1, max_attempts)
        self._failures = 0
        self._progress = False
        self._deadline = None if timeout is None else time.monotonic() + timeout

    def call_timeout(self) -> float | None:
        """The deadline of the next stream, in seconds from now; None: no deadline."""
        if self._deadline is None:
            return None
        return max(self._deadline - time.monotonic(), 0.001)

    def request(self) -> svc.WatchRequest:
        """The request of the next stream: resume after the last revision seen."""
        request = svc.WatchRequest(session_id=self.session)
        if self.revision is not None:
            request.after_revision = self.revision
        return request

    def receive(self, response: svc.WatchResponse) -> list[Change]:
        """The changes of one message (a ``"reset"`` when changes were missed)."""
        self._progress = True
        if response.compacted:
            changes = [Change("", "reset", None, 0, response.revision, None)]
        else:
            changes = [x for x in map(change_of, response.changes) if x is not None]
        if self.revision is None or response.revision > self.revision or response.compacted:
            self.revision = response.revision
        return changes

    def ended(self, error: MemoryApiError | None) -> float:
        """The stream ended (``error`` None: without a status). Seconds before resuming.

        Raises:
            MemoryApiError: ``error`` when it is not a dropped stream, or the last
                failure once ``max_attempts`` streams in a row brought no message.
        """
        if error is not None and error.status not in _RESUMABLE:
            raise error
        if self._progress:
            self._progress = False
            self._failures = 0
        else:
            self._failures += 1
            if self._failures >= self._max_attempts:
                failure = error or ServiceUnavailableError(
                    f"the Watch stream ended {self._failures} times in a row without a message",
                    status=grpc.StatusCode.UNAVAILABLE,
                )
                log_retry("Watch", self._failures, failure, None, True)
                raise failure
        delay = watch_backoff(self._failures, error.retry_after if error else None)
        if self._deadline is not None:  # never sleep past the watch's timeout
            delay = min(delay, max(self._deadline - time.monotonic(), 0.0))
        if error is not None:
            log_retry("Watch", self._failures, error, delay, True)
        else:
            LOGGER.debug(
                "Watch stream ended without a status; reopening in %.3f s",
                delay,
                extra={"rpc_method": "Watch", "attempt": self._failures, "backoff_seconds": delay},
            )
        return delay


# --- files ----------------------------------------------------------------------

CHUNK_SIZE: Final = 256 * 1024
FileData = bytes | bytearray | memoryview | str | os.PathLike[str] | BinaryIO | Iterable[bytes]
Progress = Callable[[int, int | None], None]


@dataclass(frozen=True, slots=True)
class FileSource:
    """Upload bytes as chunks; ``replayable`` sources can be sent again on retry."""

    chunks: Callable[[], Iterator[bytes]]
    size: int | None
    sha256: str
    replayable: bool


def _byte_chunks(data: bytes, size: int) -> Callable[[], Iterator[bytes]]:
    view = memoryview(data)
    return lambda: (bytes(view[i : i + size]) for i in range(0, len(view), size))


def _path_chunks(path: str, size: int) -> Callable[[], Iterator[bytes]]:
    def chunks() -> Iterator[bytes]:
        with open(path, "rb") as f:
            while block := f.read(size):
                yield block

    return chunks


def file_source(data: FileData, chunk_size: int = CHUNK_SIZE) -> FileSource:
    """Normalize what `set_file` accepts into chunks.

    Accepted: bytes, a base64 str, a path, a binary file object or an iterable of
    byte chunks.
    """
    if isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
        return FileSource(
            _byte_chunks(raw, chunk_size), len(raw), hashlib.sha256(raw).hexdigest(), True
        )
    if isinstance(data, str) and not os.path.isfile(data):
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("a str is a file path or base64 data; this is neither") from None
        return file_source(raw, chunk_size)
    if isinstance(data, str | os.PathLike):
        path = os.fspath(data)
        return FileSource(_path_chunks(path, chunk_size), os.path.getsize(path), "", True)
    if hasattr(data, "read"):
        stream = data

        def from_stream() -> Iterator[bytes]:
            while block := stream.read(chunk_size):
                yield block

        return FileSource(from_stream, None, "", False)
    chunks = iter(data)

    def pieces() -> Iterator[bytes]:
        # Larger chunks than ours are split: the server caps one message's size.
        for chunk in chunks:
            if len(chunk) <= chunk_size:
                yield bytes(chunk)
            else:
                view = memoryview(chunk)
                for start in range(0, len(view), chunk_size):
                    yield bytes(view[start : start + chunk_size])

    return FileSource(pieces, None, "", False)


@dataclass(frozen=True, slots=True)
class UploadPlan:
    """A SetFile call: ``requests()`` builds the stream afresh for each attempt."""

    requests: Callable[[], Iterator[svc.SetFileRequest]]
    retryable: bool


def plan_set_file(
    session: str,
    key: str,
    data: FileData,
    *,
    mime: str,
    ttl: int,
    upload_id: str | None,
    if_version: int | None,
    only_if_absent: bool,
    progress: Progress | None,
) -> UploadPlan:
    """SetFile: a header, then the chunks (reporting progress), then finish_write.

    The upload id (generated when not given) makes a retry return the
    committed file; replayable sources (bytes, paths) may be retried.
    """
    source = file_source(data)
    header = svc.FileHeader(
        session_id=session,
        key=key,
        mime_type=mime,
        ttl_seconds=ttl,
        sha256=source.sha256,
        upload_id=upload_id or uuid.uuid4().hex,
    )
    if source.size is not None:
        header.size_bytes = source.size
    precondition = _precondition(if_version, only_if_absent)
    if precondition is not None:
        header.if_version = precondition

    def requests() -> Iterator[svc.SetFileRequest]:
        yield svc.SetFileRequest(header=header)
        sent = 0
        for chunk in source.chunks():
            if chunk:
                yield svc.SetFileRequest(chunk=chunk)
                sent += len(chunk)
                if progress is not None:
                    progress(sent, source.size)
        yield svc.SetFileRequest(finish_write=True)

    return UploadPlan(requests, source.replayable)


def plan_get_file(session: str, key: str, url_ttl: int | None) -> Plan[Any]:
    """GetFile; the result is (FileInfo, url, url_expires_at) or None."""
    request = svc.GetFileRequest(session_id=session, key=key)
    if url_ttl is not None:
        request.url_ttl_seconds = url_ttl

    def convert(resp: svc.GetFileResponse) -> tuple[FileInfo, str, datetime] | None:
        if not resp.found:
            return None
        return file_info_of(resp.file), resp.url, _time(resp.url_expires_at)

    return Plan("GetFile", request, True, convert)


def read_file_request(session: str, key: str, offset: int, limit: int | None) -> Any:
    """The ReadFile request."""
    request = svc.ReadFileRequest(session_id=session, key=key, offset=offset)
    if limit is not None:
        request.limit = limit
    return request
