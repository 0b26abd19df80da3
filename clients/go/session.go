package sessionmemory

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"time"

	"google.golang.org/grpc/codes"

	pb "github.com/session-memory/session-memory/clients/go/gen/sessionmemory/v1"
)

// Session is one conversation's memory (from Client.Session).
type Session struct {
	c  *Client
	id string
}

// Entry is a stored value with its kind, expiry and version.
type Entry struct {
	Key       string
	Kind      string // "string", "number", "boolean", "json" or "file"
	Value     any    // string, float64, bool, json.RawMessage or FileInfo
	ExpiresAt time.Time
	Version   int64
}

// FileInfo describes a stored file.
type FileInfo struct {
	Key       string
	MimeType  string
	SizeBytes int64
	SHA256    string
	CreatedAt time.Time
	ExpiresAt time.Time
	Version   int64
}

// WriteResult is the version and expiry a write produced.
type WriteResult struct {
	Key       string
	Version   int64
	ExpiresAt time.Time
}

// EntryInfo describes a key without its value.
type EntryInfo struct {
	Key       string
	Kind      string
	SizeBytes int64
	ExpiresAt time.Time
	Version   int64
}

// WriteOption tunes a write.
type WriteOption func(*writeOptions)

type writeOptions struct {
	ttl       *int64
	ifVersion *int64
	uploadID  string
	requestID string
}

// TTL sets how long the value lives (whole seconds).
func TTL(d time.Duration) WriteOption {
	return func(o *writeOptions) { s := int64(d / time.Second); o.ttl = &s }
}

// IfVersion writes only if the key's current version equals v.
func IfVersion(v int64) WriteOption { return func(o *writeOptions) { o.ifVersion = &v } }

// OnlyIfAbsent writes only if the key does not exist.
func OnlyIfAbsent() WriteOption { return IfVersion(0) }

// UploadID names a file upload so that a retry returns the committed file.
func UploadID(id string) WriteOption { return func(o *writeOptions) { o.uploadID = id } }

// RequestID names an Increment (up to 128 printable characters, scoped to the
// session) so that it counts once: the same id with the same key, delta and TTL
// within 10 minutes returns the first result; with another key, delta or TTL
// the call fails with ErrRequestIDReused and changes nothing. Without it every
// Increment gets a fresh id, reused by its own retries; RequestID("") sends
// none (no deduplication, and no automatic retry). Other calls ignore it.
func RequestID(id string) WriteOption { return func(o *writeOptions) { o.requestID = id } }

func options(opts []WriteOption) writeOptions {
	var o writeOptions
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

var kinds = map[pb.ValueKind]string{
	pb.ValueKind_VALUE_KIND_STRING: "string", pb.ValueKind_VALUE_KIND_NUMBER: "number",
	pb.ValueKind_VALUE_KIND_BOOLEAN: "boolean", pb.ValueKind_VALUE_KIND_JSON: "json",
	pb.ValueKind_VALUE_KIND_FILE: "file",
}

func fileInfo(f *pb.FileInfo) FileInfo {
	return FileInfo{Key: f.GetKey(), MimeType: f.GetMimeType(), SizeBytes: f.GetSizeBytes(),
		SHA256: f.GetSha256(), CreatedAt: f.GetCreatedAt().AsTime(), ExpiresAt: f.GetExpiresAt().AsTime(),
		Version: f.GetVersion()}
}

func valueOf(v *pb.Value) (any, string) {
	switch k := v.GetKind().(type) {
	case *pb.Value_StringValue:
		return k.StringValue, "string"
	case *pb.Value_NumberValue:
		return k.NumberValue, "number"
	case *pb.Value_BoolValue:
		return k.BoolValue, "boolean"
	case *pb.Value_JsonValue:
		return json.RawMessage(k.JsonValue), "json"
	case *pb.Value_FileValue:
		return fileInfo(k.FileValue), "file"
	}
	return nil, ""
}

func writeResult(r *pb.WriteResult) *WriteResult {
	return &WriteResult{Key: r.GetKey(), Version: r.GetVersion(), ExpiresAt: r.GetExpiresAt().AsTime()}
}

// ID is the session id.
func (s *Session) ID() string { return s.id }

// Available reports whether calls can be made: false without a session id or API key.
func (s *Session) Available() bool { return s.id != "" && s.c.apiKey != "" }

// Get reads a value; it returns nil, nil when the key is missing or expired.
func (s *Session) Get(ctx context.Context, key string) (*Entry, error) {
	r, err := call(ctx, s, true, s.c.timeout, func(ctx context.Context) (*pb.GetResponse, error) {
		return s.c.stub.Get(ctx, &pb.GetRequest{SessionId: s.id, Key: key})
	})
	if err != nil || !r.GetFound() {
		return nil, err
	}
	value, kind := valueOf(r.GetEntry().GetValue())
	e := r.GetEntry()
	return &Entry{Key: e.GetKey(), Kind: kind, Value: value, ExpiresAt: e.GetExpiresAt().AsTime(),
		Version: e.GetVersion()}, nil
}

// GetString reads a value as a string; def when the key (or path) is missing.
// A number reads as JavaScript writes it ("7", "2.5", "1e-7"), a boolean as
// "true" or "false"; a JSON object or array, or a file, is a *TypeError.
func (s *Session) GetString(ctx context.Context, key, def string) (string, error) {
	e, err := s.Get(ctx, key)
	if err != nil || e == nil {
		return def, err
	}
	if v, ok := asString(e.Value); ok {
		return v, nil
	}
	return def, &TypeError{Key: key, Kind: e.Kind, Want: "string", Value: e.Value}
}

// GetNumber reads a value as a number; def when the key (or path) is missing.
// A string reads only when it is a finite decimal numeral ("42", "-2.5",
// "1e3", ".5"); anything else ("1_000", " 12", "0x10", "NaN", "true", a JSON
// object) is a *TypeError.
func (s *Session) GetNumber(ctx context.Context, key string, def float64) (float64, error) {
	e, err := s.Get(ctx, key)
	if err != nil || e == nil {
		return def, err
	}
	if v, ok := asNumber(e.Value); ok {
		return v, nil
	}
	return def, &TypeError{Key: key, Kind: e.Kind, Want: "number", Value: e.Value}
}

// GetBool reads a value as a boolean; def when the key (or path) is missing.
// Only a boolean and the strings "true" and "false" read; anything else is a
// *TypeError.
func (s *Session) GetBool(ctx context.Context, key string, def bool) (bool, error) {
	e, err := s.Get(ctx, key)
	if err != nil || e == nil {
		return def, err
	}
	if v, ok := asBool(e.Value); ok {
		return v, nil
	}
	return def, &TypeError{Key: key, Kind: e.Kind, Want: "boolean", Value: e.Value}
}

// GetJSON decodes a JSON value into out; found is false when the key is missing.
func (s *Session) GetJSON(ctx context.Context, key string, out any) (found bool, err error) {
	e, err := s.Get(ctx, key)
	if err != nil || e == nil {
		return false, err
	}
	raw, ok := e.Value.(json.RawMessage)
	if !ok { // a string, number or boolean: decode it as its JSON text
		if raw, err = json.Marshal(e.Value); err != nil {
			return true, err
		}
	}
	return true, json.Unmarshal(raw, out)
}

// GetMany reads up to 100 values in one round trip; missing keys are left out.
func (s *Session) GetMany(ctx context.Context, keys ...string) (map[string]any, error) {
	r, err := call(ctx, s, true, s.c.timeout, func(ctx context.Context) (*pb.GetManyResponse, error) {
		return s.c.stub.GetMany(ctx, &pb.GetManyRequest{SessionId: s.id, Keys: keys})
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string]any, len(r.GetEntries()))
	for _, e := range r.GetEntries() {
		out[e.GetKey()], _ = valueOf(e.GetValue())
	}
	return out, nil
}

// Set stores a string, number (any Go integer or float) or bool, of a named
// type too (`type Step string`).
func (s *Session) Set(ctx context.Context, key string, value any, opts ...WriteOption) (*WriteResult, error) {
	o := options(opts)
	req := &pb.SetRequest{SessionId: s.id, Key: key, TtlSeconds: o.ttl, IfVersion: o.ifVersion}
	scalar, ok := scalarValue(value)
	if !ok {
		return nil, fmt.Errorf("sessionmemory: Set takes a string, number or bool, not %T (use SetJSON)", value)
	}
	switch v := scalar.GetKind().(type) {
	case *pb.Value_StringValue:
		req.Value = &pb.SetRequest_StringValue{StringValue: v.StringValue}
	case *pb.Value_BoolValue:
		req.Value = &pb.SetRequest_BoolValue{BoolValue: v.BoolValue}
	case *pb.Value_NumberValue:
		req.Value = &pb.SetRequest_NumberValue{NumberValue: v.NumberValue}
	}
	r, err := call(ctx, s, o.ifVersion == nil, s.c.timeout, func(ctx context.Context) (*pb.SetResponse, error) {
		return s.c.stub.Set(ctx, req)
	})
	if err != nil {
		return nil, err
	}
	return writeResult(r.GetResult()), nil
}

// SetJSON stores any JSON-marshalable value for ttl (required, at most a day).
func (s *Session) SetJSON(ctx context.Context, key string, value any, ttl time.Duration, opts ...WriteOption) (*WriteResult, error) {
	o := options(append([]WriteOption{TTL(ttl)}, opts...))
	text, err := json.Marshal(value)
	if err != nil {
		return nil, err
	}
	req := &pb.SetJsonRequest{SessionId: s.id, Key: key, Json: string(text), TtlSeconds: o.ttl, IfVersion: o.ifVersion}
	r, err := call(ctx, s, o.ifVersion == nil, s.c.timeout, func(ctx context.Context) (*pb.SetJsonResponse, error) {
		return s.c.stub.SetJson(ctx, req)
	})
	if err != nil {
		return nil, err
	}
	return writeResult(r.GetResult()), nil
}

// scalarValue is a string, bool or Go number (any int, uint or float type,
// named types such as `type Step string` too) as the Value Set and SetMany
// store; false for anything else. Both store the same values as scalars, so a
// value Set takes is never JSON in SetMany.
func scalarValue(value any) (*pb.Value, bool) {
	if n, ok := value.(json.Number); ok { // a number, though its Kind is string
		f, err := n.Float64()
		if err != nil {
			return nil, false
		}
		return &pb.Value{Kind: &pb.Value_NumberValue{NumberValue: f}}, true
	}
	v := reflect.ValueOf(value)
	switch v.Kind() {
	case reflect.String:
		return &pb.Value{Kind: &pb.Value_StringValue{StringValue: v.String()}}, true
	case reflect.Bool:
		return &pb.Value{Kind: &pb.Value_BoolValue{BoolValue: v.Bool()}}, true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return &pb.Value{Kind: &pb.Value_NumberValue{NumberValue: float64(v.Int())}}, true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return &pb.Value{Kind: &pb.Value_NumberValue{NumberValue: float64(v.Uint())}}, true
	case reflect.Float32, reflect.Float64:
		return &pb.Value{Kind: &pb.Value_NumberValue{NumberValue: v.Float()}}, true
	}
	return nil, false
}

// SetMany stores up to 100 values all or nothing: when one is invalid or a
// precondition fails, nothing is written. A string, bool or Go number is
// stored as that kind, anything else as JSON (which needs a TTL). opts (TTL,
// IfVersion, OnlyIfAbsent) apply to every value; the results are keyed by key.
func (s *Session) SetMany(ctx context.Context, values map[string]any, opts ...WriteOption) (map[string]*WriteResult, error) {
	o := options(opts)
	req := &pb.SetManyRequest{SessionId: s.id}
	for _, key := range slices.Sorted(maps.Keys(values)) { // a stable order: the same request every time
		entry := &pb.SetManyEntry{Key: key, TtlSeconds: o.ttl, IfVersion: o.ifVersion}
		if scalar, ok := scalarValue(values[key]); ok {
			entry.Value = scalar
		} else {
			text, err := json.Marshal(values[key])
			if err != nil {
				return nil, fmt.Errorf("sessionmemory: SetMany: the value of %q: %w", key, err)
			}
			entry.Value = &pb.Value{Kind: &pb.Value_JsonValue{JsonValue: string(text)}}
		}
		req.Entries = append(req.Entries, entry)
	}
	r, err := call(ctx, s, o.ifVersion == nil, s.c.timeout, func(ctx context.Context) (*pb.SetManyResponse, error) {
		return s.c.stub.SetMany(ctx, req)
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string]*WriteResult, len(r.GetResults()))
	for _, result := range r.GetResults() {
		out[result.GetKey()] = writeResult(result)
	}
	return out, nil
}

// Delete removes up to 100 keys and returns how many existed.
func (s *Session) Delete(ctx context.Context, keys ...string) (int64, error) {
	r, err := call(ctx, s, true, s.c.timeout, func(ctx context.Context) (*pb.DeleteResponse, error) {
		return s.c.stub.Delete(ctx, &pb.DeleteRequest{SessionId: s.id, Keys: keys})
	})
	return r.GetDeletedCount(), err
}

// Increment adds delta atomically (a missing key counts from 0) and returns the
// new number. It takes TTL and RequestID; retries are safe because every attempt
// carries the same request id, so the server counts it once.
func (s *Session) Increment(ctx context.Context, key string, delta float64, opts ...WriteOption) (float64, error) {
	o := options(append([]WriteOption{RequestID(newID())}, opts...))
	req := &pb.IncrementRequest{SessionId: s.id, Key: key, Delta: delta, TtlSeconds: o.ttl, RequestId: o.requestID}
	r, err := call(ctx, s, o.requestID != "", s.c.timeout, func(ctx context.Context) (*pb.IncrementResponse, error) {
		return s.c.stub.Increment(ctx, req)
	})
	return r.GetValue(), err
}

// Touch gives keys a new TTL without rewriting them; returns how many existed.
func (s *Session) Touch(ctx context.Context, ttl time.Duration, keys ...string) (int64, error) {
	seconds := int64(ttl / time.Second)
	r, err := call(ctx, s, true, s.c.timeout, func(ctx context.Context) (*pb.TouchResponse, error) {
		return s.c.stub.Touch(ctx, &pb.TouchRequest{SessionId: s.id, Keys: keys, TtlSeconds: &seconds})
	})
	return r.GetTouchedCount(), err
}

// List describes every live key, sorted by key.
func (s *Session) List(ctx context.Context) ([]EntryInfo, error) {
	r, err := call(ctx, s, true, s.c.timeout, func(ctx context.Context) (*pb.ListResponse, error) {
		return s.c.stub.List(ctx, &pb.ListRequest{SessionId: s.id})
	})
	if err != nil {
		return nil, err
	}
	out := make([]EntryInfo, 0, len(r.GetEntries()))
	for _, e := range r.GetEntries() {
		out = append(out, EntryInfo{Key: e.GetKey(), Kind: kinds[e.GetKind()], SizeBytes: e.GetSizeBytes(),
			ExpiresAt: e.GetExpiresAt().AsTime(), Version: e.GetVersion()})
	}
	return out, nil
}

// Clear deletes the whole session and returns how many keys were deleted.
func (s *Session) Clear(ctx context.Context) (int64, error) {
	r, err := call(ctx, s, true, s.c.timeout, func(ctx context.Context) (*pb.ClearResponse, error) {
		return s.c.stub.Clear(ctx, &pb.ClearRequest{SessionId: s.id})
	})
	return r.GetDeletedCount(), err
}

const chunkSize = 256 * 1024

// SetFile streams a file (at most 10 MiB) from r for ttl (required, at most a week).
func (s *Session) SetFile(ctx context.Context, key string, r io.Reader, ttl time.Duration, mimeType string, opts ...WriteOption) (*FileInfo, error) {
	o := options(append([]WriteOption{TTL(ttl), UploadID(newID())}, opts...))
	header := &pb.FileHeader{SessionId: s.id, Key: key, MimeType: mimeType, TtlSeconds: o.ttl,
		UploadId: o.uploadID, IfVersion: o.ifVersion}
	resp, err := call(ctx, s, false, s.c.fileTimeout, func(ctx context.Context) (*pb.SetFileResponse, error) {
		stream, err := s.c.stub.SetFile(ctx)
		if err != nil {
			return nil, err
		}
		if err := stream.Send(&pb.SetFileRequest{Part: &pb.SetFileRequest_Header{Header: header}}); err != nil {
			return stream.CloseAndRecv()
		}
		buf := make([]byte, chunkSize)
		for {
			n, readErr := io.ReadFull(r, buf)
			if n > 0 {
				chunk := &pb.SetFileRequest{Part: &pb.SetFileRequest_Chunk{Chunk: bytes.Clone(buf[:n])}}
				if err := stream.Send(chunk); err != nil {
					return stream.CloseAndRecv()
				}
			}
			if errors.Is(readErr, io.EOF) || errors.Is(readErr, io.ErrUnexpectedEOF) {
				break
			}
			if readErr != nil {
				return nil, readErr
			}
		}
		if err := stream.Send(&pb.SetFileRequest{FinishWrite: true}); err != nil {
			return stream.CloseAndRecv()
		}
		return stream.CloseAndRecv()
	})
	if err != nil {
		return nil, err
	}
	info := fileInfo(resp.GetFile())
	return &info, nil
}

// FileHandle is a stored file: its Info, a presigned URL and its bytes on demand.
type FileHandle struct {
	Info         FileInfo
	URLExpiresAt time.Time
	url          string
	s            *Session
}

// URL is the presigned download URL (plain HTTP GET; no extra call).
func (f *FileHandle) URL() string { return f.url }

// WriteTo streams the bytes to w (io.WriterTo).
func (f *FileHandle) WriteTo(w io.Writer) (int64, error) {
	ctx := context.Background()
	var written int64
	_, err := call(ctx, f.s, false, f.s.c.fileTimeout, func(ctx context.Context) (struct{}, error) {
		stream, err := f.s.c.stub.ReadFile(ctx, &pb.ReadFileRequest{SessionId: f.s.id, Key: f.Info.Key})
		if err != nil {
			return struct{}{}, err
		}
		first, err := stream.Recv()
		if err != nil {
			return struct{}{}, err
		}
		if v := first.GetFile().GetVersion(); v != f.Info.Version {
			return struct{}{}, &Error{Code: codes.Aborted, Reason: ErrVersionMismatch.Reason,
				Message: fmt.Sprintf("file %q was replaced since GetFile", f.Info.Key)}
		}
		for {
			msg, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				return struct{}{}, nil
			}
			if err != nil {
				return struct{}{}, err
			}
			n, err := w.Write(msg.GetChunk())
			written += int64(n)
			if err != nil {
				return struct{}{}, err
			}
		}
	})
	return written, err
}

// Bytes reads the whole file.
func (f *FileHandle) Bytes() ([]byte, error) {
	var buf bytes.Buffer
	_, err := f.WriteTo(&buf)
	return buf.Bytes(), err
}

// GetFile returns a handle on the file under key, or nil, nil when it is missing.
func (s *Session) GetFile(ctx context.Context, key string) (*FileHandle, error) {
	r, err := call(ctx, s, true, s.c.timeout, func(ctx context.Context) (*pb.GetFileResponse, error) {
		return s.c.stub.GetFile(ctx, &pb.GetFileRequest{SessionId: s.id, Key: key})
	})
	if err != nil || !r.GetFound() {
		return nil, err
	}
	return &FileHandle{Info: fileInfo(r.GetFile()), URLExpiresAt: r.GetUrlExpiresAt().AsTime(), url: r.GetUrl(), s: s}, nil
}
