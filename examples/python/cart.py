"""A shopping cart kept as one JSON value: add items, show them, check out.

Run it against a server (``make dev`` prints a key)::

    export SESSION_MEMORY_ADDR=localhost:50051 SESSION_MEMORY_API_KEY=smk_...
    python examples/python/cart.py
"""

from __future__ import annotations

import os
import sys
import uuid
from decimal import Decimal
from typing import Any

from sessionmemory import MemoryApiError, MemoryClient, Session

TTL = 86400  # seconds: a cart is kept for a day


def _money(amount: float) -> str:
    return f"{Decimal(str(amount)):.2f}"


def handle(memory: Session, message: str) -> str:
    """Answer one message: ``add <sku> <qty> <price>``, ``show`` or ``checkout``."""
    # A fresh default every time: get_json returns the default object itself on a miss.
    cart: dict[str, Any] = memory.get_json("cart", {"items": [], "total": 0})
    words = message.split()
    if len(words) == 4 and words[0] == "add":
        sku, qty, price = words[1], int(words[2]), Decimal(words[3])
        cart["items"].append({"sku": sku, "qty": qty, "price": float(price)})
        total = Decimal(str(cart["total"])) + qty * price  # exact: no 0.1 + 0.2 surprises
        cart["total"] = float(total)
        memory.set_json("cart", cart, ttl=TTL)
        return f"Added {qty} x {sku}. Total: {_money(cart['total'])}"
    if not cart["items"]:
        return "Your cart is empty."
    if message == "show":
        lines = ", ".join(f"{item['qty']} x {item['sku']}" for item in cart["items"])
        return f"{lines}. Total: {_money(cart['total'])}"
    if message == "checkout":
        count = sum(item["qty"] for item in cart["items"])
        memory.delete("cart")
        return f"Order placed: {count} items, {_money(cart['total'])}. Your cart is empty."
    return "Say add <sku> <qty> <price>, show or checkout."


def main() -> None:
    """Play one conversation through `handle` and print it."""
    session_id = os.environ.get("EXAMPLE_SESSION_ID") or f"example-{uuid.uuid4().hex}"
    messages = ["show", "add tea 2 3.50", "add cake 1 4.25", "show", "checkout", "show"]
    with MemoryClient.from_env() as client:
        memory = client.session(session_id)
        for message in messages:
            print(f"user: {message}")
            print(f"bot: {handle(memory, message)}")


if __name__ == "__main__":
    try:
        main()
    except (MemoryApiError, ValueError) as exc:
        sys.exit(f"cart: {type(exc).__name__}: {exc}")
