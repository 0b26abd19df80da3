"""A PIN check that locks after three wrong tries, for 30 minutes.

The wrong tries are an atomic counter with a TTL: two instances of the bot handling
messages at once still count every try, and the lock lifts when the counter expires.
Run it against a server (``make dev`` prints a key)::

    export SESSION_MEMORY_ADDR=localhost:50051 SESSION_MEMORY_API_KEY=smk_...
    python examples/python/pin_attempts.py
"""

from __future__ import annotations

import os
import sys
import uuid

from sessionmemory import MemoryApiError, MemoryClient, Session

PIN = "4321"
MAX_ATTEMPTS = 3
LOCK_SECONDS = 1800  # the counter's TTL: how long a lock lasts


def _locked() -> str:
    return f"Too many wrong PINs. Try again in {LOCK_SECONDS // 60} minutes."


def handle(memory: Session, message: str) -> str:
    """Check one PIN entry."""
    if memory.get("pin_attempts", 0) >= MAX_ATTEMPTS:  # locked, whatever the PIN
        return _locked()
    if message == PIN:
        memory.delete("pin_attempts")
        return "PIN accepted."
    attempts = memory.increment("pin_attempts", 1, ttl=LOCK_SECONDS)
    left = MAX_ATTEMPTS - int(attempts)
    if left <= 0:
        return _locked()
    return f"Wrong PIN. {left} attempt{'s' if left != 1 else ''} left."


def main() -> None:
    """Play one conversation through `handle` and print it."""
    session_id = os.environ.get("EXAMPLE_SESSION_ID") or f"example-{uuid.uuid4().hex}"
    with MemoryClient.from_env() as client:
        memory = client.session(session_id)
        for message in ["1111", "4321", "0000", "1111", "2222", "4321"]:
            print(f"user: {message}")
            print(f"bot: {handle(memory, message)}")


if __name__ == "__main__":
    try:
        main()
    except (MemoryApiError, ValueError) as exc:
        sys.exit(f"pin_attempts: {type(exc).__name__}: {exc}")
