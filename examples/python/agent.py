"""An order-taking agent over structured memory, with a shop that updates it from outside.

The agent keeps the last order in the session's document (``lastOrder: {id, item,
status}``) with merge patches; the shop, another program with its own client, patches
``lastOrder.status`` when the order ships or arrives; the agent reads it back by path.
Run it against a server (``make dev`` prints a key)::

    export SESSION_MEMORY_ADDR=localhost:50051 SESSION_MEMORY_API_KEY=smk_...
    python examples/python/agent.py
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid

from sessionmemory import AsyncMemoryClient, AsyncSession, MemoryApiError

TTL = 86400  # seconds: what an update writes is kept for a day
WANT = "I would like a "
OPEN = ("placed", "shipped")  # an order on its way: no new one until it is delivered


async def handle(memory: AsyncSession, message: str) -> str:
    """Answer one message: ``I would like a <item>`` or ``where is my order?``."""
    last = await memory.get_many(["lastOrder.id", "lastOrder.item", "lastOrder.status"])
    if message.startswith(WANT):
        if last.get("lastOrder.status") in OPEN:
            return (
                f"You have an order on its way ({last['lastOrder.id']}). "
                "I will take a new one once it is delivered."
            )
        item = message.removeprefix(WANT).strip()
        number = await memory.increment("orderSeq", 1, ttl=TTL)  # atomic: ids never repeat
        order_id = f"A-{1000 + int(number)}"
        await memory.update(
            {"lastOrder": {"id": order_id, "item": item, "status": "placed"}}, ttl=TTL
        )
        return f"Order {order_id} for a {item} is placed."
    if message == "where is my order?":
        if "lastOrder.id" not in last:
            return "You have no order yet."
        return (
            f"Order {last['lastOrder.id']} ({last['lastOrder.item']}) "
            f"is {last['lastOrder.status']}."
        )
    return "Tell me what you would like, or ask where your order is."


async def shop_update(shop: AsyncMemoryClient, session_id: str, order_id: str, status: str) -> str:
    """The shop's side: a webhook that moves the order on (only the status field)."""
    await shop.update_memory(session_id, {"lastOrder": {"status": status}}, ttl=TTL)
    return f"order {order_id} {status}"


async def main() -> None:
    """Play one conversation through `handle`, with the shop's updates, and print it."""
    session_id = os.environ.get("EXAMPLE_SESSION_ID") or f"example-{uuid.uuid4().hex}"
    async with AsyncMemoryClient.from_env() as agent, AsyncMemoryClient.from_env() as shop:
        memory = agent.session(session_id)

        async def user(message: str) -> None:
            print(f"user: {message}")
            print(f"bot: {await handle(memory, message)}")

        await user("I would like a teapot")
        print(f"shop: {await shop_update(shop, session_id, 'A-1001', 'shipped')}")
        await user("where is my order?")
        await user("I would like a kettle")
        print(f"shop: {await shop_update(shop, session_id, 'A-1001', 'delivered')}")
        await user("I would like a kettle")
        await user("where is my order?")


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except (MemoryApiError, ValueError) as exc:
        sys.exit(f"agent: {type(exc).__name__}: {exc}")
