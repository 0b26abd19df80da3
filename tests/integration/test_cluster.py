"""Redis Cluster: every call's keys share one slot, so nothing fails with CROSSSLOT.

A one-node cluster owning all 16,384 slots still enforces the same-slot rule for
multi-key commands and scripts, which is exactly what the key layout must obey.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis

from sessionmemory import AsyncMemoryClient
from sessionmemory_server.embedded import EmbeddedRedis, EmbeddedS3, free_port

from ..conftest import ServerThread, start_server
from . import test_document, test_flows, test_memory


@pytest.fixture(scope="module")
def cluster_server(
    tmp_path_factory: pytest.TempPathFactory, s3_server: EmbeddedS3
) -> Iterator[ServerThread]:
    data: Path = tmp_path_factory.mktemp("cluster")
    node = EmbeddedRedis(
        data,
        # The cluster bus listens on port + 10000.
        port=free_port(with_twin=True),
        extra_args=("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
    ).start()
    admin = redis.Redis(port=node.port)
    admin.execute_command("CLUSTER", "ADDSLOTS", *range(16384))
    deadline = time.monotonic() + 20
    while b"cluster_state:ok" not in admin.execute_command("CLUSTER", "INFO"):
        assert time.monotonic() < deadline, "cluster did not become ok"
        time.sleep(0.05)
    admin.close()
    server = start_server(node.url.removesuffix("/0"), s3_server, redis_cluster=True)
    yield server
    server.stop()
    node.stop()


@pytest.fixture
async def cluster_memory(cluster_server: ServerThread) -> AsyncIterator[Any]:
    key = cluster_server.create_key("acme")
    async with AsyncMemoryClient(cluster_server.address, api_key=key) as client:
        yield client.session(f"cluster-{time.monotonic_ns()}")


@pytest.mark.parametrize(
    "flow",
    [
        test_flows.test_multi_step_registration,
        test_flows.test_shopping_cart_in_json,
        test_flows.test_pin_attempt_limit,
        test_memory.test_set_many_is_all_or_nothing,
        test_memory.test_preconditions,
        test_memory.test_touch_sets_a_new_ttl_without_rewriting,
        test_memory.test_list_and_clear,
        test_memory.test_increment_with_the_same_request_id_counts_once,
        test_memory.test_delete_counts_what_existed,
    ],
)
async def test_flows_on_a_cluster(cluster_memory: Any, flow: Any) -> None:
    await flow(cluster_memory)


@pytest.mark.parametrize(
    "flow",
    [
        test_document.test_agent_flow_schema_merge_from_inside_and_outside,
        test_document.test_every_write_of_a_bound_session_is_validated,
        test_document.test_revision_preconditions_and_must_exist,
        test_document.test_paths,
        test_document.test_concurrent_patches_of_one_field_merge_and_never_tear,
        test_document.test_watch_sees_every_change_in_order_and_resumes,
    ],
)
async def test_documents_schemas_and_watch_on_a_cluster(
    cluster_server: ServerThread, flow: Any
) -> None:
    key = cluster_server.create_key("acme")
    async with grpc.aio.insecure_channel(cluster_server.address) as channel:
        await flow(test_document.Api(channel, key), f"cluster-{time.monotonic_ns()}")
