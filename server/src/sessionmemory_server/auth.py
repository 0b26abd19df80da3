"""API keys: created once, stored only as SHA-256 hashes, checked in constant time.

A key looks like ``smk_<id>_<secret>``. The id is public (it names the key in
``keys list`` and ``keys revoke``); the secret never leaves the ``keys create``
output. Redis holds one hash, ``sm:apikeys``: id -> JSON {tenant, sha256, created}.
Verified keys are cached in-process for a few seconds so the hot path stays one
Redis round trip; a revoked key stops working within that window.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, cast

from redis.asyncio import Redis, RedisCluster

from .access import Principal
from .errors import DomainError, invalid, unauthenticated
from .stores.redis_store import retry_stale

KEYS_HASH: Final = "sm:apikeys"
_PREFIX: Final = "smk_"
_TENANT_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_CACHE_MAX: Final = 10_000


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """What is stored about a key (never the key itself)."""

    key_id: str
    tenant: str
    created_at: float


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def check_tenant(tenant: str) -> str:
    """Check a tenant name: 1 to 64 of letters, digits, '_', '.', '-'."""
    if _TENANT_RE.fullmatch(tenant) is None:
        raise invalid(
            "INVALID_KEY",
            f"tenant {tenant[:64]!r} must be 1 to 64 letters, digits, '_', '.' or '-'",
            "tenant",
        )
    return tenant


class ApiKeys:
    """Create, list, revoke and verify API keys."""

    def __init__(self, client: Redis | RedisCluster, *, cache_seconds: float = 5.0) -> None:
        self._redis = client
        self._cache_seconds = cache_seconds
        # key id -> (tenant or None for unknown, sha256 of secret, cached until)
        self._cache: dict[str, tuple[str | None, bytes, float]] = {}

    async def create(self, tenant: str) -> str:
        """Create a key for a tenant and return it; it is never shown again."""
        check_tenant(tenant)
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        record = {"tenant": tenant, "sha256": _digest(secret).hex(), "created": time.time()}
        await self._redis.hset(KEYS_HASH, key_id, json.dumps(record))
        return f"{_PREFIX}{key_id}_{secret}"

    async def list(self) -> list[ApiKeyInfo]:
        """Every key's id, tenant and creation time."""
        raw = cast(dict[bytes, bytes], await self._redis.hgetall(KEYS_HASH))
        infos = []
        for key_id, value in raw.items():
            record = json.loads(value)
            infos.append(ApiKeyInfo(key_id.decode(), record["tenant"], record["created"]))
        return sorted(infos, key=lambda i: (i.tenant, i.created_at))

    async def revoke(self, key_ids: Sequence[str]) -> int:
        """Revoke keys by id; returns how many existed."""
        if not key_ids:
            return 0
        return int(await self._redis.hdel(KEYS_HASH, *key_ids))

    async def is_valid(self, api_key: str) -> bool:
        """True when the key is known and not revoked."""
        try:
            await self.tenant_of(api_key)
        except DomainError:
            return False
        return True

    async def tenant_of(self, api_key: str) -> str:
        """The tenant a key belongs to.

        Raises:
            DomainError: UNAUTHENTICATED (API_KEY_INVALID) for a malformed,
                unknown or revoked key.
        """
        parts = api_key.split("_", 2)
        if len(parts) != 3 or parts[0] != "smk":
            raise unauthenticated(
                "API_KEY_INVALID", "the API key is malformed; keys look like smk_<id>_<secret>"
            )
        key_id, secret = parts[1], parts[2]
        now = time.monotonic()
        hit = self._cache.get(key_id)
        if hit is None or hit[2] < now:
            hit = await self._load(key_id, now)
        tenant, expected, _ = hit
        # Always compare, also for unknown ids, so timing says nothing.
        if not hmac.compare_digest(_digest(secret), expected) or tenant is None:
            raise unauthenticated("API_KEY_INVALID", "the API key is unknown or was revoked")
        return tenant

    async def _load(self, key_id: str, now: float) -> tuple[str | None, bytes, float]:
        raw = cast(
            bytes | None,
            await retry_stale(self._redis, lambda: self._redis.hget(KEYS_HASH, key_id)),
        )
        if raw is None:
            entry: tuple[str | None, bytes, float] = (None, b"\0" * 32, now + self._cache_seconds)
        else:
            record = json.loads(raw)
            entry = (record["tenant"], bytes.fromhex(record["sha256"]), now + self._cache_seconds)
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[key_id] = entry
        return entry


class Authenticator:
    """Turns a call's ``authorization`` metadata into a Principal (skeleton: API keys only)."""

    def __init__(self, api_keys: ApiKeys) -> None:
        self._keys = api_keys

    async def authenticate(self, authorization: str | None, peer: str) -> Principal:
        """The caller, or UNAUTHENTICATED."""
        if authorization is not None:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                tenant = await self._keys.tenant_of(token.strip())
                return Principal(tenant=tenant, key_id=token.strip().split("_")[1])
        raise unauthenticated(
            "API_KEY_MISSING", "missing API key: send the metadata 'authorization: Bearer <key>'"
        )

    def start(self) -> None:
        """Start background refreshes."""

    async def close(self) -> None:
        """Stop background refreshes."""
