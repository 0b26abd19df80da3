"""Who may call what: the permission and the rate-limit bucket of every RPC, and the caller.

One table, `METHODS`, names for each MemoryService method the session-token
permission it needs (None: only the tenant's API key may call it) and the rate
limit it counts against. `Principal` is an authenticated caller: a tenant's API
key (every call of the tenant) or a session token (one session, some
permissions).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

import grpc

from .errors import DomainError


class Permission(enum.IntEnum):
    """What a session token may do; the values are the proto's TokenPermission."""

    READ = 1
    WRITE = 2
    FILES = 3


class Bucket(enum.Enum):
    """A per-tenant rate limit; the value names it in RATE_LIMITED's metadata."""

    READS = "reads"
    WRITES = "writes"
    FILE_BYTES = "file_bytes"


@dataclass(frozen=True, slots=True)
class Access:
    """What a method needs: a token permission (None: the API key) and its call bucket."""

    permission: Permission | None
    bucket: Bucket


_R, _W, _F = Permission.READ, Permission.WRITE, Permission.FILES
_READS, _WRITES = Bucket.READS, Bucket.WRITES

METHODS: Final[dict[str, Access]] = {
    "Get": Access(_R, _READS),
    "GetMany": Access(_R, _READS),
    "List": Access(_R, _READS),
    "GetDocument": Access(_R, _READS),
    "GetLimits": Access(_R, _READS),
    "Watch": Access(_R, _READS),
    "Set": Access(_W, _WRITES),
    "SetJson": Access(_W, _WRITES),
    "SetMany": Access(_W, _WRITES),
    "Delete": Access(_W, _WRITES),
    "Increment": Access(_W, _WRITES),
    "Touch": Access(_W, _WRITES),
    "Clear": Access(_W, _WRITES),
    "PatchDocument": Access(_W, _WRITES),
    "SetFile": Access(_F, _WRITES),
    "GetFile": Access(_F, _READS),
    "ReadFile": Access(_F, _READS),
    # Tenant-wide calls: the API key only.
    "BindSchema": Access(None, _WRITES),
    "PutSchema": Access(None, _WRITES),
    "DeleteSchema": Access(None, _WRITES),
    "GetSchema": Access(None, _READS),
    "ListSchemas": Access(None, _READS),
    "CreateSessionToken": Access(None, _WRITES),
    "RevokeSessionToken": Access(None, _WRITES),
}


# A batch call (GetMany, SetMany, Delete, Touch) counts as one call per this
# many keys against its rate limit: a 100-key SetMany costs Redis about what 10
# single calls do, so it counts as 10.
KEYS_PER_CALL: Final = 10


def batch_cost(keys: int) -> int:
    """What a batch of ``keys`` keys counts against its tenant's call rate (at least 1)."""
    return 1 + max(0, keys - 1) // KEYS_PER_CALL


def permission_denied(message: str, **metadata: object) -> DomainError:
    """A PERMISSION_DENIED error for a session token used outside its grant."""
    return DomainError(
        grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED", message, metadata=metadata
    )


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller.

    Attributes:
        tenant: The tenant every call is scoped to.
        key_id: The API key's id (for a token: the id of the token).
        session: None for an API key; the one session a token may touch.
        permissions: What a token may do (empty for an API key, which may do all).
        token_id: The session token's id, or None for an API key.
    """

    tenant: str
    key_id: str
    session: str | None = None
    permissions: frozenset[Permission] = frozenset()
    token_id: str | None = None

    def check(self, method: str, access: Access, session_id: str | None) -> None:
        """Raise PERMISSION_DENIED unless this caller may call ``method`` on ``session_id``.

        ``session_id`` None means the call names no session (GetLimits), or not
        yet (SetFile checks again once its header arrived).
        """
        if self.session is None:
            return
        if access.permission is None:
            raise permission_denied(
                f"{method} needs the tenant's API key; a session token cannot call it"
            )
        if access.permission not in self.permissions:
            name = access.permission.name.lower()
            raise permission_denied(
                f"this session token does not grant {name!r}, which {method} needs",
                permission=name,
            )
        if session_id is not None and session_id != self.session:
            raise permission_denied(
                "this session token is for another session", session=(session_id or "")[:64]
            )
