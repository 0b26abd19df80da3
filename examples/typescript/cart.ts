/**
 * A shopping cart kept as one JSON value: add items, show them, check out.
 *
 * Run it against a server (`make dev` prints a key):
 *
 *     export SESSION_MEMORY_ADDR=localhost:50051 SESSION_MEMORY_API_KEY=smk_...
 *     node dist/cart.js
 */
import { randomUUID } from "node:crypto";
import { MemoryApiError, MemoryClient, type MemorySession } from "@session-memory/client";

const TTL = 86400; // seconds: a cart is kept for a day

interface Cart {
  items: { sku: string; qty: number; price: number }[];
  total: number;
}

/** Cents, so that sums are exact (no 0.1 + 0.2 surprises). */
const cents = (amount: number) => Math.round(amount * 100);
const money = (amount: number) => (cents(amount) / 100).toFixed(2);

/** Answer one message: `add <sku> <qty> <price>`, `show` or `checkout`. */
async function handle(memory: MemorySession, message: string): Promise<string> {
  // Typed Cart thanks to the fallback (a fresh object each time); without one, Cart | null.
  const cart = await memory.getJson<Cart>("cart", { items: [], total: 0 });
  const words = message.split(/\s+/);
  if (words.length === 4 && words[0] === "add") {
    const [, sku = "", qtyText = "", priceText = ""] = words;
    const qty = Number.parseInt(qtyText, 10);
    const price = Number(priceText);
    cart.items.push({ sku, qty, price });
    cart.total = (cents(cart.total) + qty * cents(price)) / 100;
    await memory.setJson("cart", cart, TTL); // JSON needs a TTL
    return `Added ${qty} x ${sku}. Total: ${money(cart.total)}`;
  }
  if (cart.items.length === 0) return "Your cart is empty.";
  if (message === "show") {
    const lines = cart.items.map((item) => `${item.qty} x ${item.sku}`).join(", ");
    return `${lines}. Total: ${money(cart.total)}`;
  }
  if (message === "checkout") {
    const count = cart.items.reduce((sum, item) => sum + item.qty, 0);
    await memory.delete("cart");
    return `Order placed: ${count} items, ${money(cart.total)}. Your cart is empty.`;
  }
  return "Say add <sku> <qty> <price>, show or checkout.";
}

/** Play one conversation through `handle` and print it. */
async function main(): Promise<void> {
  const sessionId = process.env.EXAMPLE_SESSION_ID || `example-${randomUUID()}`;
  const memory = MemoryClient.fromEnv().session(sessionId);
  for (const message of ["show", "add tea 2 3.50", "add cake 1 4.25", "show", "checkout", "show"]) {
    console.log(`user: ${message}`);
    console.log(`bot: ${await handle(memory, message)}`);
  }
}

main().catch((err: unknown) => {
  // One line: the error's class, its message and, for the server's errors, the reason.
  const reason = err instanceof MemoryApiError && err.code ? ` [${err.code}]` : "";
  console.error(`cart: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}${reason}`);
  process.exitCode = 1;
});
