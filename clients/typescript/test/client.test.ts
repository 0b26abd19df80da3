/** The TypeScript client against the real server: seed flows, errors, files, vectors. */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createHash, randomUUID } from "node:crypto";
import { readFileSync, readdirSync } from "node:fs";
import { Readable } from "node:stream";
import path from "node:path";
import { MemoryApiError, MemoryClient, MemoryTypeError, MemoryUnavailableError } from "../src/index.js";
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

interface Step { op: string; args: Record<string, unknown>; expect: Record<string, unknown> }
const NUMBERS: Record<string, number> = { NaN: NaN, Infinity: Infinity, "-Infinity": -Infinity, "-0": -0 };

function decode(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(decode);
  if (value && typeof value === "object") {
    const v = value as Record<string, unknown>;
    if ("$repeat" in v) {
      const [text, count] = v.$repeat as [string, number];
      return text.repeat(count);
    }
    if ("$number" in v) return NUMBERS[v.$number as string];
    if ("$keys" in v) return Array.from({ length: v.$keys as number }, (_, i) => `k${i}`);
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, decode(x)]));
  }
  return value;
}

describe("shared vectors", () => {
  const dir = path.join(repoRoot, "tests/vectors");
  const cases = readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .flatMap((f) => JSON.parse(readFileSync(path.join(dir, f), "utf8")) as { name: string; steps: Step[] }[]);
  for (const c of cases) {
    test(c.name, async () => {
      const memory = fresh();
      for (const [i, step] of c.steps.entries()) {
        const a = decode(step.args) as Record<string, any>;
        const expect = decode(step.expect) as Record<string, unknown>;
        const run = async (): Promise<unknown> => {
          switch (step.op) {
            case "set":
              return memory.set(a.key, a.value, a.ttl, { ifVersion: a.if_version, onlyIfAbsent: a.only_if_absent });
            case "set_json":
              return memory.setJson(a.key, a.value, a.ttl);
            case "get":
              return memory.get(a.key);
            case "increment":
              return memory.increment(a.key, a.delta, a.ttl, { requestId: a.request_id });
            case "delete":
              return memory.delete(a.keys);
            case "touch":
              return memory.touch(a.keys, a.ttl);
            case "get_many":
              return memory.getMany(a.keys);
            default:
              throw new Error(`unknown op ${step.op}`);
          }
        };
        try {
          const result = await run();
          assert.ok(!("error" in expect), `step ${i}: expected ${expect.error}`);
          if ("value" in expect) assert.deepEqual(result, expect.value, `step ${i}`);
        } catch (err) {
          if (!(err instanceof MemoryApiError)) throw err;
          assert.ok("error" in expect, `step ${i}: unexpected ${err.message}`);
          assert.deepEqual([err.code, err.status], [expect.error, expect.status], `step ${i}`);
        }
      }
    });
  }
});
