/**
 * `memory.watch()`: a session's changes as an async iterable that resumes by
 * itself. A dropped stream is reopened with `after_revision` = the last
 * revision seen, so the server replays what was missed (or says it cannot, and
 * the iterable yields a `"reset"` change); breaking out of the loop or aborting
 * the signal cancels the call.
 */
import { setTimeout as sleep } from "node:timers/promises";
import type { Connection } from "./connection.js";
import { MemoryApiError, fromConnectError } from "./errors.js";
import type { Change } from "./types.js";
import { changeOf, resetOf } from "./types.js";

/** Options of {@link MemorySession.watch}. */
export interface WatchOptions {
  /**
   * Replay the changes after this revision first (e.g. the revision of
   * `getDocumentWithRevision`), so that no write made after that read is
   * missed. Default: from when the stream opens.
   */
  afterRevision?: number | bigint;
  /** Stop watching: the iteration then ends without an error, like a `break`. */
  signal?: AbortSignal;
  /**
   * Reopen attempts in a row (with backoff up to 5 s) before the last error is
   * thrown. Default 10. Any message received resets the count.
   */
  maxReconnects?: number;
}

const BASE_DELAY_MS = 100;
const MAX_DELAY_MS = 5000;
/** Statuses of a stream that broke in transit: no ErrorInfo, nothing the caller did. */
const TRANSIENT = new Set(["UNKNOWN", "INTERNAL", "CANCELLED", "DEADLINE_EXCEEDED"]);

/** Whether reopening the stream can help. */
function resumable(error: MemoryApiError): boolean {
  if (error.status === "UNAVAILABLE") return true;
  // TOO_MANY_WATCHERS (and the server's other load shedding): wait RetryInfo, then
  // try again. A tenant's RATE_LIMITED surfaces, as it does for every call.
  if (error.status === "RESOURCE_EXHAUSTED" && error.retryAfter !== undefined && !error.isRateLimit()) return true;
  return error.code === undefined && TRANSIENT.has(error.status);
}

/** @internal The generator behind {@link MemorySession.watch}. */
export async function* watchChanges(
  client: Connection,
  sessionId: string,
  options: WatchOptions,
): AsyncGenerator<Change, void, undefined> {
  client.check(sessionId);
  const outer = options.signal;
  if (outer?.aborted) return;
  const maxReconnects = Math.max(0, options.maxReconnects ?? 10);
  const controller = new AbortController();
  const abort = () => controller.abort();
  outer?.addEventListener("abort", abort, { once: true });
  let after = options.afterRevision === undefined ? undefined : BigInt(options.afterRevision);
  let failures = 0;
  try {
    for (;;) {
      let error: MemoryApiError | undefined;
      try {
        const stream = client.raw.watch(
          { sessionId, ...(after === undefined ? {} : { afterRevision: after }) },
          { headers: client.ctx.headers, signal: controller.signal },
        );
        for await (const message of stream) {
          failures = 0;
          if (message.compacted) {
            after = message.revision;
            yield resetOf(message.revision);
            continue;
          }
          for (const pb of message.changes) {
            if (after === undefined || pb.revision > after) after = pb.revision;
            const change = changeOf(pb);
            if (change) yield change;
          }
          // The first message carries the start revision: resume from there.
          if (after === undefined || message.revision > after) after = message.revision;
        }
      } catch (err) {
        if (controller.signal.aborted) return;
        error = fromConnectError(err);
        if (!resumable(error)) throw error;
      }
      if (controller.signal.aborted) return;
      // The stream ended or broke: reopen after a bounded, jittered backoff.
      failures += 1;
      if (failures > maxReconnects) {
        throw error ?? new MemoryApiError(`the watch stream of '${sessionId}' kept closing`, "UNAVAILABLE");
      }
      // The server's RetryInfo is the delay when it sent one.
      const delay =
        error?.retryAfter !== undefined
          ? error.retryAfter * 1000
          : Math.min(BASE_DELAY_MS * 2 ** (failures - 1), MAX_DELAY_MS) * (0.5 + Math.random());
      try {
        await sleep(delay, undefined, { signal: controller.signal });
      } catch {
        return; // aborted while waiting
      }
    }
  } finally {
    outer?.removeEventListener("abort", abort);
    controller.abort();
  }
}
