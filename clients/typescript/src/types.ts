/** Plain types the client returns; generated messages never appear in its signatures. */
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type {
  FileInfo as PbFileInfo,
  Limits as PbLimits,
  Value as PbValue,
} from "./gen/sessionmemory/v1/memory_pb.js";

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
export function limitsOf(l: PbLimits | undefined): Limits {
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
  };
}
