/**
 * The TypeScript side of the cross-language tests (driven by
 * tests/integration/test_cross_language.py). It prints JSON on stdout:
 *   node dist/tools/xlang.js write ADDR API_KEY SESSION LANG                  a text, a JSON value and a file
 *   node dist/tools/xlang.js read ADDR API_KEY SESSION LANG...                what write wrote, per language
 *   node dist/tools/xlang.js update-memory ADDR API_KEY SESSION TTL PATCH...  updateMemory each patch: outcomes
 *   node dist/tools/xlang.js set ADDR API_KEY SESSION KEY VALUE               set a JSON scalar: [outcome]
 *   node dist/tools/xlang.js document ADDR API_KEY SESSION PATH...            getDocument (typed), path reads, the schema
 *   node dist/tools/xlang.js watch ADDR API_KEY SESSION AFTER COUNT SECONDS   the first COUNT changes after revision AFTER
 * An outcome is {"revision": N} (update-memory) or {"version": N} (set), or
 * {"error": {"status", "reason", "metadata"}}:
 * a refusal is data for the test, any other failure exits 1.
 */
import { createHash } from "node:crypto";
import { z } from "zod";
import { MemoryApiError, MemoryClient, type MemorySession, type Scalar } from "../src/index.js";

const [mode, address, apiKey, sessionId, ...args] = process.argv.slice(2);
const client = new MemoryClient(address!, { apiKey: apiKey! });
const memory = client.session(sessionId!);

const text = (lang: string) => `héllo ✓ 😀 from ${lang}`;
const doc = (lang: string) => ({ lang, items: [1, 2.5, "x"], nested: { ok: true } });
const file = (lang: string) => Buffer.from("%PDF-1.4\n" + `${lang}\n`.repeat(5000));

/** The test's user / conversation / order schema, as a TypeScript agent would check it. */
const SupportMemory = z.object({
  user: z.object({ name: z.string(), language: z.string() }),
  conversation: z.object({ topic: z.string(), turns: z.number().int() }),
  order: z
    .object({
      id: z.string(),
      status: z.enum(["placed", "on the way", "delivered"]),
      trackingNumber: z.string().optional(),
    })
    .optional(),
});

type Outcome = Record<string, number> | { error: { status: string; reason: string; metadata: Record<string, string> } };

/** A write's result as the test compares it: what it returned, or the refusal. */
async function outcome(write: () => Promise<Record<string, number>>): Promise<Outcome> {
  try {
    return await write();
  } catch (err) {
    if (!(err instanceof MemoryApiError) || err.code === undefined) throw err;
    return { error: { status: err.status, reason: err.code, metadata: err.metadata } };
  }
}

async function write(lang: string): Promise<void> {
  await memory.set(`${lang}_text`, text(lang), 600);
  await memory.setJson(`${lang}_json`, doc(lang), 600);
  await memory.setFile(`${lang}_file`, file(lang), 600, "application/pdf");
}

async function read(langs: string[]): Promise<unknown> {
  const out: Record<string, unknown> = {};
  for (const lang of langs) {
    out[`${lang}_text`] = await memory.get(`${lang}_text`);
    out[`${lang}_json`] = await memory.getJson(`${lang}_json`);
    const fh = await memory.getFile(`${lang}_file`);
    const raw = fh ? await fh.toRaw() : Buffer.alloc(0);
    out[`${lang}_file`] = { mime: fh?.info.mimeType, sha256: createHash("sha256").update(raw).digest("hex") };
  }
  return out;
}

async function document(session: MemorySession, paths: string[]): Promise<unknown> {
  const { document, revision, schema, defaulted } = await session.getDocumentWithRevision();
  const typed = await session.getDocument({ model: SupportMemory });
  const typedRevision = session.revision;
  const values: Record<string, string> = {};
  for (const path of paths) values[path] = await session.get(path, "");
  return {
    document,
    revision,
    schema: schema ?? null,
    defaulted,
    paths: values,
    projected: await session.getDocument({ paths }),
    schema_json: await client.getSchema(schema ?? ""),
    typed,
    typed_revision: typedRevision,
  };
}

async function watch(after: number, count: number, seconds: number): Promise<unknown> {
  const changes: unknown[] = [];
  for await (const c of memory.watch({ afterRevision: after, signal: AbortSignal.timeout(seconds * 1000) })) {
    changes.push({ key: c.key, operation: c.operation, kind: c.kind ?? null, version: Number(c.version), revision: c.revision });
    if (changes.length === count) break;
  }
  return changes;
}

async function run(): Promise<unknown> {
  switch (mode) {
    case "write":
      return write(args[0]!);
    case "read":
      return read(args);
    case "update-memory": {
      const [ttl, ...patches] = args;
      const outcomes: Outcome[] = [];
      for (const patch of patches) {
        outcomes.push(await outcome(async () => ({ revision: await client.updateMemory(sessionId!, JSON.parse(patch), Number(ttl)) })));
      }
      return outcomes;
    }
    case "set": {
      const value = JSON.parse(args[1]!) as Scalar;
      return [await outcome(async () => ({ version: Number((await memory.set(args[0]!, value, 600)).version) }))];
    }
    case "document":
      return document(memory, args);
    case "watch":
      return watch(Number(args[0]), Number(args[1]), Number(args[2]));
  }
  throw new Error(`unknown mode ${mode}`);
}

const out = await run();
if (out !== undefined) process.stdout.write(JSON.stringify(out));
