"""Tenant JSON Schemas: checking, validation, defaults, without any server."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from typing import Any, Literal

import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import BaseModel, Field

from sessionmemory_server import schemas
from sessionmemory_server.core import LIMITS
from sessionmemory_server.errors import DomainError
from sessionmemory_server.schemas import (
    DIALECT,
    MAX_DEFAULT_NODES,
    VALIDATION_STEPS,
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


def ref_chain(n: int) -> dict[str, Any]:
    """A $ref chain n long, ending in an object schema with a default."""
    defs: dict[str, Any] = {f"a{i}": {"$ref": f"#/$defs/a{i + 1}"} for i in range(n)}
    defs[f"a{n}"] = {"type": "object", "properties": {"x": {"default": 1}}}
    return {"$defs": defs, "$ref": "#/$defs/a0"}


def doubling_chain(n: int) -> dict[str, Any]:
    """Each level refers to the next twice: 2**n evaluations of the last one."""
    defs: dict[str, Any] = {
        f"a{i}": {"allOf": [{"$ref": f"#/$defs/a{i + 1}"}, {"$ref": f"#/$defs/a{i + 1}"}]}
        for i in range(n)
    }
    defs[f"a{n}"] = {"type": "object"}
    return {"$defs": defs, "$ref": "#/$defs/a0"}


# Every level has two members whose default ({}) is another such level.
DEFAULTS_BOMB: dict[str, Any] = {
    "$defs": {
        "n": {
            "type": "object",
            "properties": {
                "a": {"$ref": "#/$defs/n", "default": {}},
                "b": {"$ref": "#/$defs/n", "default": {}},
            },
        }
    },
    "$ref": "#/$defs/n",
}


def unusable(call: Callable[[], object], within: float = 2.0) -> DomainError:
    """The SCHEMA_UNUSABLE error ``call`` raises, quickly."""
    start = time.perf_counter()
    with pytest.raises(DomainError) as info:
        call()
    assert time.perf_counter() - start < within
    err = info.value
    assert (err.code, err.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "SCHEMA_UNUSABLE")
    return err


def compiled(schema: dict[str, Any], name: str = "support-agent") -> CompiledSchema:
    parsed, _ = check_schema(json.dumps(schema))
    return CompiledSchema(parsed, name)


def rejected(schema: Any, within: float = 2.0) -> DomainError:
    text = schema if isinstance(schema, str) else json.dumps(schema)
    start = time.perf_counter()
    with pytest.raises(DomainError) as info:
        check_schema(text)
    assert time.perf_counter() - start < within
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


@pytest.mark.parametrize(
    ("schema", "where"),
    [
        ({"$ref": "#"}, "/$ref"),
        ({"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}, "/$defs/a/$ref"),
        ({"allOf": [{"$ref": "#"}]}, "/allOf/0/$ref"),
        ({"type": "object", "anyOf": [{"type": "null"}, {"$ref": "#"}]}, "/anyOf/1/$ref"),
        ({"oneOf": [{"not": {"$ref": "#"}}]}, "/oneOf/0/not/$ref"),
        ({"if": {"$ref": "#/$defs/b"}, "$defs": {"b": {"then": {"$ref": "#"}}}},
         "/$defs/b/then/$ref"),
        ({"else": {"$ref": "#"}}, "/else/$ref"),
        ({"dependentSchemas": {"a": {"$ref": "#"}}}, "/dependentSchemas/a/$ref"),
        (
            {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"allOf": [{"$ref": "#/$defs/a"}]}},
             "properties": {"x": {"$ref": "#/$defs/a"}}},
            "/$defs/b/allOf/0/$ref",
        ),
        ({"$dynamicAnchor": "n", "allOf": [{"$dynamicRef": "#n"}]}, "/allOf/0/$dynamicRef"),
    ],
)  # fmt: skip
def test_in_place_reference_cycles_are_refused(schema: dict[str, Any], where: str) -> None:
    err = rejected(schema)
    assert err.metadata["pointer"] == where
    assert "refers to itself without end" in err.message
    assert "properties, items" in err.message


class TreeNode(BaseModel):
    name: str
    children: list[TreeNode] = []
    parent: TreeNode | None = None


# What Zod 4.6's z.toJSONSchema writes for a user / conversation / order memory
# with a recursive category (z.lazy through a getter), nullable, optional and union
# members, and for a recursive schema at the root.
ZOD_MEMORY = json.loads(
    r"""{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object",
"properties":{"user":{"type":"object","properties":{"name":{"type":"string"},"tier":{"default":
"free","type":"string","enum":["free","pro"]},"email":{"anyOf":[{"type":"string","format":
"email","pattern":"^(?:[A-Za-z0-9_'+\\-]+\\.)*[A-Za-z0-9_'+\\-]*[A-Za-z0-9_+-]@(?:[A-Za-z0-9][A-Za-z0-9\\-]*\\.)+[A-Za-z]{2,}$"},
{"type":"null"}]}},"required":["name","tier"],"additionalProperties":false},"conversation":{
"default":{"turns":0},"type":"object","properties":{"turns":{"default":0,"type":"integer",
"minimum":0,"maximum":9007199254740991},"tags":{"maxItems":20,"type":"array","items":{"type":
"string"}}},"required":["turns"],"additionalProperties":false},"order":{"type":"object",
"properties":{"id":{"type":"string","pattern":"^ORD-[0-9]+$"},"status":{"default":"placed",
"type":"string","enum":["placed","shipped","delivered"]},"trackingNumber":{"type":"string"}},
"required":["id","status"],"additionalProperties":false},"lastOrder":{"anyOf":[{"type":"object",
"properties":{"id":{"type":"string","pattern":"^ORD-[0-9]+$"},"status":{"default":"placed",
"type":"string","enum":["placed","shipped","delivered"]},"trackingNumber":{"type":"string"}},
"required":["id","status"],"additionalProperties":false},{"type":"null"}]},"category":{"$ref":
"#/$defs/__schema0"},"kind":{"anyOf":[{"type":"string","const":"a"},{"type":"string","const":"b"},
{"type":"number"}]},"shape":{"oneOf":[{"type":"object","properties":{"type":{"type":"string",
"const":"circle"},"r":{"type":"number"}},"required":["type","r"],"additionalProperties":false},
{"type":"object","properties":{"type":{"type":"string","const":"square"},"side":{"type":
"number"}},"required":["type","side"],"additionalProperties":false}]},"meta":{"type":"object",
"propertyNames":{"type":"string"},"additionalProperties":{}}},"required":["user","conversation"],
"additionalProperties":false,"$defs":{"__schema0":{"type":"object","properties":{"name":{"type":
"string"},"subcategories":{"type":"array","items":{"$ref":"#/$defs/__schema0"}}},"required":
["name","subcategories"],"additionalProperties":false}}}"""
)
ZOD_CATEGORY = {
    "$schema": DIALECT,
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "subcategories": {"type": "array", "items": {"$ref": "#"}},
    },
    "required": ["name", "subcategories"],
    "additionalProperties": False,
}


def test_generated_and_recursive_schemas_are_accepted() -> None:
    # Recursion that descends into the value (properties, items) is fine.
    tree = {
        "$defs": {
            "n": {
                "type": "object",
                "properties": {"kids": {"type": "array", "items": {"$ref": "#/$defs/n"}}},
            }
        },
        "$ref": "#/$defs/n",
    }
    assert compiled(tree).validate({"kids": [{"kids": []}, {"kids": [{}]}]}) is None
    v = compiled(tree).validate({"kids": [{"kids": [1]}]})
    assert v is not None
    assert (v.pointer, v.keyword) == ("/kids/0/kids/0", "type")
    # pydantic: nested models, Optional (anyOf with null), recursive models.
    assert compiled(Memory.model_json_schema()).validate({"order": None}) is None
    nodes = compiled(TreeNode.model_json_schema())
    assert nodes.validate({"name": "a", "children": [{"name": "b", "parent": None}]}) is None
    v = nodes.validate({"name": "a", "children": [{"name": 1}]})
    assert v is not None
    assert (v.pointer, v.keyword) == ("/children/0/name", "type")
    # Zod.
    zod = compiled(ZOD_MEMORY)
    doc = {
        "user": {"name": "Ada", "tier": "pro", "email": None},
        "conversation": {"turns": 1},
        "category": {"name": "a", "subcategories": [{"name": "b", "subcategories": []}]},
        "kind": 3,
        "shape": {"type": "circle", "r": 1},
    }
    assert zod.validate(doc) is None
    assert zod.with_defaults({"user": {"name": "Ada"}})[1] == ["user.tier", "conversation"]
    category = compiled(ZOD_CATEGORY)
    assert category.validate({"name": "a", "subcategories": [{"name": "b"}]}) is not None
    assert category.validate({"name": "a", "subcategories": []}) is None


def test_long_in_place_chains_are_refused() -> None:
    # 64 in-place steps are fine (the root's $ref, then the chain) ...
    assert compiled(ref_chain(63)).with_defaults({}) == ({"x": 1}, ["x"])
    # ... more only make the evaluation recurse.
    err = rejected(ref_chain(64))
    assert err.metadata["limit"] == "64"
    assert err.metadata["pointer"] == ""
    assert err.message.startswith("json_schema chains more than 64 $ref / allOf / anyOf")
    assert rejected(ref_chain(1200)).metadata["limit"] == "64"


def test_multiplying_in_place_schemas_are_refused() -> None:
    err = rejected(doubling_chain(40))
    assert "applies more than 4096 subschemas to one value" in err.message
    assert err.metadata["limit"] == "4096"
    assert err.metadata["pointer"].startswith("/$defs/a")
    # Wherever the chain is used, not only at the root.
    hidden = doubling_chain(20)
    hidden["properties"] = {"x": {"$ref": hidden.pop("$ref")}}
    assert rejected(hidden).metadata["limit"] == "4096"
    assert compiled(doubling_chain(8)).validate({}) is None


def test_too_many_patterns_are_refused() -> None:
    fits: dict[str, Any] = {"properties": {f"p{i}": {"pattern": f"^{i}$"} for i in range(255)}}
    fits["patternProperties"] = {"^x-": {}}
    assert check_schema(json.dumps(fits))
    too_many = copy.deepcopy(fits)
    too_many["propertyNames"] = {"pattern": "^[a-z]"}
    err = rejected(too_many)
    assert err.metadata["limit"] == "256"
    assert "more than 256 regular expressions" in err.message


def test_schemas_too_costly_for_an_empty_document_are_refused() -> None:
    # Static checks pass (nothing multiplies past 4,096, no cycle), but validating
    # {} fails 40 x 2,000 `required` members.
    names = [f"r{i}" for i in range(2000)]
    costly = {"$defs": {"r": {"required": names}}, "anyOf": [{"$ref": "#/$defs/r"}] * 40}
    err = rejected(costly)
    assert err.message == (
        "json_schema is too costly to evaluate against an empty document (more than"
        f" {VALIDATION_STEPS:,} steps): simplify it"
    )
    assert (err.metadata["pointer"], err.metadata["limit"]) == ("", str(VALIDATION_STEPS))
    # Defaults that double at every level.
    err = rejected(DEFAULTS_BOMB)
    assert "defaults too large or too deep" in err.message
    assert err.metadata["pointer"] == ""


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
    # check_schema refuses this schema; one stored before it did must still fail cleanly.
    c = CompiledSchema({"$ref": "#"}, "loop")
    err = unusable(lambda: c.validate({"a": 1}))
    assert err.metadata == {"schema": "loop"}
    assert "nest too deeply" in err.message
    # A recursive schema that ends with the document is fine.
    tree = {"properties": {"child": {"$ref": "#"}, "n": {"type": "integer"}}}
    assert compiled(tree).validate({"child": {"child": {"n": 1}}}) is None


def test_a_long_finite_chain_is_too_deep_not_endless() -> None:
    c = CompiledSchema(ref_chain(1200), "longchain")
    err = unusable(lambda: c.validate({"a": 1}))
    assert err.message == (
        "schema 'longchain' cannot be evaluated against this document: its $ref chains or"
        " recursion nest too deeply; simplify it with PutSchema or unbind the session"
    )
    assert "without end" not in err.message


def test_costly_evaluations_stop_at_the_step_budget() -> None:
    # Each case would hold the event loop for seconds to hours without the budget;
    # none of them passes check_schema, but a schema stored before it did must
    # still stop quickly.
    big = {f"k{i}": list(range(1000)) for i in range(200)}  # about 1 MiB
    cases: list[tuple[dict[str, Any], Any]] = [
        (doubling_chain(40), {"x": 1}),
        ({**doubling_chain(40), "unevaluatedProperties": False}, {"x": 1}),
        ({"additionalProperties": {"items": {"required": [f"r{i}" for i in range(8000)]}}},
         {"k": [{}] * 1700}),
        ({"additionalProperties": {"items": {f"x{i}": 0 for i in range(8000)}}},
         {"k": [0] * 2500}),
        ({"additionalProperties": {"anyOf": [False] * 3000}}, big),
        ({"allOf": [{"not": {"type": "object"}}] * 2000}, big),
        ({"allOf": [{"not": True}] * 3000}, big),
        ({"additionalProperties": {"pattern": "(\\w+\\s*){1,500}"}}, {"k": "ab " * 1600}),
    ]  # fmt: skip
    for schema, doc in cases:
        c = CompiledSchema(schema, "x")
        err = unusable(lambda c=c, doc=doc: c.validate(doc))  # type: ignore[misc]
        assert err.message == (
            f"schema 'x' is too costly to evaluate against this document (more than"
            f" {VALIDATION_STEPS:,} steps); simplify it with PutSchema or unbind the session"
        )
        assert err.metadata == {"schema": "x", "limit": str(VALIDATION_STEPS)}


def test_a_valid_agent_document_takes_a_small_part_of_the_budget(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    schema = copy.deepcopy(AGENT)
    schema["properties"].update(
        {f"s{i}": {"type": "string", "maxLength": 255} for i in range(10)}
        | {f"n{i}": {"type": "number", "minimum": 0} for i in range(5)}
        | {"tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True}}
        | {"locale": {"type": "string", "pattern": "^[a-z]{2}(-[A-Z]{2})?$"}}
    )
    doc = {
        **VALID,
        **{f"s{i}": "hello" for i in range(10)},
        **{f"n{i}": i for i in range(5)},
        "tags": ["a", "b"],
        "locale": "en-GB",
    }
    assert len(doc) == 20
    c = compiled(schema)
    monkeypatch.setattr(schemas, "VALIDATION_STEPS", VALIDATION_STEPS // 200)
    assert c.validate(doc) is None  # within half a percent of the budget
    pydantic = compiled(Memory.model_json_schema())
    assert pydantic.validate({"order": {"id": "ORD-1"}, "conversation": {"turns": 1}}) is None


def test_large_enums_are_set_lookups() -> None:
    schema = {"additionalProperties": {"type": "array", "items": {"enum": list(range(9000))}}}
    c = compiled(schema, "enum")
    start = time.perf_counter()
    assert c.validate({"k0": [8999] * 2500}) is None
    v = c.validate({"k0": [1, 2, 9000]})
    assert v is not None
    assert (v.pointer, v.keyword) == ("/k0/2", "enum")
    assert v.message.startswith("/k0/2 must be one of [0,1,2,3,")
    assert time.perf_counter() - start < 2
    # Twenty such arrays in one document are more than the budget allows.
    err = unusable(lambda: c.validate({f"k{i}": [1] * 2500 for i in range(20)}))
    assert err.metadata["limit"] == str(VALIDATION_STEPS)


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.sampled_from([0.0, 1.0, -1.5])
    | st.text("ab", max_size=2)
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text("ab", max_size=2), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(JSON_VALUES, max_size=5), JSON_VALUES)
def test_enum_const_and_unique_items_agree_with_jsonschema(
    values: list[Any], instance: Any
) -> None:
    # 1 == 1.0, true != 1, members unordered: what jsonschema's own `equal` says.
    cases: list[tuple[dict[str, Any], Any]] = [
        ({"enum": values or [None]}, instance),
        ({"const": values}, instance),
        ({"uniqueItems": True}, values),
    ]
    for schema, doc in cases:
        stock = Draft202012Validator(schema).is_valid(doc)
        ours = CompiledSchema(schema).validate(doc) is None
        assert ours == stock, (schema, doc)


def test_unique_items() -> None:
    c = compiled({"properties": {"a": {"uniqueItems": True}}})
    start = time.perf_counter()
    assert c.validate({"a": [{"a": i, "b": [i]} for i in range(700)]}) is None
    assert time.perf_counter() - start < 2
    v = c.validate({"a": [{"x": 1, "y": 2}, 1, True, {"y": 2, "x": 1.0}]})
    assert v == Violation("/a", "uniqueItems", "/a has duplicate items")
    assert c.validate({"a": [1, True, 0, False, [1], [True]]}) is None


def test_subschemas_cannot_leave_re2() -> None:
    # A subschema naming the dialect would make stock jsonschema switch to its own
    # validator class, with Python's `re`; this one stays on RE2.
    c = compiled({"properties": {"a": {"$schema": DIALECT, "pattern": "^(a+)+$"}}})
    start = time.perf_counter()
    v = c.validate({"a": "a" * 40 + "b"})
    assert time.perf_counter() - start < 1
    assert v is not None
    assert (v.pointer, v.keyword) == ("/a", "pattern")
    # The same through a $ref to a root that names the dialect (as Zod writes it).
    tree = compiled(
        {"$schema": DIALECT, "properties": {"a": {"pattern": "^(a+)+$"}, "c": {"$ref": "#"}}}
    )
    start = time.perf_counter()
    v = tree.validate({"c": {"c": {"a": "a" * 40 + "b"}}})
    assert time.perf_counter() - start < 1
    assert v is not None
    assert (v.pointer, v.keyword) == ("/c/c/a", "pattern")


def test_compiling_evicted_patterns_is_metered() -> None:
    # The RE2 cache is shared by every tenant: a validation that has to compile
    # its patterns again pays for it (about a step per instruction), so 250 large
    # programs cannot hold the event loop for half a second at once. Each attempt
    # keeps what it compiled, so the schema works again after a few.
    schema = {"properties": {f"p{i}": {"pattern": f"^(a|b|c){{1,900}}x{i}$"} for i in range(250)}}
    c = compiled(schema, "heavy")
    doc = {f"p{i}": "ab" for i in range(250)}
    schemas._regex.cache_clear()
    outcomes = []
    for _ in range(20):
        start = time.perf_counter()
        try:
            outcomes.append(c.validate(doc) is not None)
        except DomainError as err:
            assert err.reason == "SCHEMA_UNUSABLE"
            outcomes.append(False)
        assert time.perf_counter() - start < 1
        if outcomes[-1]:
            break
    assert outcomes[0] is False
    assert outcomes[-1] is True  # every value fails its pattern: a violation, found


# --- never make it worse ---------------------------------------------------

REQUIRED = {
    "type": "object",
    "required": ["user"],
    "properties": {"user": {"type": "string"}, "n": {"type": "integer"}, "email": {}},
    "additionalProperties": False,
}


class Untouchable(dict[str, Any]):
    """A document that fails the test when anything looks at it."""

    def __iter__(self) -> Any:
        raise AssertionError("the document before the write was evaluated")

    def __contains__(self, key: object) -> bool:
        raise AssertionError("the document before the write was evaluated")

    def items(self) -> Any:
        raise AssertionError("the document before the write was evaluated")


def test_a_write_may_keep_but_never_add_a_violation() -> None:
    c = compiled(REQUIRED, "req")
    expired = {"n": 1}  # `user` expired: the document is already invalid
    for changed in ({"n"}, None):
        assert c.introduced(expired, {"n": 2}, changed) is None
        assert c.introduced(expired, {"n": 2, "email": "x"}, changed) is None
        v = c.introduced(expired, {"n": "two"}, changed)
        assert v == Violation("/n", "type", "/n must be an integer; got a string")
        v = c.introduced(expired, {"n": 2, "extra": 1}, changed)
        assert v is not None
        assert (v.pointer, v.keyword) == ("/extra", "additionalProperties")
    # Deleting a required member adds a violation.
    v = c.introduced({"user": "bob", "n": 1}, {"n": 1}, {"user"})
    assert v == Violation("/user", "required", "/user is required")
    # A second missing member, or a second extra one, is a new violation.
    both = compiled({**REQUIRED, "required": ["user", "email"]}, "both")
    v = both.introduced({"email": "x"}, {}, {"email"})
    assert v == Violation("/email", "required", "/email is required")
    v = c.introduced({"user": "a", "x": 1}, {"user": "a", "x": 1, "y": 2}, {"y"})
    assert v is not None
    assert (v.pointer, v.keyword) == ("/y", "additionalProperties")
    # A root that relates members is evaluated whole, both times.
    whole = compiled({**REQUIRED, "allOf": [{"type": "object"}]})
    assert whole.introduced({"n": 1}, {"n": 2}, {"n"}) is None
    v = whole.introduced({"n": 1}, {"n": 2.5}, {"n"})
    assert v is not None
    assert (v.pointer, v.keyword) == ("/n", "type")


def test_a_valid_write_evaluates_only_the_new_document() -> None:
    c = compiled(REQUIRED)
    assert c.introduced(Untouchable(user="a"), {"user": "b"}) is None
    assert c.introduced(Untouchable(user="a"), {"user": "b"}, {"user"}) is None
    with pytest.raises(AssertionError, match="before the write"):
        c.introduced(Untouchable(user="a"), {"user": 1})


def test_introduced_is_bounded() -> None:
    schema = {"additionalProperties": {"type": "array", "items": {"enum": list(range(9000))}}}
    c = compiled(schema, "enum")
    start = time.perf_counter()
    v = c.introduced({"k0": [1]}, {"k0": [-1] * 2500}, {"k0"})
    assert v is not None
    assert (v.pointer[:4], v.keyword) == ("/k0/", "enum")
    assert c.introduced({"k0": [-1] * 2500}, {"k0": [-1] * 2500}) is None
    assert time.perf_counter() - start < 2
    costly = CompiledSchema(doubling_chain(40), "chain")
    unusable(lambda: costly.introduced({}, {"x": 1}))


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


def test_defaults_are_bounded() -> None:
    # Stored before check_schema refused them: reading must stop, quickly.
    bomb = CompiledSchema(DEFAULTS_BOMB, "bomb")
    err = unusable(lambda: bomb.with_defaults({}))
    assert err.message == (
        f"schema 'bomb' has defaults too large or too deep to fill into this document (more"
        f" than {MAX_DEFAULT_NODES:,} values, {LIMITS.max_document_bytes:,} bytes or"
        f" {VALIDATION_STEPS:,} steps); read the document with omit_defaults, or simplify the"
        " schema's defaults with PutSchema"
    )
    assert err.metadata == {"schema": "bomb", "limit": str(MAX_DEFAULT_NODES)}
    # More than a document's worth of bytes, from 200 members sharing one default.
    big = {
        "$defs": {"big": {"default": ["x" * 500] * 20}},
        "properties": {f"p{i}": {"$ref": "#/$defs/big"} for i in range(200)},
    }
    unusable(lambda: CompiledSchema(big, "big").with_defaults({}))
    assert len(CompiledSchema(big).with_defaults({f"p{i}": 0 for i in range(100)})[1]) == 100
    # A $ref chain longer than the stack: followed without recursion.
    long = CompiledSchema(ref_chain(1200), "long")
    assert long.with_defaults({"a": 1}) == ({"a": 1, "x": 1}, ["x"])


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
