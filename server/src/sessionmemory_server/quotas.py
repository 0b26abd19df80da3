"""Per-tenant quotas (skeleton)."""

from __future__ import annotations

from dataclasses import dataclass

from .limits import LimitBook


@dataclass(frozen=True, slots=True)
class TenantUsage:
    """How much of its quotas a tenant uses."""

    sessions: int
    stored_bytes: int
    uploads: int


class Quotas:
    """Live sessions, stored bytes and uploads per tenant (skeleton)."""

    def __init__(self, book: LimitBook) -> None:
        self._book = book

    async def usage(self, tenant: str) -> TenantUsage:
        """The tenant's usage."""
        return TenantUsage(0, 0, 0)
