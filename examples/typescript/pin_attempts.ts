/**
 * A PIN check that locks after three wrong tries, for 30 minutes.
 *
 * The wrong tries are an atomic counter with a TTL: two instances of the bot handling
 * messages at once still count every try, and the lock lifts when the counter
 * expires. Run it against a server (`make dev` prints a key):
 *
 *     export SESSION_MEMORY_ADDR=localhost:50051 SESSION_MEMORY_API_KEY=smk_...
 *     node dist/pin_attempts.js
 */
import { randomUUID } from "node:crypto";
import { MemoryApiError, MemoryClient, type MemorySession } from "@session-memory/client";

const PIN = "4321";
const MAX_ATTEMPTS = 3;
const LOCK_SECONDS = 1800; // the counter's TTL: how long a lock lasts

const locked = () => `Too many wrong PINs. Try again in ${LOCK_SECONDS / 60} minutes.`;

/** Check one PIN entry. */
async function handle(memory: MemorySession, message: string): Promise<string> {
  if ((await memory.get("pin_attempts", 0)) >= MAX_ATTEMPTS) return locked(); // locked, whatever the PIN
  if (message === PIN) {
    await memory.delete("pin_attempts");
    return "PIN accepted.";
  }
  const attempts = await memory.increment("pin_attempts", 1, LOCK_SECONDS); // counted once, even on retries
  const left = MAX_ATTEMPTS - attempts;
  if (left <= 0) return locked();
  return `Wrong PIN. ${left} attempt${left === 1 ? "" : "s"} left.`;
}

/** Play one conversation through `handle` and print it. */
async function main(): Promise<void> {
  const sessionId = process.env.EXAMPLE_SESSION_ID || `example-${randomUUID()}`;
  const memory = MemoryClient.fromEnv().session(sessionId);
  for (const message of ["1111", "4321", "0000", "1111", "2222", "4321"]) {
    console.log(`user: ${message}`);
    console.log(`bot: ${await handle(memory, message)}`);
  }
}

main().catch((err: unknown) => {
  // One line: the error's class, its message and, for the server's errors, the reason.
  const reason = err instanceof MemoryApiError && err.code ? ` [${err.code}]` : "";
  console.error(`pin_attempts: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}${reason}`);
  process.exitCode = 1;
});
