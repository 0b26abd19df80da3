"""The access log's pure logic: the per-second cap, sampling, the session hash, the line.

A fake clock and a fixed random source drive it; what the real server writes is
tested in tests/integration/test_observability.py.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
from prometheus_client import REGISTRY

from sessionmemory_server.accesslog import AccessLog, LineBudget, session_hasher
from sessionmemory_server.logs import JsonFormatter, TextFormatter


def dropped() -> float:
    return REGISTRY.get_sample_value("sessionmemory_access_log_dropped_total") or 0.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    """What the access logger writes, as JSON lines."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("sessionmemory_server.access")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def test_the_budget_holds_one_second_and_refills_at_its_rate() -> None:
    budget = LineBudget(3, now=0.0)
    assert [budget.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert not budget.take(0.2)  # 0.6 of a line back: not yet
    assert budget.take(0.4)  # 1.2 lines back
    assert not budget.take(0.4)
    assert [budget.take(10.0) for _ in range(4)] == [True, True, True, False]  # never > 3 saved


def test_a_refused_take_spends_nothing() -> None:
    budget = LineBudget(1, now=0.0)
    assert budget.take(0.0)
    for t in (0.1, 0.2, 0.3, 0.4):
        assert not budget.take(t)
    assert budget.take(1.0)  # the refusals did not push the refill back


def test_failed_calls_are_always_wanted_successes_by_the_sample_rate(lines: io.StringIO) -> None:
    draws = iter([0.005, 0.5, 0.0099, 0.01])
    log = AccessLog(
        sample_rate=0.01, max_lines_per_second=10, hash_key=b"k", rng=lambda: next(draws)
    )
    assert [log.wanted(True) for _ in range(4)] == [True, False, True, False]
    assert all(log.wanted(False) for _ in range(10))


def test_rates_zero_and_one_draw_nothing(lines: io.StringIO) -> None:
    def never() -> float:
        raise AssertionError("no draw expected")

    def log(rate: float) -> AccessLog:
        return AccessLog(sample_rate=rate, max_lines_per_second=1, hash_key=b"k", rng=never)

    assert not log(0.0).wanted(True)
    assert log(1.0).wanted(True)


def test_nothing_is_wanted_when_the_logger_is_above_info() -> None:
    logger = logging.getLogger("sessionmemory_server.access")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        log = AccessLog(sample_rate=1.0, max_lines_per_second=10, hash_key=b"k")
        assert not log.wanted(True)
        assert not log.wanted(False)
    finally:
        logger.setLevel(level)


def test_the_session_hash_is_keyed_short_and_stable() -> None:
    one, other = session_hasher(b"key-one"), session_hasher(b"key-two")
    digest = one("conv-42")
    assert re.fullmatch(r"[0-9a-f]{16}", digest)
    assert one("conv-42") == digest
    assert one("conv-43") != digest
    assert other("conv-42") != digest  # without the key, the hash says nothing
    assert re.fullmatch(r"[0-9a-f]{16}", session_hasher(b"x" * 200)("conv-42"))  # long keys work


def test_a_line_has_the_fields_and_never_the_session_id(lines: io.StringIO) -> None:
    log = AccessLog(sample_rate=1.0, max_lines_per_second=10, hash_key=b"secret")
    assert log.write(
        "ReadFile",
        "OK",
        0.0123456,
        tenant="acme",
        session_id="conv-secret-id",
        bytes_out=4096,
        trace_id="0af7651916cd43dd8448eb211c80319c",
    )
    assert log.write("Get", "INVALID_ARGUMENT", 0.001, reason="INVALID_KEY", tenant="acme")
    raw = lines.getvalue()
    assert "conv-secret-id" not in raw
    first, second = (json.loads(line) for line in raw.splitlines())
    assert first["logger"] == "sessionmemory_server.access"
    assert first["msg"] == "call"
    assert {k: first[k] for k in ("method", "code", "tenant", "duration_ms", "bytes_out")} == {
        "method": "ReadFile",
        "code": "OK",
        "tenant": "acme",
        "duration_ms": 12.346,
        "bytes_out": 4096,
    }
    assert first["session"] == session_hasher(b"secret")("conv-secret-id")
    assert first["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert isinstance(first["pid"], int)
    assert "reason" not in first and "bytes_in" not in first
    assert second["reason"] == "INVALID_KEY"
    assert "session" not in second and "trace_id" not in second


def test_lines_over_the_cap_are_counted_not_written(lines: io.StringIO) -> None:
    clock = Clock()
    log = AccessLog(sample_rate=1.0, max_lines_per_second=2, hash_key=b"k", clock=clock)
    before = dropped()
    written = [log.write("Get", "OK", 0.001, tenant="acme") for _ in range(5)]
    assert written == [True, True, False, False, False]
    assert dropped() - before == 3
    clock.now += 0.5
    assert log.write("Get", "OK", 0.001, tenant="acme")
    assert len(lines.getvalue().splitlines()) == 3


def test_calls_of_no_tenant_cannot_crowd_out_the_tenants_lines(lines: io.StringIO) -> None:
    clock = Clock()
    log = AccessLog(sample_rate=1.0, max_lines_per_second=20, hash_key=b"k", clock=clock)
    keyless = [log.write("Get", "UNAUTHENTICATED", 0.001) for _ in range(100)]
    assert sum(keyless) == 2  # a tenth of the cap, in a budget of its own
    assert all(log.write("Get", "INVALID_ARGUMENT", 0.001, tenant="acme") for _ in range(20))


def test_the_text_format_keeps_the_fields() -> None:
    record = logging.LogRecord(
        "sessionmemory_server.access", logging.INFO, "", 0, "call", None, None
    )
    for k, v in {"method": "Get", "code": "OK", "tenant": "acme", "session": "ab" * 8}.items():
        setattr(record, k, v)
    line = TextFormatter(worker=1).format(record)
    assert 'method="Get" code="OK" tenant="acme" session="abababababababab"' in line
    assert "worker=1" in line
