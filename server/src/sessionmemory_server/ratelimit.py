"""Per-tenant rate limits (skeleton)."""

from __future__ import annotations

from .access import Bucket
from .limits import LimitBook


class RateLimiter:
    """Counts calls and bytes against the tenant's rates (skeleton: admits all)."""

    def __init__(self, book: LimitBook) -> None:
        self._book = book

    async def acquire(self, tenant: str, bucket: Bucket, cost: int = 1) -> None:
        """Take ``cost`` from the tenant's bucket or raise RATE_LIMITED."""

    def start(self) -> None:
        """Start background work."""

    async def close(self) -> None:
        """Stop background work."""
