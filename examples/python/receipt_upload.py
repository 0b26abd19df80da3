"""A receipt the user sends as a file: kept for a week, shown back, deleted on request.

Run it against a server (``make dev`` prints a key)::

    export SESSION_MEMORY_ADDR=localhost:50051 SESSION_MEMORY_API_KEY=smk_...
    python examples/python/receipt_upload.py
"""

from __future__ import annotations

import hashlib
import os
import sys
import uuid
from dataclasses import dataclass

from sessionmemory import MemoryApiError, MemoryClient, Session

TTL = 7 * 86400  # seconds: receipts are kept for a week (the longest a file may be)
RECEIPT = (
    b"%PDF-1.4\n% Session Memory example receipt\n1 0 obj << >> endobj\n"
    b"trailer << /Root 1 0 R >>\n%%EOF\n"
)


@dataclass(frozen=True)
class Attachment:
    """A file the user sent, as a chat platform hands it to the bot."""

    name: str
    mime: str
    data: bytes

    def __str__(self) -> str:
        return f"[file {self.name}]"


def handle(memory: Session, message: str | Attachment) -> str:
    """Store a sent receipt, or answer ``show my receipt`` / ``delete my receipt``."""
    if isinstance(message, Attachment):
        info = memory.set_file("receipt", message.data, ttl=TTL, mime=message.mime)
        days = TTL // 86400
        return (
            f"Got your receipt: {info.mime_type}, {info.size_bytes} bytes. "
            f"I will keep it for {days} days."
        )
    if message == "delete my receipt":
        return "Deleted." if memory.delete("receipt") else "I have no receipt from you."
    receipt = memory.get_file("receipt")
    if receipt is None:
        return "I have no receipt from you."
    digest = hashlib.sha256(receipt.to_raw()).hexdigest()  # the bytes, read back
    return (
        f"Your receipt: {receipt.info.mime_type}, {receipt.info.size_bytes} bytes, "
        f"sha256 {digest[:12]}."
    )


def main() -> None:
    """Play one conversation through `handle` and print it."""
    session_id = os.environ.get("EXAMPLE_SESSION_ID") or f"example-{uuid.uuid4().hex}"
    messages: list[str | Attachment] = [
        "show my receipt",
        Attachment("receipt.pdf", "application/pdf", RECEIPT),
        "show my receipt",
        "delete my receipt",
        "show my receipt",
    ]
    with MemoryClient.from_env() as client:
        memory = client.session(session_id)
        for message in messages:
            print(f"user: {message}")
            print(f"bot: {handle(memory, message)}")


if __name__ == "__main__":
    try:
        main()
    except (MemoryApiError, ValueError) as exc:
        sys.exit(f"receipt_upload: {type(exc).__name__}: {exc}")
