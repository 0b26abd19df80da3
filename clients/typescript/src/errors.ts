/**
 * Errors: every server rejection is a {@link MemoryApiError} carrying the gRPC
 * status, the `google.rpc.ErrorInfo` reason (`code`), its metadata and the
 * `RetryInfo` delay. Mapping happens once, in {@link fromConnectError}.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { BinaryReader } from "@bufbuild/protobuf/wire";

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

const ERROR_INFO = "google.rpc.ErrorInfo";
const RETRY_INFO = "google.rpc.RetryInfo";

/** Decode a google.rpc.ErrorInfo (reason=1, domain=2, metadata=3 map<string,string>). */
function decodeErrorInfo(bytes: Uint8Array): { reason: string; metadata: Record<string, string> } {
  const reader = new BinaryReader(bytes);
  let reason = "";
  const metadata: Record<string, string> = {};
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1) reason = reader.string();
    else if (field === 3) {
      const entry = new BinaryReader(reader.bytes());
      let key = "";
      let value = "";
      while (entry.pos < entry.len) {
        const [f] = entry.tag();
        if (f === 1) key = entry.string();
        else value = entry.string();
      }
      metadata[key] = value;
    } else reader.skip(wireType);
  }
  return { reason, metadata };
}

/** Decode a google.rpc.RetryInfo into seconds (retry_delay=1: Duration{seconds=1, nanos=2}). */
function decodeRetryInfo(bytes: Uint8Array): number {
  const reader = new BinaryReader(bytes);
  let seconds = 0;
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field !== 1) {
      reader.skip(wireType);
      continue;
    }
    const duration = new BinaryReader(reader.bytes());
    while (duration.pos < duration.len) {
      const [f, w] = duration.tag();
      if (f === 1) seconds += Number(duration.int64());
      else if (f === 2) seconds += duration.int32() / 1e9;
      else duration.skip(w);
    }
  }
  return seconds;
}

/** Convert any error from a call into a {@link MemoryApiError}. */
export function fromConnectError(err: unknown): MemoryApiError {
  if (err instanceof MemoryApiError) return err;
  const connectError = ConnectError.from(err);
  let reason: string | undefined;
  let metadata: Record<string, string> = {};
  let retryAfter: number | undefined;
  for (const detail of connectError.details) {
    if (!("type" in detail) || !(detail.value instanceof Uint8Array)) continue;
    if (detail.type === ERROR_INFO && reason === undefined) {
      ({ reason, metadata } = decodeErrorInfo(detail.value));
    } else if (detail.type === RETRY_INFO) {
      retryAfter = decodeRetryInfo(detail.value);
    }
  }
  return new MemoryApiError(
    connectError.rawMessage,
    STATUS_NAMES[connectError.code] ?? "UNKNOWN",
    reason,
    metadata,
    retryAfter,
  );
}
