/**
 * An order-taking agent over structured memory, with a shop that updates it from outside.
 *
 * The agent keeps the last order in the session's document (`lastOrder: {id, item,
 * status}`) with merge patches; the shop, another program with its own client,
 * patches `lastOrder.status` when the order ships or arrives; the agent reads it back
 * by path. Run it against a server (`make dev` prints a key):
 *
 *     export SESSION_MEMORY_ADDR=localhost:50051 SESSION_MEMORY_API_KEY=smk_...
 *     node dist/agent.js
 */
import { randomUUID } from "node:crypto";
import { MemoryApiError, MemoryClient, type MemorySession } from "@session-memory/client";

const TTL = 86400; // seconds: what an update writes is kept for a day
const WANT = "I would like a ";
const OPEN = ["placed", "shipped"]; // an order on its way: no new one until it is delivered

/** The session's document, as this agent writes it. */
interface AgentMemory {
  lastOrder: { id: string; item: string; status: "placed" | "shipped" | "delivered" };
  orderSeq: number;
}

/** Answer one message: `I would like a <item>` or `where is my order?`. */
async function handle(memory: MemorySession, message: string): Promise<string> {
  const last = await memory.getMany(["lastOrder.id", "lastOrder.item", "lastOrder.status"]);
  const [id, item, status] = [last["lastOrder.id"], last["lastOrder.item"], last["lastOrder.status"]];
  if (message.startsWith(WANT)) {
    if (typeof status === "string" && OPEN.includes(status)) {
      return `You have an order on its way (${String(id)}). I will take a new one once it is delivered.`;
    }
    const wanted = message.slice(WANT.length).trim();
    const number = await memory.increment("orderSeq", 1, TTL); // atomic: ids never repeat
    const orderId = `A-${1000 + number}`;
    await memory.update<AgentMemory>({ lastOrder: { id: orderId, item: wanted, status: "placed" } }, TTL);
    return `Order ${orderId} for a ${wanted} is placed.`;
  }
  if (message === "where is my order?") {
    if (id === undefined) return "You have no order yet.";
    return `Order ${String(id)} (${String(item)}) is ${String(status)}.`;
  }
  return "Tell me what you would like, or ask where your order is.";
}

/** The shop's side: a webhook that moves the order on (only the status field). */
async function shopUpdate(shop: MemoryClient, sessionId: string, orderId: string, status: "shipped" | "delivered"): Promise<string> {
  await shop.updateMemory<AgentMemory>(sessionId, { lastOrder: { status } }, TTL);
  return `order ${orderId} ${status}`;
}

/** Play one conversation through `handle`, with the shop's updates, and print it. */
async function main(): Promise<void> {
  const sessionId = process.env.EXAMPLE_SESSION_ID || `example-${randomUUID()}`;
  const memory = MemoryClient.fromEnv().session(sessionId);
  const shop = MemoryClient.fromEnv(); // another program, with its own connection
  const user = async (message: string) => {
    console.log(`user: ${message}`);
    console.log(`bot: ${await handle(memory, message)}`);
  };
  await user("I would like a teapot");
  console.log(`shop: ${await shopUpdate(shop, sessionId, "A-1001", "shipped")}`);
  await user("where is my order?");
  await user("I would like a kettle");
  console.log(`shop: ${await shopUpdate(shop, sessionId, "A-1001", "delivered")}`);
  await user("I would like a kettle");
  await user("where is my order?");
}

main().catch((err: unknown) => {
  // One line: the error's class, its message and, for the server's errors, the reason.
  const reason = err instanceof MemoryApiError && err.code ? ` [${err.code}]` : "";
  console.error(`agent: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}${reason}`);
  process.exitCode = 1;
});
