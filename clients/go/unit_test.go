package sessionmemory_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	sm "github.com/session-memory/session-memory/clients/go"
	pb "github.com/session-memory/session-memory/clients/go/gen/sessionmemory/v1"
)

// offline is a session whose calls never leave the process: answer sees every
// Increment attempt and returns its error (nil means success, value 1).
func offline(t *testing.T, answer func(*pb.IncrementRequest) error) *sm.Session {
	t.Helper()
	intercept := func(_ context.Context, _ string, req, reply any, _ *grpc.ClientConn,
		_ grpc.UnaryInvoker, _ ...grpc.CallOption) error {
		if err := answer(req.(*pb.IncrementRequest)); err != nil {
			return err
		}
		reply.(*pb.IncrementResponse).Value = 1
		return nil
	}
	c, err := sm.New("passthrough:///offline", sm.WithAPIKey("k"), sm.WithDialOptions(
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithUnaryInterceptor(intercept)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c.Session("s")
}

func rejection(t *testing.T, code codes.Code, reason pb.ErrorReason, retry time.Duration) error {
	t.Helper()
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: reason.String(), Domain: "sessionmemory"}}
	if retry > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(retry)})
	}
	st, err := status.New(code, "refused").WithDetails(details...)
	if err != nil {
		t.Fatal(err)
	}
	return st.Err()
}

func TestNewerReasonsMatchTheirSentinels(t *testing.T) {
	for _, c := range []struct {
		sentinel error
		reason   pb.ErrorReason
		code     codes.Code
		retry    time.Duration
	}{
		{sm.ErrStoreFull, pb.ErrorReason_STORE_FULL, codes.ResourceExhausted, 0},
		{sm.ErrRequestIDReused, pb.ErrorReason_REQUEST_ID_REUSED, codes.InvalidArgument, 0},
		{sm.ErrMalformedRequest, pb.ErrorReason_MALFORMED_REQUEST, codes.InvalidArgument, 0},
		{sm.ErrTooManyUploads, pb.ErrorReason_TOO_MANY_UPLOADS, codes.ResourceExhausted, time.Second},
		{sm.ErrSpoolFull, pb.ErrorReason_SPOOL_FULL, codes.ResourceExhausted, time.Second},
		{sm.ErrServerBusy, pb.ErrorReason_SERVER_BUSY, codes.ResourceExhausted, time.Second},
		{sm.ErrUploadTooSlow, pb.ErrorReason_UPLOAD_TOO_SLOW, codes.DeadlineExceeded, 0},
	} {
		t.Run(c.reason.String(), func(t *testing.T) {
			memory := offline(t, func(*pb.IncrementRequest) error { return rejection(t, c.code, c.reason, c.retry) })
			_, err := memory.Increment(context.Background(), "c", 1)
			if !errors.Is(err, c.sentinel) || errors.Is(err, sm.ErrSessionFull) {
				t.Fatalf("err = %v", err)
			}
			var e *sm.Error
			if !errors.As(err, &e) || e.Code != c.code || e.Reason != c.reason.String() ||
				e.RetryAfter != c.retry || e.IsRateLimit() != (c.retry > 0) {
				t.Fatalf("err = %#v", err)
			}
		})
	}
}

func TestIncrementRequestIDs(t *testing.T) {
	ctx := context.Background()
	var ids []string
	memory := offline(t, func(req *pb.IncrementRequest) error { // every first attempt is UNAVAILABLE
		ids = append(ids, req.GetRequestId())
		if len(ids)%2 == 1 {
			return status.Error(codes.Unavailable, "down")
		}
		return nil
	})

	if _, err := memory.Increment(ctx, "c", 1, sm.RequestID("r-1"), sm.TTL(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if len(ids) != 2 || ids[0] != "r-1" || ids[1] != "r-1" {
		t.Fatalf("a given id and its retry: %q", ids)
	}

	ids = nil
	for range 2 {
		if _, err := memory.Increment(ctx, "c", 1); err != nil {
			t.Fatal(err)
		}
	}
	if len(ids) != 4 || ids[0] == "" || ids[0] != ids[1] || ids[2] != ids[3] || ids[1] == ids[2] {
		t.Fatalf("generated ids (one per call, reused by its retry): %q", ids)
	}

	ids = nil
	if _, err := memory.Increment(ctx, "c", 1, sm.RequestID("")); !errors.Is(err, sm.ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
	if len(ids) != 1 || ids[0] != "" {
		t.Fatalf("an empty id sends none and is not retried: %q", ids)
	}
}
