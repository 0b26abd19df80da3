"""Per-tenant rate limits and quotas: their values (one home), defaults and overrides.

`TenantLimits` names its fields after the proto's `TenantLimits`. A rate or a
quota of 0 means unlimited.

Every tenant gets the defaults from the settings, except for the fields an
operator overrode (``session-memory tenants set-limits``). Overrides live in one
Redis hash, ``sm:tenantlimits``: tenant -> JSON object of the overridden fields
only, plus the field ``#version`` (no tenant name can start with '#'), bumped by
every change. Each server process keeps every override in memory and polls that
version about once a second, reloading the hash only when it changed, so reading
a tenant's limits (`LimitBook.limits_of`) never waits for Redis and a change
reaches every process within about a second.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from importlib import resources
from typing import Any, Final, cast

from redis.asyncio import Redis, RedisCluster

from .config import Settings
from .logs import EventCounter
from .polling import Poller
from .stores.autopipeline import LuaScript

log = logging.getLogger("sessionmemory_server.limits")


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
# The fields that hold whole numbers; the rates may be fractions (0.5 per second).
WHOLE_NUMBER_FIELDS: Final = frozenset(
    f.name for f in fields(TenantLimits) if f.type in (int, "int")
)
# A burst of 0 would refuse every call forever: at least 1 (like the settings).
AT_LEAST_ONE_FIELDS: Final = frozenset({"read_burst", "write_burst", "file_bytes_burst"})
# Overrides that lift every rate limit and quota (benchmarks measure the server).
UNLIMITED: Final = {name: 0 for name in FIELD_NAMES if name not in AT_LEAST_ONE_FIELDS}

OVERRIDES_KEY: Final = "sm:tenantlimits"
VERSION_FIELD: Final = "#version"
REFRESH_SECONDS: Final = 1.0

_SCRIPT: Final = (resources.files(__package__) / "stores" / "tenant_limits.lua").read_text()
_failures = EventCounter(log, "tenant limits not refreshed", interval_seconds=60.0)


def _check_tenant(tenant: str) -> None:
    # Imported here: auth may come to need this module (no import cycle).
    from .auth import check_tenant  # noqa: PLC0415

    check_tenant(tenant)


def _coerce(name: str, value: object) -> float | int:
    """A field's value as its type, or ValueError naming what is wrong."""
    if name not in FIELD_NAMES:
        raise ValueError(f"{name!r} is not a tenant limit; the limits are {', '.join(FIELD_NAMES)}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number; got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number; got {value!r}")
    if name in WHOLE_NUMBER_FIELDS:
        if value != int(value):
            raise ValueError(f"{name} must be a whole number; got {value!r}")
        value = int(value)
    else:
        value = float(value)
    least = 1 if name in AT_LEAST_ONE_FIELDS else 0
    if value < least:
        raise ValueError(f"{name} must be {least} or more; got {value!r}")
    return value


def decode_overrides(raw: bytes | str) -> dict[str, float | int]:
    """The overrides stored for one tenant (the JSON of ``sm:tenantlimits``)."""
    data = json.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("tenant limit overrides must be a JSON object")
    return {name: _coerce(name, value) for name, value in data.items()}


def apply_overrides(defaults: TenantLimits, values: Mapping[str, float | int]) -> TenantLimits:
    """``defaults`` with the fields in ``values`` replaced."""
    return dataclasses.replace(defaults, **cast(dict[str, Any], values)) if values else defaults


async def _run_script(
    client: Redis | RedisCluster, tenant: str, set_json: str, clear: Sequence[str]
) -> None:
    script = LuaScript(client, _SCRIPT)
    await script(keys=[OVERRIDES_KEY], args=[VERSION_FIELD, tenant, set_json, *clear])


async def set_overrides(
    client: Redis | RedisCluster, tenant: str, values: Mapping[str, float | int]
) -> None:
    """Override some of a tenant's limits (the others keep following the defaults).

    Raises:
        DomainError: INVALID_ARGUMENT for a malformed tenant name.
        ValueError: a name is not a limit, or a value is negative (a burst
            below 1, a fraction where a whole number belongs).
    """
    _check_tenant(tenant)
    checked = {name: _coerce(name, value) for name, value in values.items()}
    if checked:
        await _run_script(client, tenant, json.dumps(checked), ())


async def clear_overrides(
    client: Redis | RedisCluster, tenant: str, names: Sequence[str] | None = None
) -> None:
    """Drop some (``names``) or all (None) of a tenant's overrides: back to the defaults.

    Raises:
        DomainError: INVALID_ARGUMENT for a malformed tenant name.
        ValueError: a name is not a limit.
    """
    _check_tenant(tenant)
    if names is None:
        await _run_script(client, tenant, "{}", ("*",))
        return
    for name in names:
        if name not in FIELD_NAMES:
            raise ValueError(
                f"{name!r} is not a tenant limit; the limits are {', '.join(FIELD_NAMES)}"
            )
    if names:
        await _run_script(client, tenant, "{}", tuple(names))


async def overrides(client: Redis | RedisCluster, tenant: str) -> dict[str, float | int]:
    """The fields overridden for a tenant (empty: it follows the defaults).

    Raises:
        DomainError: INVALID_ARGUMENT for a malformed tenant name.
    """
    _check_tenant(tenant)
    raw = cast(bytes | None, await client.hget(OVERRIDES_KEY, tenant))
    return {} if raw is None else decode_overrides(raw)


async def all_overrides(client: Redis | RedisCluster) -> dict[str, dict[str, float | int]]:
    """Every tenant's overrides, by tenant."""
    raw = cast(dict[bytes, bytes], await client.hgetall(OVERRIDES_KEY))
    return _decode_all(raw)


def _decode_all(raw: Mapping[bytes, bytes]) -> dict[str, dict[str, float | int]]:
    out: dict[str, dict[str, float | int]] = {}
    for name, value in raw.items():
        tenant = name.decode()
        if tenant == VERSION_FIELD:
            continue
        try:
            out[tenant] = decode_overrides(value)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            # Written by hand past the CLI: that tenant keeps the defaults.
            _failures.count(f"bad overrides of {tenant[:64]!r}: {exc}")
    return out


class LimitBook:
    """Every tenant's limits: the defaults, or the operator's overrides.

    `limits_of` answers from memory; a background task (`start`) keeps the
    overrides in step with Redis. Without a Redis client the book holds only
    the defaults.
    """

    def __init__(
        self,
        defaults: TenantLimits,
        client: Redis | RedisCluster | None = None,
        *,
        refresh_seconds: float = REFRESH_SECONDS,
    ) -> None:
        self._defaults = defaults
        self._redis = client
        self._limits: dict[str, TenantLimits] = {}
        self._version: bytes | None = None
        self._loaded = False
        self._poller = Poller(self.refresh, refresh_seconds, _failures)

    @property
    def defaults(self) -> TenantLimits:
        """The limits of every tenant without overrides."""
        return self._defaults

    def limits_of(self, tenant: str) -> TenantLimits:
        """The tenant's limits, from memory."""
        return self._limits.get(tenant, self._defaults)

    async def get(self, tenant: str) -> TenantLimits:
        """The tenant's limits (never waits for Redis)."""
        return self._limits.get(tenant, self._defaults)

    async def refresh(self) -> bool:
        """Reload the overrides if their version changed; True when it did.

        Raises:
            redis.exceptions.RedisError: Redis did not answer.
        """
        if self._redis is None:
            return False
        version = cast(bytes | None, await self._redis.hget(OVERRIDES_KEY, VERSION_FIELD))
        if self._loaded and version == self._version:
            return False
        raw = cast(dict[bytes, bytes], await self._redis.hgetall(OVERRIDES_KEY))
        self._limits = {
            tenant: apply_overrides(self._defaults, values)
            for tenant, values in _decode_all(raw).items()
        }
        self._version = raw.get(VERSION_FIELD.encode())
        self._loaded = True
        return True

    async def start(self) -> None:
        """Load the overrides, then keep them fresh in the background.

        A Redis that does not answer at start is logged; every tenant has the
        defaults until the background refresh reaches it.
        """
        if self._redis is not None:
            await self._poller.start()

    async def close(self) -> None:
        """Stop the background refresh."""
        await self._poller.close()
