// Type expectations, checked by `tsc` (npm test compiles before it runs): a wrong
// type here fails the build. The function is never called; the test only keeps
// node --test from reporting an empty file.
import { test } from "node:test";
import type { MemorySession } from "../src/index.js";

interface Cart {
  items: string[];
  total: number;
}

export async function expectations(memory: MemorySession): Promise<void> {
  // getJson: with a fallback the result is T; without one, T | null (a miss is null).
  const withFallback: Cart = await memory.getJson<Cart>("cart", { items: [], total: 0 });
  const inferred: Cart = await memory.getJson("cart", { items: [] as string[], total: 0 });
  const maybe: Cart | null = await memory.getJson<Cart>("cart");
  // @ts-expect-error without a fallback the result may be null
  const notNull: Cart = await memory.getJson<Cart>("cart");
  const unknownByDefault: unknown = await memory.getJson("cart");
  // get: typed by its fallback.
  const step: string = await memory.get("step", "start");
  const attempts: number = await memory.get("pin_attempts", 0);
  const verified: boolean = await memory.get("verified", false);
  // @ts-expect-error a number fallback gives a number, not a string
  const wrong: string = await memory.get("pin_attempts", 0);
  void [withFallback, inferred, maybe, notNull, unknownByDefault, step, attempts, verified, wrong];
}

test("type expectations compile", () => {});
