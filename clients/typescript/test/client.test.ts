/** The TypeScript client against the real server: seed flows, errors, files, documents, vectors. */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomBytes, randomUUID } from "node:crypto";
import { readFileSync, readdirSync } from "node:fs";
import net from "node:net";
import { Readable } from "node:stream";
import path from "node:path";
import { inspect } from "node:util";
import * as z from "zod";
import { MemoryApiError, MemoryClient, MemoryTypeError, MemoryUnavailableError, type Change, type MemorySession } from "../src/index.js";
import { repoRoot, startStack, type Stack } from "./stack.js";

let stack: Stack;
let client: MemoryClient;

before(async () => {
  stack = await startStack();
  client = new MemoryClient(stack.address, { apiKey: stack.apiKey });
});
after(async () => {
  await stack?.stop();
});

const fresh = () => client.session(`ts-${randomUUID()}`);

async function rejects(promise: Promise<unknown>, code: string, status?: string): Promise<MemoryApiError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof MemoryApiError, `expected MemoryApiError, got ${err}`);
    assert.equal(err.code, code);
    if (status) assert.equal(err.status, status);
    return err;
  }
  assert.fail(`expected ${code}`);
}

describe("seed flows, written the way the platform's handlers write them", () => {
  test("multi-step registration", async () => {
    const memory = fresh();
    let step = await memory.get("step", "start");
    assert.equal(step, "start");
    await memory.set("step", "name", 3600);
    step = await memory.get("step", "start");
    assert.equal(step, "name");
    await memory.set("name", "Ada", 3600);
    await memory.set("step", "email", 3600);
    assert.equal(await memory.get("step", "start"), "email");
    await memory.delete(["step", "name"]);
    assert.equal(await memory.get("step", "start"), "start");
  });

  test("shopping cart in JSON", async () => {
    interface Cart { items: { sku: string; qty: number }[]; total: number }
    const memory = fresh();
    const empty: Cart = { items: [], total: 0 };
    const cart = await memory.getJson<Cart>("cart", empty);
    assert.deepEqual(cart, empty);
    cart.items.push({ sku: "tea", qty: 2 });
    cart.total = 7;
    await memory.setJson("cart", cart, 86400);
    const c = await memory.getJson<Cart>("cart", empty);
    assert.deepEqual(c, { items: [{ sku: "tea", qty: 2 }], total: 7 });
  });

  test("PIN attempt limit", async () => {
    const memory = fresh();
    const results: string[] = [];
    for (let i = 0; i < 4; i++) {
      const attempts = await memory.increment("pin_attempts", 1, 1800);
      results.push(attempts > 3 ? "locked" : "try again");
    }
    assert.deepEqual(results, ["try again", "try again", "try again", "locked"]);
    assert.equal(await memory.get("pin_attempts", 0), 4);
  });
});

describe("client behaviour", () => {
  test("values are typed by the default, exactly", async () => {
    const memory = fresh();
    await memory.set("s3", "3");
    await memory.set("s", "abc");
    assert.equal(await memory.get("s3", 0), 3);
    await assert.rejects(memory.get("s", 0), MemoryTypeError);
    await memory.set("n", 3);
    assert.equal(await memory.get("n", ""), "3");
  });

  test("setMany writes scalars and JSON all or nothing", async () => {
    const memory = fresh();
    const results = await memory.setMany({ step: "email", n: 2, ok: true, profile: { name: "Ada" } }, 600);
    assert.deepEqual(results.map((r) => r.key), ["step", "n", "ok", "profile"]);
    assert.deepEqual(await memory.getMany(["step", "n", "ok", "profile"]), { step: "email", n: 2, ok: true, profile: { name: "Ada" } });
    assert.deepEqual((await memory.list()).map((e) => e.kind), ["number", "boolean", "json", "string"]);
    await rejects(memory.setMany({ fresh: "x", step: "y".repeat(256) }), "VALUE_TOO_LONG", "INVALID_ARGUMENT");
    assert.equal(await memory.get("fresh"), null);
    assert.equal(await memory.get("step", ""), "email");
    await assert.rejects(memory.setMany({ k: undefined }), TypeError);
  });

  test("available is false without a session id or an API key", async () => {
    assert.equal(client.session("").available, false);
    const keyless = new MemoryClient(stack.address);
    const memory = keyless.session("s");
    assert.equal(memory.available, false);
    await assert.rejects(memory.get("k"), MemoryUnavailableError);
  });

  test("errors carry status, reason and metadata", async () => {
    const memory = fresh();
    const err = await rejects(memory.set("s", "x".repeat(256)), "VALUE_TOO_LONG", "INVALID_ARGUMENT");
    assert.equal(err.metadata.limit, "255");
    assert.equal(err.isRateLimit(), false);
    await rejects(new MemoryClient(stack.address, { apiKey: "smk_x_y" }).session("s").get("k"), "API_KEY_INVALID", "UNAUTHENTICATED");
  });

  test("tenants are isolated", async () => {
    const id = `ts-${randomUUID()}`;
    await client.session(id).set("secret", "acme");
    const other = new MemoryClient(stack.address, { apiKey: stack.otherApiKey }).session(id);
    assert.equal(await other.get("secret"), null);
  });

  test("files: every data form, URL, base64, raw", async () => {
    const memory = fresh();
    const pdf = Buffer.concat([Buffer.from("%PDF-1.4\n"), Buffer.alloc(700 * 1024, 120)]);
    for (const data of [pdf, pdf.toString("base64"), Readable.from([pdf.subarray(0, 1000), pdf.subarray(1000)])]) {
      const info = await memory.setFile("receipt", data, 604800, "application/pdf");
      assert.equal(info.sizeBytes, pdf.length);
      assert.equal(info.sha256, createHash("sha256").update(pdf).digest("hex"));
    }
    const fh = await memory.getFile("receipt");
    assert.ok(fh);
    assert.deepEqual(await fh.toRaw(), pdf);
    assert.equal(await fh.toBase64(), pdf.toString("base64"));
    const response = await fetch(fh.toUrl());
    assert.deepEqual(Buffer.from(await response.arrayBuffer()), pdf);
    await rejects(memory.setFile("bad", Buffer.from("MZ\x90\x00"), 60, "image/png"), "CONTENT_MISMATCH");
    assert.equal(await memory.getFile("missing"), undefined);
  });
});

/** A schema name no other test (or suite sharing the tenant) uses. */
const schemaName = (name: string) => `${name}_${randomBytes(4).toString("hex")}`;

/** The next `count` changes of `memory` after `afterRevision`, failing after 10 s. */
async function nextChanges(memory: MemorySession, afterRevision: number, count: number): Promise<Change[]> {
  const signal = AbortSignal.timeout(10_000);
  const seen: Change[] = [];
  for await (const change of memory.watch({ afterRevision, signal })) {
    seen.push(change);
    if (seen.length === count) break;
  }
  assert.equal(seen.length, count, `only ${seen.length} of ${count} changes within 10 s`);
  return seen;
}

/** A TCP proxy to `address` whose connections can be cut, to drop streams mid-flight. */
async function tcpProxy(address: string) {
  const at = address.lastIndexOf(":");
  const sockets = new Set<net.Socket>();
  let connections = 0;
  const server = net.createServer((downstream) => {
    connections += 1;
    const upstream = net.connect(Number(address.slice(at + 1)), address.slice(0, at));
    for (const socket of [downstream, upstream]) {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => socket.destroy());
    }
    downstream.pipe(upstream).pipe(downstream);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    connections: () => connections,
    drop: () => sockets.forEach((socket) => socket.destroy()),
    close: () => new Promise<void>((resolve) => { sockets.forEach((socket) => socket.destroy()); server.close(() => resolve()); }),
  };
}

describe("structured memory", () => {
  // The agent framework's memory: defined once, validated on every write.
  const AgentMemory = z.object({
    user: z.object({
      name: z.string(),
      tier: z.enum(["free", "pro"]).default("free"),
    }),
    conversation: z.object({
      topic: z.string(),
      turns: z.number().int().min(0),
    }),
    order: z
      .strictObject({
        id: z.string(),
        status: z.enum(["placed", "shipped", "on the way", "delivered"]),
        trackingNumber: z.string().optional(),
      })
      .optional(),
  });
  type AgentMemory = z.output<typeof AgentMemory>;

  test("agent flow: a Zod schema, a tool's partial update, an update from outside, the merged document", async () => {
    const schema = schemaName("support_agent");
    const info = await client.putSchema(schema, AgentMemory);
    assert.equal(info.name, schema);
    assert.ok(info.version > 0);
    assert.ok(info.sizeBytes > 0);

    // The trigger initializes memory; the first update naming the schema binds the session.
    const memory = fresh();
    const r1 = await memory.update<AgentMemory>(
      { user: { name: "Ada" }, conversation: { topic: "where is my order", turns: 1 }, order: { id: "ORD-123", status: "placed" } },
      3600,
      { schema },
    );
    assert.equal(memory.revision, r1);

    // A tool returns a partial update: only order.status changes.
    const r2 = await memory.update<AgentMemory>({ order: { status: "shipped" } }, 3600);
    assert.ok(r2 > r1);

    // A webhook updates the memory from outside the agent.
    const r3 = await client.updateMemory<AgentMemory>(memory.sessionId, { order: { trackingNumber: "1Z999AA10123456784" } }, 3600);
    assert.ok(r3 > r2);

    // The agent reads the merged document, typed; the schema's default fills user.tier.
    const doc = await memory.getDocument<AgentMemory>();
    assert.deepEqual(doc, {
      user: { name: "Ada", tier: "free" },
      conversation: { topic: "where is my order", turns: 1 },
      order: { id: "ORD-123", status: "shipped", trackingNumber: "1Z999AA10123456784" },
    });
    assert.equal(doc.order?.trackingNumber, "1Z999AA10123456784");
    assert.equal(memory.revision, r3);
    const withRevision = await memory.getDocumentWithRevision<AgentMemory>({ defaults: false });
    assert.deepEqual(withRevision.document.user, { name: "Ada" });
    assert.equal(withRevision.revision, r3);
    assert.equal(withRevision.schema, schema);
    const defaulted = await memory.getDocumentWithRevision();
    assert.deepEqual(defaulted.defaulted, ["user.tier"]);
    assert.deepEqual((await memory.getDocument({ model: AgentMemory })).user, { name: "Ada", tier: "free" });

    // Invalid updates are rejected, with where and why, and change nothing.
    const err = await rejects(memory.update({ order: { status: "lost" } }, 3600), "SCHEMA_VIOLATION", "INVALID_ARGUMENT");
    assert.equal(err.metadata.pointer, "/order/status");
    assert.equal(err.metadata.keyword, "enum");
    assert.equal(err.metadata.schema, schema);
    await rejects(memory.update({ order: { carrier: "UPS" } }, 3600), "SCHEMA_VIOLATION", "INVALID_ARGUMENT");
    await rejects(memory.update({ user: null }, 3600), "SCHEMA_VIOLATION", "INVALID_ARGUMENT");
    await rejects(memory.set("conversation", "no longer an object", 3600), "SCHEMA_VIOLATION", "INVALID_ARGUMENT");
    await rejects(memory.update({ order: { status: "delivered" } }, 3600, { ifRevision: r2 }), "REVISION_MISMATCH", "ABORTED");
    const other = schemaName("other");
    await client.putSchema(other, { type: "object" });
    await rejects(memory.update({ order: { status: "delivered" } }, 3600, { schema: other }), "SCHEMA_MISMATCH", "FAILED_PRECONDITION");
    await client.deleteSchema(other);
    assert.deepEqual(await memory.getDocument<AgentMemory>(), doc);
    assert.equal(memory.revision, r3);

    // A conditional update on the current revision goes through.
    assert.ok((await memory.update({ order: { status: "delivered" } }, 3600, { ifRevision: r3 })) > r3);

    // Outside updates do not revive ended conversations.
    await rejects(client.updateMemory(`ts-${randomUUID()}`, { order: { status: "shipped" } }, 3600), "SESSION_NOT_FOUND", "NOT_FOUND");
    await memory.clear();
    await rejects(client.updateMemory(memory.sessionId, { order: { status: "shipped" } }, 3600), "SESSION_NOT_FOUND", "NOT_FOUND");
    assert.equal(await client.deleteSchema(schema), true);
  });

  test("workflow path reads", async () => {
    const memory = fresh();
    await memory.setJson("lastOrder", { id: "ORD-123", status: "on the way", items: [{ name: "tea", qty: 2 }] }, 3600);
    assert.equal(await memory.get("lastOrder.status", ""), "on the way");
    assert.equal(await memory.get("lastOrder.items.0.qty", 0), 2);
    assert.equal(await memory.get("lastOrder.missing", "none"), "none");
    assert.deepEqual(await memory.getJson("lastOrder.items.0"), { name: "tea", qty: 2 });
    const entry = await memory.getEntry("lastOrder.status");
    assert.deepEqual([entry?.key, entry?.value, entry?.kind], ["lastOrder.status", "on the way", "string"]);
    assert.deepEqual(await memory.getMany(["lastOrder.id", "lastOrder.nope", "lastOrder.items.0.name"]), {
      "lastOrder.id": "ORD-123",
      "lastOrder.items.0.name": "tea",
    });
    assert.deepEqual(await memory.getDocument({ paths: ["lastOrder.status", "absent.x"] }), { lastOrder: { status: "on the way" } });
    await rejects(memory.get("lastOrder..status"), "INVALID_PATH", "INVALID_ARGUMENT");
  });

  test("watch sees a set and a delete in order, and resumes from a revision", async () => {
    const memory = fresh();
    const start = await memory.update({ step: "start" }, 600);
    const written = memory.set("step", "name", 600);
    const removed = written.then(() => memory.delete("step"));
    const [set, del] = await nextChanges(memory, start, 2);
    await removed;
    assert.deepEqual([set?.operation, set?.key, set?.kind], ["set", "step", "string"]);
    assert.equal(set?.version, (await written).version);
    assert.ok(set?.expiresAt instanceof Date);
    assert.deepEqual([del?.operation, del?.key, del?.kind, del?.expiresAt], ["delete", "step", undefined, undefined]);
    assert.ok(set!.revision > start && del!.revision > set!.revision);
    // Resuming from the set's revision replays only the delete.
    const [again] = await nextChanges(memory, set!.revision, 1);
    assert.deepEqual([again?.operation, again?.revision], ["delete", del!.revision]);
  });

  test("watch resumes after the connection drops, missing nothing", async () => {
    const proxy = await tcpProxy(stack.address);
    try {
      const direct = fresh();
      const watched = new MemoryClient(proxy.address, { apiKey: stack.apiKey }).session(direct.sessionId);
      const start = await direct.update({ n: 0 }, 600);
      await direct.increment("n", 1, 600);
      const seen: Change[] = [];
      for await (const change of watched.watch({ afterRevision: start, signal: AbortSignal.timeout(15_000) })) {
        seen.push(change);
        if (seen.length === 1) {
          proxy.drop();
          await direct.increment("n", 1, 600);
          await direct.increment("n", 1, 600);
        }
        if (seen.length === 3) break;
      }
      assert.deepEqual(seen.map((c) => [c.operation, c.key]), [["set", "n"], ["set", "n"], ["set", "n"]]);
      assert.deepEqual(seen.map((c) => c.revision), [...seen.map((c) => c.revision)].sort((a, b) => a - b));
      assert.equal(new Set(seen.map((c) => c.revision)).size, 3);
      assert.ok(proxy.connections() >= 2, "the stream was reopened");
    } finally {
      await proxy.close();
    }
  });

  test("watch says reset when the changes to replay are gone", async () => {
    const memory = fresh();
    const start = await memory.update({ counter: 0 }, 600);
    const { watchLogChanges } = await client.getLimits();
    for (let i = 0; i <= watchLogChanges; i++) await memory.increment("counter", 1, 600);
    const [reset] = await nextChanges(memory, start, 1);
    assert.deepEqual([reset?.operation, reset?.key], ["reset", ""]);
    assert.equal(reset?.revision, (await memory.getDocumentWithRevision()).revision);
  });

  test("watch stops when the signal aborts", async () => {
    const memory = fresh();
    const controller = new AbortController();
    const seen: Change[] = [];
    setTimeout(() => controller.abort(), 300);
    for await (const change of memory.watch({ signal: controller.signal })) seen.push(change);
    assert.deepEqual(seen, []);
  });

  test("schema CRUD", async () => {
    const name = schemaName("profile");
    const schema = { type: "object", properties: { name: { type: "string" } }, required: ["name"] };
    const first = await client.putSchema(name, schema);
    assert.equal(first.name, name);
    assert.ok(first.updatedAt.getTime() > Date.now() - 60_000);
    const second = await client.putSchema(name, { ...schema, additionalProperties: false });
    // Versions grow with every put (the server counts them per tenant, so they never repeat).
    assert.ok(second.version > first.version);
    assert.deepEqual(await client.getSchema(name), { ...schema, additionalProperties: false });
    const listed = (await client.listSchemas()).find((s) => s.name === name);
    assert.deepEqual([listed?.version, listed?.sizeBytes], [second.version, second.sizeBytes]);

    // Binding checks the current document, and then every write.
    const memory = fresh();
    await memory.set("color", "blue", 600);
    await rejects(memory.bindSchema(name), "SCHEMA_VIOLATION", "INVALID_ARGUMENT");
    await memory.delete("color");
    await memory.update({ name: "Ada" }, 600);
    const bound = await memory.bindSchema(name);
    assert.equal(memory.revision, bound);
    await rejects(memory.set("color", "blue", 600), "SCHEMA_VIOLATION", "INVALID_ARGUMENT");
    await memory.bindSchema("");
    await memory.set("color", "blue", 600);

    assert.equal(await client.deleteSchema(name), true);
    assert.equal(await client.deleteSchema(name), false);
    await rejects(client.getSchema(name), "SCHEMA_NOT_FOUND", "NOT_FOUND");
    assert.equal((await client.listSchemas()).find((s) => s.name === name), undefined);
    await rejects(client.putSchema(schemaName("bad"), { type: "no-such-type" }), "SCHEMA_INVALID", "INVALID_ARGUMENT");
    await rejects(client.putSchema(schemaName("remote"), { $ref: "https://example.com/schema.json" }), "SCHEMA_INVALID", "INVALID_ARGUMENT");
    await rejects(client.putSchema(schemaName("huge"), { description: "x".repeat(70_000) }), "SCHEMA_INVALID", "INVALID_ARGUMENT");
  });
});

interface Step { op: string; args: Record<string, unknown>; expect: Record<string, unknown> }
const NUMBERS: Record<string, number> = { NaN: NaN, Infinity: Infinity, "-Infinity": -Infinity, "-0": -0 };

/** A step's JSON with the vectors' `$` forms resolved; `revision` is the case's latest. */
function decode(value: unknown, revision = 0): unknown {
  if (Array.isArray(value)) return value.map((x) => decode(x, revision));
  if (value && typeof value === "object") {
    const v = value as Record<string, unknown>;
    if ("$repeat" in v) {
      const [text, count] = v.$repeat as [string, number];
      return text.repeat(count);
    }
    if ("$number" in v) return NUMBERS[v.$number as string];
    if ("$keys" in v) return Array.from({ length: v.$keys as number }, (_, i) => `k${i}`);
    if ("$revision" in v) return revision + (v.$revision as number);
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, decode(x, revision)]));
  }
  return value;
}

describe("rate limits and session tokens", () => {
  /** The platform's error-handling snippet, verbatim, inside a handler. */
  async function handler(memory: MemorySession) {
    try {
      await memory.set("step", "confirm");
    } catch (err) {
      if (err instanceof MemoryApiError && err.isRateLimit()) {
        return { error: "rate_limit", retryAfter: 2 };
      }
      throw err;
    }
    return { ok: true };
  }

  /** Run `call` until it returns something other than `passed`, for at most 5 s. */
  async function untilLimited<T>(call: () => Promise<T>, passed: (result: T) => boolean): Promise<T> {
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      const result = await call();
      if (!passed(result)) return result;
    }
    assert.fail("the limited tenant was never rate-limited");
  }

  test("the platform's snippet takes the rate-limit branch when the tenant is limited", async () => {
    const limited = new MemoryClient(stack.address, { apiKey: stack.limitedApiKey });
    const memory = limited.session(`ts-${randomUUID()}`);
    const result = await untilLimited(() => handler(memory), (r) => "ok" in r);
    assert.deepEqual(result, { error: "rate_limit", retryAfter: 2 });
  });

  test("RATE_LIMITED carries retryAfter and the limit; it is not a quota and is not retried", async () => {
    const limited = new MemoryClient(stack.address, { apiKey: stack.limitedApiKey });
    const memory = limited.session(`ts-${randomUUID()}`);
    const err = await untilLimited(
      () => memory.get("step").then(() => undefined, (e: unknown) => e),
      (e) => e === undefined,
    );
    assert.ok(err instanceof MemoryApiError);
    assert.equal(err.status, "RESOURCE_EXHAUSTED");
    assert.equal(err.code, "RATE_LIMITED");
    assert.ok(err.isRateLimit() && !err.isQuotaExceeded());
    assert.ok(err.retryAfter !== undefined && err.retryAfter > 0 && err.retryAfter <= 1, `retryAfter ${err.retryAfter}`);
    assert.equal(err.metadata.limit, "reads");
    // Waiting what the server said lets the next call pass.
    await new Promise((resolve) => setTimeout(resolve, err.retryAfter! * 1000));
    assert.equal(await memory.get("step", "start"), "start");
    // Another tenant is not limited by this one.
    for (let i = 0; i < 20; i++) await fresh().get("k");
  });

  test("getLimits reports the tenant's limits and usage", async () => {
    const limited = new MemoryClient(stack.address, { apiKey: stack.limitedApiKey });
    // getLimits is a read: after the tests above, wait what the server says.
    const limits = await limited.getLimits().catch(async (err: unknown) => {
      if (!(err instanceof MemoryApiError && err.isRateLimit())) throw err;
      await new Promise((resolve) => setTimeout(resolve, err.retryAfter! * 1000));
      return limited.getLimits();
    });
    assert.deepEqual(
      [limits.tenantLimits.readsPerSecond, limits.tenantLimits.readBurst, limits.tenantLimits.writesPerSecond, limits.tenantLimits.writeBurst],
      [5, 5, 5, 5],
    );
    assert.ok(limits.tenantUsage.sessions >= 0 && limits.maxBatchKeys > 0);
  });

  test("a session token reads and writes its session only, until revoked", async () => {
    const id = `ts-${randomUUID()}`;
    await client.session(id).set("name", "Ada");
    const issued = await client.createSessionToken(id, { permissions: ["read", "write"], ttlSeconds: 600 });
    assert.ok(issued.token.startsWith("smt_") && issued.tokenId);
    assert.ok(Math.abs(issued.expiresAt.getTime() - Date.now() - 600_000) < 10_000);

    const browser = new MemoryClient(stack.address, { apiKey: issued.token });
    const memory = browser.session(id);
    assert.equal(await memory.get("name"), "Ada");
    await memory.set("step", "confirm");
    assert.equal(await client.session(id).get("step"), "confirm");

    await rejects(browser.session(`ts-${randomUUID()}`).get("name"), "PERMISSION_DENIED", "PERMISSION_DENIED");
    const files = await rejects(memory.setFile("f", Buffer.from("hi"), 60, "text/plain"), "PERMISSION_DENIED");
    assert.equal(files.metadata.permission, "files");
    await rejects(browser.createSessionToken(id), "PERMISSION_DENIED");
    await rejects(browser.listSchemas(), "PERMISSION_DENIED");

    await client.revokeSessionToken({ tokenId: issued.tokenId });
    const deadline = Date.now() + 2000;
    for (;;) {
      const err = await memory.get("name").then(() => undefined, (e: unknown) => e);
      if (err !== undefined) {
        assert.ok(err instanceof MemoryApiError);
        assert.deepEqual([err.status, err.code], ["UNAUTHENTICATED", "TOKEN_REVOKED"]);
        break;
      }
      assert.ok(Date.now() < deadline, "the revoked token still works after 2 s");
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  });

  test("a read token cannot write; fromEnv takes a token; revoking a session stops its tokens", async () => {
    const id = `ts-${randomUUID()}`;
    const issued = await client.createSessionToken(id);
    const saved = { addr: process.env.SESSION_MEMORY_ADDR, key: process.env.SESSION_MEMORY_API_KEY };
    process.env.SESSION_MEMORY_ADDR = stack.address;
    process.env.SESSION_MEMORY_API_KEY = issued.token;
    try {
      const memory = MemoryClient.fromEnv().session(id);
      assert.equal(memory.available, true);
      assert.equal(await memory.get("missing", "none"), "none");
      const err = await rejects(memory.set("k", "v"), "PERMISSION_DENIED");
      assert.equal(err.metadata.permission, "write");
      await client.revokeSessionToken({ sessionId: id });
      const deadline = Date.now() + 2000;
      while (await memory.get("k").then(() => true, () => false)) {
        assert.ok(Date.now() < deadline, "the revoked token still works after 2 s");
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      await rejects(memory.get("k"), "TOKEN_REVOKED", "UNAUTHENTICATED");
    } finally {
      process.env.SESSION_MEMORY_ADDR = saved.addr ?? "";
      process.env.SESSION_MEMORY_API_KEY = saved.key ?? "";
      if (saved.addr === undefined) delete process.env.SESSION_MEMORY_ADDR;
      if (saved.key === undefined) delete process.env.SESSION_MEMORY_API_KEY;
    }
  });
});

describe("shared vectors", () => {
  const dir = process.env.SESSION_MEMORY_VECTORS ?? path.join(repoRoot, "tests/vectors");
  const cases = readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .flatMap((f) => JSON.parse(readFileSync(path.join(dir, f), "utf8")) as { name: string; steps: Step[] }[]);
  for (const c of cases) {
    test(c.name, async () => {
      const memory = fresh();
      // Schemas are tenant-wide: each case gets its own names.
      const suffix = randomBytes(4).toString("hex");
      const schema = (name: string | undefined) => (name ? `${name}_${suffix}` : name);
      let revision = 0; // of the case's latest update or document step
      for (const [i, step] of c.steps.entries()) {
        const a = decode(step.args, revision) as Record<string, any>;
        const expect = decode(step.expect) as Record<string, unknown>;
        const run = async (): Promise<unknown> => {
          switch (step.op) {
            case "set":
              return memory.set(a.key, a.value, a.ttl, { ifVersion: a.if_version, onlyIfAbsent: a.only_if_absent });
            case "set_json":
              return memory.setJson(a.key, a.value, a.ttl);
            case "get":
              // With a default: the value converted to the default's type (coercion.json).
              return "default" in a ? memory.get(a.key, a.default) : memory.get(a.key);
            case "increment":
              return memory.increment(a.key, a.delta, a.ttl, { requestId: a.request_id });
            case "delete":
              return memory.delete(a.keys);
            case "touch":
              return memory.touch(a.keys, a.ttl);
            case "get_many":
              return memory.getMany(a.keys);
            case "update":
              revision = await memory.update(a.patch, a.ttl, { schema: schema(a.schema), ifRevision: a.if_revision, mustExist: a.must_exist });
              return revision;
            case "document": {
              const r = await memory.getDocumentWithRevision({ paths: a.paths, defaults: a.defaults });
              revision = r.revision;
              return r.document;
            }
            case "put_schema":
              return client.putSchema(schema(a.name)!, a.schema);
            case "bind_schema":
              return memory.bindSchema(schema(a.name));
            default:
              throw new Error(`unknown op ${step.op}`);
          }
        };
        try {
          const result = await run();
          assert.ok(!("error" in expect), `step ${i}: expected ${expect.error}`);
          if ("type_error" in expect) assert.fail(`step ${i}: expected a MemoryTypeError, got ${inspect(result)}`);
          if ("value" in expect) assert.deepEqual(result, expect.value, `step ${i}`);
        } catch (err) {
          if (err instanceof MemoryTypeError && "type_error" in expect) continue;
          if (!(err instanceof MemoryApiError)) throw err;
          assert.ok("error" in expect, `step ${i}: unexpected ${err.message}`);
          assert.deepEqual([err.code, err.status], [expect.error, expect.status], `step ${i}`);
        }
      }
    });
  }
});
