/**
 * A receipt the user sends as a file: kept for a week, shown back, deleted on request.
 *
 * Run it against a server (`make dev` prints a key):
 *
 *     export SESSION_MEMORY_ADDR=localhost:50051 SESSION_MEMORY_API_KEY=smk_...
 *     node dist/receipt_upload.js
 */
import { createHash, randomUUID } from "node:crypto";
import { MemoryApiError, MemoryClient, type MemorySession } from "@session-memory/client";

const TTL = 7 * 86400; // seconds: receipts are kept for a week (the longest a file may be)
const RECEIPT = Buffer.from(
  "%PDF-1.4\n% Session Memory example receipt\n1 0 obj << >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n",
);

/** A file the user sent, as a chat platform hands it to the bot. */
interface Attachment {
  name: string;
  mime: string;
  data: Uint8Array;
}

/** Store a sent receipt, or answer `show my receipt` / `delete my receipt`. */
async function handle(memory: MemorySession, message: string | Attachment): Promise<string> {
  if (typeof message !== "string") {
    const info = await memory.setFile("receipt", message.data, TTL, message.mime);
    return `Got your receipt: ${info.mimeType}, ${info.sizeBytes} bytes. I will keep it for ${TTL / 86400} days.`;
  }
  if (message === "delete my receipt") {
    return (await memory.delete("receipt")) ? "Deleted." : "I have no receipt from you.";
  }
  const receipt = await memory.getFile("receipt");
  if (receipt === undefined) return "I have no receipt from you.";
  const digest = createHash("sha256").update(await receipt.toRaw()).digest("hex"); // the bytes, read back
  return `Your receipt: ${receipt.info.mimeType}, ${receipt.info.sizeBytes} bytes, sha256 ${digest.slice(0, 12)}.`;
}

/** Play one conversation through `handle` and print it. */
async function main(): Promise<void> {
  const sessionId = process.env.EXAMPLE_SESSION_ID || `example-${randomUUID()}`;
  const memory = MemoryClient.fromEnv().session(sessionId);
  const messages: (string | Attachment)[] = [
    "show my receipt",
    { name: "receipt.pdf", mime: "application/pdf", data: RECEIPT },
    "show my receipt",
    "delete my receipt",
    "show my receipt",
  ];
  for (const message of messages) {
    console.log(`user: ${typeof message === "string" ? message : `[file ${message.name}]`}`);
    console.log(`bot: ${await handle(memory, message)}`);
  }
}

main().catch((err: unknown) => {
  // One line: the error's class, its message and, for the server's errors, the reason.
  const reason = err instanceof MemoryApiError && err.code ? ` [${err.code}]` : "";
  console.error(`receipt_upload: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}${reason}`);
  process.exitCode = 1;
});
