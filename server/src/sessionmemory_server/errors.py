"""Domain errors: what went wrong, as a gRPC code, a stable reason and metadata.

Business code raises these; `interceptors.py` turns them into a gRPC status with
`google.rpc.ErrorInfo` (and `BadRequest` / `RetryInfo`) in one place.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc

DOMAIN = "sessionmemory"
# The RetryInfo of refusals that waiting cures (a cap of this process reached).
BUSY_RETRY_SECONDS = 1.0


class DomainError(Exception):
    """A rejected call: canonical status code, ErrorInfo reason, plain-words message.

    Attributes:
        code: The gRPC status code.
        reason: The `ErrorReason` name, e.g. ``"VALUE_TOO_LONG"``.
        message: A sentence a person can act on.
        metadata: ErrorInfo metadata (``field``, ``limit``, ``actual``, ...).
        field: The request field at fault, for a BadRequest field violation.
        retry_after: Seconds to wait before retrying, for a RetryInfo.
        subject: Who a RATE_LIMITED refusal is for (a tenant, an address), so
            the refusals of one subject are paced together; never sent.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        reason: str,
        message: str,
        *,
        field: str | None = None,
        metadata: Mapping[str, object] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.field = field
        meta = {k: str(v) for k, v in (metadata or {}).items()}
        if field is not None:
            meta.setdefault("field", field)
        self.metadata: dict[str, str] = meta
        self.retry_after = retry_after
        self.subject: str | None = None


def invalid(reason: str, message: str, field: str, **metadata: object) -> DomainError:
    """An INVALID_ARGUMENT error for one bad request field."""
    return DomainError(
        grpc.StatusCode.INVALID_ARGUMENT, reason, message, field=field, metadata=metadata
    )


def unauthenticated(reason: str, message: str) -> DomainError:
    """An UNAUTHENTICATED error."""
    return DomainError(grpc.StatusCode.UNAUTHENTICATED, reason, message)


def unavailable(message: str, retry_after: float = 0.2) -> DomainError:
    """An UNAVAILABLE error for a backend that did not answer; retryable."""
    return DomainError(
        grpc.StatusCode.UNAVAILABLE, "BACKEND_UNAVAILABLE", message, retry_after=retry_after
    )


def store_full() -> DomainError:
    """A RESOURCE_EXHAUSTED error for a write refused because Redis is over maxmemory."""
    return DomainError(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "STORE_FULL",
        "the store is out of memory, so nothing was written; reads, Delete, Clear and"
        " Touch still work: free space or retry later",
    )
