/** Client logic without a server: error mapping and Increment request ids. */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { Code, ConnectError, createRouterTransport } from "@connectrpc/connect";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { fromConnectError } from "../src/errors.js";
import { ErrorReason } from "../src/gen/sessionmemory/v1/error_reason_pb.js";
import { MemoryService } from "../src/gen/sessionmemory/v1/memory_service_pb.js";
import { MemoryApiError, MemoryClient } from "../src/index.js";

/** A ConnectError as the transport yields it: ErrorInfo (and RetryInfo) as raw details. */
function rejection(code: Code, reason: ErrorReason, retrySeconds?: number): ConnectError {
  const err = new ConnectError("refused", code);
  const info = new BinaryWriter()
    .tag(1, WireType.LengthDelimited).string(ErrorReason[reason])
    .tag(2, WireType.LengthDelimited).string("sessionmemory")
    .finish();
  err.details.push({ type: "google.rpc.ErrorInfo", value: info });
  if (retrySeconds !== undefined) {
    const delay = new BinaryWriter().tag(1, WireType.Varint).int64(retrySeconds).finish();
    const retry = new BinaryWriter().tag(1, WireType.LengthDelimited).bytes(delay).finish();
    err.details.push({ type: "google.rpc.RetryInfo", value: retry });
  }
  return err;
}

describe("error mapping", () => {
  const cases: [ErrorReason, Code, string, boolean][] = [
    [ErrorReason.STORE_FULL, Code.ResourceExhausted, "RESOURCE_EXHAUSTED", false],
    [ErrorReason.REQUEST_ID_REUSED, Code.InvalidArgument, "INVALID_ARGUMENT", false],
    [ErrorReason.MALFORMED_REQUEST, Code.InvalidArgument, "INVALID_ARGUMENT", false],
    [ErrorReason.TOO_MANY_UPLOADS, Code.ResourceExhausted, "RESOURCE_EXHAUSTED", true],
    [ErrorReason.SPOOL_FULL, Code.ResourceExhausted, "RESOURCE_EXHAUSTED", true],
    [ErrorReason.SERVER_BUSY, Code.ResourceExhausted, "RESOURCE_EXHAUSTED", true],
    [ErrorReason.UPLOAD_TOO_SLOW, Code.DeadlineExceeded, "DEADLINE_EXCEEDED", false],
  ];
  for (const [reason, code, status, retry] of cases) {
    test(`${ErrorReason[reason]} is a MemoryApiError with status ${status}`, () => {
      const err = fromConnectError(rejection(code, reason, retry ? 2 : undefined));
      assert.ok(err instanceof MemoryApiError);
      assert.deepEqual([err.code, err.status, err.message], [ErrorReason[reason], status, "refused"]);
      assert.equal(err.isRateLimit(), retry);
      assert.equal(err.retryAfter, retry ? 2 : undefined);
    });
  }
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
