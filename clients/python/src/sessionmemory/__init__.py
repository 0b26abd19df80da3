"""Session Memory client: typed, expiring, per-conversation memory for bots and agents.

Example:
    >>> from sessionmemory import MemoryClient
    >>> with MemoryClient.from_env() as client:          # doctest: +SKIP
    ...     memory = client.session(socket_id)
    ...     step = memory.get("step", "start")
    ...     memory.set("step", "name", ttl=3600)
    ...     memory.update({"order": {"status": "shipped"}}, ttl=3600)
    ...     status = memory.get("order.status", "")

Retries are logged at DEBUG on the ``sessionmemory`` logger, which has no handler of
its own: to see them, give the process one and lower that logger's level::

    logging.basicConfig(level=logging.INFO)
    logging.getLogger("sessionmemory").setLevel(logging.DEBUG)
"""

from importlib import metadata as _metadata

from ._aio import AsyncMemoryClient, AsyncSession
from ._convert import (
    Change,
    Document,
    Entry,
    EntryInfo,
    FileInfo,
    Json,
    Limits,
    SchemaInfo,
    SessionToken,
    SetItem,
    TenantLimits,
    TenantUsage,
    Value,
    WriteResult,
)
from ._files import AsyncFileHandle, FileHandle
from ._sync import MemoryClient, Session
from ._watch import AsyncChangeStream, ChangeStream
from .errors import (
    AuthenticationError,
    ConflictError,
    DeadlineExceededError,
    FailedPreconditionError,
    InternalServerError,
    InvalidArgumentError,
    LimitExceededError,
    MemoryApiError,
    MemoryTypeError,
    MemoryUnavailableError,
    NotANumberError,
    NotFoundError,
    PermissionDeniedError,
    SchemaViolationError,
    ServiceUnavailableError,
)

try:
    __version__: str = _metadata.version("session-memory-client")
    """The installed distribution's version (``session-memory-client``)."""
except _metadata.PackageNotFoundError:  # imported from a source tree, not installed
    __version__ = "0+unknown"

__all__ = [
    "AsyncChangeStream",
    "AsyncFileHandle",
    "AsyncMemoryClient",
    "AsyncSession",
    "AuthenticationError",
    "Change",
    "ChangeStream",
    "ConflictError",
    "DeadlineExceededError",
    "Document",
    "Entry",
    "EntryInfo",
    "FailedPreconditionError",
    "FileHandle",
    "FileInfo",
    "InternalServerError",
    "InvalidArgumentError",
    "Json",
    "LimitExceededError",
    "Limits",
    "MemoryApiError",
    "MemoryClient",
    "MemoryTypeError",
    "MemoryUnavailableError",
    "NotANumberError",
    "NotFoundError",
    "PermissionDeniedError",
    "SchemaInfo",
    "SchemaViolationError",
    "ServiceUnavailableError",
    "Session",
    "SessionToken",
    "SetItem",
    "TenantLimits",
    "TenantUsage",
    "Value",
    "WriteResult",
]
