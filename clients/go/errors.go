package sessionmemory

import (
	"errors"
	"fmt"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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

// IsRateLimit reports whether the server is shedding load and waiting RetryAfter helps.
func (e *Error) IsRateLimit() bool {
	return e.Code == codes.ResourceExhausted && (e.Reason == "RATE_LIMITED" || e.RetryAfter > 0)
}

func reason(r string, c codes.Code) *Error { return &Error{Code: c, Reason: r} }

// Errors to match with errors.Is.
var (
	ErrMemoryUnavailable = reason("MEMORY_UNAVAILABLE", codes.FailedPrecondition) // no session id or API key; no call made
	ErrAPIKeyMissing     = reason("API_KEY_MISSING", codes.Unauthenticated)
	ErrAPIKeyInvalid     = reason("API_KEY_INVALID", codes.Unauthenticated)
	ErrInvalidSessionID  = reason("INVALID_SESSION_ID", codes.InvalidArgument)
	ErrInvalidKey        = reason("INVALID_KEY", codes.InvalidArgument)
	ErrValueTooLong      = reason("VALUE_TOO_LONG", codes.InvalidArgument)
	ErrNumberOutOfRange  = reason("NUMBER_OUT_OF_RANGE", codes.InvalidArgument)
	ErrNumberTooPrecise  = reason("NUMBER_TOO_PRECISE", codes.InvalidArgument)
	ErrInvalidJSON       = reason("INVALID_JSON", codes.InvalidArgument)
	ErrJSONTooLarge      = reason("JSON_TOO_LARGE", codes.InvalidArgument)
	ErrTTLOutOfRange     = reason("TTL_OUT_OF_RANGE", codes.InvalidArgument)
	ErrKeyExists         = reason("KEY_EXISTS", codes.Aborted)
	ErrVersionMismatch   = reason("VERSION_MISMATCH", codes.Aborted)
	ErrNotANumber        = reason("NOT_A_NUMBER", codes.FailedPrecondition)
	ErrSessionFull       = reason("SESSION_FULL", codes.ResourceExhausted)
	ErrMimeNotAllowed    = reason("MIME_NOT_ALLOWED", codes.InvalidArgument)
	ErrFileTooLarge      = reason("FILE_TOO_LARGE", codes.InvalidArgument)
	ErrContentMismatch   = reason("CONTENT_MISMATCH", codes.InvalidArgument)
	ErrNotAFile          = reason("NOT_A_FILE", codes.FailedPrecondition)
	ErrUnavailable       = &Error{Code: codes.Unavailable}
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
