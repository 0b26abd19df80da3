"""The metrics module's pure parts: listen addresses, grpc_type, what a failed call counts.

The endpoint and the counters of real calls are tested in
tests/integration/test_observability.py (and the multi-process endpoint in
tests/integration/test_workers.py).
"""

from __future__ import annotations

import time
import uuid

import grpc
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from sessionmemory_server.metrics import (
    CALLS_IN_FLIGHT,
    HANDLED,
    HANDLING_SECONDS,
    MULTIPROC_ENV,
    STARTED,
    grpc_type,
    method_metrics,
    split_listen,
)


def test_split_listen() -> None:
    assert split_listen("127.0.0.1:9464") == ("127.0.0.1", 9464)
    assert split_listen("[::1]:0") == ("::1", 0)
    assert split_listen(":9464") == ("0.0.0.0", 9464)
    for bad in ("9464", "host:", "host:http", "host:70000"):
        with pytest.raises(ValueError, match="host:port"):
            split_listen(bad)


def test_grpc_type_names_the_four_kinds() -> None:
    assert [grpc_type(c, s) for c in (False, True) for s in (False, True)] == [
        "UNARY",
        "SERVER_STREAM",
        "CLIENT_STREAM",
        "BIDI_STREAM",
    ]


def shared_registry() -> CollectorRegistry:
    """The objects a supervisor's workers record into, readable here."""
    registry = CollectorRegistry()
    for metric in (STARTED, HANDLED, HANDLING_SECONDS, CALLS_IN_FLIGHT):
        registry.register(metric)
    return registry


@pytest.mark.parametrize("shared", [False, True], ids=["one process", "worker"])
def test_a_call_counts_its_code_its_time_and_the_views_of_its_reason(
    shared: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One implementation keeps plain numbers exported by a collector, the other
    # prometheus_client's multi-process objects: the same samples either way.
    if shared:
        monkeypatch.setenv(MULTIPROC_ENV, "/nonexistent")  # only its presence counts here
    registry = shared_registry() if shared else REGISTRY
    service, method = "test.v1.Unit", f"M{uuid.uuid4().hex[:8]}"  # labels of this test only
    grpc_labels = {"grpc_type": "CLIENT_STREAM", "grpc_service": service, "grpc_method": method}
    m = method_metrics(service, method, "CLIENT_STREAM")
    monkeypatch.delenv(MULTIPROC_ENV, raising=False)

    def sample(name: str, **labels: str) -> float:
        return registry.get_sample_value(name, labels) or 0.0

    before_auth = (
        REGISTRY.get_sample_value("sessionmemory_auth_failures_total", {"reason": "TOKEN_EXPIRED"})
        or 0.0
    )
    in_flight = sample("sessionmemory_calls_in_flight")
    outcomes = [
        (grpc.StatusCode.OK, None, 0.0004),
        (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_EXPIRED", 0.002),
        (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_EXPIRED", 0.002),
        (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_KEY", 400.0),
    ]
    for code, reason, seconds in outcomes:
        m.start()
        assert sample("sessionmemory_calls_in_flight") == in_flight + 1
        m.done(code, reason, seconds)
    assert sample("sessionmemory_calls_in_flight") == in_flight
    assert sample("grpc_server_started_total", **grpc_labels) == 4
    assert sample("grpc_server_handled_total", **grpc_labels, grpc_code="OK") == 1
    assert sample("grpc_server_handled_total", **grpc_labels, grpc_code="UNAUTHENTICATED") == 2
    assert sample("grpc_server_handling_seconds_count", **grpc_labels) == 4
    assert sample("grpc_server_handling_seconds_sum", **grpc_labels) == pytest.approx(400.0044)
    buckets = {
        le: sample("grpc_server_handling_seconds_bucket", **grpc_labels, le=le)
        for le in ("0.0005", "0.001", "0.0025", "300.0", "+Inf")
    }
    assert buckets == {"0.0005": 1, "0.001": 1, "0.0025": 3, "300.0": 3, "+Inf": 4}

    def rejected(code: str, reason: str) -> float:
        labels = {"grpc_method": method, "grpc_code": code, "reason": reason}
        return REGISTRY.get_sample_value("sessionmemory_rejections_total", labels) or 0.0

    assert rejected("INVALID_ARGUMENT", "INVALID_KEY") == 1
    assert rejected("UNAUTHENTICATED", "TOKEN_EXPIRED") == 2
    assert rejected("OK", "") == 0
    after_auth = REGISTRY.get_sample_value(
        "sessionmemory_auth_failures_total", {"reason": "TOKEN_EXPIRED"}
    )
    assert after_auth is not None and after_auth - before_auth == 2


def test_one_process_exports_each_family_once() -> None:
    text = generate_latest(REGISTRY).decode()
    for family in (
        "grpc_server_started_total",
        "grpc_server_handled_total",
        "grpc_server_handling_seconds",
        "sessionmemory_calls_in_flight",
        "sessionmemory_redis_command_seconds",
    ):
        assert text.count(f"# TYPE {family} ") == 1, family


def test_idle_connections_to_the_endpoint_cannot_pile_up_threads() -> None:
    import socket
    import threading
    import urllib.request

    from sessionmemory_server.metrics import MAX_SCRAPE_CONNECTIONS, serve_metrics

    server = serve_metrics("127.0.0.1:0", multiprocess=False)
    before = threading.active_count()
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(50)]
    try:
        time.sleep(0.5)
        assert threading.active_count() <= before + MAX_SCRAPE_CONNECTIONS
    finally:
        for conn in idle:
            conn.close()
    try:
        deadline = time.monotonic() + 10
        while True:  # the slots come back as the idle connections end
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{server.port}/metrics", timeout=5
                ) as r:
                    assert r.status == 200
                break
            except OSError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
    finally:
        server.close()
