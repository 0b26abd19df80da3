"""``make bench`` (``python -m sessionmemory_bench calls``): our server against the floor,
and the document pairs.

The floor is the bare minimum a Python developer would write: a grpc.aio server
whose handlers make one Redis round trip each (Get: GET; Set: SET with EX;
Increment: INCRBYFLOAT and EXPIRE pipelined; Delete: DEL; SetJson: json.loads
and SET with EX; GetMany: MGET; List: HGETALL of a hash holding the session)
and return the response message.
Ours is the real server (auth, validation, error mapping, record encoding). Both
run as their own processes against one embedded redis-server; h2load (C, from
Debian's nghttp2-client) drives both with identical gRPC requests at 1, 16 and
64 calls in flight, so the load generator does not steal the Python servers'
CPU. Prints p50/p99 latency, calls/s, server CPU per call and the ratios to the
floor, one table per operation (``--ops get,set,increment,delete,set_json,
get_many,list``; GetMany reads 20 keys, List a session of 50, SetJson writes
1 KiB). ``python -m sessionmemory_bench matrix`` runs all of them, files and
workers in one command and writes one table.

``--server-src`` runs our server from other source trees (an older checkout, to
measure before/after with one driver). ``--document`` measures the document view
side by side with the key/value calls it must keep up with, on one 20-key
session: PatchDocument of one field against SetJson of the same size, and
GetDocument against GetMany of the 20 keys; the write pair also on a session
bound to a schema.

h2load sees HTTP statuses only; a gRPC error travels in the trailers of an HTTP
200. So every operation is first called once for real, and every write's effect
is counted (a key's version, a counter, the session's revision) before and after
each level: a level whose calls outnumber their effects reports the difference
as failed calls.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import grpc
import redis as redis_sync
from google.protobuf.message import Message

from sessionmemory.v1 import memory_pb2 as pb
from sessionmemory.v1 import memory_service_pb2 as svc
from sessionmemory_server.embedded import EmbeddedRedis, free_port

from . import child_env

_SERVICE = "sessionmemory.v1.MemoryService"
_SESSION = "bench-session"
_KEY = "step"
_NOTE = "note"
_COUNTER = "counter"
_TICKS = os.sysconf("SC_CLK_TCK")
_WARM_UP_SECONDS = 1.0
_SETTLE_SECONDS = 1.0
_OPS = ("get", "set", "increment", "delete", "set_json", "get_many", "list")
_GONE = "gone"  # Delete's key: never written, so every call deletes nothing
_PAYLOAD = "payload"  # SetJson's key
_MANY = "bench-many"  # GetMany's session: the 20 keys of _SEED
_LIST = "bench-list"  # List's session: _LIST_KEYS string keys
_LIST_KEYS = 50

_M = TypeVar("_M", bound=Message)


# --- the floor server ----------------------------------------------------------


async def _floor(port: int, redis_url: str) -> None:
    from redis.asyncio import Redis  # noqa: PLC0415

    redis = Redis.from_url(redis_url)

    async def get(request: svc.GetRequest, context: object) -> svc.GetResponse:
        return svc.GetResponse(found=await redis.get(request.key) is not None)

    async def set_(request: svc.SetRequest, context: object) -> svc.SetResponse:
        await redis.set(request.key, request.string_value, ex=request.ttl_seconds or 86_400)
        return svc.SetResponse()

    async def increment(request: svc.IncrementRequest, context: object) -> svc.IncrementResponse:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.incrbyfloat(request.key, request.delta)
            pipe.expire(request.key, request.ttl_seconds or 86_400)
            value, _ = await pipe.execute()
        return svc.IncrementResponse(value=float(value))

    async def delete(request: svc.DeleteRequest, context: object) -> svc.DeleteResponse:
        return svc.DeleteResponse(deleted_count=await redis.delete(*request.keys))

    async def set_json(request: svc.SetJsonRequest, context: object) -> svc.SetJsonResponse:
        json.loads(request.json)  # is it JSON at all
        await redis.set(request.key, request.json, ex=request.ttl_seconds or 86_400)
        return svc.SetJsonResponse()

    async def get_many(request: svc.GetManyRequest, context: object) -> svc.GetManyResponse:
        values = await redis.mget(request.keys)
        return svc.GetManyResponse(
            entries=[
                pb.Entry(key=key, value=pb.Value(string_value=_text(value)))
                for key, value in zip(request.keys, values, strict=True)
                if value is not None
            ]
        )

    async def list_(request: svc.ListRequest, context: object) -> svc.ListResponse:
        fields = await redis.hgetall(request.session_id)  # the session is one hash
        return svc.ListResponse(
            entries=[
                pb.EntryInfo(key=_text(key), kind=pb.VALUE_KIND_STRING, size_bytes=len(value))
                for key, value in fields.items()
            ]
        )

    def unary(handler: Any, request: type[Message], response: type[Message]) -> Any:
        return grpc.unary_unary_rpc_method_handler(
            handler,
            request_deserializer=request.FromString,
            response_serializer=response.SerializeToString,
        )

    handlers = {
        "Get": unary(get, svc.GetRequest, svc.GetResponse),
        "Set": unary(set_, svc.SetRequest, svc.SetResponse),
        "Increment": unary(increment, svc.IncrementRequest, svc.IncrementResponse),
        "Delete": unary(delete, svc.DeleteRequest, svc.DeleteResponse),
        "SetJson": unary(set_json, svc.SetJsonRequest, svc.SetJsonResponse),
        "GetMany": unary(get_many, svc.GetManyRequest, svc.GetManyResponse),
        "List": unary(list_, svc.ListRequest, svc.ListResponse),
    }
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(_SERVICE, handlers),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def _text(value: bytes | str) -> str:
    return value if isinstance(value, str) else value.decode()


def floor_main() -> None:
    """Entry of the floor server process: ``python -m sessionmemory_bench.calls PORT URL``."""
    import asyncio  # noqa: PLC0415

    port, url = int(sys.argv[1]), sys.argv[2]
    try:
        import uvloop  # noqa: PLC0415

        uvloop.run(_floor(port, url))
    except ImportError:
        asyncio.run(_floor(port, url))


# --- real calls (h2load cannot see gRPC status codes in trailers) ---------------


class _Calls:
    """Real gRPC calls to one server, for setup, sanity checks and counting effects."""

    def __init__(self, address: str, api_key: str) -> None:
        self._channel = grpc.insecure_channel(address)
        grpc.channel_ready_future(self._channel).result(timeout=15)
        self._metadata = (("authorization", f"Bearer {api_key}"),)

    def __call__(self, request: Message, response: type[_M]) -> _M:
        """Call the RPC named after ``request``'s type; raises grpc.RpcError on failure."""
        call = self._channel.unary_unary(
            f"/{_SERVICE}/{_method(request)}",
            request_serializer=type(request).SerializeToString,
            response_deserializer=response.FromString,
        )
        result: _M = call(request, metadata=self._metadata, timeout=10)
        return result

    def close(self) -> None:
        """Close the channel."""
        self._channel.close()


@contextlib.contextmanager
def _calls(address: str, api_key: str) -> Iterator[_Calls]:
    calls = _Calls(address, api_key)
    try:
        yield calls
    finally:
        calls.close()


def _method(request: Message) -> str:
    return type(request).__name__.removesuffix("Request")


@dataclass(frozen=True)
class Op:
    """One RPC driven by h2load, and how to tell that its calls worked.

    Attributes:
        request: The request every call sends.
        response: The response message type.
        ok: Whether a response is the expected one (a read found its data).
        effects: Reads a number that each successful call of ours raises by
            exactly one (a version, a counter, a revision); None for reads.
    """

    request: Message
    response: type[Message]
    ok: Callable[[Any], bool] = lambda _: True
    effects: Callable[[_Calls], float] | None = None

    @property
    def method(self) -> str:
        """The RPC's name."""
        return _method(self.request)

    def body(self) -> bytes:
        """The request as one gRPC message frame (uncompressed, length-prefixed)."""
        message = self.request.SerializeToString()
        return b"\x00" + len(message).to_bytes(4, "big") + message

    def check(self, calls: _Calls, where: str) -> None:
        """Call once for real; raise when the call fails or answers wrongly."""
        try:
            response = calls(self.request, self.response)
        except grpc.RpcError as exc:
            raise RuntimeError(f"sanity {self.method} on {where}: {exc}") from None
        if not self.ok(response):
            raise RuntimeError(f"sanity {self.method} on {where}: unexpected {response}")


def _version(session: str, key: str) -> Callable[[_Calls], float]:
    return lambda calls: (
        calls(svc.GetRequest(session_id=session, key=key), svc.GetResponse).entry.version
    )


def _number(session: str, key: str) -> Callable[[_Calls], float]:
    def read(calls: _Calls) -> float:
        response = calls(svc.GetRequest(session_id=session, key=key), svc.GetResponse)
        return response.entry.value.number_value

    return read


def _revision(session: str) -> Callable[[_Calls], float]:
    def read(calls: _Calls) -> float:
        request = svc.GetDocumentRequest(session_id=session, paths=["order"])
        return calls(request, svc.GetDocumentResponse).revision

    return read


def _json_1k() -> str:
    """A compact JSON object of exactly 1,024 bytes (an order with its lines)."""
    lines = [{"sku": f"SKU-{i:04d}", "qty": i % 3 + 1, "price": 9.99 + i} for i in range(14)]
    value: dict[str, Any] = {"order": "ORD-123", "lines": lines, "note": ""}
    value["note"] = "x" * (1024 - len(_compact(value)))
    return _compact(value)


def _key_value_op(name: str) -> Op:
    """The Op of one ``--ops`` name; the floor answers the same request (see _FLOOR_DOES)."""
    if name == "get":
        return Op(
            svc.GetRequest(session_id=_SESSION, key=_KEY), svc.GetResponse, ok=lambda r: r.found
        )
    if name == "set":
        request = svc.SetRequest(
            session_id=_SESSION, key=_NOTE, string_value="left a voicemail", ttl_seconds=3600
        )
        return Op(request, svc.SetResponse, effects=_version(_SESSION, _NOTE))
    if name == "increment":
        request_i = svc.IncrementRequest(session_id=_SESSION, key=_COUNTER, delta=1)
        return Op(request_i, svc.IncrementResponse, effects=_number(_SESSION, _COUNTER))
    if name == "delete":
        request_d = svc.DeleteRequest(session_id=_SESSION, keys=[_GONE])
        return Op(request_d, svc.DeleteResponse, ok=lambda r: r.deleted_count == 0)
    if name == "set_json":
        request_j = svc.SetJsonRequest(
            session_id=_SESSION, key=_PAYLOAD, json=_json_1k(), ttl_seconds=3600
        )
        return Op(request_j, svc.SetJsonResponse, effects=_version(_SESSION, _PAYLOAD))
    if name == "get_many":
        request_m = svc.GetManyRequest(session_id=_MANY, keys=list(_SEED))
        return Op(request_m, svc.GetManyResponse, ok=lambda r: len(r.entries) == len(_SEED))
    if name == "list":
        return Op(
            svc.ListRequest(session_id=_LIST),
            svc.ListResponse,
            ok=lambda r: len(r.entries) == _LIST_KEYS,
        )
    raise ValueError(f"unknown op {name!r}; choose from {','.join(_OPS)}")


def _list_values() -> dict[str, str]:
    return {f"item-{i:02d}": f"value {i:02d} of the listed session" for i in range(_LIST_KEYS)}


def seed_floor(url: str) -> None:
    """Write what the floor's reads find: Get's key, GetMany's 20 keys, List's hash."""
    with contextlib.closing(redis_sync.Redis.from_url(url)) as client:
        client.set(_KEY, "floor")
        client.mset({k: v if isinstance(v, str) else _compact(v) for k, v in _SEED.items()})
        client.delete(_LIST)
        for field, value in _list_values().items():
            client.hset(_LIST, field, value)


def seed_ours(calls: _Calls) -> None:
    """Write what our server's reads find: Get's key, GetMany's 20 keys, List's 50 keys."""
    calls(
        svc.SetRequest(session_id=_SESSION, key=_KEY, string_value="name", ttl_seconds=3600),
        svc.SetResponse,
    )
    _seed_document(calls, _MANY)
    entries = [
        svc.SetManyEntry(key=k, value=pb.Value(string_value=v), ttl_seconds=3600)
        for k, v in _list_values().items()
    ]
    calls(svc.SetManyRequest(session_id=_LIST, entries=entries), svc.SetManyResponse)


# --- measuring -------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    """One load level against one server."""

    calls: int
    seconds: float
    p50_ms: float
    p99_ms: float
    cpu_us_per_call: float
    redis_us_per_call: float = 0.0
    failed: int = 0

    @property
    def rate(self) -> float:
        """Calls per second."""
        return self.calls / self.seconds


def _cpu_seconds(pid: int) -> float:
    """CPU time of a process and its children (the --workers processes)."""
    total = 0.0
    pids = [pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if fields and int(fields[1]) == pid:
                pids.append(int(entry))
    for p in pids:
        with contextlib.suppress(OSError), open(f"/proc/{p}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / _TICKS
    return total


def _h2load(
    address: str,
    method: str,
    body: Path,
    api_key: str,
    inflight: int,
    duration: float,
    log: Path | None,
) -> Result:
    conns = min(inflight, 4)
    streams = max(1, inflight // conns)
    args = [
        "h2load",
        f"http://{address}/{_SERVICE}/{method}",
        "-d", str(body),
        "-H", "content-type: application/grpc",
        "-H", "te: trailers",
        "-H", f"authorization: Bearer {api_key}",
        "-c", str(conns),
        "-m", str(streams),
        "-t", "1",
        "-D", f"{round(duration * 1000)}ms",  # whole seconds or ms: "1.5" is refused
    ]  # fmt: skip
    if log is not None:
        log.unlink(missing_ok=True)
        args.append(f"--log-file={log}")
    out = subprocess.run(args, capture_output=True, text=True, check=False, timeout=duration + 60)
    if out.returncode != 0:
        raise RuntimeError(f"h2load failed: {out.stderr or out.stdout}")
    if log is None:
        return Result(0, duration, 0.0, 0.0, 0.0)
    rows = [line.split("\t") for line in log.read_text().splitlines() if line]
    bad = [r for r in rows if r[1] != "200"]
    if bad or not rows:
        raise RuntimeError(f"{len(bad)} of {len(rows)} calls failed at the HTTP level")
    latencies = sorted(int(r[2]) / 1000 for r in rows)
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return Result(len(rows), duration, q[49], q[98], 0.0)


@dataclass(frozen=True)
class _Target:
    """A running server to measure."""

    name: str
    pid: int
    address: str
    api_key: str
    calls: _Calls
    ours: bool
    redis_url: str
    redis_pid: int


@dataclass(frozen=True)
class Series:
    """One operation against one server at every load level.

    Attributes:
        levels: The result of each level, by calls in flight.
        sent: The Redis commands our server sends per call ("evalsha 1.00");
            "" for the floor.
    """

    levels: dict[int, Result]
    sent: str


def _commands_sent(target: _Target, op: Op, samples: int = 50) -> str:
    """The Redis commands our server sends per call of ``op``, watched with MONITOR.

    Commands a Lua script runs are not counted: what is left is what the server
    sent, one round trip each unless it pipelines them. Taken after the load, as
    MONITOR slows Redis down.
    """
    marker = f"bench-sample-{os.getpid()}"
    sent: Counter[str] = Counter()
    failure: list[Exception] = []
    url = target.redis_url

    def call() -> None:
        try:
            for _ in range(samples):
                target.calls(op.request, op.response)
        except Exception as exc:  # reported by the caller
            failure.append(exc)
        finally:
            marking.echo(marker)

    with (
        contextlib.closing(redis_sync.Redis.from_url(url)) as marking,
        contextlib.closing(redis_sync.Redis.from_url(url, socket_timeout=30)) as watching,
    ):
        marking.ping()  # connected before MONITOR starts, so only its ECHO shows
        with watching.monitor() as monitor:  # type: ignore[no-untyped-call]  # untyped in redis-py
            caller = threading.Thread(target=call)
            caller.start()
            try:
                while True:
                    seen = monitor.next_command()
                    name, _, rest = str(seen["command"]).partition(" ")
                    if name.lower() == "echo" and rest == marker:
                        break
                    if seen["client_type"] != "lua":
                        sent[name.lower()] += 1
            finally:
                caller.join(60)
    if failure:
        raise RuntimeError(f"sampling {op.method}: {failure[0]}")
    return ", ".join(f"{name} {n / samples:.2f}" for name, n in sorted(sent.items()))


def measure(
    target: _Target, op: Op, inflight: int, duration: float, tmp: Path, warm_up: float
) -> Result:
    """One load level: ``warm_up`` seconds unmeasured, then ``duration`` seconds of h2load.

    The call's effects are counted before and after (our server only): a shortfall
    is reported as failed calls. Write ``op``'s body first (``_write_body``).
    """
    load = (target.address, op.method, _body_path(tmp, op), target.api_key, inflight)
    if warm_up > 0:
        _h2load(*load, warm_up, None)
    effects = op.effects if target.ours else None
    start = effects(target.calls) if effects else 0.0
    before = _cpu_seconds(target.pid), _cpu_seconds(target.redis_pid)
    r = _h2load(*load, duration, tmp / f"{target.name}-{op.method}-{inflight}.log")
    cpu = _cpu_seconds(target.pid) - before[0]
    redis_cpu = _cpu_seconds(target.redis_pid) - before[1]
    # Calls still in flight when h2load stops are not logged but may take
    # effect: a shortfall, never an excess, is a failed call.
    done = effects(target.calls) - start if effects else r.calls
    return replace(
        r,
        cpu_us_per_call=cpu / r.calls * 1e6,
        redis_us_per_call=redis_cpu / r.calls * 1e6,
        failed=max(0, r.calls - round(done)),
    )


def _body_path(tmp: Path, op: Op) -> Path:
    return tmp / f"{op.method}.grpc"


def write_body(tmp: Path, op: Op) -> None:
    """Write the request body h2load sends for ``op`` (once per op and folder)."""
    _body_path(tmp, op).write_bytes(op.body())


def _run_levels(target: _Target, op: Op, levels: list[int], duration: float, tmp: Path) -> Series:
    write_body(tmp, op)
    op.check(target.calls, target.name)
    results = {n: measure(target, op, n, duration, tmp, _WARM_UP_SECONDS) for n in levels}
    op.check(target.calls, target.name)
    if not target.ours:
        return Series(results, "")
    time.sleep(_SETTLE_SECONDS)  # calls h2load left behind (retrying ones) finish first
    return Series(results, _commands_sent(target, op))


@contextlib.contextmanager
def _process(args: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[int]:
    """A server process; its stderr goes to ``log``, whose end is shown if the bench fails."""
    with log.open("wb") as err:
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        yield proc.pid
    except BaseException:
        tail = log.read_text(errors="replace").splitlines()[-30:]
        print(f"--- end of {' '.join(args[:4])}'s stderr ---", *tail, sep="\n", file=sys.stderr)
        raise
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def _ours(
    args: argparse.Namespace,
    redis: EmbeddedRedis,
    api_key: str,
    tmp: Path,
    *,
    workers: int | None = None,
    pin: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    name: str = "ours",
) -> Iterator[_Target]:
    """Our server process (from --server-src when given), ready for calls.

    ``workers`` overrides ``args.workers``; ``pin`` prefixes the command (taskset);
    ``env`` adds SESSION_MEMORY_* settings.
    """
    address = f"127.0.0.1:{free_port()}"
    environ = {**os.environ, "SESSION_MEMORY_LOG_LEVEL": "WARNING", **(env or {})}
    if args.server_src:
        environ["PYTHONPATH"] = os.pathsep.join(
            [args.server_src, environ["PYTHONPATH"]]
            if environ.get("PYTHONPATH")
            else [args.server_src]
        )
    serve = [*pin, sys.executable, "-m", "sessionmemory_server.cli", "serve",
             "--listen", address, "--redis-url", redis.url,
             "--workers", str(workers or args.workers)]  # fmt: skip
    with _process(serve, tmp / f"{name}.log", environ) as pid, _calls(address, api_key) as calls:
        yield _Target(name, pid, address, api_key, calls, True, redis.url, _pid(redis))


@contextlib.contextmanager
def _floor_server(
    redis: EmbeddedRedis, api_key: str, tmp: Path, pin: Sequence[str] = ()
) -> Iterator[_Target]:
    """The floor server process, ready for calls (``pin`` prefixes its command)."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    command = [*pin, sys.executable, "-m", "sessionmemory_bench.calls", str(port), redis.url]
    with _process(command, tmp / "floor.log", child_env()) as pid, _calls(address, api_key) as c:
        yield _Target("floor", pid, address, api_key, c, False, redis.url, _pid(redis))


def pinning(workers: int) -> tuple[list[str], str]:
    """The server command's prefix that pins it to CPU 0, and a note of what was pinned.

    A lone server gets a core of its own, and this process (with Redis and
    h2load, which inherit it) the last one: where the scheduler happens to put
    them otherwise moves CPU per call by more than what is measured. Several
    workers, one core or no taskset: nothing is pinned.
    """
    cpus = sorted(os.sched_getaffinity(0))
    taskset = shutil.which("taskset")
    if workers != 1 or len(cpus) < 2 or taskset is None:
        return [], "not pinned"
    os.sched_setaffinity(0, {cpus[-1]})
    return [taskset, "-c", str(cpus[0])], f"server on CPU {cpus[0]}, Redis + h2load on {cpus[-1]}"


def _pid(redis: EmbeddedRedis) -> int:
    if redis.process is None:
        raise RuntimeError("the embedded redis-server is not running")
    return redis.process.pid


def _origin(args: argparse.Namespace) -> str:
    """Where our server's packages are imported from (to show --server-src took effect)."""
    if not args.server_src:
        return ""
    env = {**os.environ, "PYTHONPATH": args.server_src}
    code = (
        "import sessionmemory, sessionmemory_server;"
        "print(sessionmemory_server.__path__[0], sessionmemory.__path__[0])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return " and ".join(out.stdout.split())


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command line of ``calls``."""
    p.add_argument("--duration", type=float, default=5.0, help="seconds per load level")
    p.add_argument("--inflight", default="1,16,64", help="calls in flight, comma-separated")
    p.add_argument("--workers", type=int, default=1, help="server processes for ours")
    p.add_argument(
        "--ops",
        help=f"calls to measure against the floor, comma-separated from {','.join(_OPS)}"
        " (default: get, or none with --document)",
    )
    p.add_argument(
        "--server-src",
        metavar="DIR[:DIR...]",
        help="run our server with these source dirs first on PYTHONPATH (an older checkout's"
        " server/src:clients/python/src)",
    )
    p.add_argument(
        "--document",
        action="store_true",
        help="PatchDocument vs SetJson and GetDocument vs GetMany on a 20-key session",
    )


def main(args: argparse.Namespace) -> int:
    """Run the benchmark and print the tables."""
    if shutil.which("h2load") is None:
        print("h2load not found: apt-get install nghttp2-client", file=sys.stderr)
        return 2
    levels = [int(x) for x in str(args.inflight).split(",")]
    ops = [o.strip() for o in (args.ops or ("" if args.document else "get")).split(",") if o]
    unknown = sorted(set(ops) - set(_OPS))
    if unknown:
        print(f"unknown --ops {','.join(unknown)}; choose from {','.join(_OPS)}", file=sys.stderr)
        return 2
    origin = _origin(args)
    if origin:
        print(f"ours: --server-src {args.server_src} (imports {origin})")
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        with EmbeddedRedis(tmp / "redis") as redis:
            api_key = redis.create_key("bench", unlimited=True)
            if ops:
                _key_value(args, ops, levels, redis, api_key, tmp)
            if args.document:
                _document(args, levels, redis, api_key, tmp)
    return 0


# --- Get, Set, Increment: ours against the floor -----------------------------------

_FLOOR_DOES = {
    "get": "one Redis GET",
    "set": "one Redis SET with EX",
    "increment": "INCRBYFLOAT + EXPIRE, one pipelined round trip",
    "delete": "one Redis DEL",
    "set_json": "json.loads + one Redis SET with EX",
    "get_many": "one Redis MGET",
    "list": "one Redis HGETALL of a 50-field hash",
}


def _key_value(
    args: argparse.Namespace,
    ops: list[str],
    levels: list[int],
    redis: EmbeddedRedis,
    api_key: str,
    tmp: Path,
) -> None:
    seed_floor(redis.url)
    floor: dict[str, Series] = {}
    ours: dict[str, Series] = {}
    with _floor_server(redis, api_key, tmp) as target:
        for name in ops:
            floor[name] = _run_levels(target, _key_value_op(name), levels, args.duration, tmp)
    with _ours(args, redis, api_key, tmp) as target:
        seed_ours(target.calls)
        for name in ops:
            ours[name] = _run_levels(target, _key_value_op(name), levels, args.duration, tmp)
    for name in ops:
        _print_key_value(name, levels, floor[name], ours[name], args)


def _print_key_value(
    name: str,
    levels: list[int],
    floor: Series,
    ours: Series,
    args: argparse.Namespace,
) -> None:
    method = _key_value_op(name).method
    print(
        f"{method}: ours (--workers {args.workers}) vs floor (bare grpc.aio + {_FLOOR_DOES[name]}),"
        f" h2load, {args.duration:.0f}s per level, {os.cpu_count()} cores"
    )
    print(_header("server", 6))
    for n in levels:
        for who, r in (("floor", floor.levels[n]), ("ours", ours.levels[n])):
            print(_row(n, who, r, 6))
        print(_ratio(n, ours.levels[n], floor.levels[n], 6))
    print(f"  ours sends Redis per call: {ours.sent}")
    _print_failures(method, ours.levels)
    print()


def _header(name: str, width: int) -> str:
    return (
        f"{'in flight':>9} {name:>{width}} {'calls/s':>9} {'p50 ms':>7} {'p99 ms':>7}"
        f" {'CPU us/call':>11} {'Redis us/call':>13}"
    )


def _row(inflight: int, name: str, r: Result, width: int) -> str:
    return (
        f"{inflight:>9} {name:>{width}} {r.rate:>9.0f} {r.p50_ms:>7.3f} {r.p99_ms:>7.3f}"
        f" {r.cpu_us_per_call:>11.0f} {r.redis_us_per_call:>13.0f}"
    )


def _ratio(inflight: int, r: Result, base: Result, width: int) -> str:
    return (
        f"{inflight:>9} {'ratio':>{width}} {r.rate / base.rate:>9.2f}"
        f" {r.p50_ms / base.p50_ms:>7.2f} {r.p99_ms / base.p99_ms:>7.2f}"
        f" {r.cpu_us_per_call / base.cpu_us_per_call:>11.2f}"
        f" {r.redis_us_per_call / base.redis_us_per_call:>13.2f}"
    )


def _print_failures(method: str, results: dict[int, Result]) -> None:
    for n, r in results.items():
        if r.failed:
            print(
                f"  ! {method} at {n} in flight: {r.failed} of {r.calls} calls took no effect"
                " (a gRPC error h2load cannot see); their latencies are in the figures"
            )


# --- the document view against the key/value calls ---------------------------------

_DOC = "bench-doc"
_BOUND_DOC = "bench-doc-bound"
_SCHEMA = "bench-doc"
_DOC_TTL = 600
# 20 keys: strings, numbers and JSON objects of about 100 bytes, one of them the order.
_SEED: dict[str, Any] = {
    "user_name": "Ada Lovelace",
    "locale": "en-GB",
    "channel": "web",
    "last_intent": "track_order",
    "agent_name": "support-agent",
    "mood": "calm",
    "summary": "Customer asks where order ORD-123 is; it left the warehouse yesterday.",
    "turn_count": 12,
    "cart_total": 149.9,
    "loyalty_points": 3200,
    "retries": 0,
    "satisfaction": 4.5,
    "open_tickets": 1,
    "order": {
        "id": "ORD-123",
        "status": "processing",
        "items": 2,
        "total": 149.9,
        "currency": "EUR",
        "placed_at": "2024-05-01T10:00:00Z",
    },
    "user": {
        "id": "U-42",
        "email": "ada@example.com",
        "tier": "gold",
        "country": "GB",
        "since": "2019-03-14",
    },
    "conversation": {
        "id": "C-9001",
        "started_at": "2024-05-02T08:30:00Z",
        "topic": "delivery",
        "language": "en",
    },
    "address": {
        "street": "12 St James's Square",
        "city": "London",
        "postcode": "SW1Y 4JH",
        "country": "GB",
    },
    "preferences": {"contact": "email", "newsletter": False, "theme": "dark", "units": "metric"},
    "last_tool_call": {"tool": "lookup_order", "order_id": "ORD-123", "ok": True, "ms": 84},
    "shipment": {"carrier": "DHL", "status": "label created", "eta": "2024-05-04"},
}
# One top-level field written either way, about 60 bytes each.
_SHIPMENT = {"status": "shipped", "trackingNumber": "1Z999AA10123456784"}
_PATCH = {"order": _SHIPMENT}


def _schema_of(value: Any) -> dict[str, Any]:
    """A JSON Schema describing ``value``'s shape (objects: their members, all required)."""
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int | float):
        return {"type": "number"}
    if isinstance(value, str):
        return {"type": "string", "maxLength": 255}
    members = {k: _schema_of(v) for k, v in value.items()}
    return {"type": "object", "properties": members, "required": sorted(members)}


def _doc_schema() -> dict[str, Any]:
    schema = _schema_of(_SEED)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["additionalProperties"] = False
    order = schema["properties"]["order"]
    order["properties"]["status"] = {"enum": ["processing", "shipped", "delivered", "cancelled"]}
    tracking = {"type": "string", "pattern": "^[0-9A-Z]+$"}
    order["properties"]["trackingNumber"] = tracking
    shipment = schema["properties"]["shipment"]
    shipment["properties"]["trackingNumber"] = tracking
    shipment["required"] = ["status"]
    return schema


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _seed_document(calls: _Calls, session: str) -> None:
    entries = []
    for key, value in _SEED.items():
        if isinstance(value, str):
            entry = pb.Value(string_value=value)
        elif isinstance(value, int | float):
            entry = pb.Value(number_value=value)
        else:
            entry = pb.Value(json_value=_compact(value))
        entries.append(svc.SetManyEntry(key=key, value=entry, ttl_seconds=3600))
    calls(svc.SetManyRequest(session_id=session, entries=entries), svc.SetManyResponse)


def _write_pair(session: str) -> tuple[Op, Op]:
    set_json = svc.SetJsonRequest(
        session_id=session, key="shipment", json=_compact(_SHIPMENT), ttl_seconds=_DOC_TTL
    )
    patch = svc.PatchDocumentRequest(
        session_id=session, merge_patch=_compact(_PATCH), ttl_seconds=_DOC_TTL
    )
    return (
        Op(set_json, svc.SetJsonResponse, effects=_version(session, "shipment")),
        Op(patch, svc.PatchDocumentResponse, effects=_revision(session)),
    )


def _read_pair(session: str) -> tuple[Op, Op]:
    get_many = svc.GetManyRequest(session_id=session, keys=list(_SEED))
    get_document = svc.GetDocumentRequest(session_id=session)
    return (
        Op(get_many, svc.GetManyResponse, ok=lambda r: len(r.entries) == len(_SEED)),
        Op(
            get_document,
            svc.GetDocumentResponse,
            ok=lambda r: json.loads(r.json).keys() == _SEED.keys(),
        ),
    )


@dataclass(frozen=True)
class _Pair:
    """Two calls measured side by side: ``op`` against the ``base`` it is held to."""

    title: str
    goal: str
    base: Op
    op: Op


def _document(
    args: argparse.Namespace,
    levels: list[int],
    redis: EmbeddedRedis,
    api_key: str,
    tmp: Path,
) -> None:
    schema = _compact(_doc_schema())
    pairs = [
        _Pair("(a) one field written, 20-key session", "target <= 2", *_write_pair(_DOC)),
        _Pair("(b) the 20-key session read", "target <= 2", *_read_pair(_DOC)),
        _Pair(
            f"(c) pair (a) on a session bound to schema {_SCHEMA!r} ({len(schema)} bytes)",
            "no target",
            *_write_pair(_BOUND_DOC),
        ),
    ]
    measured = []
    with _ours(args, redis, api_key, tmp) as target:
        calls = target.calls
        for session in (_DOC, _BOUND_DOC):
            _seed_document(calls, session)
        calls(svc.PutSchemaRequest(name=_SCHEMA, json_schema=schema), svc.PutSchemaResponse)
        calls(svc.BindSchemaRequest(session_id=_BOUND_DOC, schema=_SCHEMA), svc.BindSchemaResponse)
        for pair in pairs:
            base = _run_levels(target, pair.base, levels, args.duration, tmp)
            measured.append((pair, base, _run_levels(target, pair.op, levels, args.duration, tmp)))
    print(
        f"Document view vs key/value calls: ours (--workers {args.workers}), h2load,"
        f" {args.duration:.0f}s per level, {os.cpu_count()} cores; sessions of"
        f" {len(_SEED)} keys ({len(_compact(_SEED))} bytes as one document)"
    )
    print(
        f"  SetJson 'shipment' = {_compact(_SHIPMENT)} ({len(_compact(_SHIPMENT))} B);"
        f" PatchDocument {_compact(_PATCH)} ({len(_compact(_PATCH))} B), ttl {_DOC_TTL}"
    )
    print(f"  GetMany of the {len(_SEED)} keys; GetDocument of the whole session")
    print()
    width = 13
    for pair, base, op in measured:
        print(f"{pair.title}: {pair.op.method}/{pair.base.method}, {pair.goal}")
        print(_header("call", width))
        for n in levels:
            print(_row(n, pair.base.method, base.levels[n], width))
            print(_row(n, pair.op.method, op.levels[n], width))
            print(_ratio(n, op.levels[n], base.levels[n], width))
        for method, series in ((pair.base.method, base), (pair.op.method, op)):
            print(f"  {method} sends Redis per call: {series.sent}")
            _print_failures(method, series.levels)
        print()


if __name__ == "__main__":
    floor_main()
