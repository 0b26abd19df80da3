/**
 * {@link MemoryClient}: one gRPC (HTTP/2) connection to Session Memory, shared by
 * every {@link MemorySession} it hands out.
 */
import { createClient, type Client, type Transport } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { MemoryService, TokenPermission as PbTokenPermission } from "./gen/sessionmemory/v1/memory_service_pb.js";
import { Connection } from "./connection.js";
import { jsonSchemaOf, type JsonSchema, type MergePatch, type UpdateOptions, type ZodSchemaLike } from "./document.js";
import { MemorySession } from "./session.js";
import { nodeTlsOptions, tlsFromEnv, type TlsOptions } from "./tls.js";
import type { Limits, SchemaInfo, SessionToken, TokenPermission } from "./types.js";
import { dateOf, limitsOf, schemaInfoOf } from "./types.js";

/** Options of a {@link MemoryClient}. */
export interface MemoryClientOptions {
  /**
   * The tenant's API key, or a session token (`smt_...`) from
   * `createSessionToken` (sent as `authorization: Bearer <key>`).
   */
  apiKey?: string | undefined;
  /** Deadline of every call, in milliseconds (retries included). Default 5000. */
  timeoutMs?: number;
  /** Deadline of a file upload or download, in milliseconds. Default 300000. */
  fileTimeoutMs?: number;
  /** Attempts for calls that are safe to retry on UNAVAILABLE. Default 3. */
  maxAttempts?: number;
  /**
   * TLS: `true` verifies the server with Node's root certificates; an object
   * sets the CA bundle (`ca`), a client certificate for mTLS (`cert` + `key`)
   * and the name to check (`serverName`). Default: plaintext. Ignored with
   * `transport`.
   */
  tls?: boolean | TlsOptions;
  /** A transport of your own (an escape hatch, e.g. for interceptors). */
  transport?: Transport;
}

const PERMISSIONS: Record<TokenPermission, PbTokenPermission> = {
  read: PbTokenPermission.READ,
  write: PbTokenPermission.WRITE,
  files: PbTokenPermission.FILES,
};

/** A connection to Session Memory. Create one and share it. */
export class MemoryClient {
  /** The raw generated Connect client: an escape hatch for what this one does not wrap. */
  readonly raw: Client<typeof MemoryService>;
  /** @internal Shared with the sessions: the call settings and the call loop. */
  readonly connection: Connection;

  /** @throws TypeError `tls.cert` without `tls.key`, or the other way round. */
  constructor(address = "localhost:50051", options: MemoryClientOptions = {}) {
    const tls = options.tls === true ? {} : options.tls || undefined;
    const transport =
      options.transport ??
      createGrpcTransport(
        tls === undefined
          ? { baseUrl: `http://${address}` }
          : { baseUrl: `https://${address}`, nodeOptions: nodeTlsOptions(tls) },
      );
    this.raw = createClient(MemoryService, transport);
    this.connection = new Connection(
      this.raw,
      {
        headers: options.apiKey ? { authorization: `Bearer ${options.apiKey}` } : {},
        timeoutMs: options.timeoutMs ?? 5000,
        fileTimeoutMs: options.fileTimeoutMs ?? 300_000,
        maxAttempts: Math.max(1, options.maxAttempts ?? 3),
      },
      Boolean(options.apiKey),
    );
  }

  /**
   * A client for `SESSION_MEMORY_ADDR` (default `localhost:50051`) with
   * `SESSION_MEMORY_API_KEY` (an API key or a session token). TLS comes from
   * `SESSION_MEMORY_TLS=true` (Node's roots), `SESSION_MEMORY_TLS_CA` (a PEM CA
   * bundle), `SESSION_MEMORY_CLIENT_CERT` + `SESSION_MEMORY_CLIENT_KEY` (a PEM client
   * certificate and key, for mTLS) and `SESSION_MEMORY_TLS_SERVER_NAME` (the name
   * to check in the server's certificate); each but the first implies TLS. A
   * `tls` option wins over all of them.
   * @throws Error the TLS variables do not make a configuration (a file is
   *   unreadable or not PEM, a certificate comes without its key, ...).
   */
  static fromEnv(options: Omit<MemoryClientOptions, "apiKey"> = {}): MemoryClient {
    return new MemoryClient(process.env.SESSION_MEMORY_ADDR || "localhost:50051", {
      ...options,
      tls: options.tls ?? (options.transport ? undefined : tlsFromEnv()),
      apiKey: process.env.SESSION_MEMORY_API_KEY || undefined,
    });
  }

  /** A handle on one conversation's memory. Does no I/O. */
  session(sessionId: string | null | undefined): MemorySession {
    return new MemorySession(this.connection, sessionId ?? "");
  }

  /** The limits the server enforces, and the tenant's rate limits, quotas and usage. */
  async getLimits(): Promise<Limits> {
    return limitsOf(await this.connection.call(true, (o) => this.raw.getLimits({}, o), null));
  }

  /**
   * Issue a token that authorizes only `sessionId` and `permissions` (default
   * `["read"]`) for `ttlSeconds` (1 to 3600, default 900). Hand `token` to a
   * party that must not hold the tenant's API key (a browser widget): a client
   * built with `{ apiKey: token }` then works on that session only; anything
   * else fails with `PERMISSION_DENIED`. Needs the tenant's API key. Not
   * retried (a retry after a lost answer would issue a second token).
   */
  async createSessionToken(
    sessionId: string,
    options: { permissions?: TokenPermission[]; ttlSeconds?: number } = {},
  ): Promise<SessionToken> {
    const permissions = (options.permissions ?? ["read"]).map((p) => {
      const value = PERMISSIONS[p];
      if (value === undefined) throw new TypeError(`unknown permission '${p}': use "read", "write" or "files"`);
      return value;
    });
    const ttlSeconds = options.ttlSeconds === undefined ? undefined : BigInt(options.ttlSeconds);
    const r = await this.connection.call(
      false,
      (o) => this.raw.createSessionToken({ sessionId, permissions, ...(ttlSeconds === undefined ? {} : { ttlSeconds }) }, o),
      sessionId,
    );
    return { token: r.token, tokenId: r.tokenId, expiresAt: dateOf(r.expiresAt) };
  }

  /**
   * Stop one token (`{ tokenId }`), or every token issued so far for a session
   * (`{ sessionId }`). Every server process refuses it within about a second
   * (`TOKEN_REVOKED`, UNAUTHENTICATED). Revoking twice is harmless.
   */
  async revokeSessionToken(target: { tokenId: string } | { sessionId: string }): Promise<void> {
    const tokenId = "tokenId" in target ? target.tokenId : undefined;
    const sessionId = "sessionId" in target ? target.sessionId : undefined;
    if ((tokenId === undefined) === (sessionId === undefined)) {
      throw new TypeError("pass exactly one of tokenId and sessionId");
    }
    const request =
      tokenId !== undefined
        ? { target: { case: "tokenId" as const, value: tokenId } }
        : { target: { case: "sessionId" as const, value: sessionId! } };
    await this.connection.call(true, (o) => this.raw.revokeSessionToken(request, o), null);
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
    const r = await this.connection.call(true, (o) => this.raw.putSchema({ name, jsonSchema }, o), null);
    return schemaInfoOf(r.schema);
  }

  /** The registered schema `name`; `SCHEMA_NOT_FOUND` (NOT_FOUND) when there is none. */
  async getSchema(name: string): Promise<JsonSchema> {
    const r = await this.connection.call(true, (o) => this.raw.getSchema({ name }, o), null);
    return JSON.parse(r.jsonSchema) as JsonSchema;
  }

  /** Every schema of the tenant, sorted by name. */
  async listSchemas(): Promise<SchemaInfo[]> {
    const r = await this.connection.call(true, (o) => this.raw.listSchemas({}, o), null);
    return r.schemas.map(schemaInfoOf);
  }

  /** Remove a schema; resolves to whether it existed. Bound sessions are no longer validated. */
  async deleteSchema(name: string): Promise<boolean> {
    const r = await this.connection.call(true, (o) => this.raw.deleteSchema({ name }, o), null);
    return r.deleted;
  }
}
