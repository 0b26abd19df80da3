"""The document model: a session seen as one JSON object, pure and transport-free.

Each live key of a session is one top-level member of its document; its value is
the stored value as JSON (`record_value`). This module holds everything about
that view that needs no store: reading paths (``lastOrder.status``,
``cart.items.0.name``), projecting a document on paths, RFC 7396 merge patches,
and turning a top-level document value back into a stored kind and payload under
the same limits as Set and SetJson (`to_stored`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from . import core
from .core import LIMITS, Kind
from .errors import DomainError, invalid
from .values import FileMeta, Record, file_meta

# A segment that indexes an array: a canonical decimal (no sign, no leading zeros).
_DIGITS: Final = frozenset("0123456789")
# Integral numbers below this come back as JSON integers (doubles are exact there).
_EXACT_INT: Final = 2**53
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


# --- paths -------------------------------------------------------------------


def parse_path(text: str, field: str = "key") -> tuple[str, tuple[str, ...]]:
    """Split a key or path (``key.member.0.name``) into the key and the rest.

    The first segment is the key and must match the key pattern; the others are
    object member names or decimal array indexes. A text without a dot is a plain
    key and fails exactly as a key does.

    Args:
        text: The key or path as the caller sent it.
        field: The request field, for errors.

    Returns:
        The key and the remaining segments (empty for a plain key).

    Raises:
        DomainError: INVALID_KEY when the first segment is not a valid key;
            INVALID_PATH for an empty segment, more than 1,024 characters or more
            than 33 segments.
    """
    if "." not in text:
        return core.key(text, field), ()
    n = len(text)
    if n > LIMITS.max_path_length:
        raise _bad_path(
            text,
            field,
            f"{field} is a path of {n} characters; the limit is {LIMITS.max_path_length}",
            limit=LIMITS.max_path_length,
            actual=n,
        )
    segments = text.split(".")
    if len(segments) > LIMITS.max_path_segments:
        raise _bad_path(
            text,
            field,
            f"{field} is a path of {len(segments)} segments;"
            f" the limit is {LIMITS.max_path_segments}",
            limit=LIMITS.max_path_segments,
            actual=len(segments),
        )
    if "" in segments:
        raise _bad_path(
            text,
            field,
            f"{field} {_shown(text)!r} has an empty segment: write paths as"
            " key.member.0.name, without leading, trailing or doubled dots",
        )
    return core.key(segments[0], field), tuple(segments[1:])


def _shown(text: str) -> str:
    return text if len(text) <= 128 else text[:125] + "..."


def _bad_path(text: str, field: str, message: str, **metadata: object) -> DomainError:
    return invalid("INVALID_PATH", message, field, path=_shown(text), **metadata)


def at_path(value: Any, segments: Sequence[str]) -> tuple[bool, Any]:
    """Walk object members and array indexes from a value.

    A segment on an object is a member name (also when it is all digits); on an
    array it must be a canonical decimal index (``0``, ``12``; no sign or leading
    zeros). Anything else, and any step into a string, number, boolean or null,
    is a miss.

    Args:
        value: A document value (as `record_value` returns it).
        segments: The segments after the key.

    Returns:
        ``(True, value at the path)``, or ``(False, None)`` when it is missing.
    """
    for segment in segments:
        if isinstance(value, dict):
            if segment not in value:
                return False, None
            value = value[segment]
        elif isinstance(value, list):
            index = _index(segment)
            if index is None or index >= len(value):
                return False, None
            value = value[index]
        else:
            return False, None
    return True, value


def _index(segment: str) -> int | None:
    if not segment or not _DIGITS.issuperset(segment):
        return None
    if len(segment) > 1 and segment[0] == "0":
        return None
    return int(segment)


def project(
    document: Mapping[str, Any], paths: Sequence[tuple[str, tuple[str, ...]]]
) -> dict[str, Any]:
    """Keep only the given paths of a document, nested as in the document.

    ``lastOrder.status`` projects to ``{"lastOrder": {"status": ...}}``. Arrays
    are never cut: a path that goes through an array keeps that whole array,
    in its place (``cart.items.0.name`` projects to ``{"cart": {"items":
    [...every item, whole...]}}``), so indexes keep their meaning and no
    placeholder values are invented. A path that is a prefix of another wins
    (``user`` and ``user.name`` give the whole ``user``). Missing paths are left
    out.

    Args:
        document: The whole document.
        paths: Parsed paths, as `parse_path` returns them.

    Returns:
        A new document; the values in it are copies.
    """
    cuts: list[tuple[str, ...]] = []
    for key, segments in paths:
        if key not in document or not at_path(document[key], segments)[0]:
            continue
        steps = [key]
        value = document[key]
        for segment in segments:
            if not isinstance(value, dict):
                break  # an array: keep it whole
            steps.append(segment)
            value = value[segment]
        cuts.append(tuple(steps))
    # Drop every cut that lies inside another (or repeats it).
    kept = set(cuts)
    outer = [c for c in dict.fromkeys(cuts) if not any(c[:i] in kept for i in range(1, len(c)))]
    result: dict[str, Any] = {}
    for cut in outer:
        source: Any = document
        target = result
        for segment in cut[:-1]:
            source = source[segment]
            target = target.setdefault(segment, {})
        target[cut[-1]] = _copy(source[cut[-1]])
    return result


# --- values ----------------------------------------------------------------


def record_value(record: Record) -> Any:
    """The document value of a stored record.

    Strings are strings; numbers are integers when integral (every stored number
    is below 10^15, so exact) and floats otherwise; booleans are booleans; JSON
    values are parsed; files are their description (`file_info_value`).

    Args:
        record: A record as the store returns it.

    Returns:
        A JSON-compatible value.
    """
    kind = record.kind
    if kind is Kind.STRING:
        return record.payload
    if kind is Kind.NUMBER:
        number = float(record.payload)
        if number.is_integer() and abs(number) < _EXACT_INT:
            return int(number)
        return number
    if kind is Kind.BOOLEAN:
        return record.payload == "1"
    if kind is Kind.JSON:
        return json.loads(record.payload)
    return file_info_value(file_meta(record))


def file_info_value(meta: FileMeta) -> dict[str, Any]:
    """A file's description as it appears in a document (never its bytes).

    Args:
        meta: The stored file's description.

    Returns:
        ``{"key", "mime_type", "size_bytes", "sha256", "created_at", "expires_at",
        "version"}`` with RFC 3339 UTC timestamps to the millisecond
        (``2025-01-31T12:00:00.000Z``).
    """
    return {
        "key": meta.key,
        "mime_type": meta.mime_type,
        "size_bytes": meta.size_bytes,
        "sha256": meta.sha256,
        "created_at": rfc3339(meta.created_ms),
        "expires_at": rfc3339(meta.expires_ms),
        "version": meta.version,
    }


def rfc3339(ms: int) -> str:
    """A Unix time in milliseconds as an RFC 3339 UTC timestamp ending in ``Z``."""
    moment = _EPOCH + timedelta(milliseconds=ms)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


# --- merge patch -----------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7396 JSON Merge Patch to a value, without changing either.

    A non-object patch replaces the target; an object patch turns a non-object
    target into ``{}``, deletes the members it sets to ``null`` and merges the
    others recursively. Arrays are replaced whole, so nulls inside them stay.

    Args:
        target: The current value (``None`` when absent).
        patch: The patch.

    Returns:
        The patched value; it shares nothing with the inputs.
    """
    if not isinstance(patch, dict):
        return _copy(patch)
    result = {k: _copy(v) for k, v in target.items()} if isinstance(target, dict) else {}
    for name, value in patch.items():
        if value is None:
            result.pop(name, None)
        else:
            result[name] = merge_patch(result.get(name), value)
    return result


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def parse_patch(text: str, field: str = "merge_patch") -> dict[str, Any]:
    """Parse and check a PatchDocument merge patch.

    Args:
        text: The patch as JSON text.
        field: The request field, for errors.

    Returns:
        The patch: an object of 1 to 100 members, each named by a valid key.

    Raises:
        DomainError: INVALID_PATCH (more than 512 KiB of text, or not an object),
            INVALID_JSON (not strict JSON: NaN, duplicate members, lone
            surrogates, numbers beyond a double), JSON_TOO_DEEP (a member value
            nested deeper than 32 levels), TOO_MANY_KEYS, INVALID_KEY.
    """
    size = len(text)
    if size > LIMITS.max_patch_bytes // 4:
        size = len(text.encode("utf-8", "surrogatepass"))
    if size > LIMITS.max_patch_bytes:
        raise invalid(
            "INVALID_PATCH",
            f"{field} is {size} bytes; the limit is {LIMITS.max_patch_bytes}:"
            " split the update into several patches",
            field,
            limit=LIMITS.max_patch_bytes,
            actual=size,
        )
    # One level for the patch object itself, then each value's own limit.
    patch = core.parse_json(text, field, LIMITS.max_json_depth + 1)
    if not isinstance(patch, dict):
        raise invalid(
            "INVALID_PATCH",
            f"{field} must be a JSON object of top-level keys (RFC 7396); got {json_type(patch)}",
            field,
        )
    n = len(patch)
    if n == 0 or n > LIMITS.max_batch_keys:
        raise invalid(
            "TOO_MANY_KEYS",
            f"{field} must name 1 to {LIMITS.max_batch_keys} top-level keys; got {n}",
            field,
            limit=LIMITS.max_batch_keys,
            actual=n,
        )
    for name in patch:
        with _at(name, field, f"{field} member"):
            core.key(name, f"{field} member")
    return patch


def to_stored(key: str, value: Any, field: str = "merge_patch") -> tuple[Kind, str]:
    """The stored kind and canonical payload of a top-level document value.

    The same limits as Set and SetJson apply: a string of at most 255 code
    points, a number below 10^15 with at most 15 significant digits, JSON of at
    most 5 KiB compact and 32 levels.

    Args:
        key: The top-level key (for errors).
        value: The new value of the key; never ``None`` (a null deletes the key,
            so callers delete instead of storing).
        field: The request field, for errors.

    Returns:
        The kind and the payload, exactly as Set or SetJson would store them.

    Raises:
        DomainError: VALUE_TOO_LONG, NUMBER_OUT_OF_RANGE, NUMBER_TOO_PRECISE,
            NUMBER_NOT_FINITE, JSON_TOO_LARGE, JSON_TOO_DEEP or INVALID_JSON,
            with ``field`` and the metadata ``pointer`` ``/<key>``.
        ValueError: For ``None``.
        TypeError: For a value that is not JSON.
    """
    label = f"value for {key!r}"
    if value is None:
        raise ValueError(f"{label} is null: delete the key instead of storing null")
    with _at(key, field, label):
        if isinstance(value, bool):
            return Kind.BOOLEAN, core.bool_value(value)
        if isinstance(value, int):
            try:
                number = float(value)
            except OverflowError:
                raise invalid(
                    "NUMBER_OUT_OF_RANGE",
                    f"{label} is too large; its absolute value must be below 10^15",
                    label,
                    limit="1e15",
                ) from None
            # Integers below 10^15 are exact doubles, so the range check covers precision.
            return Kind.NUMBER, core.number_value(number, label)
        if isinstance(value, float):
            return Kind.NUMBER, core.number_value(value, label)
        if isinstance(value, str):
            return Kind.STRING, core.string_value(value, label)
        if isinstance(value, dict | list):
            try:
                text = core.compact_json(value)
            except RecursionError:
                raise invalid(
                    "JSON_TOO_DEEP",
                    f"{label} nests too many levels; the limit is {LIMITS.max_json_depth}",
                    label,
                    limit=LIMITS.max_json_depth,
                ) from None
            except ValueError:
                raise invalid(
                    "NUMBER_NOT_FINITE", f"{label} holds a number that is not finite", label
                ) from None
            return Kind.JSON, core.json_value(text, label)
    raise TypeError(f"{label} is not a JSON value: {type(value).__name__}")


@contextmanager
def _at(key: str, field: str, label: str) -> Iterator[None]:
    """Re-point errors raised for ``label`` at the request ``field`` and ``/<key>``."""
    try:
        yield
    except DomainError as err:
        if err.field == label:
            err.field = field
            err.metadata["field"] = field
        err.metadata["pointer"] = pointer((key,))
        raise


def pointer(segments: Sequence[str | int]) -> str:
    """A JSON pointer (RFC 6901) for a sequence of member names and indexes."""
    return "".join("/" + str(s).replace("~", "~0").replace("/", "~1") for s in segments)


def json_type(value: Any) -> str:
    """The JSON type of a parsed value in words, with its article ("an integer")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def dumps(document: Any) -> str:
    """Compact JSON text of a document value (UTF-8 characters kept as they are)."""
    return core.compact_json(document)
