"""A real multi-node Redis Cluster for tests: primaries, replicas, failover, resharding.

Built from the same redis-server the suite uses (`EmbeddedRedis`), without
redis-cli: CLUSTER MEET, ADDSLOTS, CLUSTER REPLICATE, then a wait until every
node reports ``cluster_state:ok``, knows every node and agrees on the slot map,
and every replica's link to its primary is up. `cluster-node-timeout` is short
so a killed primary is replaced within a few seconds.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from redis import Redis
from redis.crc import key_slot
from redis.exceptions import RedisError

from sessionmemory_server.embedded import EmbeddedRedis, free_port

SLOTS = 16_384


def session_slot(tenant: str, session: str) -> int:
    """The cluster slot of a session's keys (their hash tag is ``{tenant|session}``).

    Session ids here contain neither ``%`` nor ``}``, which the store escapes.
    """
    return int(key_slot(f"sm:{{{tenant}|{session}}}".encode()))


def _wait(what: str, predicate: Callable[[], object], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except RedisError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"Redis Cluster: {what} within {timeout:.0f} s")
        time.sleep(0.05)


@dataclass
class Node:
    """One redis-server of the cluster, with its cluster node id."""

    redis: EmbeddedRedis
    node_id: str = ""
    _admin: Redis | None = field(default=None, repr=False)

    @property
    def port(self) -> int:
        """Its client port (the bus is port + 10000)."""
        return self.redis.port

    @property
    def alive(self) -> bool:
        """True while its process runs."""
        process = self.redis.process
        return process is not None and process.poll() is None

    def admin(self) -> Redis:
        """A plain (non-cluster) client of this node alone, for admin commands."""
        if self._admin is None:
            self._admin = Redis(port=self.port, socket_timeout=5, socket_connect_timeout=2)
        return self._admin

    def cmd(self, *args: Any) -> Any:
        """Run one command on this node."""
        return self.admin().execute_command(*args)  # type: ignore[no-untyped-call]

    def close_admin(self) -> None:
        """Drop the admin connection (the node was killed or restarted)."""
        if self._admin is not None:
            self._admin.close()
            self._admin = None


class LocalCluster:
    """A Redis Cluster of ``primaries`` primaries with ``replicas`` replicas each.

    Start it with ``start()`` (or ``with``); ``url`` is a startup node's URL for
    ``--redis-cluster``. `kill` and `restart` stop and start one node;
    `migrate_slot` reshards one slot while the cluster serves.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        primaries: int = 3,
        replicas: int = 1,
        node_timeout_ms: int = 1000,
    ) -> None:
        self.data_dir = data_dir
        self.node_timeout_ms = node_timeout_ms
        self.nodes: list[Node] = []
        self._shape = (primaries, replicas)

    @property
    def url(self) -> str:
        """The redis:// URL of the first node (a startup node; clients find the rest)."""
        return f"redis://127.0.0.1:{self.nodes[0].port}"

    def _ports(self, count: int) -> list[int]:
        """``count`` ports with free bus twins, none on another's bus port."""
        ports: list[int] = []
        while len(ports) < count:
            port = free_port(with_twin=True)
            if all(abs(port - p) not in (0, 10_000) for p in ports):
                ports.append(port)
        return ports

    def start(self, timeout: float = 60.0) -> Self:
        """Start every node, join them, assign the slots and wait until all is ok."""
        primaries, replicas = self._shape
        count = primaries * (1 + replicas)
        args = (
            "--cluster-enabled", "yes",
            "--cluster-config-file", "nodes.conf",
            "--cluster-node-timeout", str(self.node_timeout_ms),
            # A replica may always take over, however long ago it last heard
            # from its primary (a loaded test machine can stall the link).
            "--cluster-replica-validity-factor", "0",
        )  # fmt: skip
        try:
            for index, port in enumerate(self._ports(count)):
                server = EmbeddedRedis(self.data_dir / f"node{index}", port=port, extra_args=args)
                self.nodes.append(Node(server.start()))
            for node in self.nodes:
                node.node_id = node.cmd("CLUSTER", "MYID").decode()
            first = self.nodes[0]
            for node in self.nodes[1:]:
                first.cmd("CLUSTER", "MEET", "127.0.0.1", node.port)
            _wait("every node knows every other", self._all_met, timeout)
            bounds = [SLOTS * i // primaries for i in range(primaries + 1)]
            for node, low, high in zip(self.nodes, bounds, bounds[1:], strict=False):
                node.cmd("CLUSTER", "ADDSLOTS", *range(low, high))
            for index, replica in enumerate(self.nodes[primaries:]):
                primary = self.nodes[index % primaries]
                # Retried until the replica has heard of its primary through gossip.
                replicate = functools.partial(replica.cmd, "CLUSTER", "REPLICATE", primary.node_id)
                _wait(f"{replica.port} replicates {primary.port}", replicate, timeout)
            self.wait_healthy(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _all_met(self) -> bool:
        for node in self.nodes:
            lines = node.cmd("CLUSTER", "NODES").decode().splitlines()
            if len(lines) != len(self.nodes) or any("handshake" in line for line in lines):
                return False
        return True

    def live(self) -> list[Node]:
        """The nodes whose processes run."""
        return [node for node in self.nodes if node.alive]

    def slot_map(self, via: Node | None = None) -> dict[int, str]:
        """Slot -> node id of its primary, as ``via`` (a live node) sees it."""
        node = via or self.live()[0]
        owners: dict[int, str] = {}
        for low, high, primary, *_ in node.cmd("CLUSTER", "SLOTS"):
            owner = primary[2].decode()
            owners.update(dict.fromkeys(range(low, high + 1), owner))
        return owners

    def _consistent(self) -> bool:
        """Every live node: state ok, sees every live node connected, same slot ranges."""
        live = self.live()
        views = set()
        for node in live:
            info = node.cmd("CLUSTER", "INFO").decode()
            if "cluster_state:ok" not in info:
                return False
            if f"cluster_slots_assigned:{SLOTS}" not in info:
                return False
            connected = 0
            for line in node.cmd("CLUSTER", "NODES").decode().splitlines():
                fields = line.split()
                if "fail" not in fields[2] and "handshake" not in fields[2]:
                    connected += fields[7] == "connected" or "myself" in fields[2]
            if connected < len(live):
                return False
            ranges = tuple(
                (low, high, primary[2].decode(), tuple(sorted(r[2].decode() for r in reps)))
                for low, high, primary, *reps in sorted(node.cmd("CLUSTER", "SLOTS"))
            )
            views.add(ranges)
        return len(views) == 1

    def _replicas_linked(self) -> bool:
        for node in self.live():
            info = node.admin().info("replication")
            if info["role"] == "slave" and info["master_link_status"] != "up":
                return False
        return True

    def wait_healthy(self, timeout: float = 60.0) -> None:
        """Wait until every live node agrees the cluster is ok and replicas are synced."""
        _wait("cluster_state:ok on every node, one slot map", self._consistent, timeout)
        _wait("every replica linked to its primary", self._replicas_linked, timeout)

    def node(self, node_id: str) -> Node:
        """The node with this cluster node id."""
        return next(node for node in self.nodes if node.node_id == node_id)

    def primary_of(self, slot: int) -> Node:
        """The node serving ``slot`` now (as a live node sees it)."""
        return self.node(self.slot_map()[slot])

    def primaries(self) -> list[Node]:
        """The live nodes that own slots."""
        owners = set(self.slot_map().values())
        return [node for node in self.live() if node.node_id in owners]

    def replicas_of(self, primary: Node) -> list[Node]:
        """The live replicas of ``primary``."""
        found = []
        for node in self.live():
            info = node.admin().info("replication")
            if info["role"] == "slave" and info["master_port"] == primary.port:
                found.append(node)
        return found

    def kill(self, node: Node) -> None:
        """SIGKILL one node (no shutdown: what it did not replicate yet is lost)."""
        assert node.redis.process is not None
        node.redis.process.kill()
        node.redis.process.wait(10)
        node.close_admin()

    def wait_promoted(self, killed: Node, slot: int, timeout: float = 60.0) -> Node:
        """Wait until a live primary other than ``killed`` serves ``slot``; that primary."""
        _wait(
            f"slot {slot} served by a primary other than {killed.port}",
            lambda: (
                self.slot_map()[slot] != killed.node_id
                and "cluster_state:ok" in self.primary_of(slot).cmd("CLUSTER", "INFO").decode()
            ),
            timeout,
        )
        return self.primary_of(slot)

    def restart(self, node: Node, timeout: float = 60.0) -> None:
        """Start a killed node again on its port; it rejoins (as a replica if replaced)."""
        node.redis.start()
        self.wait_healthy(timeout)

    def migrate_slot(
        self,
        slot: int,
        target: Node,
        *,
        batch: int = 100,
        pause: float = 0.0,
        on_step: Callable[[str], object] | None = None,
    ) -> int:
        """Move ``slot`` and its keys to ``target`` as redis-cli's reshard does; keys moved.

        IMPORTING on the target, MIGRATING on the source, MIGRATE the keys in
        batches of ``batch`` (``pause`` seconds after each, to hold the slot
        half-moved), then SETSLOT NODE on the target, the source and every
        other primary. Meanwhile clients get ASK and TRYAGAIN; after, MOVED.
        """
        step = on_step or (lambda _: None)
        source = self.begin_migration(slot, target)
        step("migrating")
        moved = 0
        for _ in range(100_000):  # bounded: each pass moves at least one key
            count = self.move_keys(slot, source, target, batch)
            if not count:
                break
            moved += count
            step(f"moved {moved}")
            if pause:
                time.sleep(pause)
        self.finish_migration(slot, source, target)
        step("done")
        return moved

    def begin_migration(self, slot: int, target: Node) -> Node:
        """Mark ``slot`` IMPORTING on ``target`` and MIGRATING on its owner; the owner."""
        source = self.primary_of(slot)
        assert source is not target, "the slot is already there"
        target.cmd("CLUSTER", "SETSLOT", slot, "IMPORTING", source.node_id)
        source.cmd("CLUSTER", "SETSLOT", slot, "MIGRATING", target.node_id)
        return source

    def move_keys(self, slot: int, source: Node, target: Node, count: int) -> int:
        """MIGRATE up to ``count`` keys of ``slot`` to ``target``; how many moved."""
        keys: list[bytes] = source.cmd("CLUSTER", "GETKEYSINSLOT", slot, count)
        if keys:
            source.cmd("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
        return len(keys)

    def finish_migration(self, slot: int, source: Node, target: Node) -> None:
        """Move the remaining keys, give ``slot`` to ``target`` everywhere, wait for agreement."""
        for _ in range(100_000):  # bounded: each pass moves at least one key
            if not self.move_keys(slot, source, target, 100):
                break
        others = [n for n in self.primaries() if n is not source and n is not target]
        for node in (target, source, *others):
            node.cmd("CLUSTER", "SETSLOT", slot, "NODE", target.node_id)
        _wait(f"every node sees slot {slot} on {target.port}", self._agree(slot, target), 30)

    def _agree(self, slot: int, target: Node) -> Callable[[], bool]:
        return lambda: all(self.slot_map(n)[slot] == target.node_id for n in self.live())

    def stop(self) -> None:
        """Stop every node we started (by PID)."""
        for node in self.nodes:
            node.close_admin()
            node.redis.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
