"""Tenant JSON Schemas: checking, validation, defaults, without any server."""

from __future__ import annotations

import copy
import json
import time
from typing import Any, Literal

import grpc
import pytest
from pydantic import BaseModel, Field

from sessionmemory_server.core import LIMITS
from sessionmemory_server.errors import DomainError
from sessionmemory_server.schemas import (
    DIALECT,
    CompiledSchema,
    ValidatorCache,
    Violation,
    check_schema,
    violation_error,
)

# The issue's agent memory: user / conversation / order.
AGENT: dict[str, Any] = {
    "$schema": DIALECT,
    "type": "object",
    "properties": {
        "user": {
            "type": "object",
            "properties": {
                "name": {"type": "string"},
                "tier": {"enum": ["free", "pro"], "default": "free"},
            },
            "required": ["name"],
            "additionalProperties": False,
        },
        "conversation": {
            "type": "object",
            "properties": {"turns": {"type": "integer", "minimum": 0, "default": 0}},
            "default": {},
        },
        "order": {"$ref": "#/$defs/Order"},
    },
    "additionalProperties": False,
    "$defs": {
        "Order": {
            "type": "object",
            "properties": {
                "id": {"type": "string", "pattern": "^ORD-[0-9]+$"},
                "status": {"enum": ["placed", "shipped", "delivered"]},
                "trackingNumber": {"type": "string"},
            },
            "required": ["id", "status"],
        }
    },
}


def compiled(schema: dict[str, Any], name: str = "support-agent") -> CompiledSchema:
    parsed, _ = check_schema(json.dumps(schema))
    return CompiledSchema(parsed, name)


def rejected(schema: Any) -> DomainError:
    text = schema if isinstance(schema, str) else json.dumps(schema)
    with pytest.raises(DomainError) as info:
        check_schema(text)
    err = info.value
    assert (err.code, err.reason, err.field) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "SCHEMA_INVALID",
        "json_schema",
    )
    return err


# --- registering -----------------------------------------------------------


def test_check_schema_returns_the_compact_text() -> None:
    parsed, compact = check_schema(json.dumps(AGENT, indent=2))
    assert parsed == AGENT
    assert compact == json.dumps(AGENT, separators=(",", ":"))
    assert check_schema('{"$schema": "' + DIALECT + '#"}')[1]
    assert check_schema("{}") == ({}, "{}")


def test_invalid_schemas_are_rejected() -> None:
    err = rejected({"type": "strin"})
    assert err.metadata["pointer"] == "/type"
    assert "not a valid JSON Schema" in err.message
    assert rejected({"properties": {"a": {"minimum": "1"}}}).metadata["pointer"] == (
        "/properties/a/minimum"
    )
    assert rejected({"required": "name"}).metadata["pointer"] == "/required"
    assert rejected([{"type": "object"}]).message.endswith("got an array")
    rejected("true")  # boolean schemas are valid JSON Schema, but a document needs an object
    rejected('{"type": "object",}')  # not JSON
    rejected('{"a": 1, "a": 2}')


def test_wrong_dialect_is_rejected() -> None:
    err = rejected({"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"})
    assert err.metadata["pointer"] == "/$schema"
    assert DIALECT in err.message
    err = rejected({"$defs": {"a": {"$schema": "https://json-schema.org/draft/2019-09/schema"}}})
    assert err.metadata["pointer"] == "/$defs/a/$schema"


@pytest.mark.parametrize(
    "schema",
    [
        {"$ref": "https://example.com/schema.json"},
        {"properties": {"a": {"$ref": "other.json#/$defs/x"}}},
        {"$dynamicRef": "https://example.com/meta#meta"},
        {"$id": "https://example.com/root.json", "$ref": "item.json"},
    ],
)
def test_remote_refs_are_rejected(schema: dict[str, Any]) -> None:
    err = rejected(schema)
    assert "never fetches" in err.message
    assert err.metadata["pointer"].endswith("Ref") or err.metadata["pointer"].endswith("$ref")


def test_local_refs_must_resolve() -> None:
    assert rejected({"$ref": "#/$defs/Missing"}).metadata["pointer"] == "/$ref"
    assert rejected({"properties": {"a": {"$ref": "#nowhere"}}}).metadata["pointer"] == (
        "/properties/a/$ref"
    )
    # Anchors, embedded resources and pointers all resolve locally.
    assert check_schema(
        json.dumps(
            {
                "properties": {"a": {"$ref": "#item"}, "b": {"$ref": "#/$defs/b"}},
                "$defs": {
                    "a": {"$anchor": "item", "type": "string"},
                    "b": {"$id": "https://example.com/b", "$ref": "#/$defs/c", "$defs": {"c": {}}},
                },
            }
        )
    )


def test_too_large_schemas_are_rejected() -> None:
    schema = {"description": "x" * LIMITS.max_schema_bytes}
    err = rejected(schema)
    assert err.metadata["limit"] == str(LIMITS.max_schema_bytes)
    assert err.metadata["actual"] == str(len(json.dumps(schema, separators=(",", ":"))))
    # Whitespace does not count: the limit is on compact JSON.
    fits = {"description": "x" * (LIMITS.max_schema_bytes - 20)}
    assert check_schema(json.dumps(fits, indent=8) + " " * 1000)
    assert rejected(" " * (20 * LIMITS.max_schema_bytes) + "{}").metadata["limit"]


@pytest.mark.parametrize(
    ("schema", "where"),
    [
        ({"pattern": "^(?=.*[0-9]).+$"}, "/pattern"),
        ({"properties": {"a": {"pattern": "(?<!x)y"}}}, "/properties/a/pattern"),
        ({"patternProperties": {"^(a)\\1$": {}}}, "/patternProperties/^(a)\\1$"),
        (
            {"$defs": {"p": {"propertyNames": {"pattern": "(?!x)"}}}},
            "/$defs/p/propertyNames/pattern",
        ),
        # A $ref target under an unknown keyword is checked too.
        ({"x-parts": {"pattern": "(?=a)"}, "$ref": "#/x-parts"}, "/x-parts/pattern"),
    ],
)
def test_patterns_must_run_on_re2(schema: dict[str, Any], where: str) -> None:
    err = rejected(schema)
    assert err.metadata["pointer"] == where
    assert "RE2" in err.message


def test_unevaluated_properties_with_pattern_properties_is_refused() -> None:
    err = rejected({"patternProperties": {"^x-": {}}, "unevaluatedProperties": False})
    assert "additionalProperties" in err.message
    assert check_schema(json.dumps({"unevaluatedProperties": False, "properties": {"a": {}}}))


def test_too_deep_schemas_are_rejected() -> None:
    assert "nests" in rejected("[" * 100 + "]" * 100).message


# --- validating ------------------------------------------------------------

VALID = {
    "user": {"name": "Ada", "tier": "pro"},
    "conversation": {"turns": 3},
    "order": {"id": "ORD-123", "status": "shipped", "trackingNumber": "1Z"},
}


def violation(doc: Any, schema: dict[str, Any] = AGENT) -> Violation | None:
    return compiled(schema).validate(doc)


def test_valid_documents() -> None:
    assert violation(VALID) is None
    assert violation({}) is None
    assert violation({"conversation": {"turns": 2.0}}) is None  # integral: an integer


def test_type_violation() -> None:
    v = violation({**VALID, "user": {"name": 5}})
    assert v == Violation("/user/name", "type", "/user/name must be a string; got an integer")
    v = violation({"conversation": {"turns": "many"}})
    assert v is not None
    assert (v.pointer, v.keyword) == ("/conversation/turns", "type")


def test_required_names_the_missing_member() -> None:
    assert violation({"user": {"tier": "free"}}) == Violation(
        "/user/name", "required", "/user/name is required"
    )
    v = violation({"order": {"id": "ORD-1"}})  # through $ref
    assert v is not None
    assert (v.pointer, v.keyword) == ("/order/status", "required")


def test_enum_violation() -> None:
    v = violation({"order": {"id": "ORD-1", "status": "lost"}})
    assert v == Violation(
        "/order/status", "enum", '/order/status must be one of ["placed","shipped","delivered"]'
    )


def test_additional_properties_names_the_first_extra_member() -> None:
    v = violation({"user": {"name": "Ada", "nickname": "A", "zz": 1}})
    assert v is not None
    assert (v.pointer, v.keyword) == ("/user/nickname", "additionalProperties")
    assert "allowed members: name, tier" in v.message
    v = violation({"extra": 1, "user": {"name": "Ada"}})
    assert v is not None
    assert (v.pointer, v.keyword) == ("/extra", "additionalProperties")


def test_pattern_violation_and_other_keywords() -> None:
    v = violation({"order": {"id": "X-1", "status": "placed"}})
    assert v is not None
    assert (v.pointer, v.keyword) == ("/order/id", "pattern")
    v = violation({"conversation": {"turns": -1}})
    assert v is not None
    assert (v.pointer, v.keyword) == ("/conversation/turns", "minimum")
    assert v.message.startswith("/conversation/turns: ")
    v = violation([1], {"type": "object"})
    assert v == Violation("", "type", "the document must be an object; got an array")
    v = violation({"o": {"a": 1}}, {"properties": {"o": {"properties": {"a": False}}}})
    assert v == Violation("/o", "false", "/o holds a value the schema forbids")
    v = violation({"a": 1}, {"properties": {"a": {"const": 2}}})
    assert v == Violation("/a", "const", "/a must be 2")
    v = violation({"a": 1}, {"dependentRequired": {"a": ["b"]}})
    assert v is not None
    assert (v.pointer, v.keyword) == ("/b", "dependentRequired")


def test_validating_only_the_changed_members() -> None:
    c = compiled(AGENT)
    stale = {"user": {"name": 5}, "conversation": {"turns": 1}}  # user: invalid, unchanged
    assert c.validate(stale, changed={"conversation"}) is None
    v = c.validate(stale, changed={"user"})
    assert v is not None
    assert v.pointer == "/user/name"
    # Object-level keywords always look at the whole key set.
    v = c.validate({"extra": 1}, changed={"conversation"})
    assert v is not None
    assert (v.pointer, v.keyword) == ("/extra", "additionalProperties")
    required = compiled({**AGENT, "required": ["user"]})
    v = required.validate({"conversation": {}}, changed={"user"})  # a delete of user
    assert v is not None
    assert (v.pointer, v.keyword) == ("/user", "required")
    # A root whose keywords relate members (allOf, if, ...) is always validated whole.
    whole = compiled({**AGENT, "allOf": [{"type": "object"}]})
    v = whole.validate(stale, changed={"conversation"})
    assert v is not None
    assert v.pointer == "/user/name"


def test_regular_expressions_run_in_linear_time() -> None:
    # Catastrophic backtracking for Python's re; linear on RE2.
    schema = {
        "properties": {"a": {"pattern": "^(a+)+$"}},
        "patternProperties": {"^(x+x+)+y$": {"type": "string"}},
        "additionalProperties": False,
    }
    c = compiled(schema)
    start = time.perf_counter()
    v = c.validate({"a": "a" * 64 + "b"})
    assert v is not None
    assert (v.pointer, v.keyword) == ("/a", "pattern")
    v = c.validate({"x" * 64: 1})
    assert v is not None
    assert (v.pointer, v.keyword) == ("/" + "x" * 64, "additionalProperties")
    assert c.validate({"xxy": 1}) is not None  # matched by the pattern: its schema applies
    assert c.validate({"xxy": "ok", "a": "aaa"}) is None
    assert time.perf_counter() - start < 1


def test_endless_recursion_is_schema_unusable() -> None:
    c = compiled({"$ref": "#"}, "loop")
    with pytest.raises(DomainError) as info:
        c.validate({"a": 1})
    err = info.value
    assert (err.code, err.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "SCHEMA_UNUSABLE")
    assert err.metadata["schema"] == "loop"
    # A recursive schema that ends with the document is fine.
    tree = {"properties": {"child": {"$ref": "#"}, "n": {"type": "integer"}}}
    assert compiled(tree).validate({"child": {"child": {"n": 1}}}) is None


def test_validation_never_fetches() -> None:
    # Not checked first: compiled straight away, a remote $ref must fail, not fetch.
    c = CompiledSchema({"$ref": "https://json-schema.invalid/never.json"}, "remote")
    with pytest.raises(DomainError) as info:
        c.validate({})
    assert info.value.reason == "SCHEMA_UNUSABLE"


def test_violation_error() -> None:
    v = Violation("/order/status", "enum", '/order/status must be one of ["placed"]')
    err = violation_error(v, "support-agent")
    assert (err.code, err.reason, err.field) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "SCHEMA_VIOLATION",
        "/order/status",
    )
    assert err.metadata == {
        "field": "/order/status",
        "pointer": "/order/status",
        "keyword": "enum",
        "schema": "support-agent",
    }
    assert err.message == (
        "the document would be invalid against schema 'support-agent':"
        ' /order/status must be one of ["placed"]; nothing was changed'
    )
    root = violation_error(Violation("", "minProperties", "the document: ..."), "s")
    assert root.field is None
    assert root.metadata["pointer"] == ""


# --- defaults --------------------------------------------------------------


def test_defaults_fill_absent_members() -> None:
    c = compiled(AGENT)
    doc = {"user": {"name": "Ada"}}
    before = copy.deepcopy(doc)
    filled, paths = c.with_defaults(doc)
    assert filled == {"user": {"name": "Ada", "tier": "free"}, "conversation": {"turns": 0}}
    assert paths == ["user.tier", "conversation"]  # nothing under a filled path again
    assert doc == before
    # Present values win; nothing to fill, nothing listed.
    full, paths = c.with_defaults(VALID)
    assert (full, paths) == (VALID, [])
    # No default and absent: left absent (order has none).
    assert "order" not in filled


class User(BaseModel):
    name: str = "anonymous"
    tier: Literal["free", "pro"] = "free"
    email: str | None = None


class Order(BaseModel):
    id: str
    status: Literal["placed", "shipped", "delivered"] = "placed"
    trackingNumber: str | None = None


class Conversation(BaseModel):
    turns: int = 0
    topic: str = "general"


class Memory(BaseModel):
    user: User = Field(default_factory=User)
    conversation: Conversation = Conversation()
    order: Order | None = None


def test_defaults_through_pydantic_refs() -> None:
    c = compiled(Memory.model_json_schema(), "memory")
    filled, paths = c.with_defaults({})
    # `user` has a default_factory (no JSON default), so it stays absent; null
    # defaults (`order`) are absent too.
    assert filled == {"conversation": {"turns": 0, "topic": "general"}}
    assert paths == ["conversation"]
    filled, paths = c.with_defaults(
        {"user": {"name": "Ada"}, "conversation": {"turns": 3}, "order": {"id": "ORD-1"}}
    )
    assert filled == {
        "user": {"name": "Ada", "tier": "free"},
        "conversation": {"turns": 3, "topic": "general"},
        "order": {"id": "ORD-1", "status": "placed"},  # Optional[Order]: one object branch
    }
    assert paths == ["user.tier", "conversation.topic", "order.status"]
    assert Memory.model_validate(filled).order == Order(id="ORD-1")
    v = c.validate({"order": {"id": "ORD-1", "status": "lost"}})
    assert v is not None
    assert (v.pointer, v.keyword) == ("/order/status", "enum")


def test_recursive_defaults_end() -> None:
    node = {"properties": {"child": {"$ref": "#", "default": {}}}}
    filled, paths = compiled(node).with_defaults({})
    assert paths == ["child"]
    depth = 0
    while "child" in filled:
        filled = filled["child"]
        depth += 1
    assert depth <= LIMITS.max_json_depth + 2


# --- cache -----------------------------------------------------------------


def test_validator_cache_is_a_bounded_lru() -> None:
    cache = ValidatorCache(size=2)
    built: list[str] = []

    def build(name: str) -> Any:
        def make() -> CompiledSchema:
            built.append(name)
            return CompiledSchema({}, name)

        return make

    a = cache.get(("t", "a", 1), build("a"))
    assert cache.get(("t", "a", 1), build("a")) is a
    cache.get(("t", "b", 1), build("b"))
    cache.get(("t", "a", 1), build("a"))  # a is now the most recent
    cache.get(("t", "c", 1), build("c"))  # evicts b
    assert cache.peek(("t", "b", 1)) is None
    assert cache.peek(("t", "a", 1)) is a
    assert cache.get(("t", "a", 2), build("a2")) is not a  # a new version is a new entry
    assert built == ["a", "b", "c", "a2"]
    assert len(cache) == 2
    assert len(ValidatorCache()._entries) == 0
