// Package sessionmemory is the Go client of Session Memory: typed, expiring,
// per-conversation memory for bot and agent functions, over gRPC.
//
//	client, err := sessionmemory.NewFromEnv()
//	memory := client.Session(socketID)
//	step, err := memory.GetString(ctx, "step", "start")
//	_, err = memory.Set(ctx, "step", "name", sessionmemory.TTL(time.Hour))
package sessionmemory

import (
	"context"
	"math/rand/v2"
	"os"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	pb "github.com/session-memory/session-memory/clients/go/gen/sessionmemory/v1"
)

// Client is a connection to Session Memory; create one and share it.
type Client struct {
	conn        *grpc.ClientConn
	stub        pb.MemoryServiceClient
	apiKey      string
	timeout     time.Duration
	fileTimeout time.Duration
	maxAttempts int
	dialOptions []grpc.DialOption
	creds       credentials.TransportCredentials // WithTLS; nil: those of dialOptions
}

// Option configures a Client.
type Option func(*Client)

// WithAPIKey sets the tenant's API key, or a session token ("smt_...") from
// CreateSessionToken (sent as "authorization: Bearer <key>").
func WithAPIKey(key string) Option { return func(c *Client) { c.apiKey = key } }

// WithTimeout sets the deadline of calls whose context has none (default 5 s).
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// WithMaxAttempts sets the attempts of calls safe to retry on UNAVAILABLE (default 3).
func WithMaxAttempts(n int) Option { return func(c *Client) { c.maxAttempts = max(1, n) } }

// WithDialOptions replaces the default dial options (plaintext) with yours
// (for TLS, WithTLS is shorter).
func WithDialOptions(opts ...grpc.DialOption) Option {
	return func(c *Client) { c.dialOptions = opts }
}

// New connects to addr ("host:port"). No I/O happens until the first call.
func New(addr string, opts ...Option) (*Client, error) {
	c := &Client{
		timeout:     5 * time.Second,
		fileTimeout: 5 * time.Minute,
		maxAttempts: 3,
		dialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
	}
	for _, opt := range opts {
		opt(c)
	}
	dial := c.dialOptions
	if c.creds != nil {
		// Appended last, so they win over the transport credentials of dialOptions.
		dial = append(slices.Clip(dial), grpc.WithTransportCredentials(c.creds))
	}
	conn, err := grpc.NewClient(addr, dial...)
	if err != nil {
		return nil, err
	}
	c.conn = conn
	c.stub = pb.NewMemoryServiceClient(conn)
	return c, nil
}

// NewFromEnv connects to SESSION_MEMORY_ADDR (default localhost:50051) with
// SESSION_MEMORY_API_KEY (an API key or a session token). TLS comes from
// SESSION_MEMORY_TLS=true (the system roots), SESSION_MEMORY_TLS_CA (a PEM CA
// bundle), SESSION_MEMORY_CLIENT_CERT with SESSION_MEMORY_CLIENT_KEY (a PEM client
// certificate and its key, for mTLS) and SESSION_MEMORY_TLS_SERVER_NAME (the
// name to check in the server's certificate); each but the first implies TLS.
// opts come after the environment's, so a WithTLS among them wins. An error
// wrapping ErrTLSConfig says what in the TLS variables does not fit.
func NewFromEnv(opts ...Option) (*Client, error) {
	addr := os.Getenv("SESSION_MEMORY_ADDR")
	if addr == "" {
		addr = "localhost:50051"
	}
	env := []Option{WithAPIKey(os.Getenv("SESSION_MEMORY_API_KEY"))}
	cfg, err := envTLS(os.Getenv)
	if err != nil {
		return nil, err
	}
	if cfg != nil {
		env = append(env, WithTLS(cfg))
	}
	return New(addr, append(env, opts...)...)
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Raw is the generated stub: an escape hatch for what this client does not wrap.
func (c *Client) Raw() pb.MemoryServiceClient { return c.stub }

// Session is a handle on one conversation's memory. It does no I/O.
func (c *Client) Session(id string) *Session { return &Session{c: c, id: id} }

// call runs f for a session: it refuses without a session id or API key, then
// behaves as invoke.
func call[T any](ctx context.Context, s *Session, idempotent bool, timeout time.Duration,
	f func(context.Context) (T, error)) (T, error) {
	if !s.Available() {
		var zero T
		return zero, unavailable("the session id or the API key is missing")
	}
	return invoke(ctx, s.c, idempotent, timeout, f)
}

func unavailable(why string) *Error {
	return &Error{Code: codes.FailedPrecondition, Reason: ErrMemoryUnavailable.Reason,
		Message: "memory is unavailable: " + why}
}

// authorized adds the API key to ctx.
func (c *Client) authorized(ctx context.Context) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+c.apiKey)
}

// backoff is the delay before retry number attempt (1-based): the server's
// RetryInfo when it sent one, else 50 ms doubling, at most limit, with jitter.
func backoff(attempt int, limit time.Duration, e *Error) time.Duration {
	if e.RetryAfter > 0 {
		return e.RetryAfter
	}
	base := float64(50*time.Millisecond) * float64(int64(1)<<min(attempt-1, 20))
	return time.Duration(min(base, float64(limit)) * (0.5 + rand.Float64()))
}

// invoke runs f with the API key and a deadline, retrying UNAVAILABLE when the
// call is idempotent, after the server's RetryInfo (or a jittered backoff). A
// delay that would end past the deadline gives up at once, returning the error
// with its RetryAfter. RATE_LIMITED is never retried: it is returned.
func invoke[T any](ctx context.Context, c *Client, idempotent bool, timeout time.Duration,
	f func(context.Context) (T, error)) (T, error) {
	var zero T
	if c.apiKey == "" {
		return zero, unavailable("the API key is missing")
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	ctx = c.authorized(ctx)
	for attempt := 1; ; attempt++ {
		out, err := f(ctx)
		if err == nil {
			return out, nil
		}
		e := fromGRPC(err)
		if !idempotent || e.Code != codes.Unavailable || attempt >= c.maxAttempts {
			return zero, e
		}
		delay := backoff(attempt, time.Hour, e)
		if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) <= delay {
			return zero, e
		}
		select {
		case <-ctx.Done():
			return zero, e
		case <-time.After(delay):
		}
	}
}
