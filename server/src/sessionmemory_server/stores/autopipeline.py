"""Auto-pipelining: the server's Redis commands share one connection per node.

Every handler awaits its own command as usual (``await redis.get(name)``). The
command is packed and queued; once per event-loop tick the queue is written to
the node's one connection in a single write, and one reader per connection
hands each reply, in order, to the command that sent it: the design of
ioredis' auto-pipelining and Lettuce's shared connection.

Under grpc.aio a tick rarely holds more than one command (it hands the server
one request per loop iteration; measured: 1.02 commands per write at 64 calls
in flight). What pays is doing without redis-py's per-command path: a pool
checkout and release, ``asyncio.wait_for`` around the write and
``asyncio.timeout`` around every read, each of which asks
``asyncio.get_running_loop()``, a ``getpid()`` system call on Python 3.11
(measured: 14 % of the server's CPU under load, most of it from those calls).

What stays as it was:

* **Errors per command.** An error reply (``NOSCRIPT``, ``WRONGTYPE``, ``OOM``)
  fails only the command that got it, with the exception redis-py raises for
  it, so ``Script`` still reloads a flushed script on ``NoScriptError``.
* **Timeouts.** While replies are awaited, a watchdog runs every socket
  timeout: a command written longer ago than that fails with ``TimeoutError``
  (the server maps it to UNAVAILABLE) while its reply, when it comes, is still
  read, so the connection stays in step; a connection with no reply at all for
  3 timeouts, or one that breaks, is closed and every command on it fails; the
  next command reconnects. Once written, a command waits at most two timeouts
  (before that, at most the connect timeout; each redirect starts anew).
* **Memory.** A connection holds at most ``MAX_UNSENT_BYTES`` (32 MiB) that
  Redis has not read yet; past it (a stopped Redis, a stalled network) further
  commands fail at once with ``ConnectionError`` (UNAVAILABLE) instead of
  queueing.
* **Commands cancelled before they are written** (a caller whose deadline
  passed while the connection was being made) are never sent.
* **Cancellation.** A caller that stops waiting (a gRPC deadline) only drops
  its future; its reply is still read, so the connection never desyncs.
* **Cluster routing.** With a Redis Cluster each node has its own connection,
  chosen by the slot of the command's key. Redis ran none of the commands it
  redirects: ``MOVED`` corrects the slot table (as redis-py does) and queues the
  command on the new node's connection; ``ASK`` queues ``ASKING`` and the
  command side by side on the target's (redis-py 8.2 may send the two on
  different connections, and bounce); at most 5 redirects per command.
  ``TRYAGAIN``/``CLUSTERDOWN`` answer at once (retryable UNAVAILABLE). A node
  that breaks, times out or refuses connections makes the client refresh the
  topology before its next command, as redis-py does.

Blocking commands and those that need their own connection (Pub/Sub, WATCH,
MULTI, MONITOR), and commands with options other than their keys, take
redis-py's own path.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import hashlib
import math
from collections.abc import Coroutine, Sequence
from typing import Any, Final, cast

import hiredis
import redis.exceptions
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import AbstractConnection, Connection

# Commands that may block the connection or change its state: never batched.
DIRECT: Final = frozenset(
    {
        "BLPOP", "BRPOP", "BLMOVE", "BLMPOP", "BRPOPLPUSH", "BZPOPMIN", "BZPOPMAX",
        "BZMPOP", "XREAD", "XREADGROUP", "WAIT", "WAITAOF", "SUBSCRIBE", "PSUBSCRIBE",
        "SSUBSCRIBE", "MONITOR", "WATCH", "UNWATCH", "MULTI", "EXEC", "DISCARD",
        "SELECT", "CLIENT", "HELLO", "AUTH", "QUIT", "RESET", "ASKING", "READONLY",
        "READWRITE", "DEBUG", "SHUTDOWN", "SYNC", "PSYNC", "FAILOVER",
    }
)  # fmt: skip

# The only option redis-py's commands pass that the mux handles: the keys, for
# client-side caching, which it does not use.
_KEYS_ONLY: Final = frozenset({"keys"})


def _pack(connection: AbstractConnection, args: tuple[Any, ...], fast: bool) -> list[bytes]:
    """One command in the Redis protocol.

    With ``fast`` (the client encodes strictly as UTF-8, redis-py's default),
    hiredis packs str, bytes, int and float (as ``repr``) as redis-py's encoder
    does, 9x faster (1 vs 9 us for a write's EVALSHA); anything else, and a
    command name of two words ("SCRIPT LOAD"), takes redis-py's packer.
    """
    name = args[0]
    if fast and isinstance(name, str) and " " not in name:
        try:
            return [hiredis.pack_command(args)]
        except (TypeError, UnicodeError):
            pass  # redis-py's packer raises its own DataError for it
    return connection.pack_command(*args)


def _utf8(encoder: Any) -> bool:
    """True when ``encoder`` (redis-py's) writes strings as strict UTF-8, as hiredis does."""
    name = str(getattr(encoder, "encoding", "")).lower().replace("-", "").replace("_", "")
    return name == "utf8" and getattr(encoder, "encoding_errors", "") == "strict"


def _command_name(args: tuple[Any, ...]) -> str:
    """A command's name as redis-py's response callbacks know it ("GET")."""
    name = args[0]
    return (name.decode() if isinstance(name, bytes) else str(name)).upper()


def _data_error(error: Exception) -> Exception:
    if isinstance(error, redis.exceptions.RedisError):
        return error
    return redis.exceptions.DataError(str(error))


def _retrieve(future: asyncio.Future[Any]) -> None:
    """A done callback for a future nobody awaits: its exception counts as seen."""
    if not future.cancelled():
        future.exception()


def _chain(outer: asyncio.Future[Any], inner: asyncio.Future[Any]) -> None:
    """Hand ``inner``'s outcome to ``outer`` (a caller that may have stopped waiting)."""
    if inner.cancelled():
        failure: BaseException | None = redis.exceptions.ConnectionError(
            "the Redis call was cancelled"
        )
    else:
        failure = inner.exception()  # retrieved even when nobody waits any more
    if outer.done():
        return
    if failure is not None:
        outer.set_exception(failure)
    else:
        outer.set_result(inner.result())


class _Waiting:
    """One command on the wire: what it was, and who waits for its reply."""

    __slots__ = ("args", "future", "name", "redirects", "written")

    def __init__(
        self, args: tuple[Any, ...], future: asyncio.Future[Any], redirects: int, name: str
    ) -> None:
        self.args = args
        self.name = name
        self.future = future
        self.redirects = redirects  # MOVED/ASK followed so far (Cluster)
        self.written = 0.0  # loop time it was written at


# Silent checks (one per socket timeout, no reply at all) before the watchdog
# drops a connection: a busy Redis that answers late keeps it.
_STALLS_TO_DROP: Final = 3
# MOVED/ASK redirects one command may follow before it fails (a topology in flux).
MAX_REDIRECTS: Final = 5
# Bytes a connection may hold unsent (Redis not reading: stopped, or a network
# stall) before further commands fail at once instead of queueing in memory.
MAX_UNSENT_BYTES: Final = 32 * 1024 * 1024


class _Mux:
    """One connection shared by every command to one Redis node.

    ``add`` queues a command; the tick's queue is written at once; the reader
    task reads the replies in order. A broken connection fails what was sent
    on it; commands not yet written go out on the next connection.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, timeout: float | None, *, fast_pack: bool
    ) -> None:
        self._loop = loop
        self._timeout = timeout
        self._fast_pack = fast_pack
        self._connection: AbstractConnection | None = None
        self._unsent: list[_Waiting] = []
        self._sent: collections.deque[_Waiting] = collections.deque()
        self._write_scheduled = False
        self._connecting = False
        self._reader: asyncio.Task[None] | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._replies = 0  # replies read so far (the watchdog's sign of life)
        self._seen = 0
        self._stalls = 0
        self.retired = False  # replaced: close the connection once it is idle
        self.max_unsent_bytes = MAX_UNSENT_BYTES
        # Strong references to background tasks (the loop keeps only weak ones).
        self._tasks: set[asyncio.Future[Any]] = set()

    # -- what the client and the node supply -------------------------------------

    async def _acquire(self) -> AbstractConnection:
        raise NotImplementedError

    async def _release(self, connection: AbstractConnection) -> None:
        raise NotImplementedError

    def _callbacks(self) -> dict[Any, Any]:
        raise NotImplementedError

    def _refused(self, waiting: _Waiting, error: Exception) -> None:
        waiting.future.set_exception(error)

    def _lost(self, error: BaseException) -> None:
        """The connection broke, timed out or could not be made."""

    # -- the queue -----------------------------------------------------------------

    def add(
        self, args: tuple[Any, ...], redirects: int = 0, name: str | None = None
    ) -> asyncio.Future[Any]:
        """Queue one command; its reply (or error) comes in the future."""
        future: asyncio.Future[Any] = self._loop.create_future()
        self._unsent.append(_Waiting(args, future, redirects, name or _command_name(args)))
        if not self._write_scheduled:
            self._write_scheduled = True
            self._loop.call_soon(self._write)
        return future

    def spawn(
        self, work: Coroutine[Any, Any, Any], future: asyncio.Future[Any] | None = None
    ) -> None:
        """Run ``work`` in the background, its outcome settling ``future`` if given."""
        task = self._loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if future is not None:
            task.add_done_callback(functools.partial(_chain, future))

    def _write(self) -> None:
        self._write_scheduled = False
        if not self._unsent:
            return
        connection = self._connection
        if connection is None or self._reader is None:
            if not self._connecting:
                self._connecting = True
                self.spawn(self._connect())
            return
        unsent, self._unsent = self._unsent, []
        writer = connection._writer  # the transport redis-py opened
        if writer is None or writer.transport.is_closing():
            self._unsent = unsent + self._unsent  # not sent: the next connection sends them
            self._break(redis.exceptions.ConnectionError("the Redis connection closed"))
            return
        packed: list[bytes] = []
        room = self.max_unsent_bytes - writer.transport.get_write_buffer_size()
        now = self._loop.time()
        for waiting in unsent:
            if waiting.future.cancelled():
                continue  # its caller gave up before it was sent: it never runs
            try:
                command = _pack(connection, waiting.args, self._fast_pack)
            except Exception as error:  # an argument Redis cannot take
                waiting.future.set_exception(_data_error(error))
                continue
            size = sum(map(len, command))
            if size > room:  # Redis is not reading what was sent: do not pile up more
                waiting.future.set_exception(
                    redis.exceptions.ConnectionError(
                        f"Redis is not reading: over {self.max_unsent_bytes} bytes wait to be sent"
                    )
                )
                continue
            room -= size
            packed.extend(command)
            waiting.written = now
            self._sent.append(waiting)
        if not packed:
            self._close_if_retired()  # all cancelled: nothing will ever reply
            return
        writer.writelines(packed)
        if self._watchdog is None and self._timeout:
            self._seen, self._stalls = self._replies, 0
            self._watchdog = self._loop.call_later(self._timeout, self._check)

    async def _connect(self) -> None:
        connection: AbstractConnection | None = None
        try:
            connection = await self._acquire()
            if not connection.is_connected:
                await connection.connect()  # type: ignore[no-untyped-call]
        except BaseException as error:
            self._connecting = False
            if connection is not None:  # made but not connected: give it back
                self.spawn(self._close(connection))
            unsent, self._unsent = self._unsent, []
            for waiting in unsent:
                if not waiting.future.done():
                    waiting.future.set_exception(error)
            if not isinstance(error, Exception):
                raise
            if not self.retired:
                self._lost(error)
            return
        self._connection = connection
        self._connecting = False
        self._reader = self._loop.create_task(self._read(connection))
        self._write()
        self._close_if_retired()

    def _close_if_retired(self) -> None:
        """Close a replaced node's connection once nothing is pending on it."""
        if self.retired and self._connection is not None and not self._sent and not self._unsent:
            self._break(redis.exceptions.ConnectionError("the node was replaced"))

    async def _read(self, connection: AbstractConnection) -> None:
        """Read replies as long as the connection lives, each to its command."""
        callbacks = self._callbacks()
        sent = self._sent
        try:
            while True:
                try:
                    reply = await connection.read_response(timeout=math.inf)
                except redis.exceptions.ResponseError as refused:
                    self._replies += 1
                    waiting = sent.popleft()
                    if not waiting.future.done():
                        self._refused(waiting, refused)
                else:
                    self._replies += 1
                    waiting = sent.popleft()
                    if not waiting.future.done():
                        callback = callbacks.get(waiting.name)
                        try:
                            result = reply if callback is None else callback(reply)
                        except Exception as error:  # a callback that cannot parse it
                            waiting.future.set_exception(error)
                        else:
                            waiting.future.set_result(result)
                if self.retired and not sent and not self._unsent:
                    self._break(redis.exceptions.ConnectionError("retired"), reading=True)
                    return
        except IndexError:  # a reply nobody asked for: the stream is out of step
            if self._connection is connection:
                self._break(redis.exceptions.ConnectionError("Redis sent an unexpected reply"))
        except BaseException as error:  # broken, silent (cancelled by _check), closed
            # A reader cancelled by _break has nothing left to do: its connection
            # is already replaced, and must not be broken again.
            if self._connection is connection:
                failure: BaseException = error
                if isinstance(error, asyncio.CancelledError):
                    failure = redis.exceptions.TimeoutError(
                        f"no reply from Redis for {_STALLS_TO_DROP} x {self._timeout} s"
                    )
                self._break(failure, reading=True)

    def _check(self) -> None:
        """The watchdog, every socket timeout while replies are awaited.

        A command waiting longer than the timeout fails with TimeoutError (its
        reply is still read when it comes, so the connection stays in step); a
        connection with no reply at all for several timeouts is dropped.
        """
        self._watchdog = None
        if not self._sent or self._timeout is None:
            return
        if self._replies != self._seen:
            self._seen, self._stalls = self._replies, 0
        else:
            self._stalls += 1
            if self._stalls >= _STALLS_TO_DROP and self._reader is not None:
                self._reader.cancel()  # _read breaks the connection with a TimeoutError
                return
        overdue = self._loop.time() - self._timeout
        late: BaseException | None = None
        for waiting in self._sent:
            if waiting.written > overdue:
                break  # written in order: the rest are younger
            if not waiting.future.done():
                late = late or redis.exceptions.TimeoutError(
                    f"no reply from Redis within {self._timeout} s"
                )
                waiting.future.set_exception(late)
        self._watchdog = self._loop.call_later(self._timeout, self._check)

    def _break(self, error: BaseException, *, reading: bool = False) -> None:
        """Drop the connection: fail what was sent on it, keep what was not."""
        connection, self._connection = self._connection, None
        reader, self._reader = self._reader, None
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if reader is not None and not reading:
            reader.cancel()
        sent, self._sent = self._sent, collections.deque()
        for waiting in sent:
            if not waiting.future.done():
                waiting.future.set_exception(error)
        if connection is not None:
            self.spawn(self._close(connection))
        if not self.retired:
            self._lost(error)
        if self._unsent and not self._write_scheduled:
            self._write_scheduled = True
            self._loop.call_soon(self._write)

    async def _close(self, connection: AbstractConnection) -> None:
        await connection.disconnect(nowait=True)
        await self._release(connection)


class AutoPipelineRedis(Redis):
    """A standalone Redis client whose commands share one auto-pipelined connection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._mux: _PoolMux | None = None

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        """Run one command: on the shared connection, or alone when it must be."""
        name = _command_name(args)
        if options.keys() - _KEYS_ONLY or self.single_connection_client or name in DIRECT:
            return await super().execute_command(*args, **options)  # type: ignore[no-untyped-call]
        # Bound to the loop of its first command, like redis-py's connections; a
        # command from another loop fails ("attached to a different loop").
        mux = self._mux
        if mux is None:
            mux = self._mux = _PoolMux(self)
        return await mux.add(args, name=name)


class _PoolMux(_Mux):
    def __init__(self, client: AutoPipelineRedis) -> None:
        pool = client.connection_pool
        super().__init__(
            asyncio.get_running_loop(),
            pool.connection_kwargs.get("socket_timeout"),
            fast_pack=_utf8(pool.get_encoder()),  # type: ignore[no-untyped-call]
        )
        self._client = client

    async def _acquire(self) -> AbstractConnection:
        pool = self._client.connection_pool
        connection: AbstractConnection = await pool.get_connection()  # type: ignore[no-untyped-call]
        return connection

    async def _release(self, connection: AbstractConnection) -> None:
        await self._client.connection_pool.release(connection)

    def _callbacks(self) -> dict[Any, Any]:
        return cast(dict[Any, Any], self._client.response_callbacks)


class AutoPipelineRedisCluster(RedisCluster):
    """A Redis Cluster client with one auto-pipelined connection per node."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._muxes: dict[str, _NodeMux] = {}

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        """Run one command: on its key's node's shared connection, or alone."""
        # Until the first topology is known, and for commands aimed at chosen
        # nodes or that must run alone, redis-py's own path.
        name = _command_name(args)
        if not self._topology_ready or kwargs.keys() - _KEYS_ONLY or name in DIRECT:
            return await super().execute_command(*args, **kwargs)
        if self._initialize_due():  # a refresh was asked for (an error) and is due
            await self.initialize()
        try:
            slot = await self._determine_slot(*args)
        except redis.exceptions.RedisClusterException:
            # Keyless or cross-slot: redis-py decides where it goes.
            return await super().execute_command(*args, **kwargs)
        node = self.nodes_manager.get_node_from_slot(slot)
        return await self.mux_for(node).add(args, name=name)

    def mux_for(self, node: ClusterNode) -> _NodeMux:
        """The shared connection of ``node`` (a replaced node object gets a new one)."""
        mux = self._muxes.get(node.name)
        if mux is None or mux.node is not node:
            if mux is not None:
                mux.retire()
            mux = self._muxes[node.name] = _NodeMux(self, node)
        return mux


class _NodeMux(_Mux):
    def __init__(self, client: AutoPipelineRedisCluster, node: ClusterNode) -> None:
        super().__init__(
            asyncio.get_running_loop(),
            node.connection_kwargs.get("socket_timeout"),
            fast_pack=_utf8(node.get_encoder()),
        )
        self._client = client
        self.node = node

    async def _acquire(self) -> AbstractConnection:
        return self.node.acquire_connection()

    async def _release(self, connection: AbstractConnection) -> None:
        self.node.release(cast(Connection, connection))

    def _callbacks(self) -> dict[Any, Any]:
        return cast(dict[Any, Any], self.node.response_callbacks)

    def retire(self) -> None:
        """The node object was replaced (a topology refresh): let the connection go."""
        self.retired = True
        self._close_if_retired()

    def _refused(self, waiting: _Waiting, error: Exception) -> None:
        """Follow MOVED and ASK on the shared connections; TRYAGAIN/CLUSTERDOWN fail.

        Redis ran none of these commands. TRYAGAIN (a multi-key command whose
        keys a reshard split) and CLUSTERDOWN answer the caller at once (the
        server makes them a retryable UNAVAILABLE); CLUSTERDOWN also asks for a
        topology refresh.
        """
        client, future = self._client, waiting.future
        is_redirect = isinstance(error, redis.exceptions.AskError)  # MOVED is one too
        if isinstance(error, redis.exceptions.AskError) and not error.host:
            # "MOVED 3999 :6381" (an unknown endpoint): the host of this node.
            error.host = self.node.host
            error.node_addr = error.host, error.port
        if is_redirect and waiting.redirects >= MAX_REDIRECTS:
            future.set_exception(
                redis.exceptions.ClusterError(f"more than {MAX_REDIRECTS} redirects: {error}")
            )
        elif isinstance(error, redis.exceptions.MovedError):
            self.spawn(self._moved(waiting, error), future)
        elif isinstance(error, redis.exceptions.AskError):
            target = client.nodes_manager.get_node(error.host, error.port)
            if target is None:  # a node the slot table does not know: redis-py's path
                self.spawn(RedisCluster.execute_command(client, *waiting.args), future)
                return
            # ASKING admits only the next command of its connection: both go in
            # the same write on the target's shared connection. Neither future is
            # a caller's (the caller's is chained), so _write never skips one and
            # sends the other: ASKING cannot open the slot to an unrelated command.
            mux = client.mux_for(target)
            mux.add(("ASKING",), waiting.redirects + 1).add_done_callback(_retrieve)
            asked = mux.add(waiting.args, waiting.redirects + 1)
            asked.add_done_callback(functools.partial(_chain, future))
        else:
            if isinstance(error, redis.exceptions.ClusterDownError):
                client._request_refresh()
            future.set_exception(error)

    async def _moved(self, waiting: _Waiting, error: redis.exceptions.MovedError) -> Any:
        """Correct the slot table (as redis-py does) and send the command where it says."""
        client = self._client
        await client.nodes_manager.move_slot(error)
        node = client.nodes_manager.get_node_from_slot(error.slot_id)
        return await client.mux_for(node).add(waiting.args, waiting.redirects + 1)

    def _lost(self, error: BaseException) -> None:
        # As redis-py's cluster path does: the node may be gone (a failover), so
        # the topology is refreshed before the next command, asking this node last.
        client, node = self._client, self.node
        if isinstance(error, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
            client.nodes_manager.move_node_to_end_of_cached_nodes(node.name)
            client._request_refresh(last_failed_node_name=node.name)


class LuaScript:
    """A Lua script run by EVALSHA, loaded again when Redis answers NOSCRIPT.

    What redis-py's ``AsyncScript`` does, without its per-call imports and
    type checks (a tenth of a write's Python time): the SHA1 is computed once,
    and ``SCRIPT LOAD`` is only sent after a restart or ``SCRIPT FLUSH`` lost
    the script (on a Cluster, to every primary).
    """

    def __init__(self, client: Redis | RedisCluster, source: str) -> None:
        self._client = client
        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, keys: Sequence[str], args: Sequence[str | int | bytes]) -> Any:
        """Run the script on ``keys`` with ``args``; its reply."""
        client = self._client
        try:
            return await client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            await client.script_load(self.source)
            return await client.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)
