package sessionmemory

import (
	"context"
	"errors"
	"io"
	"iter"
	"time"

	"google.golang.org/grpc/codes"

	pb "github.com/session-memory/session-memory/clients/go/gen/sessionmemory/v1"
)

// Operation says what a Change did.
type Operation string

// The operations of a Change.
const (
	OperationSet    Operation = "set"    // the key was written
	OperationDelete Operation = "delete" // the key was deleted (Delete, Clear, Update's null)
	OperationExpire Operation = "expire" // the key expired (live only, where Redis reports it)
	// OperationReset: changes were missed (the server keeps the last 128 of a
	// session, and drops a watcher that falls behind). Re-read the Document;
	// the stream goes on from Revision.
	OperationReset Operation = "reset"
)

// Change is one change of a session's key, as Watch reports it.
type Change struct {
	Key       string // "" for OperationReset
	Operation Operation
	Kind      string    // the kind written ("string", "number", "boolean", "json", "file"); "" otherwise
	Version   int64     // the key's new version (set), or the one it had (delete, when known)
	Revision  int64     // the session revision of the change (an expiry carries the stream's)
	ExpiresAt time.Time // when the written value expires; zero otherwise
}

var operations = map[pb.ChangeOperation]Operation{
	pb.ChangeOperation_CHANGE_OPERATION_SET:    OperationSet,
	pb.ChangeOperation_CHANGE_OPERATION_DELETE: OperationDelete,
	pb.ChangeOperation_CHANGE_OPERATION_EXPIRE: OperationExpire,
}

func change(c *pb.Change) Change {
	out := Change{Key: c.GetKey(), Operation: operations[c.GetOperation()], Kind: kinds[c.GetKind()],
		Version: c.GetVersion(), Revision: c.GetRevision()}
	if c.GetExpiresAt() != nil {
		out.ExpiresAt = c.GetExpiresAt().AsTime()
	}
	return out
}

// WatchOption tunes Watch.
type WatchOption func(*watchOptions)

type watchOptions struct {
	after *int64
}

// AfterRevision starts the watch with the changes after revision r (e.g. a
// Document's Revision), so that nothing between a read and the watch is missed.
// Without it the watch starts from now.
func AfterRevision(r int64) WatchOption { return func(o *watchOptions) { o.after = &r } }

// watchBackoffLimit caps the delay between two attempts to resume a watch.
const watchBackoffLimit = 5 * time.Second

// Watch streams the session's changes, in revision order, within about 100 ms
// of each write:
//
//	for change, err := range memory.Watch(ctx) {
//		if err != nil {
//			return err // the watch cannot go on
//		}
//		if change.Operation == sessionmemory.OperationReset {
//			doc, err = memory.Document(ctx) // changes were missed: re-read
//		}
//	}
//
// The sequence resumes by itself from the last revision it delivered when the
// stream drops, waiting the server's RetryAfter when it sent one, else 50 ms
// doubling up to 5 s between attempts. Once a stream has worked, it keeps trying through
// UNAVAILABLE (and ErrTooManyWatchers) for as long as ctx lives; other
// cut-offs (CANCELLED, INTERNAL, UNKNOWN), and a server not reachable at all
// yet, get WithMaxAttempts attempts in a row. An error it gives up on, or one
// that waiting cannot fix (a bad API key or session id), is yielded once with
// a zero Change and ends the sequence. It ends without an error when ctx is
// done (check ctx.Err()) or the loop breaks. The stream carries no deadline
// of its own: ctx bounds the watch. Each range over the sequence opens its
// own stream.
func (s *Session) Watch(ctx context.Context, opts ...WatchOption) iter.Seq2[Change, error] {
	var o watchOptions
	for _, opt := range opts {
		opt(&o)
	}
	return func(yield func(Change, error) bool) {
		if !s.Available() {
			yield(Change{}, unavailable("the session id or the API key is missing"))
			return
		}
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		after := o.after
		established := false // a stream has delivered its first message
		failures := 0        // attempts in a row that delivered nothing
		for {
			delivered, stop, err := s.watchOnce(ctx, after, func(r *pb.WatchResponse) bool {
				if r.GetCompacted() {
					if !yield(Change{Operation: OperationReset, Revision: r.GetRevision()}, nil) {
						return false
					}
				}
				for _, c := range r.GetChanges() {
					if !yield(change(c), nil) {
						return false
					}
				}
				rev := r.GetRevision()
				after = &rev
				return true
			})
			if stop || ctx.Err() != nil {
				return
			}
			if delivered {
				established, failures = true, 0
			}
			failures++
			e := fromGRPC(err)
			persistent := established && (e.Code == codes.Unavailable || e.Reason == ErrTooManyWatchers.Reason)
			if !resumable(e) || (!persistent && failures >= s.c.maxAttempts) {
				yield(Change{}, e)
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff(failures, watchBackoffLimit, e)):
			}
		}
	}
}

// watchOnce runs one Watch stream, handing each message to deliver. It returns
// whether any message arrived, whether deliver asked to stop, and why the
// stream ended (UNAVAILABLE when the server closed it without an error).
func (s *Session) watchOnce(ctx context.Context, after *int64, deliver func(*pb.WatchResponse) bool) (delivered, stop bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream when the caller stops early
	stream, err := s.c.stub.Watch(s.c.authorized(ctx), &pb.WatchRequest{SessionId: s.id, AfterRevision: after})
	if err != nil {
		return false, false, err
	}
	for {
		r, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return delivered, false, &Error{Code: codes.Unavailable, Message: "the server ended the watch stream"}
		}
		if err != nil {
			return delivered, false, err
		}
		delivered = true
		if !deliver(r) {
			return true, true, nil
		}
	}
}

// resumable reports whether a watch that ended with e may be resumed.
func resumable(e *Error) bool {
	switch e.Code {
	case codes.Unavailable, codes.Canceled, codes.Internal, codes.Unknown:
		// Canceled, Internal, Unknown: the server or a proxy cut the stream
		// (the caller's own ctx is checked first).
		return true
	case codes.ResourceExhausted:
		// The server shedding load (ErrTooManyWatchers, ...): wait RetryAfter.
		// A tenant's RATE_LIMITED is returned, as it is for every call.
		return e.Reason == ErrTooManyWatchers.Reason || (e.RetryAfter > 0 && !e.IsRateLimit())
	}
	return false
}
