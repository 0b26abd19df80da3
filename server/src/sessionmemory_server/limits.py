"""Per-tenant rate limits and quotas: their values (one home), defaults and overrides.

`TenantLimits` names its fields after the proto's `TenantLimits`. A rate or a
quota of 0 means unlimited.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from .config import Settings


@dataclass(frozen=True, slots=True)
class TenantLimits:
    """One tenant's rate limits (per second, with a burst) and quotas; 0 = unlimited."""

    reads_per_second: float
    read_burst: int
    writes_per_second: float
    write_burst: int
    file_bytes_per_second: float
    file_bytes_burst: int
    max_sessions: int
    max_stored_bytes: int
    max_uploads: int

    @classmethod
    def from_settings(cls, settings: Settings) -> TenantLimits:
        """The defaults every tenant without overrides gets."""
        return cls(
            reads_per_second=settings.tenant_reads_per_second,
            read_burst=settings.tenant_read_burst,
            writes_per_second=settings.tenant_writes_per_second,
            write_burst=settings.tenant_write_burst,
            file_bytes_per_second=settings.tenant_file_bytes_per_second,
            file_bytes_burst=settings.tenant_file_bytes_burst,
            max_sessions=settings.tenant_max_sessions,
            max_stored_bytes=settings.tenant_max_stored_bytes,
            max_uploads=settings.max_tenant_uploads,
        )


FIELD_NAMES = tuple(f.name for f in fields(TenantLimits))


class LimitBook:
    """Every tenant's limits: the defaults, or the operator's overrides (skeleton)."""

    def __init__(self, defaults: TenantLimits) -> None:
        self._defaults = defaults

    async def get(self, tenant: str) -> TenantLimits:
        """The tenant's limits."""
        return self._defaults
