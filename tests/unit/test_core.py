"""Limits and value rules, without any server."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sessionmemory_server import core
from sessionmemory_server.core import Kind
from sessionmemory_server.errors import DomainError


def reason(fn: object, *args: object) -> str:
    with pytest.raises(DomainError) as info:
        fn(*args)  # type: ignore[operator]
    return info.value.reason


@pytest.mark.parametrize(
    ("value", "digits"),
    [(0.0, 1), (1.0, 1), (1000.0, 1), (123.456, 6), (0.1 + 0.2, 17), (1e-7, 1), (2.5e-300, 2)],
)
def test_significant_digits(value: float, digits: int) -> None:
    assert core.significant_digits(value) == digits


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e15, max_value=1e15))
def test_number_accepted_iff_shortest_form_has_at_most_15_digits(value: float) -> None:
    if abs(value) >= 1e15:
        return
    ok = core.significant_digits(value) <= 15
    if ok:
        assert float(core.number_value(value)) == value
    else:
        assert reason(core.number_value, value) == "NUMBER_TOO_PRECISE"


def test_number_text_is_canonical() -> None:
    assert core.number_value(-0.0) == "0"
    assert core.number_value(3.0) == "3"
    assert core.number_value(1e-7) == "1e-07"
    assert core.number_value(999_999_999_999_999.0) == "999999999999999"
    assert reason(core.number_value, 1e15) == "NUMBER_OUT_OF_RANGE"
    assert reason(core.number_value, -math.inf) == "NUMBER_NOT_FINITE"


def test_json_rules() -> None:
    assert core.json_value(' {"a" : [1, 2.0, "é"]} ') == '{"a":[1,2.0,"é"]}'
    assert core.json_value("12345678901234567890") == "12345678901234567890"
    for bad in ['{"a":1,"a":2}', "NaN", "-Infinity", '"\\udc00"', "1e999", "[01]", "tru", ""]:
        assert reason(core.json_value, bad) == "INVALID_JSON", bad
    assert reason(core.json_value, "[" * 33 + "]" * 33) == "JSON_TOO_DEEP"
    assert core.json_value("[" * 32 + "]" * 32)
    assert reason(core.json_value, "[" * 5000 + "]" * 5000) == "JSON_TOO_DEEP"
    assert reason(core.json_value, json.dumps("x" * 5119)) == "JSON_TOO_LARGE"
    assert reason(core.json_value, " " * 100_000 + "1") == "JSON_TOO_LARGE"


def test_json_edges_of_the_fast_paths() -> None:
    # Brackets inside strings count toward the shortcut, never toward depth.
    deep_looking = json.dumps({"a": "[" * 100 + "{" * 100})
    assert core.json_value(deep_looking) == deep_looking.replace(" ", "")
    nested = "[" * 32 + json.dumps("[[[[") + "]" * 32
    assert core.json_value(nested) == nested
    assert reason(core.json_value, "[" * 33 + json.dumps("]]") + "]" * 33) == "JSON_TOO_DEEP"
    # A byte-order mark is refused as json.loads refuses it.
    assert reason(core.json_value, "\ufeff{}") == "INVALID_JSON"
    # Integers fit a double up to 308 digits; 309 nines overflow it.
    assert core.json_value("9" * 308) == "9" * 308
    assert reason(core.json_value, "9" * 309) == "INVALID_JSON"
    assert reason(core.json_value, "-" + "9" * 309) == "INVALID_JSON"


_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
    ),
    max_leaves=40,
)


def _reference_depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_reference_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_reference_depth, value), default=0)
    return 0


@given(_JSON_VALUES, st.integers(min_value=0, max_value=6))
def test_parse_json_depth_matches_a_full_walk(value: object, max_depth: int) -> None:
    text = json.dumps(value)
    if _reference_depth(value) > max_depth:
        with pytest.raises(DomainError) as info:
            core.parse_json(text, max_depth=max_depth)
        assert info.value.reason == "JSON_TOO_DEEP"
    else:
        assert core.parse_json(text, max_depth=max_depth) == json.loads(text)


def test_ttl_rules() -> None:
    assert core.ttl(Kind.STRING, None) == 86_400
    assert core.ttl(Kind.NUMBER, 1) == 1
    assert reason(core.ttl, Kind.BOOLEAN, 0) == "TTL_OUT_OF_RANGE"
    assert reason(core.ttl, Kind.JSON, None) == "TTL_REQUIRED"
    assert reason(core.ttl, Kind.JSON, 86_401) == "TTL_OUT_OF_RANGE"
    assert core.ttl(Kind.FILE, 604_800) == 604_800
    assert reason(core.ttl, Kind.FILE, None) == "TTL_REQUIRED"
    assert core.kinds_allowing(86_400) == "snbjf"
    assert core.kinds_allowing(86_401) == "f"


def test_identifiers() -> None:
    assert core.key("_a-B9") == "_a-B9"
    for bad in ["", "1a", "a.b", "a b", "x" * 129, "ä"]:
        assert reason(core.key, bad) == "INVALID_KEY"
    assert core.session_id("any printable: {}%") == "any printable: {}%"
    for bad in ["", "x" * 257, "a\nb", "a\u200bb"]:
        assert reason(core.session_id, bad) == "INVALID_SESSION_ID"
    assert core.keys(["a", "b", "a"]) == ["a", "b"]
    assert reason(core.keys, []) == "TOO_MANY_KEYS"
    assert reason(core.request_id, "x" * 129) == "INVALID_REQUEST_ID"
