package sessionmemory_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

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
		{sm.ErrSchemaViolation, pb.ErrorReason_SCHEMA_VIOLATION, codes.InvalidArgument, 0},
		{sm.ErrSchemaNotFound, pb.ErrorReason_SCHEMA_NOT_FOUND, codes.NotFound, 0},
		{sm.ErrSchemaInvalid, pb.ErrorReason_SCHEMA_INVALID, codes.InvalidArgument, 0},
		{sm.ErrTooManySchemas, pb.ErrorReason_TOO_MANY_SCHEMAS, codes.ResourceExhausted, 0},
		{sm.ErrSchemaMismatch, pb.ErrorReason_SCHEMA_MISMATCH, codes.FailedPrecondition, 0},
		{sm.ErrRevisionMismatch, pb.ErrorReason_REVISION_MISMATCH, codes.Aborted, 0},
		{sm.ErrWriteConflict, pb.ErrorReason_WRITE_CONFLICT, codes.Aborted, 0},
		{sm.ErrSessionNotFound, pb.ErrorReason_SESSION_NOT_FOUND, codes.NotFound, 0},
		{sm.ErrInvalidPath, pb.ErrorReason_INVALID_PATH, codes.InvalidArgument, 0},
		{sm.ErrInvalidPatch, pb.ErrorReason_INVALID_PATCH, codes.InvalidArgument, 0},
		{sm.ErrDocumentTooLarge, pb.ErrorReason_DOCUMENT_TOO_LARGE, codes.FailedPrecondition, 0},
		{sm.ErrTooManyWatchers, pb.ErrorReason_TOO_MANY_WATCHERS, codes.ResourceExhausted, time.Second},
		{sm.ErrSchemaUnusable, pb.ErrorReason_SCHEMA_UNUSABLE, codes.FailedPrecondition, 0},
		{sm.ErrRateLimited, pb.ErrorReason_RATE_LIMITED, codes.ResourceExhausted, 1500 * time.Millisecond},
		{sm.ErrQuotaExceeded, pb.ErrorReason_QUOTA_EXCEEDED, codes.ResourceExhausted, 0},
		{sm.ErrAPIKeyExpired, pb.ErrorReason_API_KEY_EXPIRED, codes.Unauthenticated, 0},
		{sm.ErrTokenInvalid, pb.ErrorReason_TOKEN_INVALID, codes.Unauthenticated, 0},
		{sm.ErrTokenExpired, pb.ErrorReason_TOKEN_EXPIRED, codes.Unauthenticated, 0},
		{sm.ErrTokenRevoked, pb.ErrorReason_TOKEN_REVOKED, codes.Unauthenticated, 0},
		{sm.ErrPermissionDenied, pb.ErrorReason_PERMISSION_DENIED, codes.PermissionDenied, 0},
		{sm.ErrInvalidTokenRequest, pb.ErrorReason_INVALID_TOKEN_REQUEST, codes.InvalidArgument, 0},
	} {
		t.Run(c.reason.String(), func(t *testing.T) {
			memory := offline(t, func(*pb.IncrementRequest) error { return rejection(t, c.code, c.reason, c.retry) })
			_, err := memory.Increment(context.Background(), "c", 1)
			if !errors.Is(err, c.sentinel) || errors.Is(err, sm.ErrSessionFull) {
				t.Fatalf("err = %v", err)
			}
			var e *sm.Error
			if !errors.As(err, &e) || e.Code != c.code || e.Reason != c.reason.String() || e.RetryAfter != c.retry {
				t.Fatalf("err = %#v", err)
			}
			// A rate limit is exactly RATE_LIMITED: a RetryAfter alone (ErrServerBusy) is not one.
			limited, overQuota := c.reason == pb.ErrorReason_RATE_LIMITED, c.reason == pb.ErrorReason_QUOTA_EXCEEDED
			if e.IsRateLimit() != limited || errors.Is(err, sm.ErrRateLimited) != limited ||
				e.IsQuotaExceeded() != overQuota || errors.Is(err, sm.ErrQuotaExceeded) != overQuota {
				t.Fatalf("rate limit / quota misread: %#v", err)
			}
			if errors.Is(err, sm.ErrUnauthenticated) != (c.code == codes.Unauthenticated) {
				t.Fatalf("ErrUnauthenticated misread: %#v", err)
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

// offlineClient is a client whose calls never leave the process: unary sees
// every unary call (method, request, reply to fill) and watch answers every
// Watch stream with the next script.
func offlineClient(t *testing.T, opts []sm.Option, unary func(method string, req, reply any) error,
	watch ...watchScript) (*sm.Client, *[]*pb.WatchRequest, *[]context.Context) {
	t.Helper()
	var requests []*pb.WatchRequest
	var contexts []context.Context
	intercept := func(_ context.Context, method string, req, reply any, _ *grpc.ClientConn,
		_ grpc.UnaryInvoker, _ ...grpc.CallOption) error {
		return unary(method, req, reply)
	}
	stream := func(ctx context.Context, _ *grpc.StreamDesc, _ *grpc.ClientConn, _ string,
		_ grpc.Streamer, _ ...grpc.CallOption) (grpc.ClientStream, error) {
		if len(contexts) >= len(watch) {
			t.Fatalf("stream %d was not expected", len(contexts)+1)
		}
		contexts = append(contexts, ctx)
		return &fakeStream{ctx: ctx, script: watch[len(contexts)-1], sent: &requests}, nil
	}
	c, err := sm.New("passthrough:///offline", append([]sm.Option{sm.WithAPIKey("k"), sm.WithDialOptions(
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithUnaryInterceptor(intercept),
		grpc.WithStreamInterceptor(stream))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, &requests, &contexts
}

// watchScript is one Watch stream: its messages, then err (nil: it stays open
// until the client leaves).
type watchScript struct {
	msgs []*pb.WatchResponse
	err  error
}

type fakeStream struct {
	ctx    context.Context
	script watchScript
	sent   *[]*pb.WatchRequest
	next   int
}

func (f *fakeStream) Header() (metadata.MD, error) { return nil, nil }
func (f *fakeStream) Trailer() metadata.MD         { return nil }
func (f *fakeStream) CloseSend() error             { return nil }
func (f *fakeStream) Context() context.Context     { return f.ctx }
func (f *fakeStream) SendMsg(m any) error {
	*f.sent = append(*f.sent, proto.Clone(m.(proto.Message)).(*pb.WatchRequest))
	return nil
}
func (f *fakeStream) RecvMsg(m any) error {
	if f.next < len(f.script.msgs) {
		proto.Merge(m.(proto.Message), f.script.msgs[f.next])
		f.next++
		return nil
	}
	if f.script.err != nil {
		return f.script.err
	}
	<-f.ctx.Done()
	return status.FromContextError(f.ctx.Err()).Err()
}

func noUnary(t *testing.T) func(string, any, any) error {
	return func(method string, _, _ any) error { t.Fatalf("unexpected call %s", method); return nil }
}

func set(key string, rev int64) *pb.Change {
	return &pb.Change{Key: key, Operation: pb.ChangeOperation_CHANGE_OPERATION_SET,
		Kind: pb.ValueKind_VALUE_KIND_STRING, Version: rev, Revision: rev, ExpiresAt: timestamppb.Now()}
}

func TestUpdateRequests(t *testing.T) {
	ctx := context.Background()
	var got []*pb.PatchDocumentRequest
	failFirst := true
	c, _, _ := offlineClient(t, nil, func(method string, req, reply any) error {
		got = append(got, proto.Clone(req.(proto.Message)).(*pb.PatchDocumentRequest))
		if failFirst {
			failFirst = false
			return status.Error(codes.Unavailable, "down")
		}
		reply.(*pb.PatchDocumentResponse).Revision = 7
		return nil
	})
	rev, err := c.Session("s").Update(ctx, map[string]any{"order": map[string]any{"status": "shipped"}}, time.Hour,
		sm.WithSchema("agent"))
	if err != nil || rev != 7 {
		t.Fatalf("rev = %d, %v", rev, err)
	}
	want := &pb.PatchDocumentRequest{SessionId: "s", MergePatch: `{"order":{"status":"shipped"}}`,
		TtlSeconds: proto.Int64(3600), Schema: "agent"}
	if len(got) != 2 || !proto.Equal(got[0], want) || !proto.Equal(got[1], want) {
		t.Fatalf("an unconditional update is retried as it was: %v", got)
	}

	got, failFirst = nil, true
	if _, err := c.Session("s").Update(ctx, json.RawMessage(`{"a":null}`), time.Minute, sm.IfRevision(3)); !errors.Is(err, sm.ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
	want = &pb.PatchDocumentRequest{SessionId: "s", MergePatch: `{"a":null}`, TtlSeconds: proto.Int64(60),
		IfRevision: proto.Int64(3)}
	if len(got) != 1 || !proto.Equal(got[0], want) {
		t.Fatalf("a conditional update is not retried: %v", got)
	}

	got, failFirst = nil, false
	type Order struct {
		TrackingNumber *string `json:"trackingNumber,omitempty"`
		Status         *string `json:"status,omitempty"`
	}
	tracking := "1Z999"
	if _, err := c.UpdateMemory(ctx, "other", map[string]any{"order": Order{TrackingNumber: &tracking}}, 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	want = &pb.PatchDocumentRequest{SessionId: "other", MergePatch: `{"order":{"trackingNumber":"1Z999"}}`,
		TtlSeconds: proto.Int64(7200), MustExist: true}
	if len(got) != 1 || !proto.Equal(got[0], want) {
		t.Fatalf("UpdateMemory must exist: %v", got)
	}
}

func TestSchemaAndDocumentRequests(t *testing.T) {
	ctx := context.Background()
	var got []proto.Message
	c, _, _ := offlineClient(t, nil, func(method string, req, reply any) error {
		got = append(got, proto.Clone(req.(proto.Message)))
		switch r := reply.(type) {
		case *pb.GetDocumentResponse:
			r.Json, r.Revision, r.Schema, r.DefaultedPaths = `{"user":{"name":"Ada","age":36}}`, 4, "agent", []string{"user.age"}
		case *pb.PutSchemaResponse:
			r.Schema = &pb.SchemaInfo{Name: "agent", Version: 2, SizeBytes: 15}
		}
		return nil
	})
	for _, schema := range []any{
		map[string]any{"type": "object"},
		struct {
			Type string `json:"type"`
		}{"object"},
		json.RawMessage(`{"type":"object"}`),
		[]byte(`{"type":"object"}`),
	} {
		info, err := c.PutSchema(ctx, "agent", schema)
		if err != nil || info.Version != 2 || info.Name != "agent" {
			t.Fatalf("info = %+v, %v", info, err)
		}
	}
	for _, m := range got {
		if m.(*pb.PutSchemaRequest).GetJsonSchema() != `{"type":"object"}` {
			t.Fatalf("schema sent as %v", m)
		}
	}

	got = nil
	memory := c.Session("s")
	doc, err := memory.Document(ctx, sm.Paths("user.name", "user.age"), sm.OmitDefaults())
	if err != nil || doc.Revision != 4 || doc.Schema != "agent" || doc.Defaulted[0] != "user.age" ||
		doc.Fields["user"].(map[string]any)["name"] != "Ada" {
		t.Fatalf("doc = %+v, %v", doc, err)
	}
	want := &pb.GetDocumentRequest{SessionId: "s", Paths: []string{"user.name", "user.age"}, OmitDefaults: true}
	if !proto.Equal(got[0], want) {
		t.Fatalf("request = %v", got[0])
	}
	type Memory struct {
		User struct {
			Name string `json:"name"`
			Age  int    `json:"age"`
		} `json:"user"`
	}
	mem, rev, err := sm.DocumentAs[Memory](ctx, memory)
	if err != nil || rev != 4 || mem.User.Name != "Ada" || mem.User.Age != 36 {
		t.Fatalf("mem = %+v, %d, %v", mem, rev, err)
	}
	if _, _, err := sm.DocumentAs[[]int](ctx, memory); err == nil {
		t.Fatal("decoding an object into a slice should fail")
	}
}

func TestWatchResumesFromTheLastRevision(t *testing.T) {
	c, requests, _ := offlineClient(t, nil, noUnary(t),
		watchScript{msgs: []*pb.WatchResponse{{Revision: 5}, {Changes: []*pb.Change{set("a", 6)}, Revision: 6}},
			err: status.Error(codes.Unavailable, "connection reset")},
		watchScript{msgs: []*pb.WatchResponse{{Revision: 6}, {Changes: []*pb.Change{{Key: "a",
			Operation: pb.ChangeOperation_CHANGE_OPERATION_DELETE, Version: 6, Revision: 7}}, Revision: 7},
			{Compacted: true, Revision: 20}}, err: io.EOF},
		watchScript{msgs: []*pb.WatchResponse{{Revision: 20}}, err: rejection(t, codes.Unauthenticated, pb.ErrorReason_API_KEY_INVALID, 0)},
	)
	var changes []sm.Change
	var errs []error
	for change, err := range c.Session("s").Watch(context.Background()) {
		if err != nil {
			errs = append(errs, err)
			continue
		}
		changes = append(changes, change)
	}
	if len(changes) != 3 || changes[0].Key != "a" || changes[0].Operation != sm.OperationSet || changes[0].Kind != "string" ||
		changes[0].Revision != 6 || changes[0].ExpiresAt.IsZero() ||
		changes[1].Operation != sm.OperationDelete || changes[1].Kind != "" || changes[1].Revision != 7 || !changes[1].ExpiresAt.IsZero() ||
		changes[2] != (sm.Change{Operation: sm.OperationReset, Revision: 20}) {
		t.Fatalf("changes = %+v", changes)
	}
	if len(errs) != 1 || !errors.Is(errs[0], sm.ErrAPIKeyInvalid) {
		t.Fatalf("an error waiting cannot fix ends the watch: %v", errs)
	}
	var after []any
	for _, r := range *requests {
		if r.GetSessionId() != "s" {
			t.Fatalf("request = %v", r)
		}
		if r.AfterRevision == nil {
			after = append(after, nil)
		} else {
			after = append(after, r.GetAfterRevision())
		}
	}
	if !reflect.DeepEqual(after, []any{nil, int64(6), int64(20)}) {
		t.Fatalf("after_revision of each stream: %v", after)
	}
}

func TestWatchStopsWhenTheLoopBreaksOrTheContextEnds(t *testing.T) {
	open := watchScript{msgs: []*pb.WatchResponse{{Revision: 1}, {Changes: []*pb.Change{set("a", 2), set("b", 3)}, Revision: 3}}}
	c, requests, contexts := offlineClient(t, nil, noUnary(t), open, open)
	for change := range c.Session("s").Watch(context.Background(), sm.AfterRevision(1)) {
		if change.Key != "a" {
			t.Fatalf("change = %+v", change)
		}
		break
	}
	select {
	case <-(*contexts)[0].Done():
	case <-time.After(time.Second):
		t.Fatal("breaking the loop did not end the stream")
	}
	if (*requests)[0].GetAfterRevision() != 1 {
		t.Fatalf("request = %v", (*requests)[0])
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var seen []string
	for change, err := range c.Session("s").Watch(ctx) {
		if err != nil {
			t.Fatalf("a cancelled watch ends without an error: %v", err)
		}
		seen = append(seen, change.Key)
		cancel()
	}
	if len(seen) != 2 || len(*contexts) != 2 {
		t.Fatalf("seen %v over %d streams", seen, len(*contexts))
	}
}

func TestWatchGivesUpOnAServerNeverReached(t *testing.T) {
	down := watchScript{err: status.Error(codes.Unavailable, "connection refused")}
	c, _, contexts := offlineClient(t, []sm.Option{sm.WithMaxAttempts(2)}, noUnary(t), down, down)
	var errs []error
	for _, err := range c.Session("s").Watch(context.Background()) {
		errs = append(errs, err)
	}
	if len(errs) != 1 || !errors.Is(errs[0], sm.ErrUnavailable) || len(*contexts) != 2 {
		t.Fatalf("errs = %v after %d streams", errs, len(*contexts))
	}
	keyless, err := sm.New("passthrough:///offline")
	if err != nil {
		t.Fatal(err)
	}
	defer keyless.Close()
	for _, err := range keyless.Session("s").Watch(context.Background()) {
		if !errors.Is(err, sm.ErrMemoryUnavailable) {
			t.Fatalf("err = %v", err)
		}
	}
	if _, err := keyless.ListSchemas(context.Background()); !errors.Is(err, sm.ErrMemoryUnavailable) {
		t.Fatalf("err = %v", err)
	}
}

// gets is an offline client whose Get fails with errs in turn, then finds nothing;
// it records when each attempt came.
func gets(t *testing.T, timeout time.Duration, errs ...error) (*sm.Session, *[]time.Time) {
	t.Helper()
	var at []time.Time
	c, _, _ := offlineClient(t, []sm.Option{sm.WithAPIKey("smt_a-session-token"), sm.WithTimeout(timeout)},
		func(method string, _, _ any) error {
			at = append(at, time.Now())
			if len(errs) > 0 {
				err := errs[0]
				errs = errs[1:]
				return err
			}
			return nil
		})
	return c.Session("s"), &at
}

func TestRetryWaitsTheServersRetryInfo(t *testing.T) {
	ctx := context.Background()
	memory, at := gets(t, 5*time.Second, rejection(t, codes.Unavailable, pb.ErrorReason_BACKEND_UNAVAILABLE, 700*time.Millisecond))
	if _, err := memory.Get(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if len(*at) != 2 {
		t.Fatalf("attempts = %d", len(*at))
	}
	if gap := (*at)[1].Sub((*at)[0]); gap < 690*time.Millisecond || gap > 1200*time.Millisecond {
		t.Fatalf("waited %v, not the server's 700 ms", gap)
	}
}

func TestRetryInfoPastTheDeadlineIsNotWaitedFor(t *testing.T) {
	memory, at := gets(t, time.Second, rejection(t, codes.Unavailable, pb.ErrorReason_BACKEND_UNAVAILABLE, 10*time.Second))
	start := time.Now()
	_, err := memory.Get(context.Background(), "k")
	var e *sm.Error
	if !errors.As(err, &e) || e.Code != codes.Unavailable || e.RetryAfter != 10*time.Second || len(*at) != 1 {
		t.Fatalf("err = %v after %d attempts", err, len(*at))
	}
	if time.Since(start) > 500*time.Millisecond {
		t.Fatalf("waited %v", time.Since(start))
	}
}

func TestRateLimitedIsNotRetried(t *testing.T) {
	limited := rejection(t, codes.ResourceExhausted, pb.ErrorReason_RATE_LIMITED, 2*time.Second)
	memory, at := gets(t, 5*time.Second, limited, limited)
	_, err := memory.Get(context.Background(), "k")
	var e *sm.Error
	if !errors.Is(err, sm.ErrRateLimited) || !errors.As(err, &e) || e.RetryAfter != 2*time.Second || len(*at) != 1 {
		t.Fatalf("err = %v after %d attempts", err, len(*at))
	}
}

func TestSessionTokenRequests(t *testing.T) {
	ctx := context.Background()
	var requests []proto.Message
	c, _, _ := offlineClient(t, nil, func(method string, req, reply any) error {
		requests = append(requests, proto.Clone(req.(proto.Message)))
		if r, ok := reply.(*pb.CreateSessionTokenResponse); ok {
			r.Token, r.TokenId, r.ExpiresAt = "smt_x", "t1", timestamppb.New(time.Unix(1_700_000_000, 0))
		}
		return nil
	})
	token, err := c.CreateSessionToken(ctx, "s", []sm.Permission{sm.PermissionRead, sm.PermissionFiles}, sm.TTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if *token != (sm.SessionToken{Token: "smt_x", TokenID: "t1", ExpiresAt: time.Unix(1_700_000_000, 0).UTC()}) {
		t.Fatalf("token = %+v", token)
	}
	if err := c.RevokeSessionToken(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	if err := c.RevokeSessionTokens(ctx, "s"); err != nil {
		t.Fatal(err)
	}
	ttl := int64(60)
	want := []proto.Message{
		&pb.CreateSessionTokenRequest{SessionId: "s", TtlSeconds: &ttl, Permissions: []pb.TokenPermission{
			pb.TokenPermission_TOKEN_PERMISSION_READ, pb.TokenPermission_TOKEN_PERMISSION_FILES}},
		&pb.RevokeSessionTokenRequest{Target: &pb.RevokeSessionTokenRequest_TokenId{TokenId: "t1"}},
		&pb.RevokeSessionTokenRequest{Target: &pb.RevokeSessionTokenRequest_SessionId{SessionId: "s"}},
	}
	if len(requests) != len(want) {
		t.Fatalf("requests = %v", requests)
	}
	for i := range want {
		if !proto.Equal(requests[i], want[i]) {
			t.Fatalf("request %d = %v, want %v", i, requests[i], want[i])
		}
	}
	if _, err := c.CreateSessionToken(ctx, "s", []sm.Permission{42}); err == nil {
		t.Fatal("an unknown permission was sent")
	}
}
