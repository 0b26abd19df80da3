"""Domain error -> gRPC status with ErrorInfo (+ BadRequest, RetryInfo), in one place.

`add_service` registers a servicer with every handler wrapped by this mapping.

Unknown exceptions become INTERNAL with a request id that is logged with the
traceback; backend connection failures and timeouts become UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import minio.error
import redis.exceptions
import urllib3.exceptions
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message_factory import GetMessageClass
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from .errors import DOMAIN, DomainError, unavailable

log = logging.getLogger("sessionmemory.rpc")

Behavior = Callable[[Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]

_BACKEND_DOWN = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    asyncio.TimeoutError,
    OSError,
    urllib3.exceptions.HTTPError,
    minio.error.ServerError,
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


async def _abort(context: grpc.aio.ServicerContext[Any, Any], err: DomainError) -> None:
    status = to_status(err)
    await context.abort(status.code, status.details, status.trailing_metadata)


async def _fail(context: grpc.aio.ServicerContext[Any, Any], method: str, exc: Exception) -> None:
    """Abort the call with the status that ``exc`` maps to."""
    if isinstance(exc, DomainError):
        await _abort(context, exc)
    elif isinstance(exc, _BACKEND_DOWN):
        log.warning("backend unavailable", extra={"method": method, "error": repr(exc)})
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


def _wrap(behavior: Behavior, method: str) -> Behavior:
    async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await behavior(request, context)
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:
            await _fail(context, method, exc)

    return handler


def _wrap_stream(behavior: Callable[..., AsyncIterator[Any]], method: str) -> Any:
    async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            async for item in behavior(request, context):
                yield item
        except (grpc.aio.AbortError, asyncio.CancelledError):
            raise
        except Exception as exc:
            await _fail(context, method, exc)

    return handler


def _handler(servicer: object, m: MethodDescriptor, service: str) -> Any:
    behavior = getattr(servicer, m.name)
    path = f"/{service}/{m.name}"
    decode = GetMessageClass(m.input_type).FromString
    encode = GetMessageClass(m.output_type).SerializeToString
    if m.server_streaming and not m.client_streaming:
        return grpc.unary_stream_rpc_method_handler(_wrap_stream(behavior, path), decode, encode)
    if m.client_streaming and not m.server_streaming:
        return grpc.stream_unary_rpc_method_handler(_wrap(behavior, path), decode, encode)
    if not m.client_streaming:
        return grpc.unary_unary_rpc_method_handler(_wrap(behavior, path), decode, encode)
    raise NotImplementedError(f"{path}: bidirectional streaming is not used")


def add_service(server: grpc.aio.Server, servicer: object, service: ServiceDescriptor) -> None:
    """Register a servicer's unary methods, each wrapped with the error mapping.

    Wrapping once at registration (instead of a ServerInterceptor, which grpc.aio
    consults on every call) keeps the mapping in one place at no per-call cost.
    Methods are added as registered methods, grpc's fast path for known names.
    """
    handlers = {m.name: _handler(servicer, m, service.full_name) for m in service.methods}
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
    server.add_registered_method_handlers(service.full_name, handlers)
