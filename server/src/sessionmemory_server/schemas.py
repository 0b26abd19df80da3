"""Tenant JSON Schemas (draft 2020-12): checking, validating, defaults. Pure, no I/O.

A schema is checked once, when it is registered (`check_schema`): strict JSON,
bounded in size, valid against the draft 2020-12 meta-schema, every `$ref` local
and resolvable, every regular expression runnable by RE2. A checked schema is
compiled (`CompiledSchema`) into a `jsonschema` validator that can never touch the
network (its `referencing.Registry` refuses every retrieval) and that runs
`pattern`, `patternProperties` and `additionalProperties` on RE2, so matching
takes linear time whatever the tenant wrote. `format` is an annotation only, as
draft 2020-12 says by default.
"""

from __future__ import annotations

import functools
import json
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, cast
from urllib.parse import unquote

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


# --- RE2 -------------------------------------------------------------------

_RE2_OPTIONS: Final = re2.Options()
_RE2_OPTIONS.log_errors = False  # a tenant's bad pattern is an answer, not a log line


@functools.lru_cache(maxsize=1024)
def _regex(pattern: str) -> Any:
    """The compiled RE2 form of a pattern (re2.error when RE2 cannot run it)."""
    return re2.compile(pattern, options=_RE2_OPTIONS)


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


def _extras(instance: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """Members of an object that neither `properties` nor `patternProperties` cover."""
    properties = schema.get("properties", {})
    patterns = [_regex(p) for p in schema.get("patternProperties", {})]
    return [
        name
        for name in instance
        if name not in properties and not any(p.search(name) for p in patterns)
    ]


def _pattern(
    validator: Any, pattern: str, instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and _regex(pattern).search(instance) is None:
        yield ValidationError(f"{dumps(instance)} does not match the pattern {dumps(pattern)}")


def _pattern_properties(
    validator: Any, patterns: Mapping[str, Any], instance: Any, schema: Mapping[str, Any]
) -> Iterator[ValidationError]:
    if not validator.is_type(instance, "object"):
        return
    for pattern, subschema in patterns.items():
        regex = _regex(pattern)
        for name, value in instance.items():
            if regex.search(name):
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
    elif not additional and extras:
        names = ", ".join(dumps(n) for n in extras[:10])
        yield ValidationError(f"members not allowed here: {names}")


# The stock draft 2020-12 validator with every regular expression on RE2.
# (`unevaluatedProperties` matches patternProperties with Python's `re`, so
# check_schema refuses schemas that combine the two.)
_Validator: Final[Any] = validators.extend(  # type: ignore[no-untyped-call]
    Draft202012Validator,
    {
        "pattern": _pattern,
        "patternProperties": _pattern_properties,
        "additionalProperties": _additional_properties,
    },
)
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
            cannot run, or combines `unevaluatedProperties` with
            `patternProperties`. Metadata: field, pointer (where in the schema),
            limit/actual for size.
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
    _check_references_and_patterns(schema, field)
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


def _schema_invalid(field: str, message: str, where: str) -> DomainError:
    return invalid("SCHEMA_INVALID", message, field, pointer=where)


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


def _check_references_and_patterns(schema: dict[str, Any], field: str) -> None:
    """Walk every subschema (and every `$ref` target) once; raise at the first fault."""
    root = DRAFT202012.create_resource(schema)
    resolver = Registry(retrieve=_refuse).resolver_with_root(root)  # type: ignore[call-arg]
    seen: set[int] = set()
    # (keyword, reference, its path, path of its resource, resolver)
    refs: list[tuple[str, str, tuple[str | int, ...], tuple[str | int, ...], Resolver[Any]]] = []
    unevaluated: tuple[str | int, ...] | None = None
    pattern_properties: tuple[str | int, ...] | None = None

    def walk(
        node: Any,
        path: tuple[str | int, ...],
        base: tuple[str | int, ...],
        resolver: Resolver[Any],
    ) -> None:
        nonlocal unevaluated, pattern_properties
        stack = [(node, path, base, resolver)]
        while stack:
            node, path, base, resolver = stack.pop()
            if not isinstance(node, dict) or id(node) in seen:
                continue
            seen.add(id(node))
            if isinstance(node.get("$id"), str):
                resolver = resolver.in_subresource(DRAFT202012.create_resource(node))
                base = path
            _check_dialect(node, path, field)
            pattern = node.get("pattern")
            if isinstance(pattern, str):
                _check_pattern(pattern, (*path, "pattern"), field)
            patterns = node.get("patternProperties")
            if isinstance(patterns, dict):
                for name in patterns:
                    _check_pattern(name, (*path, "patternProperties", name), field)
                if patterns and pattern_properties is None:
                    pattern_properties = (*path, "patternProperties")
            if "unevaluatedProperties" in node and unevaluated is None:
                unevaluated = (*path, "unevaluatedProperties")
            for keyword in _REFS:
                ref = node.get(keyword)
                if isinstance(ref, str):
                    refs.append((keyword, ref, (*path, keyword), base, resolver))
            stack.extend(
                (sub, sub_path, base, resolver) for sub, sub_path in _subschemas(node, path)
            )

    walk(schema, (), (), resolver)
    # Then the references: a target outside the walked tree (under an unknown
    # keyword) is walked too, so whatever validation can reach has been checked.
    while refs:
        keyword, ref, path, base, resolver = refs.pop(0)
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
        # Name the target by its place in the schema when the reference says it.
        if ref.startswith("#/"):
            path = (*base, *_unpointer(unquote(ref[1:])))
        walk(target.contents, path, path, target.resolver)
    if unevaluated is not None and pattern_properties is not None:
        where = pointer(pattern_properties)
        raise _schema_invalid(
            field,
            f"{field} combines unevaluatedProperties ({pointer(unevaluated)}) with"
            f" patternProperties ({where}), which this server does not support:"
            " use additionalProperties instead of unevaluatedProperties",
            where,
        )


def _unpointer(text: str) -> list[str]:
    """The segments of a JSON pointer (the inverse of `document.pointer`)."""
    return [p.replace("~1", "/").replace("~0", "~") for p in text.split("/")[1:]]


def _check_pattern(pattern: str, path: tuple[str | int, ...], field: str) -> None:
    reason = _re2_error(pattern)
    if reason is not None:
        where = pointer(path)
        raise _schema_invalid(
            field,
            f"{field} has the pattern {_clip(dumps(pattern))} at {where}, which RE2 cannot"
            f" run ({reason}): patterns may not use lookaround or backreferences",
            where,
        )


# --- validating ------------------------------------------------------------


class CompiledSchema:
    """A checked schema, ready to validate documents and fill defaults.

    Build it from what `check_schema` returned; it keeps no reference to any
    store and never fetches anything.
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
                cannot be evaluated (it recurses without end).
        """
        validator = self._validator
        if changed is not None and self._members is not None:
            shell = dict(self.schema)
            shell["properties"] = {k: s if k in changed else True for k, s in self._members.items()}
            validator = validator.evolve(schema=shell)
        try:
            error = best_match(validator.iter_errors(document))
        except (RecursionError, referencing.exceptions.Unresolvable, re2.error):
            raise self._unusable() from None
        return None if error is None else _violation(error)

    def _unusable(self) -> DomainError:
        name = f"schema {self.name!r}" if self.name else "the bound schema"
        return DomainError(
            grpc.StatusCode.FAILED_PRECONDITION,
            "SCHEMA_UNUSABLE",
            f"{name} cannot be evaluated (it refers to itself without end);"
            " fix it with PutSchema or unbind the session",
            metadata={"schema": self.name},
        )

    def with_defaults(self, document: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """Fill the schema's defaults into absent members of a document.

        Follows `properties` through local `$ref`s and `allOf`, into objects that
        are present (or were just filled). Of `anyOf` / `oneOf` only a single
        branch that describes an object is followed (pydantic's
        ``Optional[Model]``); `if` / `then` are not, since which branch applies is
        not known. A ``null`` default is skipped: in a merge-patch document null
        means absent.

        Args:
            document: The stored document; it is not changed.

        Returns:
            The document with defaults (unchanged parts shared with the input) and
            the dotted paths that were filled (``user.tier``; nothing under a
            filled path is listed again).
        """
        filled: list[str] = []
        result = _fill(document, [(self.schema, self._resolver)], "", 0, filled, report=True)
        return result, filled


_NO_DEFAULT: Final = object()


def _facets(
    schema: Any, resolver: Resolver[Any], seen: set[int], *, branches: bool = True
) -> Iterator[tuple[Mapping[str, Any], Resolver[Any]]]:
    """A schema and the schemas that apply with it.

    Those are its `$ref` target and its `allOf` members, recursively, and (with
    ``branches``) the one `anyOf` / `oneOf` branch that describes an object when
    exactly one does (``Optional[Model]`` in pydantic: the model or null).
    """
    if not isinstance(schema, dict) or id(schema) in seen:
        return
    seen.add(id(schema))
    if isinstance(schema.get("$id"), str):
        resolver = resolver.in_subresource(DRAFT202012.create_resource(schema))
    yield schema, resolver
    ref = schema.get("$ref")
    if isinstance(ref, str):
        try:
            target = resolver.lookup(ref)
        except referencing.exceptions.Unresolvable:
            pass
        else:
            yield from _facets(target.contents, target.resolver, seen, branches=branches)
    all_of = schema.get("allOf")
    if isinstance(all_of, list):
        for sub in all_of:
            yield from _facets(sub, resolver, seen, branches=branches)
    if not branches:
        return
    for keyword in ("anyOf", "oneOf"):
        options = schema.get(keyword)
        if isinstance(options, list):
            objects = [o for o in options if _describes_object(o, resolver)]
            if len(objects) == 1:
                yield from _facets(objects[0], resolver, seen)


def _describes_object(schema: Any, resolver: Resolver[Any]) -> bool:
    return any(
        "properties" in facet or facet.get("type") == "object"
        for facet, _ in _facets(schema, resolver, set(), branches=False)
    )


def _fill(
    value: Mapping[str, Any],
    schemas: list[tuple[Any, Resolver[Any]]],
    prefix: str,
    depth: int,
    filled: list[str],
    *,
    report: bool,
) -> dict[str, Any]:
    properties: dict[str, list[tuple[Any, Resolver[Any]]]] = {}
    seen: set[int] = set()
    for schema, resolver in schemas:
        for facet, facet_resolver in _facets(schema, resolver, seen):
            members = facet.get("properties")
            if isinstance(members, dict):
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
                for facet, _ in _facets(sub, resolver, seen_sub):
                    if "default" in facet:
                        default = facet["default"]
                        break
                if default is not _NO_DEFAULT:
                    break
            if default is _NO_DEFAULT or default is None:
                continue
            result[name] = json.loads(json.dumps(default))
            if report:
                filled.append(path)
        if isinstance(result[name], dict):
            result[name] = _fill(
                result[name], subs, path, depth + 1, filled, report=report and present
            )
    return result


def _violation(error: ValidationError) -> Violation:
    """Plain words for the error `best_match` picked."""
    path: list[str | int] = list(error.absolute_path)
    keyword = str(error.validator) if error.validator is not None else "false"
    instance = error.instance
    expected = cast(Any, error.validator_value)
    where = pointer(path) or "the document"
    if keyword == "required" and isinstance(instance, dict):
        missing = next((n for n in expected if n not in instance), None)
        if missing is not None:
            path.append(missing)
            return Violation(pointer(path), keyword, f"{pointer(path)} is required")
    if keyword == "dependentRequired" and isinstance(instance, dict):
        for owner, needed in expected.items():
            missing = next((n for n in needed if n not in instance), None)
            if owner in instance and missing is not None:
                path.append(missing)
                return Violation(
                    pointer(path),
                    keyword,
                    f"{pointer(path)} is required when {pointer([*path[:-1], owner])} is set",
                )
    if keyword == "additionalProperties" and isinstance(instance, dict):
        extras = _extras(instance, error.schema if isinstance(error.schema, dict) else {})
        if extras:
            path.append(extras[0])
            allowed = list(error.schema.get("properties", {}))  # type: ignore[union-attr]
            listed = ", ".join(allowed[:20]) + (", ..." if len(allowed) > 20 else "")
            return Violation(
                pointer(path),
                keyword,
                f"{pointer(path)} is not allowed"
                + (f" (allowed members: {listed})" if allowed else ""),
            )
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
    versions simply fall out.
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


# --- words -----------------------------------------------------------------


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _article(type_name: str) -> str:
    if type_name == "null":
        return "null"
    return ("an " if type_name[:1] in "aeiou" else "a ") + type_name
