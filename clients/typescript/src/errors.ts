/**
 * Errors: every server rejection is a {@link MemoryApiError} carrying the gRPC
 * status, the `google.rpc.ErrorInfo` reason (`code`), its metadata and the
 * `RetryInfo` delay, decoded with messages generated from googleapis'
 * `google/rpc/error_details.proto`. Mapping happens once, in {@link fromConnectError}.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import type { Duration } from "@bufbuild/protobuf/wkt";
import { ErrorInfoSchema, RetryInfoSchema } from "./gen/google/rpc/error_details_pb.js";

/** Thrown for every failed call. */
export class MemoryApiError extends Error {
  /** The gRPC status code name, e.g. "INVALID_ARGUMENT". */
  readonly status: string;
  /** The ErrorInfo reason, e.g. "VALUE_TOO_LONG"; undefined for transport failures. */
  readonly code: string | undefined;
  /** The ErrorInfo metadata (field, limit, actual, ...). */
  readonly metadata: Record<string, string>;
  /** Seconds the server asked to wait before retrying (its RetryInfo), on every error that carries one. */
  readonly retryAfter: number | undefined;

  constructor(
    message: string,
    status: string,
    code?: string,
    metadata: Record<string, string> = {},
    retryAfter?: number,
  ) {
    super(message);
    this.name = new.target.name;
    this.status = status;
    this.code = code;
    this.metadata = metadata;
    this.retryAfter = retryAfter;
  }

  /**
   * True exactly when the tenant is over a rate limit (reason `RATE_LIMITED`):
   * nothing was changed, and waiting `retryAfter` seconds lets a call pass.
   * `metadata.limit` says which one ("reads", "writes", "file_bytes",
   * "auth_failures"). The client never retries these itself: back off in the
   * handler. Quotas ({@link isQuotaExceeded}) and the server's own
   * RESOURCE_EXHAUSTED reasons (`SERVER_BUSY`, `TOO_MANY_UPLOADS`, ...) are not
   * rate limits, even when they carry a `retryAfter`.
   */
  isRateLimit(): boolean {
    return this.code === "RATE_LIMITED";
  }

  /**
   * True exactly when the call would take the tenant over a quota (reason
   * `QUOTA_EXCEEDED`: live sessions, stored bytes, concurrent uploads). Nothing
   * was changed; waiting does not help until data expires or is deleted, so
   * there is no `retryAfter`. `metadata` has `quota`, `limit` and `actual`.
   */
  isQuotaExceeded(): boolean {
    return this.code === "QUOTA_EXCEEDED";
  }
}

/** The session has no session id or the client no API key; no call was made. */
export class MemoryUnavailableError extends MemoryApiError {}
/** A stored value cannot be converted exactly to the requested type. */
export class MemoryTypeError extends TypeError {}

const STATUS_NAMES: Record<number, string> = {
  [Code.Canceled]: "CANCELLED",
  [Code.Unknown]: "UNKNOWN",
  [Code.InvalidArgument]: "INVALID_ARGUMENT",
  [Code.DeadlineExceeded]: "DEADLINE_EXCEEDED",
  [Code.NotFound]: "NOT_FOUND",
  [Code.AlreadyExists]: "ALREADY_EXISTS",
  [Code.PermissionDenied]: "PERMISSION_DENIED",
  [Code.ResourceExhausted]: "RESOURCE_EXHAUSTED",
  [Code.FailedPrecondition]: "FAILED_PRECONDITION",
  [Code.Aborted]: "ABORTED",
  [Code.OutOfRange]: "OUT_OF_RANGE",
  [Code.Unimplemented]: "UNIMPLEMENTED",
  [Code.Internal]: "INTERNAL",
  [Code.Unavailable]: "UNAVAILABLE",
  [Code.DataLoss]: "DATA_LOSS",
  [Code.Unauthenticated]: "UNAUTHENTICATED",
};

/** Seconds of a google.protobuf.Duration. */
function secondsOf(duration: Duration): number {
  return Number(duration.seconds) + duration.nanos / 1e9;
}

/** Convert any error from a call into a {@link MemoryApiError}. */
export function fromConnectError(err: unknown): MemoryApiError {
  if (err instanceof MemoryApiError) return err;
  const connectError = ConnectError.from(err);
  // The first ErrorInfo is the reason; details that do not decode are skipped.
  const info = connectError.findDetails(ErrorInfoSchema)[0];
  const retry = connectError.findDetails(RetryInfoSchema).find((r) => r.retryDelay !== undefined);
  const reason = info?.reason;
  const metadata = { ...info?.metadata };
  const retryAfter = retry?.retryDelay === undefined ? undefined : secondsOf(retry.retryDelay);
  return new MemoryApiError(
    connectError.rawMessage,
    STATUS_NAMES[connectError.code] ?? "UNKNOWN",
    reason,
    metadata,
    retryAfter,
  );
}
