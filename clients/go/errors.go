package sessionmemory

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/session-memory/session-memory/clients/go/gen/sessionmemory/v1"
)

// Error is every failed call: the gRPC code, the ErrorInfo reason, its metadata
// and the RetryInfo delay. Compare with errors.Is against the Err* values, which
// match by reason (or by code when they carry no reason):
//
//	if errors.Is(err, sessionmemory.ErrValueTooLong) { ... }
type Error struct {
	Code       codes.Code
	Reason     string
	Message    string
	Metadata   map[string]string
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.Reason != "" {
		return fmt.Sprintf("sessionmemory: %s: %s [%s]", e.Code, e.Message, e.Reason)
	}
	return fmt.Sprintf("sessionmemory: %s: %s", e.Code, e.Message)
}

// Is reports whether target is an *Error with the same reason (or, for targets
// without a reason, the same code).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok {
		return false
	}
	if t.Reason != "" {
		return t.Reason == e.Reason
	}
	return t.Code == e.Code
}

// GRPCStatus lets status.Code(err) and status.FromError(err) see the gRPC status.
func (e *Error) GRPCStatus() *status.Status { return status.New(e.Code, e.Message) }

// IsRateLimit reports whether the tenant is over a rate limit (reason
// RATE_LIMITED, the same as errors.Is(err, ErrRateLimited)): nothing changed,
// and a call passes again after RetryAfter. Metadata["limit"] says which one
// ("reads", "writes", "file_bytes", "auth_failures"). The client does not retry
// these itself. Quotas (ErrQuotaExceeded) and the server's own load shedding
// (ErrServerBusy, ErrTooManyUploads, ...) are not rate limits, even though the
// latter carry a RetryAfter too.
func (e *Error) IsRateLimit() bool { return e.Reason == ErrRateLimited.Reason }

// IsQuotaExceeded reports whether the call would take the tenant over a quota
// (reason QUOTA_EXCEEDED, the same as errors.Is(err, ErrQuotaExceeded)).
func (e *Error) IsQuotaExceeded() bool { return e.Reason == ErrQuotaExceeded.Reason }

func reason(r pb.ErrorReason, c codes.Code) *Error { return &Error{Code: c, Reason: r.String()} }

// Errors to match with errors.Is.
var (
	// ErrMemoryUnavailable is the client's own: no session id or API key; no call made.
	ErrMemoryUnavailable = &Error{Code: codes.FailedPrecondition, Reason: "MEMORY_UNAVAILABLE"}
	ErrAPIKeyMissing     = reason(pb.ErrorReason_API_KEY_MISSING, codes.Unauthenticated)
	ErrAPIKeyInvalid     = reason(pb.ErrorReason_API_KEY_INVALID, codes.Unauthenticated)
	ErrInvalidSessionID  = reason(pb.ErrorReason_INVALID_SESSION_ID, codes.InvalidArgument)
	ErrInvalidKey        = reason(pb.ErrorReason_INVALID_KEY, codes.InvalidArgument)
	ErrValueTooLong      = reason(pb.ErrorReason_VALUE_TOO_LONG, codes.InvalidArgument)
	ErrNumberOutOfRange  = reason(pb.ErrorReason_NUMBER_OUT_OF_RANGE, codes.InvalidArgument)
	ErrNumberTooPrecise  = reason(pb.ErrorReason_NUMBER_TOO_PRECISE, codes.InvalidArgument)
	ErrInvalidJSON       = reason(pb.ErrorReason_INVALID_JSON, codes.InvalidArgument)
	ErrJSONTooLarge      = reason(pb.ErrorReason_JSON_TOO_LARGE, codes.InvalidArgument)
	ErrTTLOutOfRange     = reason(pb.ErrorReason_TTL_OUT_OF_RANGE, codes.InvalidArgument)
	ErrRequestIDReused   = reason(pb.ErrorReason_REQUEST_ID_REUSED, codes.InvalidArgument) // a request/upload id reused for another call
	ErrMalformedRequest  = reason(pb.ErrorReason_MALFORMED_REQUEST, codes.InvalidArgument)
	ErrKeyExists         = reason(pb.ErrorReason_KEY_EXISTS, codes.Aborted)
	ErrVersionMismatch   = reason(pb.ErrorReason_VERSION_MISMATCH, codes.Aborted)
	ErrNotANumber        = reason(pb.ErrorReason_NOT_A_NUMBER, codes.FailedPrecondition)
	ErrSessionFull       = reason(pb.ErrorReason_SESSION_FULL, codes.ResourceExhausted)
	ErrStoreFull         = reason(pb.ErrorReason_STORE_FULL, codes.ResourceExhausted)       // the store is out of memory; reads and deletes still work
	ErrTooManyUploads    = reason(pb.ErrorReason_TOO_MANY_UPLOADS, codes.ResourceExhausted) // retry after RetryAfter
	ErrSpoolFull         = reason(pb.ErrorReason_SPOOL_FULL, codes.ResourceExhausted)       // retry after RetryAfter
	ErrServerBusy        = reason(pb.ErrorReason_SERVER_BUSY, codes.ResourceExhausted)      // retry after RetryAfter
	ErrMimeNotAllowed    = reason(pb.ErrorReason_MIME_NOT_ALLOWED, codes.InvalidArgument)
	ErrFileTooLarge      = reason(pb.ErrorReason_FILE_TOO_LARGE, codes.InvalidArgument)
	ErrContentMismatch   = reason(pb.ErrorReason_CONTENT_MISMATCH, codes.InvalidArgument)
	ErrUploadTooSlow     = reason(pb.ErrorReason_UPLOAD_TOO_SLOW, codes.DeadlineExceeded)
	ErrNotAFile          = reason(pb.ErrorReason_NOT_A_FILE, codes.FailedPrecondition)
	ErrUnavailable       = &Error{Code: codes.Unavailable}

	// Structured memory (documents, schemas, paths, Watch).

	// ErrSchemaViolation: the write would make the document invalid against the
	// session's schema; nothing changed. Metadata: pointer (e.g. "/order/status"),
	// keyword (e.g. "enum"), schema.
	ErrSchemaViolation  = reason(pb.ErrorReason_SCHEMA_VIOLATION, codes.InvalidArgument)
	ErrSchemaNotFound   = reason(pb.ErrorReason_SCHEMA_NOT_FOUND, codes.NotFound)
	ErrSchemaInvalid    = reason(pb.ErrorReason_SCHEMA_INVALID, codes.InvalidArgument) // not draft 2020-12, too large, a remote $ref or a non-RE2 pattern
	ErrTooManySchemas   = reason(pb.ErrorReason_TOO_MANY_SCHEMAS, codes.ResourceExhausted)
	ErrSchemaMismatch   = reason(pb.ErrorReason_SCHEMA_MISMATCH, codes.FailedPrecondition) // Update named another schema than the bound one
	ErrRevisionMismatch = reason(pb.ErrorReason_REVISION_MISMATCH, codes.Aborted)          // IfRevision did not match; re-read and retry
	ErrWriteConflict    = reason(pb.ErrorReason_WRITE_CONFLICT, codes.Aborted)             // retry after RetryAfter
	ErrSessionNotFound  = reason(pb.ErrorReason_SESSION_NOT_FOUND, codes.NotFound)         // MustExist (UpdateMemory) on a session without a live key
	ErrInvalidPath      = reason(pb.ErrorReason_INVALID_PATH, codes.InvalidArgument)
	ErrInvalidPatch     = reason(pb.ErrorReason_INVALID_PATCH, codes.InvalidArgument) // not a JSON object, too large, or patching a file
	ErrDocumentTooLarge = reason(pb.ErrorReason_DOCUMENT_TOO_LARGE, codes.FailedPrecondition)
	ErrTooManyWatchers  = reason(pb.ErrorReason_TOO_MANY_WATCHERS, codes.ResourceExhausted) // retry after RetryAfter
	ErrSchemaUnusable   = reason(pb.ErrorReason_SCHEMA_UNUSABLE, codes.FailedPrecondition)

	// Limits, quotas and credentials.

	// ErrRateLimited: the tenant is over a rate limit; nothing changed. Wait
	// RetryAfter (always set) before calling again; the client does not retry it.
	// Metadata: limit ("reads", "writes", "file_bytes", "auth_failures"), rate,
	// burst, window_seconds.
	ErrRateLimited = reason(pb.ErrorReason_RATE_LIMITED, codes.ResourceExhausted)
	// ErrQuotaExceeded: the call would take the tenant over a quota; nothing
	// changed, and waiting does not help until data expires or is deleted (no
	// RetryAfter). Metadata: quota ("sessions", "stored_bytes", "uploads"), limit, actual.
	ErrQuotaExceeded       = reason(pb.ErrorReason_QUOTA_EXCEEDED, codes.ResourceExhausted)
	ErrAPIKeyExpired       = reason(pb.ErrorReason_API_KEY_EXPIRED, codes.Unauthenticated)
	ErrTokenInvalid        = reason(pb.ErrorReason_TOKEN_INVALID, codes.Unauthenticated) // malformed, or its signature does not verify
	ErrTokenExpired        = reason(pb.ErrorReason_TOKEN_EXPIRED, codes.Unauthenticated) // ask the issuer for a new one
	ErrTokenRevoked        = reason(pb.ErrorReason_TOKEN_REVOKED, codes.Unauthenticated)
	ErrInvalidTokenRequest = reason(pb.ErrorReason_INVALID_TOKEN_REQUEST, codes.InvalidArgument)
	// ErrPermissionDenied matches every PERMISSION_DENIED error: a session token
	// used on another session, without the permission a call needs
	// (Metadata["permission"]), or for a call that needs the API key.
	ErrPermissionDenied = &Error{Code: codes.PermissionDenied}
	// ErrUnauthenticated matches every UNAUTHENTICATED error: a missing, unknown,
	// revoked or expired API key, and an invalid, expired or revoked token
	// (the reason tells them apart).
	ErrUnauthenticated = &Error{Code: codes.Unauthenticated}
)

// fromGRPC converts a call's (non-nil) error into an *Error.
func fromGRPC(err error) *Error {
	var own *Error
	if errors.As(err, &own) {
		return own
	}
	st, _ := status.FromError(err)
	out := &Error{Code: st.Code(), Message: st.Message(), Metadata: map[string]string{}}
	for _, detail := range st.Details() {
		switch d := detail.(type) {
		case *errdetails.ErrorInfo:
			if out.Reason == "" {
				out.Reason = d.GetReason()
				for k, v := range d.GetMetadata() {
					out.Metadata[k] = v
				}
			}
		case *errdetails.RetryInfo:
			out.RetryAfter = d.GetRetryDelay().AsDuration()
		}
	}
	return out
}
