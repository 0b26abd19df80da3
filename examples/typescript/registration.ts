/**
 * A registration form over three turns: name, then email, then done.
 *
 * The step the user is on lives in the session (key `step`), so any instance of the
 * bot can take the next message. Run it against a server (`make dev` prints a key):
 *
 *     export SESSION_MEMORY_ADDR=localhost:50051 SESSION_MEMORY_API_KEY=smk_...
 *     node dist/registration.js
 */
import { randomUUID } from "node:crypto";
import { MemoryApiError, MemoryClient, type MemorySession } from "@session-memory/client";

const TTL = 3600; // seconds: an abandoned form is forgotten after an hour

/** Answer one message of the registration conversation. */
async function handle(memory: MemorySession, message: string): Promise<string> {
  const step = await memory.get("step", "start"); // a string, typed by the default
  if (step === "name") {
    await memory.setMany({ name: message, step: "email" }, TTL); // both or neither
    return `Nice to meet you, ${message}. What is your email?`;
  }
  if (step === "email") {
    await memory.set("email", message, TTL);
    const form = await memory.getMany(["name", "email"]);
    await memory.delete(["step", "name", "email"]); // registered: the form is done
    return `Thanks, ${String(form.name)}. We will write to ${String(form.email)}.`;
  }
  await memory.set("step", "name", TTL);
  return "Welcome! What is your name?";
}

/** Play one conversation through `handle` and print it. */
async function main(): Promise<void> {
  const sessionId = process.env.EXAMPLE_SESSION_ID || `example-${randomUUID()}`;
  const memory = MemoryClient.fromEnv().session(sessionId);
  for (const message of ["hi", "Ada", "ada@example.com", "hi"]) {
    console.log(`user: ${message}`);
    console.log(`bot: ${await handle(memory, message)}`);
  }
}

main().catch((err: unknown) => {
  // One line: the error's class, its message and, for the server's errors, the reason.
  const reason = err instanceof MemoryApiError && err.code ? ` [${err.code}]` : "";
  console.error(`registration: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}${reason}`);
  process.exitCode = 1;
});
