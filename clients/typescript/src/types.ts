/** Plain types the client returns; generated messages never appear in its signatures. */
import { timestampDate } from "@bufbuild/protobuf/wkt";
import {
  ChangeOperation,
  ValueKind,
  type Change as PbChange,
  type FileInfo as PbFileInfo,
  type Limits as PbLimits,
  type Value as PbValue,
} from "./gen/sessionmemory/v1/memory_pb.js";
import type {
  GetLimitsResponse as PbGetLimitsResponse,
  SchemaInfo as PbSchemaInfo,
} from "./gen/sessionmemory/v1/memory_service_pb.js";

/** A stored file's description. */
export interface FileInfo {
  key: string;
  mimeType: string;
  sizeBytes: number;
  sha256: string;
  createdAt: Date;
  expiresAt: Date;
  version: bigint;
}

/** A value with its kind, expiry and version. */
export interface Entry {
  key: string;
  value: unknown;
  kind: "string" | "number" | "boolean" | "json" | "file";
  expiresAt: Date;
  version: bigint;
}

/** A key's description without its value. */
export interface EntryInfo {
  key: string;
  kind: string;
  sizeBytes: number;
  expiresAt: Date;
  version: bigint;
}

/** The version and expiry a write produced. */
export interface WriteResult {
  key: string;
  version: bigint;
  expiresAt: Date;
}

/** The limits the server enforces. */
export interface Limits {
  maxStringLength: number;
  numberAbsBound: number;
  maxNumberDigits: number;
  maxJsonBytes: number;
  maxJsonDepth: number;
  defaultTtlSeconds: number;
  maxPrimitiveTtlSeconds: number;
  maxJsonTtlSeconds: number;
  maxFileTtlSeconds: number;
  maxFileBytes: number;
  allowedMimeTypes: string[];
  maxBatchKeys: number;
  maxKeysPerSession: number;
  maxRequestIdLength: number;
  /** Largest registered JSON Schema, compact, in bytes. */
  maxSchemaBytes: number;
  maxSchemasPerTenant: number;
  /** Longest path (`key.field.0`), in characters. */
  maxPathLength: number;
  /** Most segments in a path, the key included. */
  maxPathSegments: number;
  /** Largest merge patch, in bytes. */
  maxPatchBytes: number;
  /** Largest document `getDocument` returns, compact, in bytes. */
  maxDocumentBytes: number;
  /** How many of a session's latest changes `watch` can replay. */
  watchLogChanges: number;
  /** Most Watch streams one server process serves at once. */
  maxWatchers: number;
  /** The calling tenant's rate limits and quotas. */
  tenantLimits: TenantLimits;
  /** The calling tenant's use of its quotas, as the server last counted it. */
  tenantUsage: TenantUsage;
}

/**
 * A tenant's rate limits and quotas (0 = unlimited). Rates are per second over
 * every server process; a burst is how many calls (or bytes) may come at once
 * above the rate. Over a rate: `isRateLimit()`; over a quota: `isQuotaExceeded()`.
 */
export interface TenantLimits {
  readsPerSecond: number;
  readBurst: number;
  writesPerSecond: number;
  writeBurst: number;
  fileBytesPerSecond: number;
  fileBytesBurst: number;
  maxSessions: number;
  maxStoredBytes: number;
  maxUploads: number;
}

/** How much of its quotas a tenant uses. */
export interface TenantUsage {
  sessions: number;
  storedBytes: number;
  uploads: number;
}

/** What a session token may do: read, write, or the session's files. */
export type TokenPermission = "read" | "write" | "files";

/** A token scoped to one session, from `createSessionToken`. */
export interface SessionToken {
  /** The token (`smt_...`): pass it as `apiKey` to a client. */
  token: string;
  /** Its id, for `revokeSessionToken`. */
  tokenId: string;
  /** When it stops working. */
  expiresAt: Date;
}

/** A session's document with the session's revision (from `getDocumentWithRevision`). */
export interface DocumentWithRevision<T> {
  /** Every live key as one object (files as their FileInfo fields), plus schema defaults. */
  document: T;
  /** The session's revision: grows on every write, usable as `ifRevision`. */
  revision: number;
  /** The schema the session is bound to; undefined when none. */
  schema: string | undefined;
  /** The paths (`user.name`) filled from the schema's defaults rather than stored. */
  defaulted: string[];
}

/** A registered JSON Schema's description. */
export interface SchemaInfo {
  name: string;
  /** Grows on every `putSchema` of this name. */
  version: number;
  /** Size of the schema as compact JSON. */
  sizeBytes: number;
  updatedAt: Date;
}

/**
 * One change of a session (from `watch`). `"reset"` means changes were lost
 * (the server's log was compacted or the watcher fell behind): re-read the
 * document; `key` is then `""` and `revision` the session's current one.
 */
export interface Change {
  key: string;
  operation: "set" | "delete" | "expire" | "reset";
  /** The kind written; undefined for deletes, expiries and resets. */
  kind: Entry["kind"] | undefined;
  /** The key's new version (sets), or the one it had (deletes, when known; else 0). */
  version: bigint;
  /** The session revision of this change. */
  revision: number;
  /** When the written value expires; undefined for deletes, expiries and resets. */
  expiresAt: Date | undefined;
}

/** @internal */
export function dateOf(ts: { seconds: bigint; nanos: number } | undefined): Date {
  return ts ? timestampDate(ts as Parameters<typeof timestampDate>[0]) : new Date(0);
}

/** @internal */
export function fileInfoOf(info: PbFileInfo | undefined): FileInfo {
  return {
    key: info?.key ?? "",
    mimeType: info?.mimeType ?? "",
    sizeBytes: Number(info?.sizeBytes ?? 0n),
    sha256: info?.sha256 ?? "",
    createdAt: dateOf(info?.createdAt),
    expiresAt: dateOf(info?.expiresAt),
    version: info?.version ?? 0n,
  };
}

/** @internal The JavaScript value of a proto Value and its kind. */
export function valueOf(value: PbValue | undefined): [unknown, Entry["kind"]] {
  const kind = value?.kind;
  switch (kind?.case) {
    case "stringValue":
      return [kind.value, "string"];
    case "numberValue":
      return [kind.value, "number"];
    case "boolValue":
      return [kind.value, "boolean"];
    case "jsonValue":
      return [JSON.parse(kind.value), "json"];
    case "fileValue":
      return [fileInfoOf(kind.value), "file"];
    default:
      return [undefined, "json"];
  }
}

/** @internal */
export function limitsOf(response: Pick<PbGetLimitsResponse, "limits" | "tenantLimits" | "tenantUsage">): Limits {
  const l: PbLimits | undefined = response.limits;
  const t = response.tenantLimits;
  const u = response.tenantUsage;
  return {
    maxStringLength: l?.maxStringLength ?? 0,
    numberAbsBound: l?.numberAbsBound ?? 0,
    maxNumberDigits: l?.maxNumberDigits ?? 0,
    maxJsonBytes: l?.maxJsonBytes ?? 0,
    maxJsonDepth: l?.maxJsonDepth ?? 0,
    defaultTtlSeconds: Number(l?.defaultTtlSeconds ?? 0n),
    maxPrimitiveTtlSeconds: Number(l?.maxPrimitiveTtlSeconds ?? 0n),
    maxJsonTtlSeconds: Number(l?.maxJsonTtlSeconds ?? 0n),
    maxFileTtlSeconds: Number(l?.maxFileTtlSeconds ?? 0n),
    maxFileBytes: Number(l?.maxFileBytes ?? 0n),
    allowedMimeTypes: [...(l?.allowedMimeTypes ?? [])],
    maxBatchKeys: l?.maxBatchKeys ?? 0,
    maxKeysPerSession: l?.maxKeysPerSession ?? 0,
    maxRequestIdLength: l?.maxRequestIdLength ?? 0,
    maxSchemaBytes: l?.maxSchemaBytes ?? 0,
    maxSchemasPerTenant: l?.maxSchemasPerTenant ?? 0,
    maxPathLength: l?.maxPathLength ?? 0,
    maxPathSegments: l?.maxPathSegments ?? 0,
    maxPatchBytes: l?.maxPatchBytes ?? 0,
    maxDocumentBytes: l?.maxDocumentBytes ?? 0,
    watchLogChanges: l?.watchLogChanges ?? 0,
    maxWatchers: l?.maxWatchers ?? 0,
    tenantLimits: {
      readsPerSecond: t?.readsPerSecond ?? 0,
      readBurst: Number(t?.readBurst ?? 0n),
      writesPerSecond: t?.writesPerSecond ?? 0,
      writeBurst: Number(t?.writeBurst ?? 0n),
      fileBytesPerSecond: t?.fileBytesPerSecond ?? 0,
      fileBytesBurst: Number(t?.fileBytesBurst ?? 0n),
      maxSessions: Number(t?.maxSessions ?? 0n),
      maxStoredBytes: Number(t?.maxStoredBytes ?? 0n),
      maxUploads: Number(t?.maxUploads ?? 0n),
    },
    tenantUsage: {
      sessions: Number(u?.sessions ?? 0n),
      storedBytes: Number(u?.storedBytes ?? 0n),
      uploads: Number(u?.uploads ?? 0n),
    },
  };
}

/** @internal */
export function schemaInfoOf(info: PbSchemaInfo | undefined): SchemaInfo {
  return {
    name: info?.name ?? "",
    version: Number(info?.version ?? 0n),
    sizeBytes: Number(info?.sizeBytes ?? 0n),
    updatedAt: dateOf(info?.updatedAt),
  };
}

const KINDS: Partial<Record<ValueKind, Entry["kind"]>> = {
  [ValueKind.STRING]: "string",
  [ValueKind.NUMBER]: "number",
  [ValueKind.BOOLEAN]: "boolean",
  [ValueKind.JSON]: "json",
  [ValueKind.FILE]: "file",
};

const OPERATIONS: Partial<Record<ChangeOperation, Change["operation"]>> = {
  [ChangeOperation.SET]: "set",
  [ChangeOperation.DELETE]: "delete",
  [ChangeOperation.EXPIRE]: "expire",
};

/** @internal Undefined for an operation this client does not know (a newer server). */
export function changeOf(change: PbChange): Change | undefined {
  const operation = OPERATIONS[change.operation];
  if (operation === undefined) return undefined;
  return {
    key: change.key,
    operation,
    kind: KINDS[change.kind],
    version: change.version,
    revision: Number(change.revision),
    expiresAt: change.expiresAt ? dateOf(change.expiresAt) : undefined,
  };
}

/** @internal The change `watch` reports when changes were lost. */
export function resetOf(revision: bigint): Change {
  return { key: "", operation: "reset", kind: undefined, version: 0n, revision: Number(revision), expiresAt: undefined };
}
