"""Limits, TTLs and value rules: transport-free, so they are easy to test alone.

Every limit the service promises lives here, once; the servicer converts protos to
these calls and the Redis store only ever sees values that passed them.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from .errors import invalid


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits in force; identical for every client language."""

    max_string_length: int = 255
    number_abs_bound: float = 1e15
    max_number_digits: int = 15
    max_json_bytes: int = 5 * 1024
    max_json_depth: int = 32
    default_ttl_seconds: int = 86_400
    max_primitive_ttl_seconds: int = 86_400
    max_json_ttl_seconds: int = 86_400
    max_file_ttl_seconds: int = 604_800
    max_file_bytes: int = 10 * 1024 * 1024
    allowed_mime_types: tuple[str, ...] = (
        "text/plain",
        "application/json",
        "application/xml",
        "text/xml",
        "image/jpeg",
        "image/png",
        "image/gif",
        "video/mp4",
        "video/ogg",
        "video/webm",
        "video/x-msvideo",
        "video/mpeg",
        "audio/mpeg",
        "audio/wav",
        "audio/ogg",
        "audio/aac",
        "audio/flac",
        "application/pdf",
    )
    max_session_id_length: int = 256
    max_key_length: int = 128
    key_pattern: str = r"^[A-Za-z_][A-Za-z0-9_-]{0,127}$"
    max_batch_keys: int = 100
    max_keys_per_session: int = 1000
    max_request_id_length: int = 128
    max_schema_bytes: int = 64 * 1024
    max_schemas_per_tenant: int = 100
    max_path_length: int = 1024
    max_path_segments: int = 33
    max_patch_bytes: int = 512 * 1024
    max_document_bytes: int = 1024 * 1024
    watch_log_changes: int = 128
    max_watchers: int = 2048
    # Not client-facing (GetLimits' max_watchers says "a quarter per tenant").
    max_tenant_watchers: int = 512
    # Not a client-facing limit: how long an Increment request id is remembered.
    request_id_window_seconds: int = 600


LIMITS: Final = Limits()

_KEY_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,127}")
# JSON text (in characters) this much longer than the compact limit is refused before
# parsing: JSON_TOO_LARGE however much of it is whitespace.
MAX_JSON_TEXT: Final = 16 * LIMITS.max_json_bytes
_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89a-fA-F]")


class Kind(enum.Enum):
    """The kind of a stored value; the value is the one-letter tag stored in Redis."""

    STRING = "s"
    NUMBER = "n"
    BOOLEAN = "b"
    JSON = "j"
    FILE = "f"

    @property
    def ttl_cap(self) -> int:
        """Largest TTL in seconds a value of this kind may have."""
        return _TTL_CAPS[self]


_TTL_CAPS: Final = {
    Kind.STRING: LIMITS.max_primitive_ttl_seconds,
    Kind.NUMBER: LIMITS.max_primitive_ttl_seconds,
    Kind.BOOLEAN: LIMITS.max_primitive_ttl_seconds,
    Kind.JSON: LIMITS.max_json_ttl_seconds,
    Kind.FILE: LIMITS.max_file_ttl_seconds,
}
KIND_BY_TAG: Final = {k.value: k for k in Kind}


@dataclass(frozen=True, slots=True)
class RequestId:
    """A client's id for one call, bound to what the call does (Stripe's idempotency keys).

    Attributes:
        value: The id as the client sent it (scoped to the session).
        fingerprint: Digest of the operation and its arguments; the same id with
            another fingerprint is another call and is refused.
        keep_ms: How long the id and the call's first result are remembered.
    """

    value: str
    fingerprint: str
    keep_ms: int


def request_fingerprint(operation: str, *arguments: str) -> str:
    """The digest that binds a request id to one operation and its arguments."""
    text = "\x1f".join((operation, *arguments))
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


# --- identifiers -----------------------------------------------------------


def session_id(value: str, field: str = "session_id") -> str:
    """Check a session id: 1 to 256 printable characters.

    "Printable" is Python's `str.isprintable`: no control, format, surrogate,
    private-use, unassigned or separator characters except the ASCII space.
    """
    n = len(value)
    if n == 0 or n > LIMITS.max_session_id_length or not value.isprintable():
        raise invalid(
            "INVALID_SESSION_ID",
            f"{field} must be 1 to {LIMITS.max_session_id_length} printable characters;"
            f" got {n} characters" + ("" if value.isprintable() else " with a non-printable one"),
            field,
            limit=LIMITS.max_session_id_length,
            actual=n,
        )
    return value


def key(value: str, field: str = "key") -> str:
    """Check a key (variable name) against the key pattern."""
    if _KEY_RE.fullmatch(value) is None:
        shown = value[:64]
        raise invalid(
            "INVALID_KEY",
            f"{field} {shown!r} is not a valid key: use 1 to {LIMITS.max_key_length} letters,"
            " digits, '_' or '-', starting with a letter or '_'",
            field,
            key=shown,
            limit=LIMITS.max_key_length,
        )
    return value


def keys(values: Sequence[str], field: str = "keys") -> list[str]:
    """Check a batch of keys: 1 to 100 valid keys; duplicates are dropped, order kept."""
    _batch_size(len(values), field)
    for i, k in enumerate(values):
        key(k, f"{field}[{i}]")
    return list(dict.fromkeys(values))


def _batch_size(n: int, field: str) -> None:
    if n == 0 or n > LIMITS.max_batch_keys:
        raise invalid(
            "TOO_MANY_KEYS",
            f"{field} must name 1 to {LIMITS.max_batch_keys} keys; got {n}",
            field,
            limit=LIMITS.max_batch_keys,
            actual=n,
        )


def unique_keys(values: Iterable[str], field: str) -> None:
    """Reject a write batch that names one key twice."""
    seen: set[str] = set()
    for i, k in enumerate(values):
        if k in seen:
            raise invalid(
                "DUPLICATE_KEY",
                f"key {k!r} appears twice in one batch; each key may be written once",
                f"{field}[{i}].key",
                key=k,
            )
        seen.add(k)


def batch(n: int, field: str) -> None:
    """Check the size of a write batch."""
    _batch_size(n, field)


def request_id(value: str, field: str = "request_id") -> str:
    """Check an Increment request id: empty, or up to 128 printable characters."""
    if len(value) > LIMITS.max_request_id_length or not value.isprintable():
        raise invalid(
            "INVALID_REQUEST_ID",
            f"{field} must be at most {LIMITS.max_request_id_length} printable characters",
            field,
            limit=LIMITS.max_request_id_length,
        )
    return value


def if_version(value: int | None, field: str = "if_version") -> int | None:
    """Check a precondition version: absent, 0 (only if absent) or a positive version."""
    if value is not None and value < 0:
        raise invalid(
            "INVALID_PRECONDITION",
            f"{field} must be 0 (only if absent) or a version (positive); got {value}",
            field,
        )
    return value


# --- values ----------------------------------------------------------------


def string_value(value: str, field: str = "string_value") -> str:
    """Check a string: at most 255 Unicode code points, no lone surrogates."""
    n = len(value)
    if n > LIMITS.max_string_length:
        raise invalid(
            "VALUE_TOO_LONG",
            f"{field} is {n} characters; the limit is {LIMITS.max_string_length}",
            field,
            limit=LIMITS.max_string_length,
            actual=n,
        )
    return value


def significant_digits(value: float) -> int:
    """Significant digits of the shortest round-trip decimal form of a finite float."""
    mantissa = repr(abs(value)).split("e")[0].replace(".", "").lstrip("0").rstrip("0")
    return max(len(mantissa), 1)


def number_value(value: float, field: str = "number_value") -> str:
    """Check a number and return its canonical text (``%.15g``; -0 becomes 0)."""
    if not math.isfinite(value):
        raise invalid("NUMBER_NOT_FINITE", f"{field} must be a finite number; got {value}", field)
    if abs(value) >= LIMITS.number_abs_bound:
        raise invalid(
            "NUMBER_OUT_OF_RANGE",
            f"{field} is {value!r}; its absolute value must be below 10^15",
            field,
            limit="1e15",
        )
    text = f"{value:.15g}"
    if float(text) != value:
        digits = significant_digits(value)
        raise invalid(
            "NUMBER_TOO_PRECISE",
            f"{field} is {value!r} with {digits} significant digits;"
            f" the limit is {LIMITS.max_number_digits}",
            field,
            limit=LIMITS.max_number_digits,
            actual=digits,
        )
    return "0" if value == 0 else text


def bool_value(value: bool) -> str:
    """Return the canonical text of a boolean."""
    return "1" if value else "0"


class _DuplicateKeyError(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise _DuplicateKeyError(f"duplicate object key {k!r}")
            seen.add(k)
    return result


def no_constant(name: str) -> Any:
    """A ``parse_constant`` hook for `json.loads`: NaN and Infinity are not JSON."""
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number {text[:32]} does not fit a double")
    return number


def _checked_int(text: str) -> int:
    number = int(text)
    if len(text) > _DOUBLE_DIGITS:  # shorter ones all fit (a double reaches 1.8e308)
        try:
            float(number)
        except OverflowError:
            raise ValueError(f"number {text[:32]}... does not fit a double") from None
    return number


_DOUBLE_DIGITS: Final = 308


def _depth(root: Any) -> int:
    deepest = 0
    stack: list[tuple[Any, int]] = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            depth += 1
            stack.extend((child, depth) for child in node.values())
        elif isinstance(node, list):
            depth += 1
            stack.extend((child, depth) for child in node)
        deepest = max(deepest, depth)
    return deepest


# Built once: json.loads and json.dumps build a new one per call when given options.
_DECODER: Final = json.JSONDecoder(
    object_pairs_hook=_pairs,
    parse_constant=no_constant,
    parse_float=_finite_float,
    parse_int=_checked_int,
)
_COMPACT: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def compact_json(value: Any) -> str:
    """The compact JSON text of a parsed value (no spaces, UTF-8 characters kept).

    Raises:
        ValueError: NaN or an infinity in ``value``.
        RecursionError: ``value`` nests too deep to encode.
    """
    return _COMPACT.encode(value)


def parse_json(text: str, field: str = "json", max_depth: int = LIMITS.max_json_depth) -> Any:
    """Parse JSON text strictly (RFC 8259); the caller bounds the text's size first.

    Rejects NaN/Infinity, duplicate object keys, lone surrogates, numbers that do
    not fit a double and more than ``max_depth`` levels of nesting.

    Raises:
        DomainError: INVALID_JSON or JSON_TOO_DEEP, naming ``field``.
    """
    try:
        if text.startswith("\ufeff"):  # as json.loads says it
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
        parsed = _DECODER.decode(text)
    except RecursionError:
        raise _too_deep(field, limit=max_depth) from None
    except ValueError as exc:
        raise invalid("INVALID_JSON", f"{field} is not valid JSON: {exc}", field) from None
    # Each level of nesting opens with its own bracket: text with no more
    # brackets than the limit (in strings or not) cannot nest deeper.
    if text.count("[") + text.count("{") > max_depth:
        depth = _depth(parsed)
        if depth > max_depth:
            raise _too_deep(field, depth, max_depth)
    # A lone surrogate can only arrive as a \u escape (the text itself is valid UTF-8).
    if _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(parsed, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise invalid(
                "INVALID_JSON", f"{field} is not valid JSON: it contains a lone surrogate", field
            ) from None
    return parsed


def json_value(text: str, field: str = "json") -> str:
    """Check JSON text (strict RFC 8259) and return its compact form.

    Rejects NaN/Infinity, duplicate object keys, lone surrogates, numbers that do
    not fit a double, more than 32 levels of nesting and more than 5 KiB compact.
    """
    if len(text) > MAX_JSON_TEXT:
        raise invalid(
            "JSON_TOO_LARGE",
            f"{field} is {len(text)} characters of text; the limit is"
            f" {LIMITS.max_json_bytes} bytes of compact JSON",
            field,
            limit=LIMITS.max_json_bytes,
            actual=len(text.encode("utf-8", "surrogatepass")),
        )
    parsed = parse_json(text, field)
    compact = compact_json(parsed)
    try:
        size = len(compact.encode("utf-8"))
    except UnicodeEncodeError:
        raise invalid(
            "INVALID_JSON", f"{field} is not valid JSON: it contains a lone surrogate", field
        ) from None
    if size > LIMITS.max_json_bytes:
        raise invalid(
            "JSON_TOO_LARGE",
            f"{field} is {size} bytes as compact JSON; the limit is {LIMITS.max_json_bytes}",
            field,
            limit=LIMITS.max_json_bytes,
            actual=size,
        )
    return compact


def _too_deep(
    field: str, depth: int | None = None, limit: int = LIMITS.max_json_depth
) -> Exception:
    shown = f"{depth} levels" if depth is not None else "too many levels"
    return invalid(
        "JSON_TOO_DEEP",
        f"{field} nests {shown}; the limit is {limit}",
        field,
        limit=limit,
        **({"actual": depth} if depth is not None else {}),
    )


# --- TTLs ------------------------------------------------------------------


def ttl(kind: Kind, value: int | None, field: str = "ttl_seconds") -> int:
    """Resolve a TTL in seconds: absent means the default (where the kind allows it)."""
    cap = kind.ttl_cap
    if value is None:
        if kind in (Kind.JSON, Kind.FILE):
            raise invalid(
                "TTL_REQUIRED",
                f"{field} is required for {kind.name.lower()} values (1 to {cap} seconds)",
                field,
                limit=cap,
            )
        return LIMITS.default_ttl_seconds
    if not 1 <= value <= cap:
        raise invalid(
            "TTL_OUT_OF_RANGE",
            f"{field} is {value}; it must be between 1 and {cap} seconds"
            f" for {kind.name.lower()} values",
            field,
            limit=cap,
            actual=value,
        )
    return value


def touch_ttl(value: int | None, field: str = "ttl_seconds") -> int:
    """Check a Touch TTL against the largest cap; per-kind caps are checked in Redis."""
    if value is None:
        raise invalid("TTL_REQUIRED", f"{field} is required for Touch", field)
    cap = max(_TTL_CAPS.values())
    if not 1 <= value <= cap:
        raise invalid(
            "TTL_OUT_OF_RANGE",
            f"{field} is {value}; it must be between 1 and {cap} seconds",
            field,
            limit=cap,
            actual=value,
        )
    return value


def kinds_allowing(ttl_seconds: int) -> str:
    """The kind tags whose TTL cap allows this TTL."""
    return "".join(k.value for k, cap in _TTL_CAPS.items() if ttl_seconds <= cap)
