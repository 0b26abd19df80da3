"""A tenant's named JSON Schemas: checked when registered, compiled once per version.

The schema text lives in Redis (see `RedisStore.put_schema`); compiled validators
are cached per (tenant, name, version), so a bound session's write costs one small
read of the schema's version, and a new version is picked up by every server on
its next write.
"""

from __future__ import annotations

import asyncio
import json

import grpc

from . import core
from .errors import DomainError, store_full
from .schemas import CompiledSchema, ValidatorCache, check_schema
from .stores.redis_store import RedisStore, StoreFull, TooManySchemas
from .values import SchemaRecord


def schema_name(value: str, field: str = "name") -> str:
    """Check a schema name: it follows the key pattern."""
    return core.key(value, field)


def schema_not_found(name: str) -> DomainError:
    """The NOT_FOUND error of an unknown schema name."""
    return DomainError(
        grpc.StatusCode.NOT_FOUND,
        "SCHEMA_NOT_FOUND",
        f"no schema named {name!r} is registered; register it with PutSchema first",
        metadata={"schema": name},
    )


class SchemaRegistry:
    """Registers, reads and compiles a tenant's schemas."""

    def __init__(self, store: RedisStore, cache: ValidatorCache | None = None) -> None:
        self._store = store
        self._cache = cache or ValidatorCache()

    async def put(self, tenant: str, name: str, text: str) -> SchemaRecord:
        """Check and register (or replace) a schema; returns it with its new version."""
        name = schema_name(name)
        # The meta-schema check takes milliseconds: off the event loop.
        _, compact = await asyncio.to_thread(check_schema, text, "json_schema")
        try:
            return await self._store.put_schema(tenant, name, compact)
        except TooManySchemas:
            limit = core.LIMITS.max_schemas_per_tenant
            raise DomainError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "TOO_MANY_SCHEMAS",
                f"the tenant already has the maximum of {limit} schemas; delete one first",
                metadata={"limit": limit},
            ) from None
        except StoreFull:
            raise store_full() from None

    async def get(self, tenant: str, name: str) -> SchemaRecord:
        """A registered schema with its text.

        Raises:
            DomainError: NOT_FOUND (SCHEMA_NOT_FOUND) for an unknown name.
        """
        record = await self._store.get_schema(tenant, schema_name(name))
        if record is None:
            raise schema_not_found(name)
        return record

    async def list(self, tenant: str) -> list[SchemaRecord]:
        """Every schema of the tenant, sorted by name."""
        return await self._store.list_schemas(tenant)

    async def delete(self, tenant: str, name: str) -> bool:
        """Remove a schema; True when it existed."""
        return await self._store.delete_schema(tenant, schema_name(name))

    async def compiled(self, tenant: str, name: str) -> CompiledSchema | None:
        """The compiled current version of a schema; None when it is not registered."""
        version = await self._store.schema_version(tenant, name)
        if version is None:
            return None
        cached = self._cache.peek((tenant, name, version))
        if cached is not None:
            return cached
        record = await self._store.get_schema(tenant, name)
        if record is None:
            return None
        # Stored text passed check_schema when it was put.
        compiled = CompiledSchema(json.loads(record.text), name)
        self._cache.put((tenant, name, record.version), compiled)
        return compiled
