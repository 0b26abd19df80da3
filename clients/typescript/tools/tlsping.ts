/**
 * The TypeScript side of tests/integration/test_tls.py: `MemoryClient.fromEnv()`
 * (SESSION_MEMORY_ADDR, SESSION_MEMORY_API_KEY and the SESSION_MEMORY_TLS*
 * variables) sets a value in SESSION and reads it back, then prints JSON:
 *   node dist/tools/tlsping.js SESSION VALUE
 *   {"value": "<what it read>"}  or  {"error": {"status": "UNAVAILABLE", "message": "..."}}
 * A configuration the client refuses exits 2 with its message on stderr.
 */
import { MemoryApiError, MemoryClient } from "../src/index.js";

const [sessionId, value] = process.argv.slice(2);
let client: MemoryClient;
try {
  client = MemoryClient.fromEnv({ timeoutMs: 10_000, maxAttempts: 1 });
} catch (err) {
  console.error(String(err));
  process.exit(2);
}
try {
  const memory = client.session(sessionId!);
  await memory.set("tls", value!, 600);
  console.log(JSON.stringify({ value: await memory.get("tls") }));
} catch (err) {
  if (!(err instanceof MemoryApiError)) throw err;
  console.log(JSON.stringify({ error: { status: err.status, message: err.message } }));
}
