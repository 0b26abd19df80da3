"""Tenant JSON Schemas (draft 2020-12): checking, validating, defaults. Pure, no I/O.

A schema is checked once, when it is registered (`check_schema`): strict JSON,
bounded in size, valid against the draft 2020-12 meta-schema, every `$ref` local
and resolvable, every regular expression runnable by RE2, no `$ref` cycle that
stays on the same value, and cheap enough to evaluate against an empty document.
A checked schema is compiled (`CompiledSchema`) into a `jsonschema` validator
that can never touch the network (its `referencing.Registry` refuses every
retrieval) and that runs `pattern`, `patternProperties` and
`additionalProperties` on RE2, so matching takes linear time whatever the tenant
wrote. `format` is an annotation only, as draft 2020-12 says by default.

Validation runs on the server's event loop, so one tenant's schema must never
hold it for long: every evaluation is metered in steps (`VALIDATION_STEPS`) and
stops with SCHEMA_UNUSABLE when it would take more, and filling defaults is
bounded the same way (`MAX_DEFAULT_NODES`, `LIMITS.max_document_bytes`).
"""

from __future__ import annotations

import contextlib
import functools
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Hashable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, cast
from urllib.parse import unquote

import attrs
import grpc
import re2  # type: ignore[import-untyped]
import referencing.exceptions
from jsonschema import Draft202012Validator, ValidationError, validators
from jsonschema.exceptions import best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from . import core
from .core import LIMITS
from .document import dumps, json_type, pointer
from .errors import DomainError, invalid

if TYPE_CHECKING:
    from referencing._core import Resolver

DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
# The same dialect, written with an empty fragment as some generators do.
_DIALECTS: Final = frozenset({DIALECT, DIALECT + "#"})
# A schema describing a document as deep as the JSON limit needs about two levels
# per document level (`properties`, then the member's schema).
_MAX_SCHEMA_DEPTH: Final = 2 * LIMITS.max_json_depth + 2
# Schema text this much longer than the compact limit is refused before parsing.
_MAX_RAW_SCHEMA: Final = 16 * LIMITS.max_schema_bytes
CACHE_SIZE: Final = 256

# The steps one evaluation of a document may take (see `_charge` for what a step
# is). The slowest kinds of work run about 2 million steps a second (CPython 3.11),
# so an evaluation that exhausts the budget holds the event loop ~50 ms at most; a
# valid 20-key agent document takes 300 steps (0.3 %), 750 when every member is
# a pydantic model or Optional (0.75 %). Filling defaults has the same budget.
VALIDATION_STEPS: Final = 100_000
# The values (nodes) filling defaults may create in one document.
MAX_DEFAULT_NODES: Final = 10_000
# Regular expressions (`pattern`, `patternProperties` names) in one schema: each
# is compiled by RE2 in the server process.
MAX_SCHEMA_PATTERNS: Final = 256
# In-place steps ($ref, allOf, not, ...) one chain may take without reaching a
# deeper value: more only makes the evaluation recurse without need.
MAX_IN_PLACE_DEPTH: Final = 64
# Subschemas one value may be evaluated against in place (the paths through
# $ref, allOf, anyOf, ... from one subschema): evaluations that multiply.
MAX_IN_PLACE_SCHEMAS: Final = 4_096
# What things cost, in steps of about half a microsecond each (measured on
# CPython 3.11; see `_charge`).
_KEYWORD_STEPS: Final = 2  # one keyword evaluated
_SCHEMA_STEPS: Final = 6  # entering a subschema (a validator is built for it)
_EVOLVE_STEPS: Final = 3  # a validator built for a subschema outside `descend`
_REF_STEPS: Final = 11  # looking a `$ref` up
_ERROR_STEPS: Final = 5  # an error made, or passed up by one keyword
# Message characters a step pays for (messages quote the instance: `repr` work).
_CHARS_PER_STEP: Final = 32
# Members of a subschema a step pays for when it is entered (each is looked at).
_KEYS_PER_STEP: Final = 5
# Members of a keyword's value a step pays for, for keywords that only look
# each member up (`properties`, `required`, ...); other keywords pay one each.
_SCANNED_PER_STEP: Final = 16
# RE2 search work (text characters x program size) a step pays for: RE2 is linear
# in the text, with a factor up to the program size when its DFA gives up.
_REGEX_WORK_PER_STEP: Final = 128

# Draft 2020-12 keywords whose value is a schema, an array of schemas, or an
# object of schemas (plus the deprecated `definitions` / `dependencies`, which the
# 2020-12 meta-schema still accepts and `$ref`s may point into).
_IN_VALUE: Final = frozenset(
    {
        "additionalProperties",
        "contains",
        "contentSchema",
        "else",
        "if",
        "items",
        "not",
        "propertyNames",
        "then",
        "unevaluatedItems",
        "unevaluatedProperties",
    }
)
_IN_ARRAY: Final = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_IN_MAP: Final = frozenset(
    {"$defs", "definitions", "dependencies", "dependentSchemas", "patternProperties", "properties"}
)
# The applicators that evaluate their subschemas against the same value (with
# `$ref` and `$dynamicRef`): a cycle through them alone never ends.
_IN_PLACE_VALUE: Final = ("not", "if", "then", "else")
_IN_PLACE_ARRAY: Final = ("allOf", "anyOf", "oneOf")
_IN_PLACE_MAP: Final = ("dependentSchemas",)
_REFS: Final = ("$ref", "$dynamicRef")
# Root keywords under which a member's validity depends on that member alone (the
# others only look at the member names): a write can be checked member by member.
_MEMBERWISE_ROOT: Final = frozenset(
    {
        "$schema", "$id", "$anchor", "$dynamicAnchor", "$comment", "$defs", "definitions",
        "title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly",
        "type", "properties", "required", "additionalProperties", "minProperties",
        "maxProperties", "propertyNames", "dependentRequired",
    }
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Violation:
    """Why a document does not validate.

    Attributes:
        pointer: JSON pointer (RFC 6901) of the failing value, e.g.
            ``/order/status``; for ``required`` the missing member, for
            ``additionalProperties`` the first member not allowed; ``""`` is the
            whole document.
        keyword: The schema keyword that failed (``type``, ``enum``, ...).
        message: Plain words, starting with the pointer:
            ``/order/status must be one of ["placed","shipped"]``.
    """

    pointer: str
    keyword: str
    message: str


# --- metering --------------------------------------------------------------


class _Budget:
    """What one evaluation may still spend, and what it has worked out once."""

    __slots__ = ("constants", "left")

    def __init__(self, steps: int) -> None:
        self.left = steps
        # Canonical forms of `enum` / `const` values, by (keyword, id of the value).
        self.constants: dict[tuple[str, int], Any] = {}


class _Exhausted(Exception):
    """The evaluation ran out of steps."""


# The budget of the evaluation running in this thread (None: not metered).
_BUDGET: ContextVar[_Budget | None] = ContextVar("schema_budget", default=None)


@contextlib.contextmanager
def _metered(steps: int) -> Iterator[_Budget]:
    budget = _Budget(steps)
    token = _BUDGET.set(budget)
    try:
        yield budget
    finally:
        _BUDGET.reset(token)


def _charge(steps: int) -> None:
    """Spend steps of the running evaluation's budget; raise _Exhausted past it.

    A step is about half a microsecond of work at most. A keyword evaluation
    costs `_KEYWORD_STEPS`, plus one per member of its value (`allOf`, ...; one
    per 16 for `properties`, `required`, ...) and, for keywords that walk the
    instance (`items`, `additionalProperties`, ...), one per member of the
    instance. Entering a subschema costs `_SCHEMA_STEPS` plus one per 5 keywords
    in it, following a `$ref` `_REF_STEPS` more, an error `_ERROR_STEPS` at each
    keyword it passes and one per 32 characters of its message, an `enum` one
    per value once per evaluation, comparing a value one per member of every
    array or object in it, RE2 one per 128 units of text length x program size.
    """
    budget = _BUDGET.get()
    if budget is not None:
        budget.left -= steps
        if budget.left < 0:
            raise _Exhausted


# Errors already paid for (their message), marked so that the keywords they pass
# through on their way up do not pay again.
_PAID: Final = "_sessionmemory_paid"
# Keywords that walk the members of the instance (each member is a step).
_OVER_INSTANCE: Final = frozenset(
    {
        "items",
        "contains",
        "propertyNames",
        "unevaluatedItems",
        "unevaluatedProperties",
        "additionalProperties",
        "patternProperties",
    }
)
# Keywords that pay for their value themselves (once per evaluation).
_SELF_METERED: Final = frozenset({"enum", "const"})
# Keywords that look each member of their value up, cheaply.
_SCANNING: Final = frozenset(
    {"properties", "required", "dependentRequired", "dependentSchemas", "patternProperties"}
)

_Keyword = Callable[[Any, Any, Any, Mapping[str, Any]], Any]


def _meter(keyword: str, function: _Keyword) -> _Keyword:
    """A keyword function that pays for its work before doing it."""
    over_value = keyword not in _SELF_METERED
    per_member = _SCANNED_PER_STEP if keyword in _SCANNING else 1
    over_instance = keyword in _OVER_INSTANCE

    def metered(
        validator: Any, value: Any, instance: Any, schema: Mapping[str, Any]
    ) -> Iterator[ValidationError]:
        steps = _KEYWORD_STEPS
        if over_value and isinstance(value, list | dict):
            steps += len(value) // per_member
        if over_instance and isinstance(instance, list | dict):
            steps += len(instance)
        _charge(steps)
        for error in function(validator, value, instance, schema) or ():
            if getattr(error, _PAID, False):
                _charge(_ERROR_STEPS)
            else:
                setattr(error, _PAID, True)
                _charge(2 * _ERROR_STEPS + len(error.message) // _CHARS_PER_STEP)
            yield error

    return metered


_BOOLEAN: Final = "\x00boolean"
_ARRAY: Final = "\x00array"
_OBJECT: Final = "\x00object"


def _canonical(value: Any) -> Hashable:
    """A hashable form of a JSON value, equal exactly when JSON Schema says so.

    As `jsonschema`'s own `equal`: 1 and 1.0 are equal, true and 1 are not,
    object members are unordered. Containers are charged a step per member.
    """
    if isinstance(value, bool):
        return (_BOOLEAN, value)
    if isinstance(value, list):
        _charge(1 + len(value))
        return (_ARRAY, tuple(_canonical(v) for v in value))
    if isinstance(value, dict):
        _charge(1 + len(value))
        return (_OBJECT, frozenset((k, _canonical(v)) for k, v in value.items()))
    return cast(Hashable, value)


def _constant(keyword: str, value: Any, make: Callable[[Any], Any]) -> Any:
    """The canonical form of a keyword's value, worked out once per evaluation."""
    budget = _BUDGET.get()
    key = (keyword, id(value))
    if budget is not None and key in budget.constants:
        return budget.constants[key]
    found = make(value)
    if budget is not None:
        budget.constants[key] = found
    return found


def _enum_set(enums: Any) -> frozenset[Hashable]:
    _charge(len(enums))
    return frozenset(_canonical(each) for each in enums)


# --- RE2 -------------------------------------------------------------------

_RE2_OPTIONS: Final = re2.Options()
_RE2_OPTIONS.log_errors = False  # a tenant's bad pattern is an answer, not a log line


# Process-wide, shared by every tenant (as `ValidatorCache` is): a pattern evicted
# by other tenants' patterns is compiled again, and the evaluation pays for that.
@functools.lru_cache(maxsize=1024)
def _regex(pattern: str) -> tuple[Any, int]:
    """The compiled RE2 form of a pattern, and its program size.

    Compiling costs about a step per program instruction; it is debited from the
    running evaluation (if any) without raising, so that the compiled pattern is
    cached even when the evaluation then stops.

    Raises:
        re2.error: RE2 cannot run the pattern.
    """
    regex = re2.compile(pattern, options=_RE2_OPTIONS)
    size = int(regex.programsize)
    budget = _BUDGET.get()
    if budget is not None:
        budget.left -= size
    return regex, size


def _search(compiled: tuple[Any, int], text: str) -> bool:
    """Whether a compiled pattern matches somewhere in a text; metered."""
    regex, size = compiled
    _charge(1 + len(text) * size // _REGEX_WORK_PER_STEP)
    return regex.search(text) is not None


def _re2_error(pattern: str) -> str | None:
    """Why RE2 cannot run a pattern, or None when it can."""
    try:
        _regex(pattern)
    except re2.error as exc:
        detail = exc.args[0] if exc.args else ""
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        return str(detail) or "it is not a regular expression RE2 accepts"
    return None


# --- keywords --------------------------------------------------------------
# Replacements for stock keywords: RE2 instead of `re`, linear instead of
# quadratic, no `repr` of the instance in messages nobody reads, and one error
# per missing or extra member (so that two writes' violations can be compared).


class _MemberError(ValidationError):
    """A violation about one member of an object: missing, or not allowed.

    Attributes:
        member: The member's name.
        owner: For `dependentRequired`, the member that requires it.
    """

    def __init__(self, message: str, member: str, owner: str | None = None) -> None:
        super().__init__(message)
        self.member = member
        self.owner = owner


def _extras(instance: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """Members of an object that neither `properties` nor `patternProperties` cover."""
    properties = schema.get("properties", {})
    patterns = [_regex(p) for p in schema.get("patternProperties", {})]
    return [
        name
        for name in instance
        if name not in properties and not any(_search(p, name) for p in patterns)
    ]


def _pattern(
    validator: Any, pattern: str, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not _search(_regex(pattern), instance):
        yield ValidationError(f"{dumps(instance)} does not match the pattern {dumps(pattern)}")


def _pattern_properties(
    validator: Any, patterns: Mapping[str, Any], instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        regex = _regex(pattern)
        for name, value in instance.items():
            if _search(regex, name):
                yield from validator.descend(value, subschema, path=name, schema_path=pattern)


def _additional_properties(
    validator: Any, additional: Any, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    extras = _extras(instance, schema)
    if validator.is_type(additional, "object"):
        for name in extras:
            yield from validator.descend(instance[name], additional, path=name)
    elif not additional:
        for name in extras:
            yield _MemberError(f"member {dumps(name)} is not allowed here", name)


def _required(
    validator: Any, required: Sequence[str], instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if validator.is_type(instance, "object"):
        for name in required:
            if name not in instance:
                yield _MemberError(f"{dumps(name)} is a required property", name)


def _dependent_required(
    validator: Any, dependent: Mapping[str, Any], instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for owner, needed in dependent.items():
        if owner in instance:
            _charge(len(needed))
            for name in needed:
                if name not in instance:
                    yield _MemberError(
                        f"{dumps(name)} is required when {dumps(owner)} is set", name, owner
                    )


def _type(
    validator: Any, types: Any, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    names = [types] if isinstance(types, str) else list(types)
    if not any(validator.is_type(instance, name) for name in names):
        yield ValidationError(f"{json_type(instance)} is not of type {', '.join(names)}")


def _enum(
    validator: Any, enums: Any, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if _canonical(instance) not in _constant("enum", enums, _enum_set):
        yield ValidationError("the value is not one of the enumerated values")


def _const(
    validator: Any, const: Any, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if _canonical(instance) != _constant("const", const, _canonical):
        yield ValidationError("the value is not the constant value")


def _unique_items(
    validator: Any, unique: Any, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    # Hashing makes this linear; the stock keyword compares pairs (quadratic).
    if not unique or not validator.is_type(instance, "array"):
        return
    _charge(len(instance))
    seen: set[Hashable] = set()
    for item in instance:
        key = _canonical(item)
        if key in seen:
            yield ValidationError("the array has duplicate items")
            return
        seen.add(key)


_KEYWORDS: Final[dict[str, _Keyword]] = {
    **Draft202012Validator.VALIDATORS,
    "pattern": _pattern,
    "patternProperties": _pattern_properties,
    "additionalProperties": _additional_properties,
    "required": _required,
    "dependentRequired": _dependent_required,
    "type": _type,
    "enum": _enum,
    "const": _const,
    "uniqueItems": _unique_items,
}

# The draft 2020-12 validator with every keyword metered, every regular expression
# on RE2. (`unevaluatedProperties` matches patternProperties with Python's `re`, so
# check_schema refuses schemas that combine the two.)
_Validator: Final[Any] = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator, {k: _meter(k, f) for k, f in _KEYWORDS.items()}
)
_EVOLVE_FIELDS: Final = tuple((f.name, f.alias) for f in attrs.fields(_Validator) if f.init)
_STOCK_ITER_ERRORS: Final = _Validator.iter_errors


# Three methods of the validator class are replaced, on this module's class only:
# `evolve` and `descend` build this class (the stock ones pick the class by the
# subschema's `$schema`, which would hand a subschema naming draft 2020-12 to the
# stock validator: Python's `re` and no meter), and all three pay for their work
# and say "false schema" without quoting the whole instance.


def _evolve(self: Any, **changes: Any) -> Any:
    """`Validator.evolve`, metered, always this module's class."""
    schema = changes.setdefault("schema", self.schema)
    # A new validator scans every keyword of its schema.
    steps = _EVOLVE_STEPS + (len(schema) // _KEYS_PER_STEP if isinstance(schema, dict) else 0)
    _charge(steps + (_REF_STEPS if "_resolver" in changes else 0))
    for name, alias in _EVOLVE_FIELDS:
        if alias not in changes:
            changes[alias] = getattr(self, name)
    return _Validator(**changes)


def _descend(
    self: Any,
    instance: Any,
    schema: Any,
    path: str | int | None = None,
    schema_path: str | int | None = None,
    resolver: Resolver[Any] | None = None,
) -> Iterator[ValidationError]:
    """`Validator.descend` (jsonschema 4.26's), metered, always this module's class.

    ``resolver`` is given after a `$ref` lookup; without it, a subschema without
    `$id` keeps the current resolver (what `in_subresource` returns for it,
    without building a resource first).
    """
    if schema is True:
        return
    if schema is False:
        yield _false(instance)
        return
    steps = _SCHEMA_STEPS + len(schema) // _KEYS_PER_STEP
    _charge(steps + (0 if resolver is None else _REF_STEPS))
    if resolver is None:
        resolver = self._resolver
        if "$id" in schema:
            resolver = resolver.in_subresource(DRAFT202012.create_resource(schema))
    evolved = _Validator(
        schema=schema,
        resolver=self._ref_resolver,
        format_checker=self.format_checker,
        registry=self._registry,
        _resolver=resolver,
    )
    for keyword, value in schema.items():
        function = evolved.VALIDATORS.get(keyword)
        if function is None:
            continue
        for error in function(evolved, value, instance, schema) or ():
            error._set(
                validator=keyword,
                validator_value=value,
                instance=instance,
                schema=schema,
                type_checker=evolved.TYPE_CHECKER,
            )
            if keyword not in {"if", "$ref"}:
                error.schema_path.appendleft(keyword)
            if path is not None:
                error.path.appendleft(path)
            if schema_path is not None:
                error.schema_path.appendleft(schema_path)
            yield error


def _iter_errors(self: Any, instance: Any, _schema: Any = None) -> Iterator[ValidationError]:
    """`Validator.iter_errors`, saying "false schema" without quoting the instance."""
    if _schema is None and self.schema is False:
        return iter((_false(instance),))
    return cast(Iterator[ValidationError], _STOCK_ITER_ERRORS(self, instance, _schema))


def _false(instance: Any) -> ValidationError:
    """The error of a `false` subschema (what stock jsonschema makes, minus the repr)."""
    _charge(2 * _ERROR_STEPS)
    return ValidationError(
        "the schema is false: no value is allowed here",
        validator=None,  # type: ignore[arg-type]
        validator_value=None,
        instance=instance,
        schema=False,
    )


_Validator.evolve = _evolve
_Validator.descend = _descend
_Validator.iter_errors = _iter_errors
# The meta-schema check: no format assertions, so `pattern` is not compiled by `re`.
_META: Final = Draft202012Validator(Draft202012Validator.META_SCHEMA)


def _refuse(uri: str) -> Resource[Any]:
    """The registry's retrieve function: the server never fetches a schema."""
    raise referencing.exceptions.NoSuchResource(ref=uri)  # type: ignore[call-arg]


# --- registering -----------------------------------------------------------


def check_schema(text: str, field: str = "json_schema") -> tuple[dict[str, Any], str]:
    """Check a tenant's JSON Schema before it is registered.

    Args:
        text: The schema as JSON text.
        field: The request field, for errors.

    Returns:
        The parsed schema and its compact JSON text (what is stored).

    Raises:
        DomainError: INVALID_ARGUMENT (SCHEMA_INVALID) when the text is not
            strict JSON, not an object, larger than 64 KiB compact, names another
            dialect than draft 2020-12 in `$schema`, fails the meta-schema, has a
            `$ref` that is remote or points to nothing, has a `pattern` RE2
            cannot run or more than 256 patterns, combines
            `unevaluatedProperties` with `patternProperties`, has a `$ref` cycle
            that stays on the same value (through `$ref`, `allOf`, `anyOf`,
            `oneOf`, `not`, `if` / `then` / `else`, `dependentSchemas`), chains
            more than 64 such steps or multiplies them past 4,096 subschemas,
            or cannot be evaluated against an empty document (validation and
            defaults) within the server's budgets. Metadata: field, pointer
            (where in the schema), limit/actual where a limit applies.
    """
    if len(text) > _MAX_RAW_SCHEMA:
        raise _too_large(field, len(text.encode("utf-8", "surrogatepass")), "of text")
    try:
        schema = core.parse_json(text, field, _MAX_SCHEMA_DEPTH)
    except DomainError as err:
        raise _schema_invalid(field, err.message, "") from None
    if not isinstance(schema, dict):
        raise _schema_invalid(
            field, f"{field} must be a JSON object (a JSON Schema); got {json_type(schema)}", ""
        )
    compact = dumps(schema)
    size = len(compact.encode("utf-8"))
    if size > LIMITS.max_schema_bytes:
        raise _too_large(field, size)
    _check_dialect(schema, (), field)
    try:
        error = best_match(_META.iter_errors(schema))
    except RecursionError:
        raise _schema_invalid(field, f"{field} nests too deeply to be checked", "") from None
    if error is not None:
        where = pointer(list(error.absolute_path))
        raise _schema_invalid(
            field,
            f"{field} is not a valid JSON Schema (draft 2020-12):"
            f" at {where or 'the top level'},"
            f" {_clip(error.message)}",
            where,
        )
    _Structure(schema, field).check()
    _try_out(schema, field)
    return schema, compact


def _too_large(field: str, size: int, measured: str = "as compact JSON") -> DomainError:
    return invalid(
        "SCHEMA_INVALID",
        f"{field} is {size} bytes {measured}; the limit is {LIMITS.max_schema_bytes} bytes"
        " of compact JSON: move repeated parts into $defs",
        field,
        limit=LIMITS.max_schema_bytes,
        actual=size,
    )


def _schema_invalid(field: str, message: str, where: str, **metadata: object) -> DomainError:
    return invalid("SCHEMA_INVALID", message, field, pointer=where, **metadata)


def _check_dialect(schema: Mapping[str, Any], path: Sequence[str | int], field: str) -> None:
    dialect = schema.get("$schema")
    if dialect is not None and dialect not in _DIALECTS:
        where = pointer([*path, "$schema"])
        raise _schema_invalid(
            field,
            f"{field} names the dialect {_clip(dumps(dialect))} at {where}; only draft 2020-12"
            f" ({DIALECT}) is supported: remove $schema or name that one",
            where,
        )


def _subschemas(
    schema: Mapping[str, Any], path: tuple[str | int, ...]
) -> Iterator[tuple[Any, tuple[str | int, ...]]]:
    """The direct subschemas of a schema, with their paths."""
    for keyword, value in schema.items():
        if keyword in _IN_VALUE:
            yield value, (*path, keyword)
        elif keyword in _IN_ARRAY and isinstance(value, list):
            for i, item in enumerate(value):
                yield item, (*path, keyword, i)
        elif keyword in _IN_MAP and isinstance(value, dict):
            for name, item in value.items():
                yield item, (*path, keyword, name)


def _in_place(
    schema: Mapping[str, Any], path: tuple[str | int, ...]
) -> Iterator[tuple[Any, tuple[str | int, ...]]]:
    """The subschemas a schema applies to the same value (`$ref`s aside)."""
    for keyword in _IN_PLACE_VALUE:
        if keyword in schema:
            yield schema[keyword], (*path, keyword)
    for keyword in _IN_PLACE_ARRAY:
        value = schema.get(keyword)
        if isinstance(value, list):
            for i, item in enumerate(value):
                yield item, (*path, keyword, i)
    for keyword in _IN_PLACE_MAP:
        value = schema.get(keyword)
        if isinstance(value, dict):
            for name, item in value.items():
                yield item, (*path, keyword, name)


_Path = tuple[str | int, ...]


class _Structure:
    """One walk over a schema's subschemas and `$ref` targets, checking as it goes.

    Every subschema (an object) is a node, known by its id and named by the path
    where the walk first met it. The walk records the in-place edges between
    nodes (an applicator to its subschemas, a `$ref` to its target), each named by
    the path of the keyword that makes it, to find the cycles and the chains.
    """

    def __init__(self, schema: dict[str, Any], field: str) -> None:
        self.schema = schema
        self.field = field
        self.paths: dict[int, _Path] = {}
        self.edges: dict[int, list[tuple[int, _Path]]] = {}
        # Every regular expression, with its path: compiled once all are counted.
        self.patterns: list[tuple[str, _Path]] = []
        # ($dynamicAnchor name) -> the nodes that declare it.
        self.anchors: dict[str, list[int]] = {}
        # (keyword, reference, its path, path of its resource, its node, resolver)
        self.refs: deque[tuple[str, str, _Path, _Path, int, Resolver[Any]]] = deque()
        self.unevaluated: _Path | None = None
        self.pattern_properties: _Path | None = None

    def check(self) -> None:
        """Raise SCHEMA_INVALID at the first fault found."""
        root = DRAFT202012.create_resource(self.schema)
        resolver = Registry(retrieve=_refuse).resolver_with_root(root)  # type: ignore[call-arg]
        self._walk(self.schema, (), (), resolver)
        self._resolve_references()
        for pattern, path in self.patterns:
            self._compile(pattern, path)
        if self.unevaluated is not None and self.pattern_properties is not None:
            where = pointer(self.pattern_properties)
            raise _schema_invalid(
                self.field,
                f"{self.field} combines unevaluatedProperties ({pointer(self.unevaluated)})"
                f" with patternProperties ({where}), which this server does not support:"
                " use additionalProperties instead of unevaluatedProperties",
                where,
            )
        self._check_in_place()

    def _walk(self, node: Any, path: _Path, base: _Path, resolver: Resolver[Any]) -> None:
        field = self.field
        stack = [(node, path, base, resolver)]
        while stack:
            node, path, base, resolver = stack.pop()
            if not isinstance(node, dict) or id(node) in self.paths:
                continue
            self.paths[id(node)] = path
            if isinstance(node.get("$id"), str):
                resolver = resolver.in_subresource(DRAFT202012.create_resource(node))
                base = path
            _check_dialect(node, path, field)
            pattern = node.get("pattern")
            if isinstance(pattern, str):
                self._count_pattern(pattern, (*path, "pattern"))
            patterns = node.get("patternProperties")
            if isinstance(patterns, dict):
                for name in patterns:
                    self._count_pattern(name, (*path, "patternProperties", name))
                if patterns and self.pattern_properties is None:
                    self.pattern_properties = (*path, "patternProperties")
            if "unevaluatedProperties" in node and self.unevaluated is None:
                self.unevaluated = (*path, "unevaluatedProperties")
            anchor = node.get("$dynamicAnchor")
            if isinstance(anchor, str):
                self.anchors.setdefault(anchor, []).append(id(node))
            for keyword in _REFS:
                ref = node.get(keyword)
                if isinstance(ref, str):
                    self.refs.append((keyword, ref, (*path, keyword), base, id(node), resolver))
            self.edges[id(node)] = [
                (id(sub), where) for sub, where in _in_place(node, path) if isinstance(sub, dict)
            ]
            stack.extend(
                (sub, sub_path, base, resolver) for sub, sub_path in _subschemas(node, path)
            )

    def _resolve_references(self) -> None:
        """Resolve every reference, and record the edges it makes.

        A target outside the walked tree (under an unknown keyword) is walked
        too, so whatever validation can reach has been checked.
        """
        field = self.field
        dynamic: list[tuple[str, int, _Path]] = []
        while self.refs:
            keyword, ref, path, base, node, resolver = self.refs.popleft()
            where = pointer(path)
            if not ref.startswith("#"):
                raise _schema_invalid(
                    field,
                    f"{field} has a remote {keyword} {_clip(dumps(ref))} at {where}: only local"
                    " references (starting with '#') are allowed; the server never fetches"
                    " schemas, so put the referenced schema under $defs",
                    where,
                )
            try:
                target = resolver.lookup(ref)
            except referencing.exceptions.Unresolvable:
                raise _schema_invalid(
                    field,
                    f"{field} has a {keyword} {_clip(dumps(ref))} at {where} that points to"
                    " nothing in the schema",
                    where,
                ) from None
            if isinstance(target.contents, dict):
                self.edges[node].append((id(target.contents), path))
            if keyword == "$dynamicRef" and not ref.startswith("#/"):
                dynamic.append((unquote(ref[1:]), node, path))
            # Name the target by its place in the schema when the reference says it.
            target_path = path
            if ref.startswith("#/"):
                target_path = (*base, *_unpointer(unquote(ref[1:])))
            self._walk(target.contents, target_path, target_path, target.resolver)
        # A dynamic reference may land on any schema declaring its anchor.
        for name, node, path in dynamic:
            self.edges[node].extend((anchor, path) for anchor in self.anchors.get(name, ()))

    def _count_pattern(self, pattern: str, path: _Path) -> None:
        field = self.field
        self.patterns.append((pattern, path))
        if len(self.patterns) > MAX_SCHEMA_PATTERNS:
            where = pointer(path)
            raise _schema_invalid(
                field,
                f"{field} has more than {MAX_SCHEMA_PATTERNS} regular expressions (pattern"
                f" and patternProperties); the one at {where} is past the limit: use enum,"
                " const or fewer, broader patterns",
                where,
                limit=MAX_SCHEMA_PATTERNS,
            )

    def _compile(self, pattern: str, path: _Path) -> None:
        reason = _re2_error(pattern)
        if reason is not None:
            field = self.field
            where = pointer(path)
            raise _schema_invalid(
                field,
                f"{field} has the pattern {_clip(dumps(pattern))} at {where}, which RE2 cannot"
                f" run ({reason}): patterns may not use lookaround or backreferences",
                where,
            )

    def _check_in_place(self) -> None:
        """Refuse in-place cycles, too long in-place chains and multiplying ones."""
        field = self.field
        edges = self.edges
        done: set[int] = set()
        active: set[int] = set()
        order: list[int] = []  # every node after the nodes it leads to
        for start in edges:
            if start in done:
                continue
            active.add(start)
            stack = [(start, iter(edges[start]))]
            while stack:
                node, todo = stack[-1]
                for target, path in todo:
                    if target in active:
                        where = pointer(path)
                        back = pointer(self.paths[target]) or "the root"
                        raise _schema_invalid(
                            field,
                            f"{field} refers to itself without end: {where} leads back to"
                            f" {back} through $ref, allOf, anyOf, oneOf, not, if/then/else or"
                            " dependentSchemas without descending into the value (a"
                            " recursive schema must recurse through properties, items or"
                            " another keyword that looks inside the value)",
                            where,
                        )
                    if target not in done:
                        active.add(target)
                        stack.append((target, iter(edges[target])))
                        break
                else:
                    stack.pop()
                    active.discard(node)
                    done.add(node)
                    order.append(node)
        depth: dict[int, int] = {}
        schemas: dict[int, int] = {}
        for node in order:
            targets = [target for target, _ in edges[node]]
            depth[node] = max((depth[t] + 1 for t in targets), default=0)
            schemas[node] = min(1 + sum(schemas[t] for t in targets), MAX_IN_PLACE_SCHEMAS + 1)
            where = pointer(self.paths[node])
            if depth[node] > MAX_IN_PLACE_DEPTH:
                raise _schema_invalid(
                    field,
                    f"{field} chains more than {MAX_IN_PLACE_DEPTH} $ref / allOf / anyOf /"
                    f" oneOf / not / if steps from {where or 'the root'} without descending"
                    " into the value: shorten the chain",
                    where,
                    limit=MAX_IN_PLACE_DEPTH,
                )
            if schemas[node] > MAX_IN_PLACE_SCHEMAS:
                raise _schema_invalid(
                    field,
                    f"{field} applies more than {MAX_IN_PLACE_SCHEMAS} subschemas to one value"
                    f" at {where or 'the root'} (through $ref, allOf, anyOf, oneOf, not,"
                    " if/then/else, dependentSchemas, which multiply when nested): refer to"
                    " shared parts once instead of from several branches",
                    where,
                    limit=MAX_IN_PLACE_SCHEMAS,
                )


def _unpointer(text: str) -> list[str]:
    """The segments of a JSON pointer (the inverse of `document.pointer`)."""
    return [p.replace("~1", "/").replace("~0", "~") for p in text.split("/")[1:]]


def _try_out(schema: dict[str, Any], field: str) -> None:
    """Refuse a schema that cannot validate, or fill the defaults of, ``{}``."""
    compiled = CompiledSchema(schema)
    try:
        compiled._errors({}, None)
        compiled._defaults({})
    except _Unusable as exc:
        limit = {} if exc.limit is None else {"limit": exc.limit}
        raise _schema_invalid(
            field,
            f"{field} {exc.problem.format(document='an empty document')}: simplify it",
            "",
            **limit,
        ) from None


# --- validating ------------------------------------------------------------


class _Unusable(Exception):
    """A schema could not be evaluated within the budgets.

    Attributes:
        problem: What went wrong, following the schema's name; ``{document}``
            stands for the document evaluated.
        advice: What to do about it.
        limit: The limit that was reached, if one was.
    """

    def __init__(self, problem: str, advice: str, limit: int | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.advice = advice
        self.limit = limit


_FIX: Final = "simplify it with PutSchema or unbind the session"


def _too_costly() -> _Unusable:
    return _Unusable(
        f"is too costly to evaluate against {{document}} (more than {VALIDATION_STEPS:,} steps)",
        _FIX,
        VALIDATION_STEPS,
    )


def _too_deep() -> _Unusable:
    return _Unusable(
        "cannot be evaluated against {document}: its $ref chains or recursion nest too deeply",
        _FIX,
    )


def _unresolvable() -> _Unusable:
    return _Unusable(
        "cannot be evaluated: it has a $ref or a pattern the server cannot use",
        "fix it with PutSchema or unbind the session",
    )


def _defaults_too_large() -> _Unusable:
    return _Unusable(
        f"has defaults too large or too deep to fill into {{document}} (more than"
        f" {MAX_DEFAULT_NODES:,} values, {LIMITS.max_document_bytes:,} bytes or"
        f" {VALIDATION_STEPS:,} steps)",
        "read the document with omit_defaults, or simplify the schema's defaults with PutSchema",
        MAX_DEFAULT_NODES,
    )


class CompiledSchema:
    """A checked schema, ready to validate documents and fill defaults.

    Build it from what `check_schema` returned; it keeps no reference to any
    store and never fetches anything. Every evaluation is bounded: at most
    `VALIDATION_STEPS` steps (about 50 ms), defaults at most `MAX_DEFAULT_NODES`
    values and `LIMITS.max_document_bytes` bytes.
    """

    def __init__(self, schema: Mapping[str, Any], name: str = "") -> None:
        """Compile a schema.

        Args:
            schema: A schema that passed `check_schema`.
            name: The schema's name, for errors.
        """
        self.schema = schema
        self.name = name
        root = DRAFT202012.create_resource(schema)
        registry: Registry[Any] = Registry(retrieve=_refuse)  # type: ignore[call-arg]
        self._validator = _Validator(schema, registry=registry)
        self._resolver = registry.resolver_with_root(root)
        # The root's member schemas, when members can be validated one by one.
        self._members: dict[str, Any] | None = None
        additional = schema.get("additionalProperties", True)
        if _MEMBERWISE_ROOT.issuperset(schema) and isinstance(additional, bool):
            members = schema.get("properties", {})
            self._members = dict(members) if isinstance(members, dict) else None

    def validate(self, document: Any, changed: Collection[str] | None = None) -> Violation | None:
        """The most relevant reason a document is invalid, or None when it is valid.

        Args:
            document: The whole document as it would be after the write.
            changed: The top-level keys the write sets or deletes, when every
                other member was valid against this schema before. Then only
                those members' subschemas are evaluated (plus the object-level
                keywords: required, additionalProperties, ...), when the root of
                the schema allows it (a plain object schema, as pydantic and Zod
                write them); otherwise the whole document is.

        Raises:
            DomainError: FAILED_PRECONDITION (SCHEMA_UNUSABLE) when the schema
                cannot be evaluated against this document: it would take more
                than `VALIDATION_STEPS` steps (metadata limit), or its references
                nest too deeply. Metadata: schema.
        """
        try:
            error = best_match(self._errors(document, changed))
        except _Unusable as exc:
            raise self._unusable(exc) from None
        return None if error is None else _violation(error)

    def introduced(
        self,
        before: Mapping[str, Any],
        after: Mapping[str, Any],
        changed: Collection[str] | None = None,
    ) -> Violation | None:
        """The most relevant violation a write adds, or None when it adds none.

        A write may leave a violation the document already had (a required
        member that expired, a schema that became stricter) but never add one:
        violations are compared by (pointer, keyword). ``before`` is evaluated
        only when ``after`` has a violation, so a valid write costs one
        evaluation.

        Args:
            before: The whole document before the write.
            after: The whole document as it would be after the write.
            changed: The top-level keys the write sets or deletes; with a plain
                object schema at the root (see `validate`), only those members
                are evaluated, in both documents.

        Raises:
            DomainError: FAILED_PRECONDITION (SCHEMA_UNUSABLE), as `validate`.
        """
        try:
            errors = self._errors(after, changed)
            if not errors:
                return None
            old = {_key(e) for e in self._errors(before, changed)}
        except _Unusable as exc:
            raise self._unusable(exc) from None
        error = best_match(e for e in errors if _key(e) not in old)
        return None if error is None else _violation(error)

    def with_defaults(self, document: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """Fill the schema's defaults into absent members of a document.

        Follows `properties` through local `$ref`s and `allOf`, into objects that
        are present (or were just filled). Of `anyOf` / `oneOf` only a single
        branch that describes an object is followed (pydantic's
        ``Optional[Model]``); `if` / `then` are not, since which branch applies is
        not known. A ``null`` default is skipped: in a merge-patch document null
        means absent. Defaults are filled at most `LIMITS.max_json_depth` levels
        deep, so a recursive default ends.

        Args:
            document: The stored document; it is not changed.

        Returns:
            The document with defaults (unchanged parts shared with the input) and
            the dotted paths that were filled (``user.tier``; nothing under a
            filled path is listed again).

        Raises:
            DomainError: FAILED_PRECONDITION (SCHEMA_UNUSABLE) when the defaults
                would add more than `MAX_DEFAULT_NODES` values or
                `LIMITS.max_document_bytes` bytes, or take more than
                `VALIDATION_STEPS` steps to find; the document can still be read
                without defaults. Metadata: schema, limit.
        """
        try:
            return self._defaults(document)
        except _Unusable as exc:
            raise self._unusable(exc) from None

    def _errors(self, document: Any, changed: Collection[str] | None) -> list[ValidationError]:
        """Every top-level error of a document, within the step budget."""
        try:
            with _metered(VALIDATION_STEPS):
                validator = self._validator
                if changed is not None and self._members is not None:
                    shell = dict(self.schema)
                    shell["properties"] = {
                        k: s if k in changed else True for k, s in self._members.items()
                    }
                    validator = validator.evolve(schema=shell)
                return list(validator.iter_errors(document))
        except _Exhausted:
            raise _too_costly() from None
        except RecursionError:
            raise _too_deep() from None
        except (referencing.exceptions.Unresolvable, re2.error):
            raise _unresolvable() from None

    def _defaults(self, document: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
        filled: list[str] = []
        filling = _Filling()
        try:
            with _metered(VALIDATION_STEPS):
                schemas = [(self.schema, self._resolver)]
                result = _fill(document, schemas, "", 0, filled, filling, report=True)
        except (_Exhausted, RecursionError):
            raise _defaults_too_large() from None
        return result, filled

    def _unusable(self, exc: _Unusable) -> DomainError:
        name = f"schema {self.name!r}" if self.name else "the bound schema"
        metadata: dict[str, object] = {"schema": self.name}
        if exc.limit is not None:
            metadata["limit"] = exc.limit
        return DomainError(
            grpc.StatusCode.FAILED_PRECONDITION,
            "SCHEMA_UNUSABLE",
            f"{name} {exc.problem.format(document='this document')}; {exc.advice}",
            metadata=metadata,
        )


def _key(error: ValidationError) -> tuple[str, str]:
    """What identifies a violation across two documents: (pointer, keyword)."""
    path, keyword = _located(best_match([error]) or error)
    return pointer(path), keyword


# --- defaults --------------------------------------------------------------

_NO_DEFAULT: Final = object()


class _Filling:
    """What filling defaults into one document may still create."""

    __slots__ = ("bytes", "nodes", "sizes", "targets")

    def __init__(self) -> None:
        self.nodes = MAX_DEFAULT_NODES
        self.bytes = LIMITS.max_document_bytes
        # Compact JSON bytes of each default met, by its id.
        self.sizes: dict[int, int] = {}
        # `$ref` targets looked up, by (id of the resolver, reference); the
        # resolver is kept so that its id stays its own.
        self.targets: dict[tuple[int, str], tuple[Resolver[Any], Any]] = {}

    def lookup(self, resolver: Resolver[Any], ref: str) -> tuple[Any, Resolver[Any]] | None:
        """The target of a `$ref` and its resolver (None: unresolvable), metered."""
        key = (id(resolver), ref)
        found = self.targets.get(key)
        if found is None:
            _charge(_REF_STEPS)
            try:
                target = resolver.lookup(ref)
            except referencing.exceptions.Unresolvable:
                resolved = None
            else:
                resolved = (target.contents, target.resolver)
            found = self.targets[key] = (resolver, resolved)
        return cast(tuple[Any, "Resolver[Any]"] | None, found[1])

    def take(self, default: Any) -> Any:
        """A fresh copy of a default, paid for; raise _Exhausted past the limits."""
        size = self.sizes.get(id(default))
        if size is None:
            size = self.sizes[id(default)] = len(dumps(default).encode("utf-8"))
        self.bytes -= size
        if self.bytes < 0:
            raise _Exhausted
        return self._copy(default)

    def _copy(self, value: Any) -> Any:
        _charge(1)
        self.nodes -= 1
        if self.nodes < 0:
            raise _Exhausted
        if isinstance(value, dict):
            return {k: self._copy(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._copy(v) for v in value]
        return value


def _facets(
    schema: Any,
    resolver: Resolver[Any],
    seen: set[int],
    filling: _Filling,
    *,
    branches: bool = True,
) -> Iterator[tuple[Mapping[str, Any], Resolver[Any]]]:
    """A schema and the schemas that apply with it, in depth-first order.

    Those are its `$ref` target and its `allOf` members, recursively, and (with
    ``branches``) the one `anyOf` / `oneOf` branch that describes an object when
    exactly one does (``Optional[Model]`` in pydantic: the model or null).
    Iterative, so that a long `$ref` chain cannot exhaust the stack; metered.
    """
    stack: list[tuple[Any, Resolver[Any]]] = [(schema, resolver)]
    while stack:
        schema, resolver = stack.pop()
        if not isinstance(schema, dict) or id(schema) in seen:
            continue
        seen.add(id(schema))
        _charge(_KEYWORD_STEPS)
        if isinstance(schema.get("$id"), str):
            resolver = resolver.in_subresource(DRAFT202012.create_resource(schema))
        yield schema, resolver
        then: list[tuple[Any, Resolver[Any]]] = []
        ref = schema.get("$ref")
        if isinstance(ref, str):
            target = filling.lookup(resolver, ref)
            if target is not None:
                then.append(target)
        all_of = schema.get("allOf")
        if isinstance(all_of, list):
            then.extend((sub, resolver) for sub in all_of)
        if branches:
            for keyword in ("anyOf", "oneOf"):
                options = schema.get(keyword)
                if isinstance(options, list):
                    objects = [o for o in options if _describes_object(o, resolver, filling)]
                    if len(objects) == 1:
                        then.append((objects[0], resolver))
        stack.extend(reversed(then))


def _describes_object(schema: Any, resolver: Resolver[Any], filling: _Filling) -> bool:
    return any(
        "properties" in facet or facet.get("type") == "object"
        for facet, _ in _facets(schema, resolver, set(), filling, branches=False)
    )


def _fill(
    value: Mapping[str, Any],
    schemas: list[tuple[Any, Resolver[Any]]],
    prefix: str,
    depth: int,
    filled: list[str],
    filling: _Filling,
    *,
    report: bool,
) -> dict[str, Any]:
    _charge(_SCHEMA_STEPS + len(value) // _KEYS_PER_STEP)
    properties: dict[str, list[tuple[Any, Resolver[Any]]]] = {}
    seen: set[int] = set()
    for schema, resolver in schemas:
        for facet, facet_resolver in _facets(schema, resolver, seen, filling):
            members = facet.get("properties")
            if isinstance(members, dict):
                _charge(len(members) // _SCANNED_PER_STEP)
                for name, sub in members.items():
                    properties.setdefault(name, []).append((sub, facet_resolver))
    result = dict(value)
    if not properties or depth > LIMITS.max_json_depth:
        return result
    for name, subs in properties.items():
        path = f"{prefix}.{name}" if prefix else name
        present = name in result
        if not present:
            default: Any = _NO_DEFAULT
            seen_sub: set[int] = set()
            for sub, resolver in subs:
                for facet, _ in _facets(sub, resolver, seen_sub, filling):
                    if "default" in facet:
                        default = facet["default"]
                        break
                if default is not _NO_DEFAULT:
                    break
            if default is _NO_DEFAULT or default is None:
                continue
            result[name] = filling.take(default)
            if report:
                filled.append(path)
        if isinstance(result[name], dict):
            result[name] = _fill(
                result[name], subs, path, depth + 1, filled, filling, report=report and present
            )
    return result


# --- words -----------------------------------------------------------------


def _located(error: ValidationError) -> tuple[list[str | int], str]:
    """Where an error is (the member, for a missing or extra one) and its keyword."""
    path: list[str | int] = list(error.absolute_path)
    keyword = str(error.validator) if error.validator is not None else "false"
    if isinstance(error, _MemberError):
        path.append(error.member)
    return path, keyword


def _violation(error: ValidationError) -> Violation:
    """Plain words for the error `best_match` picked."""
    path, keyword = _located(error)
    instance = error.instance
    expected = cast(Any, error.validator_value)
    where = pointer(path) or "the document"
    if isinstance(error, _MemberError):
        if keyword == "dependentRequired":
            owner = pointer([*path[:-1], error.owner or ""])
            return Violation(where, keyword, f"{where} is required when {owner} is set")
        if keyword == "additionalProperties":
            schema = error.schema if isinstance(error.schema, dict) else {}
            allowed = list(schema.get("properties", {}))
            listed = ", ".join(allowed[:20]) + (", ..." if len(allowed) > 20 else "")
            return Violation(
                where,
                keyword,
                f"{where} is not allowed" + (f" (allowed members: {listed})" if allowed else ""),
            )
        return Violation(where, keyword, f"{where} is required")
    if keyword == "type":
        types = [expected] if isinstance(expected, str) else list(expected)
        wanted = _article(types[0]) if len(types) == 1 else "one of " + ", ".join(types)
        return Violation(
            pointer(path), keyword, f"{where} must be {wanted}; got {json_type(instance)}"
        )
    if keyword == "enum":
        return Violation(pointer(path), keyword, f"{where} must be one of {_clip(dumps(expected))}")
    if keyword == "const":
        return Violation(pointer(path), keyword, f"{where} must be {_clip(dumps(expected))}")
    if keyword == "uniqueItems":
        return Violation(pointer(path), keyword, f"{where} has duplicate items")
    if keyword == "false":
        # jsonschema does not say which member met a `false` subschema: name the parent.
        return Violation(pointer(path), keyword, f"{where} holds a value the schema forbids")
    return Violation(pointer(path), keyword, f"{where}: {_clip(error.message)}")


def violation_error(violation: Violation, schema_name: str) -> DomainError:
    """The INVALID_ARGUMENT (SCHEMA_VIOLATION) error of a rejected write.

    Args:
        violation: What `CompiledSchema.validate` found.
        schema_name: The schema's name.

    Returns:
        The error: the pointer as the BadRequest field (none for the whole
        document), metadata pointer, keyword and schema.
    """
    return DomainError(
        grpc.StatusCode.INVALID_ARGUMENT,
        "SCHEMA_VIOLATION",
        f"the document would be invalid against schema {schema_name!r}: {violation.message};"
        " nothing was changed",
        field=violation.pointer or None,
        metadata={
            "pointer": violation.pointer,
            "keyword": violation.keyword,
            "schema": schema_name,
        },
    )


# --- cache -----------------------------------------------------------------


class ValidatorCache:
    """A bounded LRU of compiled schemas, keyed by (tenant, name, version).

    A new version of a schema is a new key, so entries never go stale; old
    versions simply fall out. One per process, shared by every tenant (as is
    the RE2 compile cache).
    """

    def __init__(self, size: int = CACHE_SIZE) -> None:
        """Create an empty cache holding at most ``size`` schemas."""
        self._size = size
        self._entries: OrderedDict[tuple[str, str, int], CompiledSchema] = OrderedDict()

    def get(self, key: tuple[str, str, int], build: Callable[[], CompiledSchema]) -> CompiledSchema:
        """The cached schema of ``key``, built with ``build`` on a miss."""
        found = self.peek(key)
        if found is None:
            found = build()
            self.put(key, found)
        return found

    def peek(self, key: tuple[str, str, int]) -> CompiledSchema | None:
        """The cached schema of ``key``, or None; a hit counts as a use."""
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def put(self, key: tuple[str, str, int], schema: CompiledSchema) -> None:
        """Cache a schema, dropping the least recently used one when full."""
        self._entries[key] = schema
        self._entries.move_to_end(key)
        while len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _article(type_name: str) -> str:
    if type_name == "null":
        return "null"
    return ("an " if type_name[:1] in "aeiou" else "a ") + type_name
