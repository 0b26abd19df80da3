/**
 * Session Memory for Node.js: typed, expiring, per-conversation memory over gRPC.
 *
 * ```ts
 * const client = MemoryClient.fromEnv();
 * const memory = client.session(socketId);
 * const step = await memory.get("step", "start");
 * ```
 */
export { MemoryClient, type MemoryClientOptions } from "./client.js";
export { MemorySession, FileHandle, type FileData, type IncrementOptions, type Scalar, type WriteOptions } from "./session.js";
export { MemoryApiError, MemoryTypeError, MemoryUnavailableError } from "./errors.js";
export type { Entry, EntryInfo, FileInfo, Limits, WriteResult } from "./types.js";
