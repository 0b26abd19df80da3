/**
 * {@link MemoryClient}: one gRPC (HTTP/2) connection to Session Memory, shared by
 * every {@link MemorySession} it hands out.
 */
import { createClient, type Client, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { MemoryService } from "./gen/sessionmemory/v1/memory_service_pb.js";
import { MemoryUnavailableError, fromConnectError } from "./errors.js";
import { jsonSchemaOf, type JsonSchema, type MergePatch, type UpdateOptions, type ZodSchemaLike } from "./document.js";
import { MemorySession } from "./session.js";
import type { Limits, SchemaInfo } from "./types.js";
import { limitsOf, schemaInfoOf } from "./types.js";

/** Options of a {@link MemoryClient}. */
export interface MemoryClientOptions {
  /** The tenant's API key (sent as `authorization: Bearer <key>`). */
  apiKey?: string | undefined;
  /** Deadline of every call, in milliseconds (retries included). Default 5000. */
  timeoutMs?: number;
  /** Deadline of a file upload or download, in milliseconds. Default 300000. */
  fileTimeoutMs?: number;
  /** Attempts for calls that are safe to retry on UNAVAILABLE. Default 3. */
  maxAttempts?: number;
  /** Use TLS (https). Default false. */
  tls?: boolean;
  /** A transport of your own (an escape hatch, e.g. for interceptors). */
  transport?: Transport;
}

/** Internal: what a call needs. */
export interface CallContext {
  headers: Record<string, string>;
  timeoutMs: number;
  fileTimeoutMs: number;
  maxAttempts: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A connection to Session Memory. Create one and share it. */
export class MemoryClient {
  /** The raw generated Connect client: an escape hatch for what this one does not wrap. */
  readonly raw: Client<typeof MemoryService>;
  /** @internal */
  readonly ctx: CallContext;
  /** @internal */
  readonly hasKey: boolean;

  constructor(address = "localhost:50051", options: MemoryClientOptions = {}) {
    const transport =
      options.transport ??
      createGrpcTransport({ baseUrl: `${options.tls ? "https" : "http"}://${address}` });
    this.raw = createClient(MemoryService, transport);
    this.hasKey = Boolean(options.apiKey);
    this.ctx = {
      headers: options.apiKey ? { authorization: `Bearer ${options.apiKey}` } : {},
      timeoutMs: options.timeoutMs ?? 5000,
      fileTimeoutMs: options.fileTimeoutMs ?? 300_000,
      maxAttempts: Math.max(1, options.maxAttempts ?? 3),
    };
  }

  /** A client for SESSION_MEMORY_ADDR with SESSION_MEMORY_API_KEY. */
  static fromEnv(options: Omit<MemoryClientOptions, "apiKey"> = {}): MemoryClient {
    return new MemoryClient(process.env.SESSION_MEMORY_ADDR || "localhost:50051", {
      ...options,
      apiKey: process.env.SESSION_MEMORY_API_KEY || undefined,
    });
  }

  /** A handle on one conversation's memory. Does no I/O. */
  session(sessionId: string | null | undefined): MemorySession {
    return new MemorySession(this, sessionId ?? "");
  }

  /** The limits the server enforces. */
  async getLimits(): Promise<Limits> {
    const response = await this.call(true, (o) => this.raw.getLimits({}, o), null);
    return limitsOf(response.limits);
  }

  /**
   * Merge `partial` into a session's document from outside the conversation
   * (e.g. a webhook saying the order shipped); resolves to the new revision.
   * Unlike `memory.update`, `mustExist` defaults to true: a session without a
   * live key fails with `SESSION_NOT_FOUND` (NOT_FOUND) instead of being revived.
   */
  async updateMemory<T = Record<string, unknown>>(
    sessionId: string,
    partial: MergePatch<T>,
    ttlSeconds: number,
    options: UpdateOptions = {},
  ): Promise<number> {
    return this.session(sessionId).update<T>(partial, ttlSeconds, { ...options, mustExist: options.mustExist ?? true });
  }

  /**
   * Register (or replace, with a new version) the tenant's JSON Schema `name`:
   * a JSON Schema object (draft 2020-12, local `$ref`s only, at most 64 KiB)
   * or a Zod 4 schema, converted with `z.toJSONSchema(schema, { io: "input" })`.
   * Invalid schemas fail with `SCHEMA_INVALID`; more than the tenant's limit
   * with `TOO_MANY_SCHEMAS`.
   */
  async putSchema(name: string, schema: JsonSchema | ZodSchemaLike): Promise<SchemaInfo> {
    const jsonSchema = JSON.stringify(await jsonSchemaOf(schema));
    const r = await this.call(true, (o) => this.raw.putSchema({ name, jsonSchema }, o), null);
    return schemaInfoOf(r.schema);
  }

  /** The registered schema `name`; `SCHEMA_NOT_FOUND` (NOT_FOUND) when there is none. */
  async getSchema(name: string): Promise<JsonSchema> {
    const r = await this.call(true, (o) => this.raw.getSchema({ name }, o), null);
    return JSON.parse(r.jsonSchema) as JsonSchema;
  }

  /** Every schema of the tenant, sorted by name. */
  async listSchemas(): Promise<SchemaInfo[]> {
    const r = await this.call(true, (o) => this.raw.listSchemas({}, o), null);
    return r.schemas.map(schemaInfoOf);
  }

  /** Remove a schema; resolves to whether it existed. Bound sessions are no longer validated. */
  async deleteSchema(name: string): Promise<boolean> {
    const r = await this.call(true, (o) => this.raw.deleteSchema({ name }, o), null);
    return r.deleted;
  }

  /**
   * Throw the error a call would get when the client has no API key or the
   * session no id. `sessionId` is null for calls outside a session.
   * @internal
   */
  check(sessionId: string | null): void {
    if (!this.hasKey) {
      throw new MemoryUnavailableError(
        "no API key: pass apiKey or set SESSION_MEMORY_API_KEY",
        "UNAUTHENTICATED",
        "API_KEY_MISSING",
      );
    }
    if (sessionId === "") {
      throw new MemoryUnavailableError(
        "no session id: memory is only available inside a conversation",
        "INVALID_ARGUMENT",
        "INVALID_SESSION_ID",
      );
    }
  }

  /**
   * Run one call with the deadline, the API key and, when `idempotent`, retries
   * of UNAVAILABLE with backoff. `sessionId` is null for calls outside a session.
   * @internal
   */
  async call<T>(
    idempotent: boolean,
    invoke: (options: { headers: Record<string, string>; timeoutMs: number }) => Promise<T>,
    sessionId: string | null,
    timeoutMs: number = this.ctx.timeoutMs,
  ): Promise<T> {
    this.check(sessionId);
    const deadline = Date.now() + timeoutMs;
    for (let attempt = 1; ; attempt++) {
      try {
        return await invoke({
          headers: this.ctx.headers,
          timeoutMs: Math.max(deadline - Date.now(), 1),
        });
      } catch (err) {
        const error = fromConnectError(err);
        const delay = Math.max(
          (error.retryAfter ?? 0) * 1000,
          50 * 2 ** (attempt - 1) * (0.5 + Math.random()),
        );
        const retry =
          idempotent &&
          error.status === "UNAVAILABLE" &&
          attempt < this.ctx.maxAttempts &&
          Date.now() + delay < deadline;
        if (!retry) throw error;
        await sleep(delay);
      }
    }
  }
}

