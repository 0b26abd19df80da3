"""What the sync and async clients share besides conversion: settings and checks."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import grpc

from .errors import MemoryUnavailableError

DEFAULT_ADDRESS = "localhost:50051"
DEFAULT_TIMEOUT = 5.0
DEFAULT_MAX_ATTEMPTS = 3
DEFAULT_UPLOAD_TIMEOUT = 300.0

ChannelOptions = Sequence[tuple[str, Any]]


def env_settings() -> tuple[str, str | None]:
    """Address and API key from SESSION_MEMORY_ADDR / SESSION_MEMORY_API_KEY."""
    return (
        os.environ.get("SESSION_MEMORY_ADDR") or DEFAULT_ADDRESS,
        os.environ.get("SESSION_MEMORY_API_KEY") or None,
    )


def auth_metadata(api_key: str | None) -> tuple[tuple[str, str], ...] | None:
    """The call metadata carrying the API key, or None without a key."""
    return (("authorization", f"Bearer {api_key}"),) if api_key else None


def check_available(session_id: str | None, metadata: object) -> None:
    """Raise `MemoryUnavailableError` when a call cannot be made at all.

    ``session_id`` is None for calls outside a session (GetLimits).
    """
    if metadata is None:
        raise MemoryUnavailableError(
            "no API key: pass api_key= or set SESSION_MEMORY_API_KEY",
            status=grpc.StatusCode.UNAUTHENTICATED,
            code="API_KEY_MISSING",
        )
    if session_id == "":
        raise MemoryUnavailableError(
            "no session id: memory is only available inside a conversation",
            status=grpc.StatusCode.INVALID_ARGUMENT,
            code="INVALID_SESSION_ID",
        )
