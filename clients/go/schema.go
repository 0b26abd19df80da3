package sessionmemory

import (
	"context"
	"encoding/json"
	"time"

	pb "github.com/session-memory/session-memory/clients/go/gen/sessionmemory/v1"
)

// SchemaInfo describes a registered schema.
type SchemaInfo struct {
	Name      string
	Version   int64 // grows on every PutSchema of the name
	SizeBytes int64 // the schema as compact JSON
	UpdatedAt time.Time
}

// Schema is a registered schema and its JSON text.
type Schema struct {
	SchemaInfo
	JSON json.RawMessage
}

func schemaInfo(s *pb.SchemaInfo) SchemaInfo {
	return SchemaInfo{Name: s.GetName(), Version: s.GetVersion(), SizeBytes: s.GetSizeBytes(),
		UpdatedAt: s.GetUpdatedAt().AsTime()}
}

// PutSchema registers (or replaces, with a new version) the tenant's JSON
// Schema (draft 2020-12) called name; schemas are shared by all sessions of
// the tenant. schema is JSON text (json.RawMessage, []byte, string) or any
// value that json.Marshal turns into the schema: a map[string]any, or a struct
// that models a JSON Schema, such as the *jsonschema.Schema a reflector builds
// from your memory struct. The schema must be valid, at most 64 KiB, use only
// local $refs ("#/$defs/..."), and RE2 patterns; otherwise ErrSchemaInvalid.
// A tenant has at most 100 schemas (ErrTooManySchemas). Sessions already bound
// to name are validated against the new version from their next write on.
func (c *Client) PutSchema(ctx context.Context, name string, schema any) (*SchemaInfo, error) {
	text, err := jsonText(schema)
	if err != nil {
		return nil, err
	}
	r, err := invoke(ctx, c, true, c.timeout, func(ctx context.Context) (*pb.PutSchemaResponse, error) {
		return c.stub.PutSchema(ctx, &pb.PutSchemaRequest{Name: name, JsonSchema: text})
	})
	if err != nil {
		return nil, err
	}
	info := schemaInfo(r.GetSchema())
	return &info, nil
}

// GetSchema reads a registered schema; an unknown name fails with ErrSchemaNotFound.
func (c *Client) GetSchema(ctx context.Context, name string) (*Schema, error) {
	r, err := invoke(ctx, c, true, c.timeout, func(ctx context.Context) (*pb.GetSchemaResponse, error) {
		return c.stub.GetSchema(ctx, &pb.GetSchemaRequest{Name: name})
	})
	if err != nil {
		return nil, err
	}
	return &Schema{SchemaInfo: schemaInfo(r.GetSchema()), JSON: json.RawMessage(r.GetJsonSchema())}, nil
}

// ListSchemas describes every schema of the tenant, sorted by name.
func (c *Client) ListSchemas(ctx context.Context) ([]SchemaInfo, error) {
	r, err := invoke(ctx, c, true, c.timeout, func(ctx context.Context) (*pb.ListSchemasResponse, error) {
		return c.stub.ListSchemas(ctx, &pb.ListSchemasRequest{})
	})
	if err != nil {
		return nil, err
	}
	out := make([]SchemaInfo, 0, len(r.GetSchemas()))
	for _, s := range r.GetSchemas() {
		out = append(out, schemaInfo(s))
	}
	return out, nil
}

// DeleteSchema removes a schema and reports whether it existed. Sessions bound
// to it are no longer validated.
func (c *Client) DeleteSchema(ctx context.Context, name string) (bool, error) {
	r, err := invoke(ctx, c, true, c.timeout, func(ctx context.Context) (*pb.DeleteSchemaResponse, error) {
		return c.stub.DeleteSchema(ctx, &pb.DeleteSchemaRequest{Name: name})
	})
	return r.GetDeleted(), err
}

// BindSchema binds the session to a registered schema and returns the session's
// revision. The current document must validate (ErrSchemaViolation otherwise);
// from then on every write to the session (Set, SetJSON, Increment, Delete,
// SetFile, Update) is validated against it. An empty name unbinds the session.
func (s *Session) BindSchema(ctx context.Context, name string) (int64, error) {
	r, err := call(ctx, s, true, s.c.timeout, func(ctx context.Context) (*pb.BindSchemaResponse, error) {
		return s.c.stub.BindSchema(ctx, &pb.BindSchemaRequest{SessionId: s.id, Schema: name})
	})
	return r.GetRevision(), err
}
