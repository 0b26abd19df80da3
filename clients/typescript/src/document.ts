/**
 * The document view of a session: its options, merge patches, and JSON Schemas
 * (plain objects or Zod 4 schemas, converted with Zod's own `z.toJSONSchema`).
 * Zod is an optional peer dependency: it is imported only when a Zod schema is
 * given, and recognised by its shape, so this module never needs it otherwise.
 */

/** A JSON Schema (draft 2020-12) as a plain object (or `true`/`false`). */
export type JsonSchema = { [keyword: string]: unknown } | boolean;

/**
 * A Zod 4 schema, recognised by its shape (`_zod.def`), so that the client's
 * types never require zod. Any `z.object(...)` etc. of zod 4 is one.
 */
export interface ZodSchemaLike {
  readonly _zod: { readonly def: unknown };
}

/** Something that turns the raw document into a `T`, e.g. a Zod schema (`.parse`). */
export interface DocumentModel<T> {
  parse(value: unknown): T;
}

/**
 * An RFC 7396 merge patch of a `T`: every field optional, objects merged
 * recursively, `null` deletes, anything else (arrays included) replaces.
 * A field that is `undefined` is left out of the patch, so it stays untouched.
 */
export type MergePatch<T> = T extends readonly unknown[]
  ? T
  : T extends object
    ? { [K in keyof T]?: MergePatch<T[K]> | null }
    : T;

/** Options of `getDocument` and `getDocumentWithRevision`. */
export interface DocumentOptions<T = unknown> {
  /**
   * Read only these parts: keys or paths (`lastOrder.status`, `cart.items.0`),
   * up to 100, nested in the result as in the document. Missing ones are left out.
   */
  paths?: string[];
  /** Fill the bound schema's defaults into absent fields. Default true. */
  defaults?: boolean;
  /** Validate and convert the document with this (e.g. the Zod schema); its errors propagate. */
  model?: DocumentModel<T>;
}

/** Options of `update` and `updateMemory`. */
export interface UpdateOptions {
  /**
   * Validate against this registered schema. On a session not yet bound, the
   * patch binds it (the result must validate); naming another schema than the
   * bound one fails with `SCHEMA_MISMATCH`.
   */
  schema?: string;
  /**
   * Apply only if the session's revision is this one (from `getDocumentWithRevision`,
   * `update` or `memory.revision`); otherwise `REVISION_MISMATCH` (ABORTED), nothing changes.
   */
  ifRevision?: number | bigint;
  /**
   * Fail with `SESSION_NOT_FOUND` (NOT_FOUND) when the session has no live key,
   * so an update from outside cannot revive an ended conversation.
   * `memory.update` defaults to false, `client.updateMemory` to true.
   */
  mustExist?: boolean;
}

/** @internal True for a Zod 4 schema (anything carrying `_zod.def`). */
export function isZodSchema(value: unknown): value is ZodSchemaLike {
  if (typeof value !== "object" || value === null || !("_zod" in value)) return false;
  const internals = (value as { _zod: unknown })._zod;
  return typeof internals === "object" && internals !== null && "def" in internals;
}

/** Zod 3 schemas have `_def` and `safeParse` but no `_zod`. */
function isZod3Schema(value: unknown): boolean {
  return (
    typeof value === "object" &&
    value !== null &&
    "_def" in value &&
    typeof (value as { safeParse?: unknown }).safeParse === "function"
  );
}

/**
 * @internal The JSON Schema of `schema`. A Zod schema is converted with
 * `z.toJSONSchema(schema, { io: "input" })`: the stored document is what the
 * schema *accepts* (its input), so fields with `.default()` stay optional and
 * the server fills their defaults on read; plain `z.object` stays open to
 * extra keys, as Zod's parse is. For another conversion, pass the JSON Schema
 * you made yourself.
 */
export async function jsonSchemaOf(schema: JsonSchema | ZodSchemaLike): Promise<JsonSchema> {
  if (isZodSchema(schema)) {
    let zod: { toJSONSchema?: (schema: unknown, params?: { io?: "input" | "output" }) => unknown };
    try {
      zod = (await import("zod")) as typeof zod;
    } catch {
      throw new TypeError("putSchema got a Zod schema, but the 'zod' package (version 4) cannot be imported");
    }
    if (typeof zod.toJSONSchema !== "function") {
      throw new TypeError("putSchema needs zod 4 (its z.toJSONSchema); the installed 'zod' has none");
    }
    return zod.toJSONSchema(schema, { io: "input" }) as JsonSchema;
  }
  if (isZod3Schema(schema)) {
    throw new TypeError("putSchema takes Zod 4 schemas (with z.toJSONSchema); this looks like a Zod 3 schema");
  }
  if (typeof schema === "boolean" || (typeof schema === "object" && schema !== null && !Array.isArray(schema))) {
    return schema;
  }
  throw new TypeError("putSchema takes a JSON Schema object or a Zod 4 schema");
}
