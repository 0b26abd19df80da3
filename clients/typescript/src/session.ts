/**
 * {@link MemorySession}: one conversation's memory, shaped like the bot
 * platform's `ctx.memory` so handlers port by changing one import.
 */
import { randomUUID } from "node:crypto";
import type { Readable } from "node:stream";
import type { Connection } from "./connection.js";
import { MemoryApiError, MemoryTypeError, fromConnectError } from "./errors.js";
import type { SetFileRequest } from "./gen/sessionmemory/v1/memory_service_pb.js";
import type { DocumentOptions, MergePatch, UpdateOptions } from "./document.js";
import type { Change, DocumentWithRevision, Entry, EntryInfo, FileInfo, WriteResult } from "./types.js";
import { dateOf, fileInfoOf, valueOf } from "./types.js";
import { watchChanges, type WatchOptions } from "./watch.js";

/** A value `set` accepts. */
export type Scalar = string | number | boolean;
/** What `setFile` accepts: base64 text, bytes, or a stream of bytes. */
export type FileData = string | Uint8Array | Readable | AsyncIterable<Uint8Array>;

/** Options of a write. */
export interface WriteOptions {
  /** Write only if the key's current version equals this. */
  ifVersion?: bigint | number;
  /** Write only if the key does not exist. */
  onlyIfAbsent?: boolean;
}

/** Options of {@link MemorySession.increment}. */
export interface IncrementOptions {
  /**
   * Up to 128 printable characters naming this increment within the session.
   * The same id with the same key, delta and TTL within 10 minutes returns the
   * first result instead of counting again; with another key, delta or TTL the
   * call is refused (`REQUEST_ID_REUSED`) and changes nothing. Default: a fresh
   * random id per call, reused by its own retries. `""` sends none: no
   * deduplication, and the call is then not retried.
   */
  requestId?: string;
}

const CHUNK = 256 * 1024;
/** `Kind` enum values of the contract, by number. */
const KIND_NAMES = ["unspecified", "string", "number", "boolean", "json", "file"];

function writeResult(r: { key: string; version: bigint; expiresAt?: { seconds: bigint; nanos: number } } | undefined): WriteResult {
  return { key: r?.key ?? "", version: r?.version ?? 0n, expiresAt: dateOf(r?.expiresAt) };
}

function condition(options: WriteOptions): { ifVersion?: bigint } {
  if (options.onlyIfAbsent) return { ifVersion: 0n };
  return options.ifVersion === undefined ? {} : { ifVersion: BigInt(options.ifVersion) };
}

function ttlField(ttl: number | undefined): { ttlSeconds?: bigint } {
  return ttl === undefined ? {} : { ttlSeconds: BigInt(ttl) };
}

function scalarValue(value: Scalar) {
  switch (typeof value) {
    case "string":
      return { case: "stringValue" as const, value };
    case "number":
      return { case: "numberValue" as const, value };
    case "boolean":
      return { case: "boolValue" as const, value };
    default:
      throw new TypeError(`set() takes a string, number or boolean; use setJson for ${typeof value}`);
  }
}

/**
 * A stored value named for an error message, as the Python and Go clients name
 * it: `the string '1_000'`, `the number 7`, `a JSON object`, `a file`. Never
 * throws (a file's info holds bigints, which JSON.stringify refuses) and stays
 * short (a JSON value may be kilobytes).
 */
function describe(value: unknown, kind: string): string {
  if (kind === "file") return "a file";
  if (typeof value === "string") return value.length <= 40 ? `the string ${JSON.stringify(value)}` : `a ${value.length}-character string`;
  if (typeof value === "number") return `the number ${String(value)}`;
  if (typeof value === "boolean") return `the boolean ${value}`;
  if (value === null) return "JSON null";
  if (Array.isArray(value)) return "a JSON array";
  if (typeof value === "object") return "a JSON object";
  return `a ${kind} value`;
}

/** What a fallback's type reads as, for an error message. */
const TARGETS: Record<string, string> = { string: "a string", number: "a number", boolean: "a boolean (true/false)" };

/** A number read with a number fallback: finite only, and -0 as 0 (as Python's int and Go read it). */
function finite(n: number): number | undefined {
  return Number.isFinite(n) ? n + 0 : undefined;
}

/** Convert a stored value to the type of `fallback`, exactly or not at all. */
function coerce(value: unknown, kind: string, fallback: unknown, key: string): unknown {
  if (fallback === undefined || fallback === null) return value;
  const fail = () =>
    new MemoryTypeError(
      `key '${key}' holds ${describe(value, kind)}, which cannot be read as ${TARGETS[typeof fallback] ?? typeof fallback}`,
    );
  switch (typeof fallback) {
    case "string":
      if (typeof value === "string") return value;
      if (typeof value === "number" && Number.isFinite(value)) return String(value);
      if (typeof value === "boolean") return String(value);
      throw fail();
    case "number": {
      const n =
        typeof value === "number"
          ? finite(value)
          : typeof value === "string" && /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(value)
            ? finite(Number(value))
            : undefined;
      if (n !== undefined) return n;
      throw fail();
    }
    case "boolean":
      if (typeof value === "boolean") return value;
      if (value === "true" || value === "false") return value === "true";
      throw fail();
    default:
      if (kind === "json") return value;
      throw fail();
  }
}

function* pieces(bytes: Uint8Array): Iterable<Uint8Array> {
  for (let i = 0; i < bytes.length; i += CHUNK) yield bytes.subarray(i, i + CHUNK);
}

async function* chunksOf(data: FileData): AsyncIterable<Uint8Array> {
  if (typeof data === "string" || data instanceof Uint8Array) {
    yield* pieces(typeof data === "string" ? Buffer.from(data, "base64") : data);
    return;
  }
  // A stream's chunks are split to ours: the server caps one message's size.
  for await (const chunk of data as AsyncIterable<Uint8Array | string>) {
    yield* pieces(typeof chunk === "string" ? Buffer.from(chunk) : chunk);
  }
}

/** One conversation's memory (from {@link MemoryClient.session}). */
export class MemorySession {
  private lastRevision: number | undefined;

  /** @internal Use {@link MemoryClient.session}. */
  constructor(
    private readonly client: Connection,
    /** The session (conversation) id. */
    readonly sessionId: string,
  ) {}

  /** False when the session id or the API key is missing; calls then throw. */
  get available(): boolean {
    return Boolean(this.sessionId) && this.client.hasKey;
  }

  /**
   * The session revision last seen by `getDocument`, `getDocumentWithRevision`,
   * `update` or `bindSchema` on this handle (for `ifRevision`); undefined before.
   */
  get revision(): number | undefined {
    return this.lastRevision;
  }

  /**
   * The value of `key` typed like `fallback` (the fallback when missing).
   * `key` may be a path into a JSON value or a file's info
   * (`lastOrder.status`, `cart.items.0.name`); a missing path is a miss.
   *
   * The stored value is converted to the fallback's type exactly, as the Python
   * and Go clients do: a number fallback reads any number, and a string only when
   * it is a decimal numeral (`42`, `-2.5`, `1e3`, `.5`; no spaces, `_`, hex or
   * words) with a finite value; a string fallback reads a string as is, a boolean
   * as `"true"`/`"false"` and a number as `String(n)` writes it (`1e-7`, `-0` as
   * `"0"`); a boolean fallback reads a boolean or the strings `"true"`/`"false"`.
   * A JSON scalar converts like the scalar; a JSON object or array, or a file,
   * never converts. Without a fallback the value is returned as stored (`null`
   * when missing).
   *
   * @param key - The key, or a path into a JSON value.
   * @param fallback - Returned when the key is missing; its type is the result's.
   * @returns The value, converted to the fallback's type.
   * @throws {@link MemoryTypeError} The value cannot be converted exactly; no call failed.
   * @throws {@link MemoryApiError} The call failed.
   */
  get(key: string, fallback: string): Promise<string>;
  get(key: string, fallback: number): Promise<number>;
  get(key: string, fallback: boolean): Promise<boolean>;
  get(key: string): Promise<unknown>;
  async get(key: string, fallback?: Scalar): Promise<unknown> {
    const entry = await this.getEntry(key);
    if (entry === undefined) return fallback ?? null;
    return coerce(entry.value, entry.kind, fallback, key);
  }

  /**
   * The JSON value of `key`, or `fallback` when missing: typed `T` with a
   * fallback, `T | null` without one (a miss is `null`). `T` is not checked at
   * run time: validate it (e.g. with zod) where it matters.
   */
  getJson<T>(key: string, fallback: T): Promise<T>;
  getJson<T = unknown>(key: string): Promise<T | null>;
  async getJson<T>(key: string, fallback?: T): Promise<T | null> {
    const entry = await this.getEntry(key);
    return (entry === undefined ? (fallback ?? null) : entry.value) as T | null;
  }

  /**
   * The value with its kind, version and expiry; undefined when missing. For a
   * path, `key` is the path, `kind` the value's own and version/expiry the key's.
   */
  async getEntry(key: string): Promise<Entry | undefined> {
    const r = await this.client.call(true, (o) => this.client.raw.get({ sessionId: this.sessionId, key }, o), this.sessionId);
    if (!r.found || !r.entry) return undefined;
    const [value, kind] = valueOf(r.entry.value);
    return { key: r.entry.key, value, kind, expiresAt: dateOf(r.entry.expiresAt), version: r.entry.version };
  }

  /** Up to 100 values (keys or paths) in one round trip; missing ones are left out. */
  async getMany(keys: string[]): Promise<Record<string, unknown>> {
    const r = await this.client.call(true, (o) => this.client.raw.getMany({ sessionId: this.sessionId, keys }, o), this.sessionId);
    return Object.fromEntries(r.entries.map((e) => [e.key, valueOf(e.value)[0]]));
  }

  /**
   * The whole session as one object: each key a field, files as their info
   * (`{key, mime_type, size_bytes, sha256, created_at, expires_at, version}`),
   * the bound schema's defaults filled in unless `{ defaults: false }`.
   * `T` types the result (unchecked); `{ model }` (e.g. a Zod schema) checks it.
   * The session's revision is then in {@link revision}.
   */
  async getDocument<T = Record<string, unknown>>(options: DocumentOptions<T> = {}): Promise<T> {
    return (await this.getDocumentWithRevision<T>(options)).document;
  }

  /** {@link getDocument} with the revision, the bound schema and the defaulted paths. */
  async getDocumentWithRevision<T = Record<string, unknown>>(options: DocumentOptions<T> = {}): Promise<DocumentWithRevision<T>> {
    const r = await this.client.call(
      true,
      (o) =>
        this.client.raw.getDocument(
          { sessionId: this.sessionId, paths: options.paths ?? [], omitDefaults: options.defaults === false },
          o,
        ),
      this.sessionId,
    );
    const raw: unknown = JSON.parse(r.json || "{}");
    this.lastRevision = Number(r.revision);
    return {
      document: options.model ? options.model.parse(raw) : (raw as T),
      revision: this.lastRevision,
      schema: r.schema || undefined,
      defaulted: [...r.defaultedPaths],
    };
  }

  /**
   * Merge `partial` into the document atomically (RFC 7396: objects merge,
   * `null` deletes, anything else replaces) and resolve to the new revision.
   * Every top-level key the patch touches lives `ttlSeconds` (required, at most
   * a day); the others keep their values and TTLs. A patch that breaks a limit
   * or the bound schema (`SCHEMA_VIOLATION`, with `metadata.pointer` and
   * `metadata.keyword`) changes nothing.
   */
  async update<T = Record<string, unknown>>(partial: MergePatch<T>, ttlSeconds: number, options: UpdateOptions = {}): Promise<number> {
    const mergePatch = JSON.stringify(partial);
    const ifRevision = options.ifRevision === undefined ? {} : { ifRevision: BigInt(options.ifRevision) };
    // Re-applying a merge patch gives the same document, so only a conditional one is not retried.
    const r = await this.client.call(
      options.ifRevision === undefined,
      (o) =>
        this.client.raw.patchDocument(
          {
            sessionId: this.sessionId,
            mergePatch,
            ...ttlField(ttlSeconds),
            schema: options.schema ?? "",
            mustExist: options.mustExist ?? false,
            ...ifRevision,
          },
          o,
        ),
      this.sessionId,
    );
    this.lastRevision = Number(r.revision);
    return this.lastRevision;
  }

  /**
   * Bind the session to the registered schema `name` (the current document must
   * validate: `SCHEMA_VIOLATION` otherwise); from then on every write is
   * validated. `""`, null or undefined unbinds. Resolves to the revision.
   */
  async bindSchema(name: string | null | undefined): Promise<number> {
    const r = await this.client.call(
      true,
      (o) => this.client.raw.bindSchema({ sessionId: this.sessionId, schema: name ?? "" }, o),
      this.sessionId,
    );
    this.lastRevision = Number(r.revision);
    return this.lastRevision;
  }

  /**
   * The session's changes as they happen, in revision order:
   * `for await (const change of memory.watch()) ...`. A dropped stream is
   * reopened from the last revision seen (with bounded backoff); a `"reset"`
   * change means some changes are gone: re-read the document. Breaking out of
   * the loop, or aborting `signal`, ends the stream. To miss nothing written
   * after a read, pass that read's revision as `afterRevision`.
   */
  watch(options: WatchOptions = {}): AsyncGenerator<Change, void, undefined> {
    return watchChanges(this.client, this.sessionId, options);
  }

  /** Store a string, number or boolean for `ttlSeconds` (default one day). */
  async set(key: string, value: Scalar, ttlSeconds?: number, options: WriteOptions = {}): Promise<WriteResult> {
    const cond = condition(options);
    const r = await this.client.call(
      cond.ifVersion === undefined,
      (o) => this.client.raw.set({ sessionId: this.sessionId, key, value: scalarValue(value), ...ttlField(ttlSeconds), ...cond }, o),
      this.sessionId,
    );
    return writeResult(r.result);
  }

  /** Store any JSON-serializable value for `ttlSeconds` (required, at most a day). */
  async setJson(key: string, value: unknown, ttlSeconds: number, options: WriteOptions = {}): Promise<WriteResult> {
    const cond = condition(options);
    const json = JSON.stringify(value);
    const r = await this.client.call(
      cond.ifVersion === undefined,
      (o) => this.client.raw.setJson({ sessionId: this.sessionId, key, json, ttlSeconds: BigInt(ttlSeconds), ...cond }, o),
      this.sessionId,
    );
    return writeResult(r.result);
  }

  /**
   * Store up to 100 values in one call, all or nothing: strings, numbers and
   * booleans as themselves, anything else as JSON (which needs `ttlSeconds`).
   * If one entry breaks a limit, none is written. Every value lives
   * `ttlSeconds` (default one day for scalars).
   *
   * @param entries - Keys and their values, e.g. `{ step: "email", name: "Ada" }`.
   * @param ttlSeconds - Seconds until every written value expires (1 to 86,400).
   * @returns One result per entry, in the entries' order.
   */
  async setMany(entries: Record<string, unknown>, ttlSeconds?: number): Promise<WriteResult[]> {
    const list = Object.entries(entries).map(([key, value]) => {
      if (value === undefined || typeof value === "function" || typeof value === "symbol") {
        throw new TypeError(`setMany: the value of '${key}' is ${typeof value}, which cannot be stored`);
      }
      const kind =
        typeof value === "string" || typeof value === "number" || typeof value === "boolean"
          ? scalarValue(value)
          : { case: "jsonValue" as const, value: JSON.stringify(value) };
      return { key, value: { kind }, ...ttlField(ttlSeconds) };
    });
    const r = await this.client.call(
      true,
      (o) => this.client.raw.setMany({ sessionId: this.sessionId, entries: list }, o),
      this.sessionId,
    );
    return r.results.map(writeResult);
  }

  /** Delete one key or up to 100; resolves to how many existed. */
  async delete(keys: string | string[]): Promise<number> {
    const list = typeof keys === "string" ? [keys] : keys;
    const r = await this.client.call(true, (o) => this.client.raw.delete({ sessionId: this.sessionId, keys: list }, o), this.sessionId);
    return Number(r.deletedCount);
  }

  /**
   * Add `delta` atomically (a missing key counts from 0) and resolve to the new
   * number; the result lives `ttlSeconds` (default one day). Retries are safe:
   * every attempt carries the same request id, so the server counts it once.
   * Pass `{ requestId }` to make your own retries (e.g. of a redelivered event)
   * count once too.
   */
  async increment(key: string, delta = 1, ttlSeconds?: number, options: IncrementOptions = {}): Promise<number> {
    const requestId = options.requestId ?? randomUUID();
    const r = await this.client.call(
      requestId !== "",
      (o) => this.client.raw.increment({ sessionId: this.sessionId, key, delta, requestId, ...ttlField(ttlSeconds) }, o),
      this.sessionId,
    );
    return r.value;
  }

  /** Give keys a new TTL without rewriting them; resolves to how many existed. */
  async touch(keys: string | string[], ttlSeconds: number): Promise<number> {
    const list = typeof keys === "string" ? [keys] : keys;
    const r = await this.client.call(
      true,
      (o) => this.client.raw.touch({ sessionId: this.sessionId, keys: list, ttlSeconds: BigInt(ttlSeconds) }, o),
      this.sessionId,
    );
    return Number(r.touchedCount);
  }

  /** Describe every live key (kind, size, expiry, version), sorted by key. */
  async list(): Promise<EntryInfo[]> {
    const r = await this.client.call(true, (o) => this.client.raw.list({ sessionId: this.sessionId }, o), this.sessionId);
    return r.entries.map((e) => ({
      key: e.key,
      kind: KIND_NAMES[e.kind] ?? "unknown",
      sizeBytes: Number(e.sizeBytes),
      expiresAt: dateOf(e.expiresAt),
      version: e.version,
    }));
  }

  /** Delete the whole session; resolves to how many keys were deleted. */
  async clear(): Promise<number> {
    const r = await this.client.call(true, (o) => this.client.raw.clear({ sessionId: this.sessionId }, o), this.sessionId);
    return Number(r.deletedCount);
  }

  /** Upload a file (≤ 10 MiB) for `ttlSeconds` (required, ≤ a week), streamed in 256 KiB chunks. */
  async setFile(key: string, data: FileData, ttlSeconds: number, mimeType: string, options: WriteOptions & { uploadId?: string } = {}): Promise<FileInfo> {
    const sessionId = this.sessionId;
    const header = { sessionId, key, mimeType, ttlSeconds: BigInt(ttlSeconds), uploadId: options.uploadId ?? randomUUID(), ...condition(options) };
    async function* requests(): AsyncIterable<Partial<SetFileRequest>> {
      yield { part: { case: "header", value: header } } as Partial<SetFileRequest>;
      for await (const chunk of chunksOf(data)) {
        if (chunk.length) yield { part: { case: "chunk", value: chunk } } as Partial<SetFileRequest>;
      }
      yield { finishWrite: true };
    }
    const r = await this.client.call(
      false,
      (o) => this.client.raw.setFile(requests() as AsyncIterable<SetFileRequest>, o),
      sessionId,
      this.client.ctx.fileTimeoutMs,
    );
    return fileInfoOf(r.file);
  }

  /** A handle on the file under `key` (with a presigned URL), or undefined when missing. */
  async getFile(key: string, urlTtlSeconds?: number): Promise<FileHandle | undefined> {
    const r = await this.client.call(
      true,
      (o) => this.client.raw.getFile({ sessionId: this.sessionId, key, ...(urlTtlSeconds === undefined ? {} : { urlTtlSeconds: BigInt(urlTtlSeconds) }) }, o),
      this.sessionId,
    );
    if (!r.found) return undefined;
    return new FileHandle(this.client, this.sessionId, fileInfoOf(r.file), r.url, dateOf(r.urlExpiresAt));
  }
}

/** A stored file: its `info`, a presigned URL, and its bytes on demand. */
export class FileHandle {
  /** @internal Returned by {@link MemorySession.getFile}. */
  constructor(
    private readonly client: Connection,
    private readonly sessionId: string,
    /** The file's description. */
    readonly info: FileInfo,
    private readonly url: string,
    /** When the URL stops working. */
    readonly urlExpiresAt: Date,
  ) {}

  /** The presigned download URL (plain HTTP GET; no extra call). */
  toUrl(): string {
    return this.url;
  }

  /** Stream the bytes without holding them all. */
  async *chunks(): AsyncIterable<Uint8Array> {
    try {
      let first = true;
      const stream = this.client.raw.readFile(
        { sessionId: this.sessionId, key: this.info.key },
        { headers: this.client.ctx.headers, timeoutMs: this.client.ctx.fileTimeoutMs },
      );
      for await (const message of stream) {
        if (first) {
          first = false;
          const version = message.part.case === "file" ? message.part.value.version : undefined;
          if (version !== this.info.version) {
            throw new MemoryApiError(`file '${this.info.key}' was replaced since getFile`, "ABORTED", "VERSION_MISMATCH");
          }
          continue;
        }
        if (message.part.case === "chunk") yield message.part.value;
      }
    } catch (err) {
      throw fromConnectError(err);
    }
  }

  /** All the bytes. */
  async toRaw(): Promise<Buffer> {
    const parts: Uint8Array[] = [];
    for await (const chunk of this.chunks()) parts.push(chunk);
    return Buffer.concat(parts);
  }

  /** All the bytes, base64-encoded. */
  async toBase64(): Promise<string> {
    return (await this.toRaw()).toString("base64");
  }
}
