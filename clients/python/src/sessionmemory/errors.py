"""Errors raised by the client: every server rejection is a `MemoryApiError`.

Mapping is done once, in `from_grpc`: by ErrorInfo reason first, then by status code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from .v1.error_reason_pb2 import ErrorReason


class MemoryApiError(Exception):
    """A call failed. Raised for every server rejection and transport failure.

    Attributes:
        status: The gRPC status code.
        code: The ErrorInfo reason (e.g. ``"VALUE_TOO_LONG"``), or None when the
            server sent none (transport failures).
        message: The human-readable message.
        metadata: The ErrorInfo metadata (``field``, ``limit``, ``actual``, ...).
        details: Every decoded `google.rpc` detail message (ErrorInfo, BadRequest, ...).
        retry_after: Seconds the server asked to wait before retrying (its
            ``RetryInfo``), on every error that carries one; None otherwise.
    """

    def __init__(
        self,
        message: str,
        *,
        status: grpc.StatusCode,
        code: str | None = None,
        metadata: Mapping[str, str] | None = None,
        details: list[Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status.name}: {message}" + (f" [{code}]" if code else ""))
        self.status = status
        self.code = code
        self.message = message
        self.metadata: dict[str, str] = dict(metadata or {})
        self.details: list[Any] = list(details or [])
        self.retry_after = retry_after

    def is_rate_limit(self) -> bool:
        """True exactly when the tenant is over a rate limit (reason ``RATE_LIMITED``).

        Nothing was changed; waiting ``retry_after`` seconds lets a call pass.
        ``metadata["limit"]`` says which limit (``reads``, ``writes``, ``file_bytes``,
        ``auth_failures``). The client does not retry these by itself: back off in
        the handler. Quotas (`is_quota_exceeded`) and other RESOURCE_EXHAUSTED
        reasons (``SERVER_BUSY``, ``TOO_MANY_UPLOADS``, ...) are not rate limits.
        """
        return self.code == "RATE_LIMITED"

    def is_quota_exceeded(self) -> bool:
        """True exactly when the call would take the tenant over a quota (``QUOTA_EXCEEDED``).

        Nothing was changed, and waiting does not help until data expires or is
        deleted (there is no ``retry_after``). ``metadata["quota"]`` is ``sessions``,
        ``stored_bytes`` or ``uploads``, with ``limit`` and ``actual``.
        """
        return self.code == "QUOTA_EXCEEDED"


class MemoryUnavailableError(MemoryApiError):
    """The session has no session id or the client no API key; no call was made."""


class InvalidArgumentError(MemoryApiError):
    """The request broke a limit or rule (INVALID_ARGUMENT); nothing was changed."""


class SchemaViolationError(InvalidArgumentError):
    """The write would make the session's document invalid against its bound schema.

    Nothing was changed. `pointer`, `keyword` and `schema` say what failed.
    """

    @property
    def pointer(self) -> str:
        """The JSON pointer of the failing value (e.g. ``/order/status``)."""
        return self.metadata.get("pointer", "")

    @property
    def keyword(self) -> str:
        """The schema keyword that failed (e.g. ``enum``, ``required``, ``type``)."""
        return self.metadata.get("keyword", "")

    @property
    def schema(self) -> str:
        """The name of the schema the document was validated against."""
        return self.metadata.get("schema", "")


class NotFoundError(MemoryApiError):
    """What the call names does not exist (NOT_FOUND): a session, schema or file."""


class AuthenticationError(MemoryApiError):
    """The credential was refused (UNAUTHENTICATED); `code` says why.

    ``API_KEY_MISSING``, ``API_KEY_INVALID`` (unknown or revoked key),
    ``API_KEY_EXPIRED``; for session tokens ``TOKEN_INVALID`` (malformed, bad
    signature), ``TOKEN_EXPIRED`` (ask the issuer for a new one) and ``TOKEN_REVOKED``.
    """


class PermissionDeniedError(MemoryApiError):
    """The credential may not do this (PERMISSION_DENIED).

    A session token used on another session, without the permission the call needs
    (``metadata["permission"]``), or for a call that needs the tenant's API key
    (schemas, tokens).
    """


class ConflictError(MemoryApiError):
    """A precondition failed, or a write raced too many others (ABORTED); nothing written.

    Preconditions are only-if-absent and if-version (KEY_EXISTS, VERSION_MISMATCH) and
    if-revision (REVISION_MISMATCH); WRITE_CONFLICT means the server's own retries of a
    contended update ran out (retry after ``retry_after``).
    """


class FailedPreconditionError(MemoryApiError):
    """The stored state does not allow the call (FAILED_PRECONDITION)."""


class NotANumberError(FailedPreconditionError):
    """Increment hit a value that is not a number (FAILED_PRECONDITION)."""


class LimitExceededError(MemoryApiError):
    """A limit was hit (RESOURCE_EXHAUSTED); nothing was changed.

    `is_rate_limit` (``RATE_LIMITED``: wait ``retry_after``) and `is_quota_exceeded`
    (``QUOTA_EXCEEDED``: free space first) tell the tenant's limits apart from the
    server's own (``SERVER_BUSY``, ``TOO_MANY_UPLOADS``, ``STORE_FULL``, ...).
    """


class ServiceUnavailableError(MemoryApiError):
    """The service or its storage did not answer (UNAVAILABLE); safe to retry later."""


class DeadlineExceededError(MemoryApiError):
    """The call did not finish within its deadline (DEADLINE_EXCEEDED)."""


class InternalServerError(MemoryApiError):
    """An unexpected server fault (INTERNAL/UNKNOWN); the message has a request id."""


class MemoryTypeError(TypeError):
    """A stored value cannot be converted exactly to the requested type."""


# Only reasons whose class differs from their status code's are listed; every other
# reason (e.g. STORE_FULL -> LimitExceededError) maps by the code the proto gives it.
_BY_REASON: Final[dict[str, type[MemoryApiError]]] = {
    ErrorReason.Name(ErrorReason.NOT_A_NUMBER): NotANumberError,
    ErrorReason.Name(ErrorReason.KEY_EXISTS): ConflictError,
    ErrorReason.Name(ErrorReason.VERSION_MISMATCH): ConflictError,
    ErrorReason.Name(ErrorReason.SCHEMA_VIOLATION): SchemaViolationError,
}
_BY_CODE: Final[dict[grpc.StatusCode, type[MemoryApiError]]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.UNAUTHENTICATED: AuthenticationError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.ABORTED: ConflictError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: LimitExceededError,
    grpc.StatusCode.UNAVAILABLE: ServiceUnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.INTERNAL: InternalServerError,
    grpc.StatusCode.UNKNOWN: InternalServerError,
}
_DETAIL_TYPES: Final = (
    error_details_pb2.ErrorInfo,
    error_details_pb2.BadRequest,
    error_details_pb2.RetryInfo,
    error_details_pb2.QuotaFailure,
    error_details_pb2.PreconditionFailure,
    error_details_pb2.ResourceInfo,
    error_details_pb2.DebugInfo,
)


def from_grpc(err: grpc.RpcError) -> MemoryApiError:
    """Convert a gRPC error (sync or aio) into the matching `MemoryApiError`."""
    call: Any = err
    details: list[Any] = []
    info: error_details_pb2.ErrorInfo | None = None
    retry_after: float | None = None
    try:
        # The plain from_call works for AioRpcError too (it reads trailing metadata).
        status = rpc_status.from_call(call)
    except ValueError:
        status = None
    for packed in status.details if status is not None else ():
        for cls in _DETAIL_TYPES:
            if packed.Is(cls.DESCRIPTOR):
                message = cls()
                packed.Unpack(message)
                details.append(message)
                if isinstance(message, error_details_pb2.ErrorInfo) and info is None:
                    info = message
                elif isinstance(message, error_details_pb2.RetryInfo):
                    retry_after = message.retry_delay.ToNanoseconds() / 1e9
                break
    code: grpc.StatusCode = call.code()
    reason = info.reason if info is not None else None
    cls_ = _BY_REASON.get(reason or "") or _BY_CODE.get(code, MemoryApiError)
    return cls_(
        call.details() or "",
        status=code,
        code=reason,
        metadata=dict(info.metadata) if info is not None else {},
        details=details,
        retry_after=retry_after,
    )
