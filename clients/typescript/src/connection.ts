/**
 * The connection under a {@link MemoryClient} and the sessions it hands out: the
 * generated Connect client, the call settings, and one place that runs a call
 * (API key, deadline, retries). `client.ts`, `session.ts` and `watch.ts` all
 * depend on this module and never on each other's, so there is no import cycle.
 * @internal
 */
import type { Client } from "@connectrpc/connect";
import { MemoryUnavailableError, fromConnectError } from "./errors.js";
import type { MemoryService } from "./gen/sessionmemory/v1/memory_service_pb.js";

/** @internal What a call needs. */
export interface CallContext {
  headers: Record<string, string>;
  timeoutMs: number;
  fileTimeoutMs: number;
  maxAttempts: number;
}

/** @internal The options one attempt of a call is made with. */
export interface CallOptions {
  headers: Record<string, string>;
  timeoutMs: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** @internal One client's connection: shared by the client and every session it hands out. */
export class Connection {
  constructor(
    /** The generated Connect client. */
    readonly raw: Client<typeof MemoryService>,
    /** Headers (the API key), deadlines and attempts. */
    readonly ctx: CallContext,
    /** Whether an API key (or session token) was given. */
    readonly hasKey: boolean,
  ) {}

  /**
   * Throw the error a call would get when the client has no API key or the
   * session no id. `sessionId` is null for calls outside a session.
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
   * of UNAVAILABLE after the server's RetryInfo (or a jittered 50 ms doubling).
   * RATE_LIMITED is never retried here: it surfaces with `retryAfter`.
   * `sessionId` is null for calls outside a session.
   */
  async call<T>(
    idempotent: boolean,
    invoke: (options: CallOptions) => Promise<T>,
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
        // The server's RetryInfo is the delay when it sent one; a delay past the
        // deadline gives up at once (the error keeps its retryAfter).
        const delay =
          error.retryAfter !== undefined ? error.retryAfter * 1000 : 50 * 2 ** (attempt - 1) * (0.5 + Math.random());
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
