/** Client logic without a server: error mapping, Increment request ids, patches, schemas, watch resumption. */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Code, ConnectError, createRouterTransport } from "@connectrpc/connect";
import { create, toBinary } from "@bufbuild/protobuf";
import { ErrorInfoSchema, RetryInfoSchema } from "../src/gen/google/rpc/error_details_pb.js";
import { fromConnectError } from "../src/errors.js";
import { ErrorReason } from "../src/gen/sessionmemory/v1/error_reason_pb.js";
import { ChangeOperation, ValueKind, type ValueSchema } from "../src/gen/sessionmemory/v1/memory_pb.js";
import { MemoryService, TokenPermission, type WatchResponseSchema } from "../src/gen/sessionmemory/v1/memory_service_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import * as z from "zod";
import { MemoryApiError, MemoryClient, MemoryTypeError } from "../src/index.js";

/** A ConnectError as the transport yields it: ErrorInfo (and RetryInfo) as encoded details. */
function rejection(code: Code, reason: ErrorReason, retrySeconds?: number, retryNanos = 0): ConnectError {
  const err = new ConnectError("refused", code);
  const info = create(ErrorInfoSchema, { reason: ErrorReason[reason], domain: "sessionmemory", metadata: { limit: "255" } });
  err.details.push({ type: ErrorInfoSchema.typeName, value: toBinary(ErrorInfoSchema, info) });
  if (retrySeconds !== undefined) {
    const retry = create(RetryInfoSchema, { retryDelay: { seconds: BigInt(retrySeconds), nanos: retryNanos } });
    err.details.push({ type: RetryInfoSchema.typeName, value: toBinary(RetryInfoSchema, retry) });
  }
  return err;
}

describe("error mapping", () => {
  // [reason, code, status, carries RetryInfo]
  const cases: [ErrorReason, Code, string, boolean][] = [
    [ErrorReason.STORE_FULL, Code.ResourceExhausted, "RESOURCE_EXHAUSTED", false],
    [ErrorReason.REQUEST_ID_REUSED, Code.InvalidArgument, "INVALID_ARGUMENT", false],
    [ErrorReason.MALFORMED_REQUEST, Code.InvalidArgument, "INVALID_ARGUMENT", false],
    [ErrorReason.TOO_MANY_UPLOADS, Code.ResourceExhausted, "RESOURCE_EXHAUSTED", true],
    [ErrorReason.SPOOL_FULL, Code.ResourceExhausted, "RESOURCE_EXHAUSTED", true],
    [ErrorReason.SERVER_BUSY, Code.ResourceExhausted, "RESOURCE_EXHAUSTED", true],
    [ErrorReason.UPLOAD_TOO_SLOW, Code.DeadlineExceeded, "DEADLINE_EXCEEDED", false],
    [ErrorReason.RATE_LIMITED, Code.ResourceExhausted, "RESOURCE_EXHAUSTED", true],
    [ErrorReason.QUOTA_EXCEEDED, Code.ResourceExhausted, "RESOURCE_EXHAUSTED", false],
    [ErrorReason.API_KEY_EXPIRED, Code.Unauthenticated, "UNAUTHENTICATED", false],
    [ErrorReason.TOKEN_INVALID, Code.Unauthenticated, "UNAUTHENTICATED", false],
    [ErrorReason.TOKEN_EXPIRED, Code.Unauthenticated, "UNAUTHENTICATED", false],
    [ErrorReason.TOKEN_REVOKED, Code.Unauthenticated, "UNAUTHENTICATED", false],
    [ErrorReason.PERMISSION_DENIED, Code.PermissionDenied, "PERMISSION_DENIED", false],
    [ErrorReason.INVALID_TOKEN_REQUEST, Code.InvalidArgument, "INVALID_ARGUMENT", false],
  ];
  for (const [reason, code, status, retry] of cases) {
    test(`${ErrorReason[reason]} is a MemoryApiError with status ${status}`, () => {
      const err = fromConnectError(rejection(code, reason, retry ? 2 : undefined));
      assert.ok(err instanceof MemoryApiError);
      assert.deepEqual([err.code, err.status, err.message], [ErrorReason[reason], status, "refused"]);
      assert.equal(err.retryAfter, retry ? 2 : undefined);
      // A rate limit is exactly RATE_LIMITED: a RetryInfo alone (SERVER_BUSY) is not one.
      assert.equal(err.isRateLimit(), reason === ErrorReason.RATE_LIMITED);
      assert.equal(err.isQuotaExceeded(), reason === ErrorReason.QUOTA_EXCEEDED);
      assert.deepEqual(err.metadata, { limit: "255" });
    });
  }

  test("a RetryInfo's nanos count: 1.5 s is retryAfter 1.5", () => {
    assert.equal(fromConnectError(rejection(Code.Unavailable, ErrorReason.SERVER_BUSY, 1, 500_000_000)).retryAfter, 1.5);
  });

  test("a detail that does not decode is skipped, not thrown", () => {
    const err = new ConnectError("refused", Code.Internal);
    err.details.push({ type: ErrorInfoSchema.typeName, value: new Uint8Array([0xff, 0xff, 0xff]) });
    const mapped = fromConnectError(err);
    assert.deepEqual([mapped.status, mapped.code, mapped.metadata, mapped.retryAfter], ["INTERNAL", undefined, {}, undefined]);
  });

  test("detail types this client does not know are ignored; the ErrorInfo and RetryInfo after them count", () => {
    const err = rejection(Code.ResourceExhausted, ErrorReason.RATE_LIMITED, 3);
    err.details.unshift(
      { type: "google.rpc.DebugInfo", value: new Uint8Array([0x0a, 0x01, 0x78]) },
      { type: "sessionmemory.v2.SomethingNew", value: new Uint8Array([0xff]) },
    );
    const mapped = fromConnectError(err);
    assert.deepEqual([mapped.code, mapped.retryAfter, mapped.isRateLimit()], ["RATE_LIMITED", 3, true]);
  });

  test("a transport failure without details has a status and no reason", () => {
    const mapped = fromConnectError(new Error("socket hang up"));
    assert.deepEqual([mapped.status, mapped.code, mapped.message], ["UNKNOWN", undefined, "socket hang up"]);
  });
});

describe("retries", () => {
  /** A client whose server fails `get` with the scripted errors, then answers; it records the gaps between attempts. */
  function scripted(errors: ConnectError[], timeoutMs = 5000) {
    const times: number[] = [];
    const transport = createRouterTransport(({ service }) => {
      service(MemoryService, {
        get() {
          times.push(Date.now());
          const next = errors.shift();
          if (next) throw next;
          return { found: false };
        },
        set() {
          times.push(Date.now());
          const next = errors.shift();
          if (next) throw next;
          return {};
        },
      });
    });
    const client = new MemoryClient("unused", { apiKey: "smt_a-session-token", transport, timeoutMs, maxAttempts: 3 });
    return { times, memory: client.session("s") };
  }
  const unavailable = (retrySeconds?: number) => rejection(Code.Unavailable, ErrorReason.BACKEND_UNAVAILABLE, retrySeconds);

  test("UNAVAILABLE is retried after the server's RetryInfo delay, not the client's backoff", async () => {
    const { times, memory } = scripted([unavailable(1)]);
    assert.equal(await memory.get("k", "x"), "x");
    assert.equal(times.length, 2);
    const gap = times[1]! - times[0]!;
    assert.ok(gap >= 990 && gap < 1500, `waited ${gap} ms, not the 1 s RetryInfo`);
  });

  test("a RetryInfo longer than the deadline is not waited for", async () => {
    const { times, memory } = scripted([unavailable(10)], 1000);
    const started = Date.now();
    await assert.rejects(memory.get("k"), { status: "UNAVAILABLE", retryAfter: 10 });
    assert.equal(times.length, 1);
    assert.ok(Date.now() - started < 500);
  });

  test("RATE_LIMITED is not retried: it surfaces with retryAfter, reads and writes alike", async () => {
    const limited = () => rejection(Code.ResourceExhausted, ErrorReason.RATE_LIMITED, 2);
    const { times, memory } = scripted([limited(), limited()]);
    await assert.rejects(memory.get("k"), { code: "RATE_LIMITED", retryAfter: 2 });
    await assert.rejects(memory.set("step", "confirm"), (err: unknown) => err instanceof MemoryApiError && err.isRateLimit());
    assert.equal(times.length, 2);
  });
});

describe("session tokens", () => {
  test("createSessionToken sends the permissions and TTL; revokeSessionToken one target", async () => {
    const created: { sessionId: string; permissions: number[]; ttl: bigint | undefined }[] = [];
    const revoked: unknown[] = [];
    const transport = createRouterTransport(({ service }) => {
      service(MemoryService, {
        createSessionToken(request) {
          created.push({ sessionId: request.sessionId, permissions: [...request.permissions], ttl: request.ttlSeconds });
          return { token: "smt_x", tokenId: "t1", expiresAt: { seconds: 1_700_000_000n, nanos: 0 } };
        },
        revokeSessionToken(request) {
          revoked.push(request.target);
          return {};
        },
      });
    });
    const client = new MemoryClient("unused", { apiKey: "k", transport });
    const token = await client.createSessionToken("s", { permissions: ["read", "files"], ttlSeconds: 60 });
    assert.deepEqual(token, { token: "smt_x", tokenId: "t1", expiresAt: new Date(1_700_000_000_000) });
    await client.createSessionToken("s");
    assert.deepEqual(created, [
      { sessionId: "s", permissions: [TokenPermission.READ, TokenPermission.FILES], ttl: 60n },
      { sessionId: "s", permissions: [TokenPermission.READ], ttl: undefined },
    ]);
    await client.revokeSessionToken({ tokenId: "t1" });
    await client.revokeSessionToken({ sessionId: "s" });
    assert.deepEqual(revoked, [
      { case: "tokenId", value: "t1" },
      { case: "sessionId", value: "s" },
    ]);
    await assert.rejects(client.createSessionToken("s", { permissions: ["admin" as never] }), TypeError);
  });
});

describe("increment request ids", () => {
  /** A client whose server records the request ids and fails the first `failures` attempts. */
  function recording(failures: number) {
    const ids: string[] = [];
    const transport = createRouterTransport(({ service }) => {
      service(MemoryService, {
        increment(request) {
          ids.push(request.requestId);
          if (ids.length <= failures) throw new ConnectError("down", Code.Unavailable);
          return { value: 1 };
        },
      });
    });
    return { ids, memory: new MemoryClient("unused", { apiKey: "k", transport, maxAttempts: 3 }).session("s") };
  }

  test("a given id is sent, and every retry reuses it", async () => {
    const { ids, memory } = recording(1);
    assert.equal(await memory.increment("c", 1, 60, { requestId: "r-1" }), 1);
    assert.deepEqual(ids, ["r-1", "r-1"]);
  });

  test("without one, each call gets its own id and its retries reuse it", async () => {
    const { ids, memory } = recording(1);
    await memory.increment("c");
    await memory.increment("c", 1, 60);
    assert.equal(ids.length, 3);
    assert.ok(ids[0]);
    assert.equal(ids[0], ids[1]);
    assert.notEqual(ids[1], ids[2]);
  });

  test("an empty id turns deduplication off, and with it retries", async () => {
    const { ids, memory } = recording(1);
    await assert.rejects(memory.increment("c", 1, undefined, { requestId: "" }), { status: "UNAVAILABLE" });
    assert.deepEqual(ids, [""]);
  });
});

describe("documents and schemas", () => {
  /** A client whose server records PatchDocument and PutSchema requests. */
  function recording() {
    const patches: { mergePatch: string; mustExist: boolean; ttl: bigint | undefined; ifRevision: bigint | undefined }[] = [];
    const schemas: unknown[] = [];
    const transport = createRouterTransport(({ service }) => {
      service(MemoryService, {
        patchDocument(request) {
          patches.push({ mergePatch: request.mergePatch, mustExist: request.mustExist, ttl: request.ttlSeconds, ifRevision: request.ifRevision });
          return { revision: 7n };
        },
        putSchema(request) {
          schemas.push(JSON.parse(request.jsonSchema));
          return { schema: { name: request.name, version: 1n, sizeBytes: BigInt(request.jsonSchema.length) } };
        },
      });
    });
    return { patches, schemas, client: new MemoryClient("unused", { apiKey: "k", transport }) };
  }

  test("update sends a merge patch; updateMemory requires the session by default", async () => {
    const { patches, client } = recording();
    const memory = client.session("s");
    assert.equal(memory.revision, undefined);
    assert.equal(await memory.update({ order: { status: "shipped", note: undefined }, user: null }, 60, { ifRevision: 6 }), 7);
    assert.equal(memory.revision, 7);
    await client.updateMemory("s", { a: 1 }, 60, { mustExist: undefined });
    await client.updateMemory("s", { a: 1 }, 60, { mustExist: false });
    assert.deepEqual(patches, [
      { mergePatch: '{"order":{"status":"shipped"},"user":null}', mustExist: false, ttl: 60n, ifRevision: 6n },
      { mergePatch: '{"a":1}', mustExist: true, ttl: 60n, ifRevision: undefined },
      { mergePatch: '{"a":1}', mustExist: false, ttl: 60n, ifRevision: undefined },
    ]);
  });

  test("putSchema converts a Zod schema with z.toJSONSchema (input side) and sends JSON Schemas as they are", async () => {
    const { schemas, client } = recording();
    const Memory = z.object({ user: z.object({ name: z.string(), tier: z.enum(["free", "pro"]).default("free") }) });
    const info = await client.putSchema("m", Memory);
    assert.deepEqual([info.name, info.version], ["m", 1]);
    assert.deepEqual(schemas[0], z.toJSONSchema(Memory, { io: "input" }));
    // A default keeps the field optional: the server fills it on read.
    assert.deepEqual((schemas[0] as any).properties.user.required, ["name"]);
    await client.putSchema("plain", { type: "object" });
    assert.deepEqual(schemas[1], { type: "object" });
    await assert.rejects(client.putSchema("zod3", { _def: {}, safeParse: () => ({}) } as never), TypeError);
  });
});

describe("watch", () => {
  /** A server whose Watch streams are scripted per call; it records each call's after_revision and cancellation. */
  type Message = MessageInitShape<typeof WatchResponseSchema>;
  function scripted(script: ((afterRevision: bigint | undefined) => AsyncIterable<Message>)[]) {
    const calls: { afterRevision: bigint | undefined; signal: AbortSignal }[] = [];
    const transport = createRouterTransport(({ service }) => {
      service(MemoryService, {
        async *watch(request, context) {
          calls.push({ afterRevision: request.afterRevision, signal: context.signal });
          const next = script[calls.length - 1];
          if (!next) throw new ConnectError("no more scripted streams", Code.FailedPrecondition);
          yield* next(request.afterRevision);
        },
      });
    });
    return { calls, memory: new MemoryClient("unused", { apiKey: "k", transport }).session("s") };
  }
  const set = (key: string, revision: bigint) => ({ key, operation: ChangeOperation.SET, kind: ValueKind.STRING, version: 1n, revision });
  const del = (key: string, revision: bigint) => ({ key, operation: ChangeOperation.DELETE, revision });
  const hang = (signal?: AbortSignal) => new Promise((_, reject) => signal?.addEventListener("abort", () => reject(new Error("aborted"))));

  test("resumes after UNAVAILABLE and after a stream that ends, from the last revision seen", async () => {
    const { calls, memory } = scripted([
      async function* () {
        yield { revision: 10n };
        yield { changes: [set("a", 11n)], revision: 11n };
        throw new ConnectError("connection reset", Code.Unavailable);
      },
      async function* () {
        yield { revision: 11n };
        yield { changes: [del("a", 12n)], revision: 12n };
        // ends normally: the server went away
      },
      async function* () {
        yield { revision: 20n, compacted: true };
        yield { changes: [set("b", 21n)], revision: 21n };
        await hang();
      },
    ]);
    const seen = [];
    for await (const change of memory.watch()) {
      seen.push([change.operation, change.key, change.revision, change.kind]);
      if (seen.length === 4) break;
    }
    assert.deepEqual(seen, [
      ["set", "a", 11, "string"],
      ["delete", "a", 12, undefined],
      ["reset", "", 20, undefined],
      ["set", "b", 21, "string"],
    ]);
    assert.deepEqual(calls.map((c) => c.afterRevision), [undefined, 11n, 12n]);
  });

  test("breaking out of the loop cancels the call", async () => {
    const { calls, memory } = scripted([
      async function* () {
        yield { revision: 1n };
        yield { changes: [set("a", 2n)], revision: 2n };
        await hang();
      },
    ]);
    for await (const change of memory.watch({ afterRevision: 1 })) {
      assert.equal(change.key, "a");
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(calls.length, 1);
    assert.equal(calls[0]?.afterRevision, 1n);
    assert.equal(calls[0]?.signal.aborted, true);
  });

  test("an error with a reason is thrown, not retried; retries are bounded", async () => {
    const refused = scripted([
      async function* () {
        throw rejection(Code.Unauthenticated, ErrorReason.API_KEY_INVALID);
      },
    ]);
    await assert.rejects(async () => {
      for await (const _ of refused.memory.watch()) void _;
    }, { code: "API_KEY_INVALID" });
    assert.equal(refused.calls.length, 1);

    const down = async function* (): AsyncIterable<Message> {
      throw new ConnectError("down", Code.Unavailable);
    };
    const flaky = scripted([down, down, down]);
    await assert.rejects(async () => {
      for await (const _ of flaky.memory.watch({ maxReconnects: 2 })) void _;
    }, { status: "UNAVAILABLE" });
    assert.equal(flaky.calls.length, 3);
  });
});

describe("get with a fallback: values the shared vectors cannot store", () => {
  /** A session whose server answers every `get` with `value` (a file, or JSON the real server refuses). */
  function storing(value: MessageInitShape<typeof ValueSchema>["kind"]) {
    const transport = createRouterTransport(({ service }) => {
      service(MemoryService, { get: () => ({ found: true, entry: { key: "k", value: { kind: value } } }) });
    });
    return new MemoryClient("unused", { apiKey: "smt_a-session-token", transport }).session("s");
  }

  test("a file read with a fallback is a MemoryTypeError naming a file (its info holds bigints)", async () => {
    const memory = storing({ case: "fileValue", value: { key: "k", mimeType: "image/png", sizeBytes: 3n, version: 2n } });
    for (const [fallback, target] of [["", "a string"], [0, "a number"], [false, "a boolean (true/false)"]] as const) {
      await assert.rejects(memory.get("k", fallback as never), (err: unknown) => {
        assert.ok(err instanceof MemoryTypeError, `${fallback}: ${String(err)}`);
        assert.equal(err.message, `key 'k' holds a file, which cannot be read as ${target}`);
        return true;
      });
    }
  });

  test("a non-finite JSON number reads as neither a number nor its text, as in Python and Go", async () => {
    for (const json of ["1e400", "-1e400", "1" + "0".repeat(400)]) {
      const memory = storing({ case: "jsonValue", value: json });
      await assert.rejects(memory.get("k", 0), MemoryTypeError, json);
      await assert.rejects(memory.get("k", ""), MemoryTypeError, json);
    }
  });

  test("'-0' read with a number fallback is 0, not -0 (Python's int and Go's read)", async () => {
    for (const text of ["-0", "-0.0", "-.0e5"]) {
      assert.ok(Object.is(await storing({ case: "stringValue", value: text }).get("k", 0), 0), text);
    }
  });

  test("the error names a long value by its length, not the whole of it", async () => {
    const long = storing({ case: "stringValue", value: "x".repeat(255) });
    await assert.rejects(long.get("k", 0), { message: "key 'k' holds a 255-character string, which cannot be read as a number" });
    const object = storing({ case: "jsonValue", value: JSON.stringify({ items: "y".repeat(5000) }) });
    await assert.rejects(object.get("k", ""), { message: "key 'k' holds a JSON object, which cannot be read as a string" });
    await assert.rejects(storing({ case: "stringValue", value: "1_000" }).get("k", 0), {
      message: `key 'k' holds the string "1_000", which cannot be read as a number`,
    });
  });
});
