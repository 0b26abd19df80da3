"""Session tokens (skeleton)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .access import Permission
from .errors import DomainError


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A token as CreateSessionToken returns it."""

    token: str
    token_id: str
    expires_ms: int


class SessionTokens:
    """Issue, verify and revoke session tokens (skeleton)."""

    async def create(
        self, tenant: str, session_id: str, permissions: Sequence[Permission], ttl: int | None
    ) -> IssuedToken:
        """Issue a token."""
        raise DomainError(__import__("grpc").StatusCode.UNIMPLEMENTED, "INTERNAL_ERROR", "todo")

    async def revoke_token(self, tenant: str, token_id: str) -> None:
        """Revoke one token."""

    async def revoke_session(self, tenant: str, session_id: str) -> None:
        """Revoke every token issued so far for a session."""
