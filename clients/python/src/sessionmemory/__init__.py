"""Session Memory client: typed, expiring, per-conversation memory for bots and agents.

Example:
    >>> from sessionmemory import MemoryClient
    >>> with MemoryClient.from_env() as client:          # doctest: +SKIP
    ...     memory = client.session(socket_id)
    ...     step = memory.get("step", "start")
    ...     memory.set("step", "name", ttl=3600)
"""

from ._aio import AsyncMemoryClient, AsyncSession
from ._convert import Entry, EntryInfo, FileInfo, Limits, SetItem, WriteResult
from ._files import AsyncFileHandle, FileHandle
from ._sync import MemoryClient, Session
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
    PermissionDeniedError,
    ServiceUnavailableError,
)

__all__ = [
    "AsyncFileHandle",
    "AsyncMemoryClient",
    "AsyncSession",
    "AuthenticationError",
    "ConflictError",
    "DeadlineExceededError",
    "Entry",
    "EntryInfo",
    "FailedPreconditionError",
    "FileHandle",
    "FileInfo",
    "InternalServerError",
    "InvalidArgumentError",
    "LimitExceededError",
    "Limits",
    "MemoryApiError",
    "MemoryClient",
    "MemoryTypeError",
    "MemoryUnavailableError",
    "NotANumberError",
    "PermissionDeniedError",
    "ServiceUnavailableError",
    "Session",
    "SetItem",
    "WriteResult",
]
