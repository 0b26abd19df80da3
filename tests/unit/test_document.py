"""The document model (paths, projection, merge patch, stored kinds), without any server."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessionmemory_server import document
from sessionmemory_server.core import LIMITS, Kind
from sessionmemory_server.document import (
    at_path,
    merge_patch,
    parse_patch,
    parse_path,
    project,
    record_value,
    to_stored,
)
from sessionmemory_server.errors import DomainError
from sessionmemory_server.values import Record, file_meta, file_payload


def error(fn: Any, *args: Any) -> DomainError:
    with pytest.raises(DomainError) as info:
        fn(*args)
    return info.value


# --- RFC 7396 --------------------------------------------------------------

# Appendix A of RFC 7396, every example: (original, patch, result).
RFC7396 = [
    ({"a": "b"}, {"a": "c"}, {"a": "c"}),
    ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
    ({"a": "b"}, {"a": None}, {}),
    ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
    ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
    ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
    ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}}, {"a": {"b": "d"}}),
    ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
    (["a", "b"], ["c", "d"], ["c", "d"]),
    ({"a": "b"}, ["c"], ["c"]),
    ({"a": "foo"}, None, None),
    ({"a": "foo"}, "bar", "bar"),
    ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
    ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
    ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}}),
]


@pytest.mark.parametrize(("original", "patch", "result"), RFC7396)
def test_rfc7396_appendix(original: Any, patch: Any, result: Any) -> None:
    before = copy.deepcopy((original, patch))
    assert merge_patch(original, patch) == result
    assert (original, patch) == before  # inputs untouched


def test_rfc7396_count() -> None:
    assert len(RFC7396) == 15


def test_merge_result_shares_nothing_with_the_patch() -> None:
    patch = {"a": {"list": [1, {"x": 1}]}}
    merged = merge_patch(None, patch)
    merged["a"]["list"][1]["x"] = 2
    assert patch == {"a": {"list": [1, {"x": 1}]}}


json_scalars = st.none() | st.booleans() | st.integers(-(10**6), 10**6) | st.text(max_size=5)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text("abc", max_size=2), inner),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text("abc", max_size=2), json_values, max_size=4)


def null_members(value: Any) -> bool:
    """Whether an object member anywhere (outside arrays) is null."""
    if isinstance(value, dict):
        return any(v is None or null_members(v) for v in value.values())
    return False


@given(json_values, json_values)
def test_merge_patch_is_idempotent(target: Any, patch: Any) -> None:
    once = merge_patch(target, patch)
    assert merge_patch(once, patch) == once


@given(json_values, json_objects)
def test_object_patches_never_store_nulls(target: Any, patch: dict[str, Any]) -> None:
    if null_members(target):
        target = None
    merged = merge_patch(target, patch)
    assert isinstance(merged, dict)
    assert not null_members(merged)
    for name, value in patch.items():
        if value is None:
            assert name not in merged


@given(json_values, json_values)
def test_merge_patch_does_not_mutate(target: Any, patch: Any) -> None:
    before = copy.deepcopy((target, patch))
    merge_patch(target, patch)
    assert (target, patch) == before


# --- paths -----------------------------------------------------------------


def test_parse_path() -> None:
    assert parse_path("name") == ("name", ())
    assert parse_path("lastOrder.status") == ("lastOrder", ("status",))
    assert parse_path("cart.items.0.name") == ("cart", ("items", "0", "name"))
    assert parse_path("a.with space.é") == ("a", ("with space", "é"))
    assert parse_path("k" + ".s" * 32) == ("k", ("s",) * 32)  # 33 segments


@pytest.mark.parametrize("text", ["a..b", "a.", ".a", "."])
def test_empty_segments_are_invalid(text: str) -> None:
    err = error(parse_path, text)
    assert err.reason == "INVALID_PATH"
    assert err.metadata["path"] == text
    assert err.field == "key"


def test_path_limits() -> None:
    err = error(parse_path, "k" + ".s" * 33)
    assert (err.reason, err.metadata["limit"], err.metadata["actual"]) == (
        "INVALID_PATH",
        "33",
        "34",
    )
    long_path = "k." + "x" * (LIMITS.max_path_length - 2)
    assert parse_path(long_path)[1] == ("x" * 1022,)
    err = error(parse_path, long_path + "x")
    assert (err.reason, err.metadata["limit"]) == ("INVALID_PATH", "1024")


def test_the_first_segment_is_a_key() -> None:
    assert error(parse_path, "1a.b").reason == "INVALID_KEY"
    assert error(parse_path, "a-b c.d").reason == "INVALID_KEY"
    err = error(parse_path, "k" * 129)  # no dot: a plain key, failing as keys do
    assert (err.reason, err.field) == ("INVALID_KEY", "key")
    assert error(parse_path, "x" * 2000).reason == "INVALID_KEY"
    assert error(parse_path, "bad key.x", "keys[3]").field == "keys[3]"


def test_at_path_over_objects_and_arrays() -> None:
    cart = {"items": [{"name": "tea", "qty": 2}, {"name": "cup"}], "10": "ten", "note": "x"}
    assert at_path(cart, ()) == (True, cart)
    assert at_path(cart, ("items", "0", "name")) == (True, "tea")
    assert at_path(cart, ("items", "1", "name")) == (True, "cup")
    assert at_path(cart, ("items", "1")) == (True, {"name": "cup"})
    assert at_path(cart, ("10",)) == (True, "ten")  # digits on an object: a member name
    for missing in [
        ("items", "2"),
        ("items", "01"),
        ("items", "-1"),
        ("items", "+1"),
        ("items", "name"),
        ("items", "1", "qty"),
        ("note", "0"),
        ("note", "x"),
        ("nothing",),
    ]:
        assert at_path(cart, missing) == (False, None), missing
    assert at_path({"a": None}, ("a",)) == (True, None)
    assert at_path({"a": None}, ("a", "b")) == (False, None)
    assert at_path(5, ("a",)) == (False, None)


def file_record() -> Record:
    payload = file_payload("obj-1", "image/png", 1234, "ab" * 32, 1_735_646_400_123, "up-1")
    return Record("receipt", Kind.FILE, 3, 1_735_650_000_000, payload)


def test_record_values() -> None:
    assert record_value(Record("s", Kind.STRING, 1, 0, "on the way")) == "on the way"
    n = record_value(Record("n", Kind.NUMBER, 1, 0, "3"))
    assert (n, type(n)) == (3, int)
    assert record_value(Record("n", Kind.NUMBER, 1, 0, "999999999999999")) == 999_999_999_999_999
    x = record_value(Record("n", Kind.NUMBER, 1, 0, "2.5"))
    assert (x, type(x)) == (2.5, float)
    assert record_value(Record("n", Kind.NUMBER, 1, 0, "1e-07")) == 1e-7
    assert record_value(Record("b", Kind.BOOLEAN, 1, 0, "1")) is True
    assert record_value(Record("b", Kind.BOOLEAN, 1, 0, "0")) is False
    assert record_value(Record("j", Kind.JSON, 1, 0, '{"a":[1,null,"é"]}')) == {"a": [1, None, "é"]}
    assert record_value(Record("j", Kind.JSON, 1, 0, '"text"')) == "text"


def test_files_appear_as_their_description() -> None:
    info = record_value(file_record())
    assert info == {
        "key": "receipt",
        "mime_type": "image/png",
        "size_bytes": 1234,
        "sha256": "ab" * 32,
        "created_at": "2024-12-31T12:00:00.123Z",
        "expires_at": "2024-12-31T13:00:00.000Z",
        "version": 3,
    }
    assert document.file_info_value(file_meta(file_record())) == info
    assert at_path(info, ("size_bytes",)) == (True, 1234)
    assert document.rfc3339(0) == "1970-01-01T00:00:00.000Z"


def test_project() -> None:
    doc = {
        "lastOrder": {"id": "ORD-123", "status": "on the way", "meta": {"a": 1, "b": 2}},
        "cart": {"items": [{"name": "tea", "qty": 2}], "total": 7.5},
        "tags": ["a", "b"],
        "name": "Ada",
    }
    paths = [parse_path(p) for p in ["lastOrder.status", "lastOrder.meta.b", "name"]]
    assert project(doc, paths) == {
        "lastOrder": {"status": "on the way", "meta": {"b": 2}},
        "name": "Ada",
    }
    # Through an array: the whole array, in its place.
    assert project(doc, [parse_path("cart.items.0.name")]) == {
        "cart": {"items": [{"name": "tea", "qty": 2}]}
    }
    assert project(doc, [parse_path("tags.1")]) == {"tags": ["a", "b"]}
    # A prefix wins, in either order; repeats are harmless.
    for order in (["lastOrder", "lastOrder.status"], ["lastOrder.status", "lastOrder"]):
        assert project(doc, [parse_path(p) for p in order]) == {"lastOrder": doc["lastOrder"]}
    assert project(doc, [parse_path("name"), parse_path("name")]) == {"name": "Ada"}
    # Missing paths are left out.
    missing = ["nothing", "lastOrder.nothing", "cart.items.5.name", "name.first", "tags.x"]
    assert project(doc, [parse_path(p) for p in missing]) == {}
    assert project(doc, []) == {}
    # A copy: changing the projection leaves the document alone.
    projected = project(doc, [parse_path("cart")])
    projected["cart"]["items"].append(1)
    assert len(doc["cart"]["items"]) == 1  # type: ignore[index]


# --- patches ---------------------------------------------------------------


def test_parse_patch() -> None:
    assert parse_patch('{"a": 1, "b": {"c": null}, "d": null}') == {
        "a": 1,
        "b": {"c": None},
        "d": None,
    }
    assert len(parse_patch(json.dumps({f"k{i}": i for i in range(100)}))) == 100


@pytest.mark.parametrize("text", ["[1]", '"x"', "null", "1", "true"])
def test_a_patch_must_be_an_object(text: str) -> None:
    err = error(parse_patch, text)
    assert (err.reason, err.field) == ("INVALID_PATCH", "merge_patch")


def test_patch_errors() -> None:
    assert error(parse_patch, "{}").reason == "TOO_MANY_KEYS"
    err = error(parse_patch, json.dumps({f"k{i}": i for i in range(101)}))
    assert (err.reason, err.metadata["actual"]) == ("TOO_MANY_KEYS", "101")
    err = error(parse_patch, '{"ok": 1, "last.status": "x"}')
    assert (err.reason, err.field) == ("INVALID_KEY", "merge_patch")
    assert err.metadata["pointer"] == "/last.status"
    assert "'last.status'" in err.message
    assert error(parse_patch, '{"a/b~c": 1}').metadata["pointer"] == "/a~1b~0c"
    for bad in ['{"a":1,"a":2}', '{"a":NaN}', '{"a":1e999}', '{"a":"\\udc00"}', "{", ""]:
        assert error(parse_patch, bad).reason == "INVALID_JSON", bad
    assert parse_patch('{"a":"\\ud83d\\ude00"}') == {"a": "😀"}


def test_patch_size_and_depth() -> None:
    big = '{"a":"' + "x" * (LIMITS.max_patch_bytes - 8) + '"}'
    assert len(big) == LIMITS.max_patch_bytes
    assert parse_patch(big)
    assert error(parse_patch, big + " ").reason == "INVALID_PATCH"
    too_big = json.dumps({"a": "é" * (LIMITS.max_patch_bytes // 2)}, ensure_ascii=False)
    err = error(parse_patch, too_big)
    assert (err.reason, err.metadata["limit"]) == ("INVALID_PATCH", str(LIMITS.max_patch_bytes))
    assert err.metadata["actual"] == str(len(too_big.encode()))
    # The patch object is one level; each member value may nest 32 more.
    assert parse_patch('{"a":' + "[" * 32 + "]" * 32 + "}")
    err = error(parse_patch, '{"a":' + "[" * 33 + "]" * 33 + "}")
    assert (err.reason, err.metadata["limit"]) == ("JSON_TOO_DEEP", "33")
    assert error(parse_patch, '{"a":' + "[" * 5000 + "]" * 5000 + "}").reason == "JSON_TOO_DEEP"


def test_to_stored_kinds() -> None:
    assert to_stored("b", True) == (Kind.BOOLEAN, "1")
    assert to_stored("b", False) == (Kind.BOOLEAN, "0")
    assert to_stored("n", 1) == (Kind.NUMBER, "1")  # an int, not a boolean
    assert to_stored("n", 0) == (Kind.NUMBER, "0")
    assert to_stored("n", 2.0) == (Kind.NUMBER, "2")
    assert to_stored("n", -0.0) == (Kind.NUMBER, "0")
    assert to_stored("n", 0.123456789012345) == (Kind.NUMBER, "0.123456789012345")
    assert to_stored("n", 999_999_999_999_999) == (Kind.NUMBER, "999999999999999")
    assert to_stored("s", "on the way") == (Kind.STRING, "on the way")
    assert to_stored("s", "") == (Kind.STRING, "")
    assert to_stored("j", {"b": [1, None], "a": "é"}) == (Kind.JSON, '{"b":[1,null],"a":"é"}')
    assert to_stored("j", []) == (Kind.JSON, "[]")
    with pytest.raises(ValueError, match="delete the key"):
        to_stored("x", None)


def test_to_stored_limits() -> None:
    assert to_stored("s", "😀" * 255)[0] is Kind.STRING
    err = error(to_stored, "s", "x" * 256)
    assert (err.reason, err.field, err.metadata["pointer"]) == (
        "VALUE_TOO_LONG",
        "merge_patch",
        "/s",
    )
    assert err.metadata["field"] == "merge_patch"
    assert err.message == "value for 's' is 256 characters; the limit is 255"
    assert error(to_stored, "n", 1_234_567_890_123_456).reason == "NUMBER_OUT_OF_RANGE"  # 16 digits
    assert error(to_stored, "n", 0.1234567890123456).reason == "NUMBER_TOO_PRECISE"
    assert error(to_stored, "n", 1e15).reason == "NUMBER_OUT_OF_RANGE"
    assert error(to_stored, "n", 10**400).reason == "NUMBER_OUT_OF_RANGE"
    assert error(to_stored, "n", float("nan")).reason == "NUMBER_NOT_FINITE"
    assert to_stored("j", ["x" * 5116])[0] is Kind.JSON  # 5,120 bytes compact
    err = error(to_stored, "j", ["x" * 5117], "patch")
    assert (err.reason, err.field, err.metadata["pointer"]) == ("JSON_TOO_LARGE", "patch", "/j")
    assert err.metadata["actual"] == "5121"
    deep: Any = []
    for _ in range(32):
        deep = [deep]
    assert error(to_stored, "j", deep).reason == "JSON_TOO_DEEP"
    assert error(to_stored, "j", {"a": float("inf")}).reason == "NUMBER_NOT_FINITE"
    assert error(to_stored, "j", ["\udc00"]).reason == "INVALID_JSON"
    with pytest.raises(TypeError):
        to_stored("x", object())


def test_dumps() -> None:
    assert document.dumps({"a": [1, 2.5, None], "é": True}) == '{"a":[1,2.5,null],"é":true}'
    assert document.pointer(["order", "status", 0]) == "/order/status/0"
    assert document.pointer([]) == ""
