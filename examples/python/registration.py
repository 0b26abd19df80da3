"""A registration form over three turns: name, then email, then done.

The step the user is on lives in the session (key ``step``), so any instance of the bot
can take the next message. Run it against a server (``make dev`` prints a key)::

    export SESSION_MEMORY_ADDR=localhost:50051 SESSION_MEMORY_API_KEY=smk_...
    python examples/python/registration.py
"""

from __future__ import annotations

import os
import sys
import uuid

from sessionmemory import MemoryApiError, MemoryClient, Session

TTL = 3600  # seconds: an abandoned form is forgotten after an hour


def handle(memory: Session, message: str) -> str:
    """Answer one message of the registration conversation."""
    step = memory.get("step", "start")
    if step == "name":
        memory.set_many({"name": message, "step": "email"}, ttl=TTL)  # both or neither
        return f"Nice to meet you, {message}. What is your email?"
    if step == "email":
        memory.set("email", message, ttl=TTL)
        form = memory.get_many(["name", "email"])
        memory.delete(["step", "name", "email"])  # registered: the form is done
        return f"Thanks, {form['name']}. We will write to {form['email']}."
    memory.set("step", "name", ttl=TTL)
    return "Welcome! What is your name?"


def main() -> None:
    """Play one conversation through `handle` and print it."""
    session_id = os.environ.get("EXAMPLE_SESSION_ID") or f"example-{uuid.uuid4().hex}"
    with MemoryClient.from_env() as client:
        memory = client.session(session_id)
        for message in ["hi", "Ada", "ada@example.com", "hi"]:
            print(f"user: {message}")
            print(f"bot: {handle(memory, message)}")


if __name__ == "__main__":
    try:
        main()
    except (MemoryApiError, ValueError) as exc:
        sys.exit(f"registration: {type(exc).__name__}: {exc}")
