"""Health and reflection, with their long-lived streams capped.

Both need no API key, and both have a streaming method that stays open as long
as the caller likes (`Health.Watch`, `ServerReflection.ServerReflectionInfo`).
Every open stream counts against gRPC's cap on concurrent calls, so without a
cap of their own an anonymous caller holding a few thousand of them would take
every tenant's calls (RESOURCE_EXHAUSTED without ErrorInfo). Each process
serves at most `MAX_STREAMS` of each; one more is refused at once.

`probe_server` serves health alone, in plaintext, for probes that cannot speak TLS.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import Any, Final

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

MAX_STREAMS: Final = 64


async def _refuse(context: grpc.aio.ServicerContext[Any, Any], what: str) -> None:
    await context.abort(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        f"this server already serves the maximum of {MAX_STREAMS} {what} streams; retry later",
    )


class CappedHealth(health.aio.HealthServicer):
    """`grpc.health.v1` with at most `MAX_STREAMS` Watch streams at once."""

    def __init__(self) -> None:
        super().__init__()
        self.watching = 0

    async def Watch(
        self, request: health_pb2.HealthCheckRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> None:
        """See grpc.health.v1; refused when `MAX_STREAMS` are open."""
        if self.watching >= MAX_STREAMS:
            await _refuse(context, "health Watch")
        self.watching += 1
        try:
            await super().Watch(request, context)
        finally:
            self.watching -= 1


class CappedReflection(reflection.aio.ReflectionServicer):
    """Server reflection with at most `MAX_STREAMS` streams at once."""

    def __init__(self, service_names: Sequence[str]) -> None:
        super().__init__(service_names)
        self.open = 0

    # The stubs type the base method as a coroutine; it is an async generator.
    async def ServerReflectionInfo(  # type: ignore[override]
        self,
        request_iterator: AsyncIterable[reflection_pb2.ServerReflectionRequest],
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> AsyncIterator[reflection_pb2.ServerReflectionResponse]:
        """See grpc.reflection.v1alpha; refused when `MAX_STREAMS` are open."""
        if self.open >= MAX_STREAMS:
            await _refuse(context, "reflection")
        self.open += 1
        try:
            base: Any = super()
            async for response in base.ServerReflectionInfo(request_iterator, context):
                yield response
        finally:
            self.open -= 1


def add_reflection(server: grpc.aio.Server, service_names: Sequence[str]) -> None:
    """Serve reflection for ``service_names`` with its streams capped."""
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(  # type: ignore[no-untyped-call]
        CappedReflection(service_names), server
    )


def probe_server(
    listen: str, servicer: CappedHealth, options: Sequence[tuple[str, Any]]
) -> tuple[grpc.aio.Server, int]:
    """A plaintext server of ``servicer`` alone on ``listen``; the server and its port.

    Kubernetes' built-in gRPC probes cannot speak TLS, so with TLS on the main
    port they need a port of their own. It serves grpc.health.v1 and nothing
    else (any other service is UNIMPLEMENTED), from the main port's servicer,
    so both tell the same liveness and readiness. Its Check calls are never
    starved by Watch streams: those are capped at `MAX_STREAMS`.

    Raises:
        OSError: ``listen`` cannot be bound.
    """
    server = grpc.aio.server(options=options, maximum_concurrent_rpcs=2 * MAX_STREAMS)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    try:
        port = server.add_insecure_port(listen)
    except RuntimeError:  # grpcio's "Failed to bind to address" (it used to return 0)
        port = 0
    if port == 0:
        raise OSError(f"cannot listen on {listen} (health_listen): taken, or not this host's")
    return server, port
