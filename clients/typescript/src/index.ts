/**
 * Session Memory for Node.js: typed, expiring, per-conversation memory over gRPC.
 *
 * ```ts
 * const client = MemoryClient.fromEnv();
 * const memory = client.session(socketId);
 * const step = await memory.get("step", "start");
 * await memory.update({ order: { status: "shipped" } }, 3600);   // merge into the document
 * const doc = await memory.getDocument<MyMemory>();
 * ```
 */
export { MemoryClient, type MemoryClientOptions } from "./client.js";
export type { TlsOptions } from "./tls.js";
export { MemorySession, FileHandle, type FileData, type IncrementOptions, type Scalar, type WriteOptions } from "./session.js";
export type { DocumentModel, DocumentOptions, JsonSchema, MergePatch, UpdateOptions, ZodSchemaLike } from "./document.js";
export type { WatchOptions } from "./watch.js";
export { MemoryApiError, MemoryTypeError, MemoryUnavailableError } from "./errors.js";
export type {
  Change,
  DocumentWithRevision,
  Entry,
  EntryInfo,
  FileInfo,
  Limits,
  SchemaInfo,
  SessionToken,
  TenantLimits,
  TenantUsage,
  TokenPermission,
  WriteResult,
} from "./types.js";
/**
 * The generated `sessionmemory.v1` messages, enums and the `MemoryService` descriptor
 * (protobuf-es): what {@link MemoryClient.raw} takes and returns, for calls the client
 * does not wrap (`create(pb.GetRequestSchema, {...})`).
 */
export * as pb from "./pb.js";
