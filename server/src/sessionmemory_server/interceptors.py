"""Domain error -> gRPC status with ErrorInfo (+ BadRequest, RetryInfo), in one place.

`add_service` registers a servicer with every handler wrapped by this mapping.

Requests arrive as raw bytes and are decoded here: a unary body before the
servicer runs (so before authentication), each SetFile message as the servicer
pulls it. A message that does not decode is INVALID_ARGUMENT with reason
MALFORMED_REQUEST, never grpc's UNKNOWN or INTERNAL. Unknown exceptions become
INTERNAL with a request id that is logged with the traceback; backend connection
failures and timeouts become UNAVAILABLE. Rejections any client can cause at will
(no valid key, an undecodable body) are only counted, in one throttled log line.

Each call has a `Call` record (observe.py) in a context variable: the call cap
counts it, the servicer reports its tenant, session and file bytes into it, and
its metrics, span and access log line are recorded once its status is known
(for a failed call, before the status is sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import errno
import logging
import random
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any, Final

import grpc
import minio.error
import redis.exceptions
import urllib3.exceptions
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message_factory import GetMessageClass
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from . import metrics
from .errors import BUSY_RETRY_SECONDS, DOMAIN, DomainError, unavailable
from .logs import EventCounter
from .observe import OFF, Call, MethodObserver, Observer

log = logging.getLogger("sessionmemory_server.rpc")

Behavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]
Decode = Callable[[bytes], Any]

# Rejections of calls without a valid key or with an undecodable body are logged
# as one "rejected calls" line per reason per interval, with the count.
REJECTED_LOG_INTERVAL_SECONDS: Final = 10.0
_MALFORMED: Final = "MALFORMED_REQUEST"
_BACKEND_UNAVAILABLE: Final = "BACKEND_UNAVAILABLE"
_rejected = EventCounter(log, "rejected calls", interval_seconds=REJECTED_LOG_INTERVAL_SECONDS)

_BACKEND_DOWN = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    # Redis Cluster in transition, nothing ran: CLUSTERDOWN and MASTERDOWN during a
    # failover, TRYAGAIN while a slot's keys are split by a migration (and redis-py's
    # "TTL exhausted" once its redirects and retries of one command ran out), a slot
    # no known node serves, and a topology refresh that reached no node.
    redis.exceptions.ClusterError,
    redis.exceptions.TryAgainError,
    redis.exceptions.SlotNotCoveredError,
    redis.exceptions.RedisClusterUnreachableError,
    asyncio.TimeoutError,
    OSError,
    urllib3.exceptions.HTTPError,
    minio.error.ServerError,
)

# Out of descriptors or memory is this process's trouble, not a backend's: the
# call is SERVER_BUSY (retry later, ideally elsewhere), whether the OSError comes
# bare or wrapped (redis-py's ConnectionError keeps it as __context__, urllib3's
# NewConnectionError/MaxRetryError as __cause__ and .reason). Logged throttled:
# a flood causes it at will.
_EXHAUSTED_ERRNOS: Final = {
    errno.EMFILE: "EMFILE",
    errno.ENFILE: "ENFILE",
    errno.ENOMEM: "ENOMEM",
}
_busy = EventCounter(log, "server out of resources", interval_seconds=REJECTED_LOG_INTERVAL_SECONDS)
_down = EventCounter(log, "backend unavailable", interval_seconds=REJECTED_LOG_INTERVAL_SECONDS)


def _exhausted(exc: BaseException) -> str | None:
    """The name of the local resource ``exc`` (or an error behind it) ran out of."""
    todo: list[BaseException] = [exc]
    seen: set[int] = set()
    while todo and len(seen) < 32:
        err = todo.pop()
        if id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, MemoryError):
            return "MemoryError"
        if isinstance(err, redis.exceptions.MaxConnectionsError):
            return "redis_max_connections"  # this process's own pool cap
        if isinstance(err, OSError) and err.errno in _EXHAUSTED_ERRNOS:
            return _EXHAUSTED_ERRNOS[err.errno]
        reason = getattr(err, "reason", None)  # urllib3's MaxRetryError
        todo.extend(
            e for e in (err.__cause__, err.__context__, reason) if isinstance(e, BaseException)
        )
    return None


def _server_busy() -> DomainError:
    return DomainError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "SERVER_BUSY",
        "the server is out of file descriptors or memory; nothing was changed;"
        f" retry in {BUSY_RETRY_SECONDS:.0f} s, ideally on another server",
        retry_after=BUSY_RETRY_SECONDS,
    )


def to_status(err: DomainError) -> grpc.Status:
    """Build the rich status (ErrorInfo first, then BadRequest / RetryInfo)."""
    details: list[any_pb2.Any] = []
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=err.reason, domain=DOMAIN, metadata=err.metadata))
    details.append(info)
    if err.field is not None and err.code == grpc.StatusCode.INVALID_ARGUMENT:
        bad = any_pb2.Any()
        bad.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=err.field, description=err.message, reason=err.reason
                    )
                ]
            )
        )
        details.append(bad)
    if err.retry_after is not None:
        retry = any_pb2.Any()
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(err.retry_after * 1e9))
        retry.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        details.append(retry)
    return rpc_status.to_status(
        status_pb2.Status(code=err.code.value[0], message=err.message, details=details)
    )


def _decoder(message_class: Any) -> Decode:
    """``FromString`` of a request type, raising MALFORMED_REQUEST for any bytes it rejects."""
    from_string = message_class.FromString

    def decode(data: bytes) -> Any:
        try:
            return from_string(data)
        except MemoryError:
            raise  # the server's trouble, not the request's (SERVER_BUSY)
        except Exception:  # DecodeError, invalid UTF-8, nesting too deep: all the same to a client
            raise DomainError(
                grpc.StatusCode.INVALID_ARGUMENT,
                _MALFORMED,
                "the request could not be decoded: it is not a valid message for this method"
                " (or a string field holds invalid UTF-8); nothing was changed",
            ) from None

    return decode


class _DecodedStream:
    """A client stream of raw messages, each decoded only when the servicer pulls it."""

    __slots__ = ("_decode", "_it", "_raw")

    def __init__(self, raw: AsyncIterable[bytes], decode: Decode) -> None:
        self._raw = raw
        self._it: AsyncIterator[bytes] | None = None  # made on the first pull, as grpc expects
        self._decode = decode

    def __aiter__(self) -> _DecodedStream:
        return self

    async def __anext__(self) -> Any:
        if self._it is None:
            self._it = aiter(self._raw)
        return self._decode(await anext(self._it))


def _note(err: DomainError) -> Call | None:
    """Note ``err`` as the current call's outcome (before anything can interrupt it)."""
    call = _call.get()
    if call is not None:
        call.code = err.code
        call.reason = err.reason
        if err.reason == _RATE_LIMITED:
            call.bucket = err.metadata.get("limit", "")
    return call


async def _abort(context: grpc.aio.ServicerContext[Any, Any], err: DomainError) -> None:
    call = _note(err)
    if call is not None:
        call.finish()  # before the client can see the status
    status = to_status(err)
    await context.abort(status.code, status.details, status.trailing_metadata)


class _Tarpit:
    """Paces RATE_LIMITED refusals: a subject's refusals come no faster than its rate.

    A tenant with many calls in flight that is refused at once sends the next
    call at once: a loop of instant refusals that burns the server's CPU at
    everyone's expense, and refusals that all end when the bucket refills come
    back together as one burst. So a refusal is held before it is answered (its
    call slot already freed, the RetryInfo reduced by the wait so it is still
    right when sent): for as many of the subject's ``rate`` periods as it has
    refusals held (n / rate), or the time until a call would pass if that is
    longer, times a random 1 to 2; at most the time the bucket takes to fill (so
    refused calls come back before tokens would go unused: a client that is
    refused still gets its full rate) and ``max_seconds``. A client a little
    over its limit hears back within milliseconds; one that keeps 64 calls in
    flight against 200/s is refused about 130 times a second instead of
    thousands, so its refusals cost less than its accepted calls. At most
    ``max_pending`` refusals are held at a time; beyond that they are answered
    at once, so holding costs bounded memory and never takes gRPC's call slots
    from other tenants.
    """

    def __init__(self, max_seconds: float, max_pending: int) -> None:
        self.max_seconds = max_seconds
        self.max_pending = max_pending
        self.pending = 0
        self.by_subject: dict[str, int] = {}

    def delay(self, err: DomainError, held: int) -> float:
        """How long to hold ``err`` when its subject already has ``held`` refusals held."""
        try:
            rate = float(err.metadata.get("rate", "0"))
            burst = float(err.metadata.get("burst", "0"))
        except ValueError:
            rate = burst = 0.0
        if rate <= 0:
            return self.max_seconds * random.uniform(0.5, 1.0)  # jitter, not a secret
        target = max(err.retry_after or 0.0, (held + 1) / rate) * random.uniform(1.0, 2.0)
        # Never longer than the bucket takes to fill: a call comes back before
        # tokens would overflow, so a client that is refused still gets its rate.
        return min(self.max_seconds, max(burst, 1.0) / rate, target)

    async def hold(self, err: DomainError) -> None:
        """Wait before a RATE_LIMITED refusal is answered (others pass through)."""
        if err.reason != _RATE_LIMITED or err.retry_after is None:
            return
        if self.pending >= self.max_pending:
            return
        subject = err.subject or ""
        held = self.by_subject.get(subject, 0)
        delay = self.delay(err, held)
        self.pending += 1
        self.by_subject[subject] = held + 1
        try:
            await asyncio.sleep(delay)
        finally:
            self.pending -= 1
            left = self.by_subject[subject] - 1
            if left:
                self.by_subject[subject] = left
            else:
                del self.by_subject[subject]
        err.retry_after = max(err.retry_after - delay, 0.001)


_RATE_LIMITED: Final = "RATE_LIMITED"
TARPIT_MAX_SECONDS: Final = 1.0
TARPIT_MAX_PENDING: Final = 256
_tarpit = _Tarpit(TARPIT_MAX_SECONDS, TARPIT_MAX_PENDING)


async def _fail(
    context: grpc.aio.ServicerContext[Any, Any],
    method: str,
    exc: Exception,
    on_down: Callable[[], None] | None = None,
) -> None:
    """Abort the call with the status that ``exc`` maps to.

    Runs after the call's CallCap slot was released.
    """
    if isinstance(exc, DomainError):
        if exc.reason == _BACKEND_UNAVAILABLE and on_down is not None:
            on_down()  # readiness checks the backends at once
        # Noted first: a client whose deadline ends during the hold was still refused.
        _note(exc)
        await _tarpit.hold(exc)
        if exc.code == grpc.StatusCode.UNAUTHENTICATED or exc.reason == _MALFORMED:
            _rejected.count(exc.reason)
        await _abort(context, exc)
    elif (resource := _exhausted(exc)) is not None:
        _busy.count(resource)
        await _abort(context, _server_busy())
    elif isinstance(exc, _BACKEND_DOWN):
        # Throttled: during an outage every call fails, and any client can send calls.
        _down.count(type(exc).__name__)
        if on_down is not None:
            on_down()  # readiness checks the backends at once
        await _abort(context, unavailable("a storage backend did not answer; retry shortly"))
    else:
        request_id = uuid.uuid4().hex
        log.error(
            "internal error",
            extra={"method": method, "request_id": request_id},
            exc_info=(type(exc), exc, exc.__traceback__),
        )
        await _abort(
            context,
            DomainError(
                grpc.StatusCode.INTERNAL,
                "INTERNAL_ERROR",
                f"internal server error (request id {request_id})",
                metadata={"request_id": request_id},
            ),
        )


class CallCap:
    """Counts the calls in flight of one process and refuses those over the cap.

    Besides the process-wide ``limit``, each tenant may hold at most
    ``tenant_limit`` of them, so one tenant's slow or stalled calls (ReadFile
    streams nobody reads, uploads that pause) cannot take every slot: the call is
    counted against its tenant once the servicer knows who is calling
    (`claim_tenant`). Long-lived calls (Watch streams) are not counted here: they
    have caps of their own and would otherwise crowd out every short call.
    """

    def __init__(self, limit: int | None, tenant_limit: int | None = None) -> None:
        self.limit = limit
        self.tenant_limit = tenant_limit
        self.in_flight = 0
        self.by_tenant: dict[str, int] = {}

    def enter(self, call: Call) -> None:
        """Count ``call`` until `leave`; SERVER_BUSY when the cap is reached."""
        if self.limit is not None and self.in_flight >= self.limit:
            raise _busy_error(
                f"the server has the maximum of {self.limit} calls in flight",
                scope="process",
                limit=self.limit,
            )
        self.in_flight += 1
        call.cap = self

    def leave(self, call: Call) -> None:
        """Stop counting ``call`` (and its tenant's share)."""
        tenant = call.counted
        if tenant is not None:
            call.counted = None
            left = self.by_tenant[tenant] - 1
            if left:
                self.by_tenant[tenant] = left
            else:
                del self.by_tenant[tenant]
        call.cap = None
        self.in_flight -= 1

    def claim(self, call: Call, tenant: str) -> None:
        """Count ``call`` (entered) against ``tenant``'s share, once."""
        if call.counted is not None or self.tenant_limit is None:
            return
        held = self.by_tenant.get(tenant, 0)
        if held >= self.tenant_limit:
            raise _busy_error(
                f"this tenant has the maximum of {self.tenant_limit} calls in flight on this"
                " server",
                scope="tenant",
                limit=self.tenant_limit,
            )
        self.by_tenant[tenant] = held + 1
        call.counted = tenant


_call: contextvars.ContextVar[Call | None] = contextvars.ContextVar("call", default=None)


def claim_tenant(tenant: str) -> None:
    """Count the current call against ``tenant``'s share of the call cap.

    Raises:
        DomainError: RESOURCE_EXHAUSTED (SERVER_BUSY, scope "tenant") when the
            tenant already holds its share; nothing was done.
    """
    call = _call.get()
    if call is not None:
        call.tenant = tenant
        if call.cap is not None:
            call.cap.claim(call, tenant)


def invocation_metadata(context: grpc.aio.ServicerContext[Any, Any]) -> Any:
    """The call's invocation metadata as (key, value) pairs, read from grpc once per call.

    grpc converts the metadata anew on every ``invocation_metadata()``; the
    tracer and authentication both need it.
    """
    call = _call.get()
    if call is None:
        return context.invocation_metadata() or ()
    if call.metadata is None:
        call.metadata = context.invocation_metadata() or ()
    return call.metadata


def report_caller(tenant: str, session_id: str | None) -> None:
    """Tell the current call's observers who calls, on which session (if any)."""
    call = _call.get()
    if call is not None:
        call.tenant = tenant
        if session_id is not None:
            call.session_id = session_id
        observer = call.observer
        if observer is not None:
            observer.authenticated(call, call.metadata)


def report_bytes_in(size: int) -> None:
    """Count file bytes received by the current call (SetFile chunks)."""
    metrics.UPLOAD_BYTES.inc(size)
    call = _call.get()
    if call is not None:
        call.bytes_in += size


def report_bytes_out(size: int) -> None:
    """Count file bytes sent by the current call (ReadFile chunks)."""
    metrics.DOWNLOAD_BYTES.inc(size)
    call = _call.get()
    if call is not None:
        call.bytes_out += size


def _busy_error(what: str, **metadata: object) -> DomainError:
    return DomainError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "SERVER_BUSY",
        f"{what}; nothing was changed; retry in {BUSY_RETRY_SECONDS:.0f} s",
        metadata=metadata,
        retry_after=BUSY_RETRY_SECONDS,
    )


_UNCAPPED: Final = CallCap(None)


def _wrap(
    behavior: Behavior,
    method: str,
    decode: Callable[[Any], Any],
    cap: CallCap,
    on_down: Callable[[], None] | None,
    observer: MethodObserver | None,
) -> Behavior:
    async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        call = Call(observer)
        token = _call.set(call)
        if observer is not None:
            observer.begin(call, context)
        try:
            cap.enter(call)
            try:
                return await behavior(decode(request), context)
            finally:
                cap.leave(call)
        except grpc.aio.AbortError:
            _aborted(call, context)
            raise
        except Exception as exc:
            await _fail(context, method, exc, on_down)
        except BaseException:
            # Cancelled (by the client or its deadline), or a stream closed by grpc
            # (GeneratorExit): never counted as OK.
            _ended(call, context)
            raise
        finally:
            call.finish()
            _reset(token)

    return handler


def _wrap_stream(
    behavior: Callable[..., AsyncIterator[Any]],
    method: str,
    decode: Decode,
    cap: CallCap,
    on_down: Callable[[], None] | None,
    observer: MethodObserver | None,
) -> Any:
    async def handler(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        call = Call(observer)
        token = _call.set(call)
        if observer is not None:
            observer.begin(call, context)
        try:
            cap.enter(call)
            try:
                async for item in behavior(decode(request), context):
                    yield item
            finally:
                cap.leave(call)
        except grpc.aio.AbortError:
            _aborted(call, context)
            raise
        except Exception as exc:
            await _fail(context, method, exc, on_down)
        except BaseException:
            # Cancelled (by the client or its deadline), or a stream closed by grpc
            # (GeneratorExit): never counted as OK.
            _ended(call, context)
            raise
        finally:
            call.finish()
            _reset(token)

    return handler


def _ended(call: Call, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    """Note the code of a call that ended by cancellation: its deadline's, or the client's."""
    if call.code is None:
        try:
            left = context.time_remaining()
        except Exception:  # a context grpc has already torn down
            left = None
        call.code = (
            grpc.StatusCode.DEADLINE_EXCEEDED
            if left is not None and left <= 0
            else grpc.StatusCode.CANCELLED
        )


def _reset(token: contextvars.Token[Call | None]) -> None:
    """Restore the context variable; a stream closed from another context cannot, harmlessly."""
    with contextlib.suppress(ValueError):
        _call.reset(token)


def _aborted(call: Call, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    """Note the code of a call aborted other than by `_abort` (which notes its own)."""
    if call.code is None:
        call.code = context.code() or grpc.StatusCode.UNKNOWN


def _or_encoded(encode: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    """A stream's serializer that also sends messages a handler yields already encoded.

    A handler streaming large payloads (ReadFile's chunks) may yield the wire
    bytes of a message instead of the message, which saves copying each payload
    into a message and out again.
    """

    def serialize(message: Any) -> bytes:
        return message if message.__class__ is bytes else encode(message)

    return serialize


def _handler(
    servicer: object,
    m: MethodDescriptor,
    service: str,
    cap: CallCap,
    on_down: Callable[[], None] | None,
    observer: Observer,
) -> Any:
    behavior = getattr(servicer, m.name)
    watch = observer.method(
        service, m.name, client_streaming=m.client_streaming, server_streaming=m.server_streaming
    )
    path = f"/{service}/{m.name}"
    # No request deserializer: grpc hands over the raw bytes and the wrapper decodes
    # them, so an undecodable body gets our status instead of grpc's UNKNOWN.
    decode = _decoder(GetMessageClass(m.input_type))
    encode = GetMessageClass(m.output_type).SerializeToString
    if m.server_streaming and not m.client_streaming:
        return grpc.unary_stream_rpc_method_handler(
            _wrap_stream(behavior, path, decode, cap, on_down, watch), None, _or_encoded(encode)
        )
    if m.client_streaming and not m.server_streaming:

        def stream(raw: AsyncIterable[bytes]) -> _DecodedStream:
            return _DecodedStream(raw, decode)

        return grpc.stream_unary_rpc_method_handler(
            _wrap(behavior, path, stream, cap, on_down, watch), None, encode
        )
    if not m.client_streaming:
        return grpc.unary_unary_rpc_method_handler(
            _wrap(behavior, path, decode, cap, on_down, watch), None, encode
        )
    raise NotImplementedError(f"{path}: bidirectional streaming is not used")


def add_service(
    server: grpc.aio.Server,
    servicer: object,
    service: ServiceDescriptor,
    *,
    cap: CallCap = _UNCAPPED,
    long_lived: frozenset[str] = frozenset(),
    on_backend_down: Callable[[], None] | None = None,
    observer: Observer = OFF,
) -> None:
    """Register a servicer's methods, each wrapped with the error mapping.

    Every method but the ``long_lived`` ones counts against ``cap``;
    ``on_backend_down`` is called when a call failed on an unreachable backend;
    ``observer`` records each call's metrics, span and access log line.

    Wrapping once at registration (instead of a ServerInterceptor, which grpc.aio
    consults on every call) keeps the mapping in one place at no per-call cost.
    Methods are added as registered methods, grpc's fast path for known names.
    """
    handlers = {
        m.name: _handler(
            servicer,
            m,
            service.full_name,
            _UNCAPPED if m.name in long_lived else cap,
            on_backend_down,
            observer,
        )
        for m in service.methods
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
    server.add_registered_method_handlers(service.full_name, handlers)
