"""A real Redis Cluster (3 primaries, 3 replicas): the flows, a failover, a reshard.

- The behaviour flows run through ``--redis-cluster`` with their sessions on each
  of the three primaries in turn (each test checks its keys landed there), so
  every script's keys share one slot wherever the slot lives (no CROSSSLOT).
- A primary is killed (SIGKILL) under a steady write load: every call answers OK
  or a retryable UNAVAILABLE within its deadline, the server recovers without a
  restart once the replica is promoted, acknowledged writes lost to the
  asynchronous replication are counted (bounded by the last second before the
  kill) and increments retried with their request id never count twice.
- A session's slot is migrated to another primary while the session is in use:
  reads follow ASK/MOVED, writes answer OK or UNAVAILABLE (TRYAGAIN while the
  session's keys are split between the two nodes) and the data is intact after.

The cluster is module-scoped: the failover test runs last and restarts the node
it killed (it rejoins as a replica).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from redis import exceptions as redis_exceptions
from redis.asyncio.cluster import ClusterNode
from redis.exceptions import MovedError

from sessionmemory import AsyncMemoryClient, MemoryApiError, MemoryClient
from sessionmemory_server.embedded import EmbeddedRedis, EmbeddedS3, free_port
from sessionmemory_server.stores.autopipeline import LuaScript, _Waiting

from ..cluster import LocalCluster, Node, session_slot
from ..conftest import ServerThread, start_server
from . import test_document, test_files, test_flows, test_memory
from .test_autopipeline import owned_client

TENANT = "acme"
# Generous on a loaded 2-core machine: a kill -9 is detected after
# cluster-node-timeout (1 s), the replica elected about a second later.
RECOVERY_BOUND_SECONDS = 30.0
CALL_DEADLINE_SECONDS = 5.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    with LocalCluster(tmp_path_factory.mktemp("cluster"), node_timeout_ms=1000) as running:
        yield running


@pytest.fixture(scope="module")
def cluster_server(cluster: LocalCluster, s3_server: EmbeddedS3) -> Iterator[ServerThread]:
    server = start_server(cluster.url, s3_server, redis_cluster=True)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cluster_key(cluster_server: ServerThread) -> str:
    return cluster_server.create_key(TENANT)


def ordered_primaries(cluster: LocalCluster) -> list[Node]:
    """The primaries by the lowest slot they own (stable across a failover)."""
    owners = cluster.slot_map()
    first: dict[str, int] = {}
    for slot, owner in owners.items():
        first[owner] = min(first.get(owner, slot), slot)
    return [cluster.node(owner) for owner in sorted(first, key=first.__getitem__)]


def session_on(cluster: LocalCluster, primary: Node, prefix: str) -> str:
    """A fresh session id whose slot ``primary`` serves."""
    owners = cluster.slot_map()
    base = f"{prefix}-{uuid.uuid4().hex[:8]}"
    for n in itertools.count():
        session = f"{base}-{n}"
        if owners[session_slot(TENANT, session)] == primary.node_id:
            return session
    raise AssertionError("unreachable")


def assert_keys_on(primary: Node, session: str) -> None:
    """The session's keys really sit on ``primary`` (the flow went through it)."""
    slot = session_slot(TENANT, session)
    assert primary.cmd("CLUSTER", "COUNTKEYSINSLOT", slot) > 0, (
        f"no key of {session} (slot {slot}) on primary {primary.port}"
    )


ASYNC_FLOWS: list[Callable[[Any], Any]] = [
    test_flows.test_multi_step_registration,
    test_flows.test_shopping_cart_in_json,
    test_flows.test_pin_attempt_limit,
    test_memory.test_set_many_is_all_or_nothing,
    test_memory.test_preconditions,
    test_memory.test_touch_sets_a_new_ttl_without_rewriting,
    test_memory.test_list_and_clear,
    test_memory.test_increment_with_the_same_request_id_counts_once,
    test_memory.test_delete_counts_what_existed,
]


def spread(flows: list[Any]) -> list[Any]:
    """Each flow with the primary (0, 1, 2 in turn) its session will live on."""
    return [
        pytest.param(flow, index % 3, id=f"{flow.__name__}-p{index % 3}")
        for index, flow in enumerate(flows)
    ]


@pytest.mark.parametrize(("flow", "primary"), spread(ASYNC_FLOWS))
async def test_flows_on_every_primary(
    cluster: LocalCluster, cluster_server: ServerThread, cluster_key: str, flow: Any, primary: int
) -> None:
    node = ordered_primaries(cluster)[primary]
    session_id = session_on(cluster, node, "flow")
    async with AsyncMemoryClient(cluster_server.address, api_key=cluster_key) as client:
        session = client.session(session_id)
        await flow(session)
        await session.set("probe", 1)
    assert_keys_on(node, session_id)


FILE_FLOWS: list[Callable[..., Any]] = [
    test_files.test_preconditions_and_kinds,
    test_files.test_upload_id_makes_retries_store_once,
    test_files.test_replace_delete_clear_and_set_release_blobs,
    test_files.test_expired_files_are_collected,
]


@pytest.mark.parametrize(("flow", "primary"), spread(FILE_FLOWS))
def test_file_flows_on_every_primary(
    cluster: LocalCluster, cluster_server: ServerThread, cluster_key: str, flow: Any, primary: int
) -> None:
    node = ordered_primaries(cluster)[primary]
    session_id = session_on(cluster, node, "files")
    with MemoryClient(cluster_server.address, api_key=cluster_key, timeout=30) as client:
        session = client.session(session_id)
        if "server" in flow.__code__.co_varnames[: flow.__code__.co_argcount]:
            flow(session, cluster_server)
        else:
            flow(session)
        session.set("probe", 1)
    assert_keys_on(node, session_id)


DOCUMENT_FLOWS: list[Callable[..., Any]] = [
    test_document.test_agent_flow_schema_merge_from_inside_and_outside,
    test_document.test_every_write_of_a_bound_session_is_validated,
    test_document.test_revision_preconditions_and_must_exist,
    test_document.test_paths,
    test_document.test_concurrent_patches_of_one_field_merge_and_never_tear,
    test_document.test_watch_sees_every_change_in_order_and_resumes,
]


@pytest.mark.parametrize(("flow", "primary"), spread(DOCUMENT_FLOWS))
async def test_documents_schemas_and_watch_on_every_primary(
    cluster: LocalCluster, cluster_server: ServerThread, cluster_key: str, flow: Any, primary: int
) -> None:
    node = ordered_primaries(cluster)[primary]
    session_id = session_on(cluster, node, "doc")
    async with grpc.aio.insecure_channel(cluster_server.address) as channel:
        api = test_document.Api(channel, cluster_key)
        await flow(api, session_id)
        await api.set(session_id, "probe", "1")
    assert_keys_on(node, session_id)


# --- load: a writer per session, every attempt recorded -----------------------------


@dataclass
class Writer:
    """Writes one session in a loop and records every attempt's outcome.

    Each round sets one of ``keys`` rotating keys to the round number (one try:
    its outcome is final) and increments ``counter`` with a fresh request id,
    retried with the same id on UNAVAILABLE until acknowledged (at most
    ``retry_seconds``). Calls go through a client that never retries itself, so
    each attempt is seen.
    """

    session: Any
    name: str
    keys: int = 20
    retry_seconds: float = 20.0
    attempts: list[tuple[float, str, str]] = field(default_factory=list)  # (at, op, outcome)
    acked_sets: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    acked_increments: list[float] = field(default_factory=list)
    increment_ids: int = 0

    async def attempt(self, op: str, call: Callable[[], Any]) -> bool:
        try:
            await call()
        except MemoryApiError as err:
            self.attempts.append((time.monotonic(), op, f"{err.status.name} {err.code}"))
            return False
        self.attempts.append((time.monotonic(), op, "OK"))
        return True

    async def run(self, stop: asyncio.Event) -> None:
        for n in range(1, 1_000_000):  # bounded by ``stop`` in practice
            if stop.is_set():
                return
            key = f"k{n % self.keys}"
            if await self.attempt("set", functools.partial(self.session.set, key, n)):
                self.acked_sets.setdefault(key, []).append((n, time.monotonic()))
            request_id = f"{self.name}-{n}"
            self.increment_ids += 1
            give_up = time.monotonic() + self.retry_seconds
            while time.monotonic() < give_up:
                incr = functools.partial(
                    self.session.increment, "counter", 1, request_id=request_id
                )
                if await self.attempt("increment", incr):
                    self.acked_increments.append(time.monotonic())
                    break
                await asyncio.sleep(0.05)

    def outcomes(self, since: float = 0.0, until: float = float("inf")) -> set[str]:
        return {outcome for at, _, outcome in self.attempts if since <= at < until}

    def first_ok_after(self, moment: float) -> float | None:
        return next((at for at, _, o in self.attempts if at > moment and o == "OK"), None)

    def acked_between(self, since: float, until: float) -> int:
        sets = sum(1 for acks in self.acked_sets.values() for _, at in acks if since <= at < until)
        return sets + sum(1 for at in self.acked_increments if since <= at < until)

    async def lost(self, reader: Any) -> tuple[int, int, int]:
        """(acknowledged sets lost, acknowledged increments lost, final counter).

        Each key is written with increasing numbers by this writer alone, in
        order, so an acknowledged write is lost exactly when the key now holds
        an older number (or nothing).
        """
        stored = await reader.get_many(list(self.acked_sets))
        lost_sets = sum(
            1
            for key, acks in self.acked_sets.items()
            for n, _ in acks
            if int(stored.get(key) or 0) < n
        )
        counter = int(await reader.get("counter", 0))
        return lost_sets, max(0, len(self.acked_increments) - counter), counter


ALLOWED = {"OK", "UNAVAILABLE BACKEND_UNAVAILABLE"}


def unexpected(writers: list[Writer]) -> list[str]:
    return sorted({f"{w.name}: {o}" for w in writers for o in w.outcomes() if o not in ALLOWED})


@pytest.fixture
async def clients(
    cluster_server: ServerThread, cluster_key: str
) -> AsyncIterator[tuple[AsyncMemoryClient, AsyncMemoryClient]]:
    """(a client that never retries, a patient one that retries UNAVAILABLE)."""
    address = cluster_server.address
    async with (
        AsyncMemoryClient(
            address, api_key=cluster_key, timeout=CALL_DEADLINE_SECONDS, max_attempts=1
        ) as raw,
        AsyncMemoryClient(address, api_key=cluster_key, timeout=30, max_attempts=100) as patient,
    ):
        yield raw, patient


def _named(node: Node, name: str) -> int:
    return sum(1 for c in node.admin().client_list() if c.get("name") == name)


async def test_auto_pipelining_sends_one_batch_per_node(cluster: LocalCluster) -> None:
    name = f"ap-{uuid.uuid4().hex[:8]}"
    async with owned_client(cluster.url, name, cluster=True) as client:
        keys = [f"ap:{name}:{i}" for i in range(300)]
        await asyncio.gather(*(client.set(k, k) for k in keys))
        assert await asyncio.gather(*(client.get(k) for k in keys)) == [k.encode() for k in keys]
        primaries = cluster.primaries()
        assert {cluster.primary_of(client.keyslot(k)).port for k in keys} == {
            p.port for p in primaries
        }
        # 300 concurrent commands, one connection per node (the slot-table
        # discovery may add one); redis-py alone opens one per command in flight.
        assert all(_named(p, name) <= 2 for p in primaries), [_named(p, name) for p in primaries]


async def test_a_script_lost_by_every_node_is_loaded_again(cluster: LocalCluster) -> None:
    async with owned_client(cluster.url, "ap-scripts", cluster=True) as client:
        script = LuaScript(client, f"-- {uuid.uuid4().hex}\nreturn KEYS[1]")
        keys = [f"ap-script-{i}" for i in range(30)]  # on every primary
        assert await asyncio.gather(*(script(keys=[k], args=[]) for k in keys)) == [
            k.encode() for k in keys
        ]
        for node in cluster.primaries():
            node.cmd("SCRIPT", "FLUSH")
        assert await asyncio.gather(*(script(keys=[k], args=[]) for k in keys)) == [
            k.encode() for k in keys
        ]


async def test_a_node_that_refuses_connections_serves_again_once_it_is_back(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """Failed connects give their connection back: the node's cap is never used up."""
    async with owned_client(cluster.url, "ap-refused", cluster=True) as client:
        port = free_port()
        node = ClusterNode("127.0.0.1", port, max_connections=4, socket_connect_timeout=0.5)
        mux = client.mux_for(node)
        for _ in range(8):  # a connect attempt each, twice the node's cap
            replies = await asyncio.gather(
                *(mux.add(("GET", "k")) for _ in range(10)), return_exceptions=True
            )
            assert all(isinstance(r, redis_exceptions.ConnectionError) for r in replies)
            await asyncio.sleep(0.05)  # the failed connections are given back
        with EmbeddedRedis(tmp_path / "refused", port=port):
            assert await mux.add(("GET", "k")) is None


async def test_auto_pipelining_follows_moved_and_ask(cluster: LocalCluster) -> None:
    name = f"ap-moves-{uuid.uuid4().hex[:8]}"
    async with owned_client(cluster.url, name, cluster=True) as client:
        tag = uuid.uuid4().hex
        moving = [f"{{ap-moving-{tag}}}:{i}" for i in range(200)]  # one slot
        others = [f"ap-other-{i}" for i in range(30)]
        slot = client.keyslot(moving[0])
        await asyncio.gather(*(client.set(k, k) for k in [*moving, *others]))
        source = cluster.primary_of(slot)
        target = next(p for p in cluster.primaries() if p is not source)

        async def a_tick() -> None:
            keys = [*moving, *others]
            assert await asyncio.gather(*(client.get(k) for k in keys)) == [
                k.encode() for k in keys
            ]

        # Half-moved: the source answers ASK for the keys already moved.
        await asyncio.to_thread(cluster.begin_migration, slot, target)
        try:
            assert await asyncio.to_thread(cluster.move_keys, slot, source, target, 100) == 100
            await a_tick()
        finally:
            await asyncio.to_thread(cluster.finish_migration, slot, source, target)
        # Moved: the client's table is stale, MOVED puts it right.
        await a_tick()
        await a_tick()
        assert client.nodes_manager.get_node_from_slot(slot).port == target.port
        await client.set(moving[0], "w")
        assert target.cmd("GET", moving[0]) == b"w"
        # 100 ASKed and 200 MOVED commands took no connection of their own.
        counts = [_named(p, name) for p in cluster.primaries()]
        assert all(n <= 2 for n in counts), counts


async def test_a_redirect_without_a_host_means_the_same_host(cluster: LocalCluster) -> None:
    """A node with an unknown endpoint redirects as "MOVED 3999 :6381" (Redis 7)."""
    async with owned_client(cluster.url, "ap-no-host", cluster=True) as client:
        key = f"ap-no-host-{uuid.uuid4().hex}"
        await client.set(key, "v")
        slot = client.keyslot(key)
        owner = cluster.primary_of(slot)
        other = next(p for p in cluster.primaries() if p is not owner)
        asked = client.mux_for(client.nodes_manager.get_node("127.0.0.1", other.port))
        future = asyncio.get_running_loop().create_future()
        # As if `other` had answered the GET with a redirect that names no host.
        asked._refused(
            _Waiting(("GET", key), future, 0, "GET"), MovedError(f"{slot} :{owner.port}")
        )
        assert await future == b"v"
        assert client.nodes_manager.get_node_from_slot(slot).host == "127.0.0.1"


async def test_a_replaced_node_object_lets_its_connection_go(cluster: LocalCluster) -> None:
    """Retired while connecting, its only command cancelled: the connection closes."""
    name = f"ap-retired-{uuid.uuid4().hex[:8]}"
    async with owned_client(cluster.url, name, cluster=True) as client:
        key = f"ap-retired-{uuid.uuid4().hex}"
        node = client.nodes_manager.get_node_from_slot(client.keyslot(key))
        primary = next(p for p in cluster.primaries() if p.port == node.port)
        before = _named(primary, name)  # redis-py's own connections (PING, discovery)
        old = client.mux_for(node)
        task = asyncio.ensure_future(client.get(key))
        for _ in range(50):  # until the old connection is being made
            await asyncio.sleep(0)
            if old._connecting:
                break
        task.cancel()  # the caller's deadline passes meanwhile
        # A topology refresh replaces the node object (it left the cache and came back).
        new = ClusterNode(
            node.host, node.port, node.server_type, **client.nodes_manager.connection_kwargs
        )
        client.nodes_manager.nodes_cache[node.name] = new
        for owners in client.nodes_manager.slots_cache.values():
            if owners[0] is node:
                owners[0] = new
        assert await client.get(key) is None  # through the new node's connection
        assert old.retired
        for _ in range(50):
            if old._connection is None:
                break
            await asyncio.sleep(0.05)
        assert old._connection is None, "the retired connection is still open"
        assert _named(primary, name) <= before + 1  # the new node's shared one at most


async def test_slot_migration_while_a_session_is_in_use(
    cluster: LocalCluster, clients: tuple[AsyncMemoryClient, AsyncMemoryClient]
) -> None:
    raw, patient = clients
    source, target, *_ = ordered_primaries(cluster)
    session_id = session_on(cluster, source, "moving")
    slot = session_slot(TENANT, session_id)
    fixed = {f"fixed{i}": f"value {i}" for i in range(30)}
    await patient.session(session_id).set_many(fixed, ttl=3600)
    writer = Writer(raw.session(session_id), "mover")
    reads: list[str] = []
    stop = asyncio.Event()

    async def read_loop() -> None:
        session = raw.session(session_id)
        for n in itertools.count():
            if stop.is_set():
                return
            key = f"fixed{n % len(fixed)}"
            try:
                got = await session.get(key)
                reads.append("OK" if got == fixed[key] else f"WRONG {key}={got!r}")
            except MemoryApiError as err:
                reads.append(f"{err.status.name} {err.code}")

    # A user's client retries UNAVAILABLE: its calls all succeed, none counts twice.
    patient_results: list[float] = []

    async def patient_loop() -> None:
        session = patient.session(session_id)
        for n in itertools.count():
            if stop.is_set():
                return
            patient_results.append(await session.increment("patient"))
            key = f"fixed{n % len(fixed)}"
            assert await session.get(key) == fixed[key]

    tasks = [
        asyncio.create_task(writer.run(stop)),
        asyncio.create_task(read_loop()),
        asyncio.create_task(patient_loop()),
    ]
    steps: dict[str, float] = {}
    try:
        await asyncio.sleep(0.5)
        # One key at a time with a pause: the session's keys stay split between
        # the two nodes for a while, so multi-key scripts meet TRYAGAIN.
        moved = await asyncio.to_thread(
            cluster.migrate_slot,
            slot,
            target,
            batch=3,
            pause=0.1,
            on_step=lambda s: steps.setdefault(s, time.monotonic()),
        )
        await asyncio.sleep(1.0)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)

    assert moved >= len(fixed)
    assert cluster.primary_of(slot) is target
    assert target.cmd("CLUSTER", "COUNTKEYSINSLOT", slot) > 0
    assert source.cmd("CLUSTER", "COUNTKEYSINSLOT", slot) == 0
    # Single-key reads never fail: MOVED and ASK are followed (the server sends
    # ASKING and the read on one connection; redis-py 8.2 alone may use two, and
    # then bounces until its redirect budget runs out).
    assert reads and set(reads) == {"OK"}, sorted(set(reads))
    assert not unexpected([writer]), unexpected([writer])
    # Once the slot is settled every call succeeds again.
    settled = writer.outcomes(since=steps["done"] + 0.5)
    assert settled == {"OK"}, settled
    # Nothing acknowledged is lost and no increment counted twice.
    lost_sets, lost_increments, counter = await writer.lost(patient.session(session_id))
    assert (lost_sets, lost_increments) == (0, 0)
    assert len(writer.acked_increments) <= counter <= writer.increment_ids
    assert await patient.session(session_id).get_many(list(fixed)) == fixed
    assert patient_results == [float(i) for i in range(1, len(patient_results) + 1)]
    migrating = steps["done"] - steps["migrating"]
    print(
        f"\nmigration: {moved} keys in {migrating:.2f} s; writer attempts"
        f" {len(writer.attempts)}, unavailable"
        f" {sum(1 for _, _, o in writer.attempts if o != 'OK')}; reads {len(reads)},"
        f" unavailable {sum(1 for r in reads if r != 'OK')};"
        f" patient increments {len(patient_results)}"
    )


async def test_a_write_to_a_session_split_by_a_migration_is_retryable(
    cluster: LocalCluster, clients: tuple[AsyncMemoryClient, AsyncMemoryClient]
) -> None:
    """TRYAGAIN (keys of one script on two nodes) is UNAVAILABLE, then served."""
    raw, _ = clients
    source, _, target = ordered_primaries(cluster)
    session = raw.session(session_on(cluster, source, "split"))
    slot = session_slot(TENANT, session.session_id)
    values = {f"k{i}": i for i in range(10)}
    await session.set_many(values, ttl=600)
    await asyncio.to_thread(cluster.begin_migration, slot, target)
    try:
        assert await asyncio.to_thread(cluster.move_keys, slot, source, target, 3) == 3
        with pytest.raises(MemoryApiError) as info:
            await session.increment("counter", request_id="split-1")
        assert (info.value.status, info.value.code) == (
            grpc.StatusCode.UNAVAILABLE,
            "BACKEND_UNAVAILABLE",
        )
        assert info.value.retry_after is not None
    finally:
        await asyncio.to_thread(cluster.finish_migration, slot, source, target)
    assert await session.increment("counter", request_id="split-1") == 1
    assert await session.increment("counter", request_id="split-1") == 1
    assert await session.get_many(list(values)) == values
    assert target.cmd("CLUSTER", "COUNTKEYSINSLOT", slot) > 0


async def test_a_primary_killed_under_write_load(
    cluster: LocalCluster, clients: tuple[AsyncMemoryClient, AsyncMemoryClient]
) -> None:
    raw, patient = clients
    primaries = ordered_primaries(cluster)
    # Not the startup node of the server's URL (its Pub/Sub connection lives there).
    victim = next(p for p in reversed(primaries) if p is not cluster.nodes[0])
    survivors = [p for p in primaries if p is not victim]
    placed = [victim, victim, *survivors]
    writers = [
        Writer(raw.session(session_on(cluster, node, f"load{i}")), f"w{i}")
        for i, node in enumerate(placed)
    ]
    on_victim = writers[:2]
    victim_slot = session_slot(TENANT, on_victim[0].session.session_id)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(w.run(stop)) for w in writers]
    try:
        await asyncio.sleep(2.0)
        killed_at = time.monotonic()
        await asyncio.to_thread(cluster.kill, victim)
        dead_at = time.monotonic()

        def promote() -> tuple[Node, float]:
            node = cluster.wait_promoted(victim, victim_slot, RECOVERY_BOUND_SECONDS)
            return node, time.monotonic()

        promoted = asyncio.create_task(asyncio.to_thread(promote))
        while time.monotonic() < killed_at + RECOVERY_BOUND_SECONDS:
            if all(w.first_ok_after(dead_at) is not None for w in on_victim):
                break
            await asyncio.sleep(0.05)
        new_primary, promoted_at = await promoted
        await asyncio.sleep(1.5)  # steady again
        steady_from = time.monotonic() - 1.0
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)

    try:
        firsts = [w.first_ok_after(dead_at) for w in on_victim]
        assert all(f is not None for f in firsts), "the victim's sessions never recovered"
        recovery = max(f for f in firsts if f is not None) - killed_at
        assert new_primary is not victim
        # Every attempt answered OK or a retryable UNAVAILABLE (no INTERNAL, no hang).
        assert not unexpected(writers), unexpected(writers)
        assert {"UNAVAILABLE BACKEND_UNAVAILABLE"} <= on_victim[0].outcomes(since=dead_at)
        assert all(w.outcomes(since=steady_from) == {"OK"} for w in writers), [
            w.outcomes(since=steady_from) for w in writers
        ]
        report = []
        for w in writers:
            lost_sets, lost_increments, counter = await w.lost(
                patient.session(w.session.session_id)
            )
            # Retried increments carry their request id: never counted twice.
            assert counter <= w.increment_ids, (w.name, counter, w.increment_ids)
            window = w.acked_between(killed_at - 1.0, dead_at)
            if w in on_victim:
                # Lost only what the old primary acknowledged and had not yet
                # shipped to its replica: at most the last second before the kill.
                assert lost_sets + lost_increments <= window, (w.name, lost_sets, lost_increments)
            else:
                assert (lost_sets, lost_increments) == (0, 0), w.name
            unavailable = sum(1 for _, _, o in w.attempts if o != "OK")
            report.append(
                f"{w.name}: {len(w.attempts)} attempts, {unavailable} unavailable,"
                f" lost {lost_sets} sets + {lost_increments} increments"
            )
        print(
            f"\nfailover: promoted after {promoted_at - killed_at:.2f} s (observed),"
            f" victim sessions OK again after {recovery:.2f} s; " + "; ".join(report)
        )
    finally:
        await asyncio.to_thread(cluster.restart, victim)
