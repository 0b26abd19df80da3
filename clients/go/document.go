package sessionmemory

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	pb "github.com/session-memory/session-memory/clients/go/gen/sessionmemory/v1"
)

// Document is a session's memory as one JSON object: every live key is a
// top-level field (files appear as their FileInfo object, never their bytes).
type Document struct {
	// Fields is the document decoded with encoding/json: strings, float64,
	// bool, nil, []any and map[string]any. Use Decode or DocumentAs for your
	// own types (and exact integers).
	Fields map[string]any
	// Revision grows with every write to the session and never repeats; pass
	// it to IfRevision to make an Update conditional.
	Revision int64
	// Schema is the schema the session is bound to; "" when none.
	Schema string
	// Defaulted lists the paths ("user.name") filled from the schema's
	// defaults rather than stored; empty with OmitDefaults.
	Defaulted []string
	// JSON is the document as compact JSON text, as the server sent it.
	JSON json.RawMessage
}

// Decode unmarshals the document into v (a pointer, e.g. to your memory struct).
func (d *Document) Decode(v any) error { return json.Unmarshal(d.JSON, v) }

// DocumentOption tunes Document and DocumentAs.
type DocumentOption func(*documentOptions)

type documentOptions struct {
	paths        []string
	omitDefaults bool
}

// Paths projects the document on these paths ("lastOrder.status",
// "cart.items.0.name"): only they are returned, nested as in the document;
// missing paths are left out. At most 100.
func Paths(paths ...string) DocumentOption {
	return func(o *documentOptions) { o.paths = append(o.paths, paths...) }
}

// OmitDefaults returns only stored values, without the bound schema's defaults.
func OmitDefaults() DocumentOption {
	return func(o *documentOptions) { o.omitDefaults = true }
}

// Document reads the session as one JSON object with its revision; an empty
// session is an empty document (Revision 0 if it was never written). When the
// session is bound to a schema, its defaults fill absent fields (listed in
// Defaulted) unless OmitDefaults is given. A document larger than 1 MiB fails
// with ErrDocumentTooLarge: read parts of it with Paths.
func (s *Session) Document(ctx context.Context, opts ...DocumentOption) (*Document, error) {
	var o documentOptions
	for _, opt := range opts {
		opt(&o)
	}
	req := &pb.GetDocumentRequest{SessionId: s.id, Paths: o.paths, OmitDefaults: o.omitDefaults}
	r, err := call(ctx, s, true, s.c.timeout, func(ctx context.Context) (*pb.GetDocumentResponse, error) {
		return s.c.stub.GetDocument(ctx, req)
	})
	if err != nil {
		return nil, err
	}
	d := &Document{JSON: json.RawMessage(r.GetJson()), Revision: r.GetRevision(), Schema: r.GetSchema(),
		Defaulted: r.GetDefaultedPaths()}
	if err := d.Decode(&d.Fields); err != nil {
		return nil, fmt.Errorf("sessionmemory: the document is not a JSON object: %w", err)
	}
	if d.Fields == nil {
		d.Fields = map[string]any{}
	}
	return d, nil
}

// DocumentAs reads the session's document into a T (usually your memory
// struct) with json.Unmarshal, and returns it with the document's revision:
//
//	mem, rev, err := sessionmemory.DocumentAs[Memory](ctx, memory)
func DocumentAs[T any](ctx context.Context, s *Session, opts ...DocumentOption) (T, int64, error) {
	var out T
	d, err := s.Document(ctx, opts...)
	if err != nil {
		return out, 0, err
	}
	if err := d.Decode(&out); err != nil {
		return out, d.Revision, fmt.Errorf("sessionmemory: decoding the document into %T: %w", out, err)
	}
	return out, d.Revision, nil
}

// UpdateOption tunes Update and UpdateMemory.
type UpdateOption func(*updateOptions)

type updateOptions struct {
	schema     string
	ifRevision *int64
	mustExist  bool
}

// WithSchema validates the update against the named schema. On a session not
// yet bound to a schema this binds it (the merged document must validate); on
// a session bound to another schema the update fails with ErrSchemaMismatch.
func WithSchema(name string) UpdateOption {
	return func(o *updateOptions) { o.schema = name }
}

// IfRevision applies the update only if the session's revision is still r
// (from Document or a previous Update); otherwise it fails with
// ErrRevisionMismatch and nothing changes.
func IfRevision(r int64) UpdateOption {
	return func(o *updateOptions) { o.ifRevision = &r }
}

// MustExist makes the update fail with ErrSessionNotFound when the session has
// no live key, so that an update from outside cannot revive an ended
// conversation. UpdateMemory sets it.
func MustExist() UpdateOption {
	return func(o *updateOptions) { o.mustExist = true }
}

// jsonText is v as JSON text: json.RawMessage, []byte and string are taken as
// JSON text already, anything else goes through json.Marshal.
func jsonText(v any) (string, error) {
	switch p := v.(type) {
	case json.RawMessage:
		return string(p), nil
	case []byte:
		return string(p), nil
	case string:
		return p, nil
	}
	text, err := json.Marshal(v)
	return string(text), err
}

// Update merges partial into the session's document atomically (RFC 7396
// JSON Merge Patch) and returns the session's new revision: objects merge
// recursively, nil (JSON null) deletes a field, anything else replaces it.
// Every top-level key partial touches is written with ttl (required, at most a
// day); the others keep their values and TTLs. Concurrent updates never lose
// one another. If the result breaks a per-kind limit or the session's schema,
// nothing changes and the error says why (e.g. ErrSchemaViolation with the
// JSON pointer in Metadata["pointer"]).
//
// partial is a map, a struct (use pointer fields with `json:",omitempty"`: a
// field marshalled as null deletes its key) or JSON text (json.RawMessage,
// []byte, string), and must be a JSON object. Without IfRevision a call that
// failed with UNAVAILABLE is retried (merging the same patch twice gives the
// same document).
func (s *Session) Update(ctx context.Context, partial any, ttl time.Duration, opts ...UpdateOption) (int64, error) {
	text, err := jsonText(partial)
	if err != nil {
		return 0, err
	}
	seconds := int64(ttl / time.Second)
	var o updateOptions
	for _, opt := range opts {
		opt(&o)
	}
	req := &pb.PatchDocumentRequest{SessionId: s.id, MergePatch: text, TtlSeconds: &seconds, Schema: o.schema,
		IfRevision: o.ifRevision, MustExist: o.mustExist}
	r, err := call(ctx, s, req.IfRevision == nil, s.c.timeout, func(ctx context.Context) (*pb.PatchDocumentResponse, error) {
		return s.c.stub.PatchDocument(ctx, req)
	})
	return r.GetRevision(), err
}

// UpdateMemory is Update from outside the conversation (a webhook, a back
// office): it merges partial into sessionID's document with MustExist, so it
// fails with ErrSessionNotFound when the session has ended (no live key).
// Use client.Session(id).Update to create the session instead.
func (c *Client) UpdateMemory(ctx context.Context, sessionID string, partial any, ttl time.Duration, opts ...UpdateOption) (int64, error) {
	return c.Session(sessionID).Update(ctx, partial, ttl, append([]UpdateOption{MustExist()}, opts...)...)
}
