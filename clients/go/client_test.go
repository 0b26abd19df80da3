package sessionmemory_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	sm "github.com/session-memory/session-memory/clients/go"
	pb "github.com/session-memory/session-memory/clients/go/gen/sessionmemory/v1"
)

var stack struct {
	Address     string `json:"address"`
	APIKey      string `json:"api_key"`
	OtherAPIKey string `json:"other_api_key"`
	// LimitedAPIKey is a tenant's limited to 5 reads and 5 writes per second (bursts of 5).
	LimitedAPIKey string `json:"limited_api_key"`
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// TestMain starts the real stack (Redis, SeaweedFS, the Python server) and
// points SESSION_MEMORY_ADDR and SESSION_MEMORY_API_KEY at it.
func TestMain(m *testing.M) {
	python := os.Getenv("SESSION_MEMORY_PYTHON")
	if python == "" {
		python = filepath.Join(repoRoot(), ".venv", "bin", "python")
	}
	cmd := exec.Command(python, "-m", "sessionmemory_server.testing")
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "cannot start the test stack:", err)
		os.Exit(1)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || json.Unmarshal([]byte(line), &stack) != nil {
		fmt.Fprintln(os.Stderr, "the test stack did not start:", err, line)
		_ = cmd.Process.Kill()
		os.Exit(1)
	}
	// The Examples connect as users do, with NewFromEnv.
	_ = os.Setenv("SESSION_MEMORY_ADDR", stack.Address)
	_ = os.Setenv("SESSION_MEMORY_API_KEY", stack.APIKey)
	code := m.Run()
	_ = stdin.Close()
	_ = cmd.Wait()
	os.Exit(code)
}

func newClient(t *testing.T, key string) *sm.Client {
	t.Helper()
	c, err := sm.New(stack.Address, sm.WithAPIKey(key))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func fresh(t *testing.T) *sm.Session {
	_, memory := freshWithClient(t)
	return memory
}

func freshWithClient(t *testing.T) (*sm.Client, *sm.Session) {
	c := newClient(t, stack.APIKey)
	return c, c.Session(sessionID(t))
}

func sessionID(t *testing.T) string { return fmt.Sprintf("go-%s-%d", t.Name(), time.Now().UnixNano()) }

// schemaName is a tenant-wide schema name unique to this run.
func schemaName(base string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return base + "_" + hex.EncodeToString(b)
}

func TestSeedFlows(t *testing.T) {
	ctx := context.Background()
	memory := fresh(t)

	step, err := memory.GetString(ctx, "step", "start")
	if err != nil || step != "start" {
		t.Fatalf("step = %q, %v", step, err)
	}
	if _, err := memory.Set(ctx, "step", "name", sm.TTL(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if step, _ = memory.GetString(ctx, "step", "start"); step != "name" {
		t.Fatalf("step = %q", step)
	}

	type Cart struct {
		Items []string `json:"items"`
		Total float64  `json:"total"`
	}
	if _, err := memory.SetJSON(ctx, "cart", Cart{Items: []string{"tea"}, Total: 3.5}, 24*time.Hour); err != nil {
		t.Fatal(err)
	}
	var cart Cart
	if found, err := memory.GetJSON(ctx, "cart", &cart); !found || err != nil || cart.Total != 3.5 {
		t.Fatalf("cart = %+v, %v, %v", cart, found, err)
	}

	for i := 1; i <= 4; i++ {
		n, err := memory.Increment(ctx, "pin_attempts", 1, sm.TTL(30*time.Minute))
		if err != nil || n != float64(i) {
			t.Fatalf("attempt %d = %v, %v", i, n, err)
		}
	}
	if n, _ := memory.Delete(ctx, "step", "cart", "nothing"); n != 2 {
		t.Fatalf("deleted %d", n)
	}
}

func TestSetManyIsAllOrNothing(t *testing.T) {
	ctx := context.Background()
	memory := fresh(t)
	results, err := memory.SetMany(ctx, map[string]any{"s": "x", "n": int64(7), "b": true, "j": map[string]int{"a": 1}},
		sm.TTL(time.Minute))
	if err != nil || len(results) != 4 || results["j"].Key != "j" || results["j"].Version <= 0 {
		t.Fatalf("results = %+v, %v", results, err)
	}
	for key, kind := range map[string]string{"s": "string", "n": "number", "b": "boolean", "j": "json"} {
		if e, err := memory.Get(ctx, key); err != nil || e == nil || e.Kind != kind {
			t.Fatalf("%s = %+v, %v; want a %s", key, e, err, kind)
		}
	}
	// One invalid value: nothing is written.
	_, err = memory.SetMany(ctx, map[string]any{"fresh": "y", "s": strings.Repeat("x", 256)})
	if !errors.Is(err, sm.ErrValueTooLong) {
		t.Fatalf("err = %v", err)
	}
	if e, err := memory.Get(ctx, "fresh"); err != nil || e != nil {
		t.Fatalf("fresh = %+v, %v", e, err)
	}
	// A precondition for every value: OnlyIfAbsent fails on the existing one.
	_, err = memory.SetMany(ctx, map[string]any{"other": "y", "s": "z"}, sm.OnlyIfAbsent())
	if !errors.Is(err, sm.ErrKeyExists) {
		t.Fatalf("err = %v", err)
	}
	if s, err := memory.GetString(ctx, "s", ""); err != nil || s != "x" {
		t.Fatalf("s = %q, %v", s, err)
	}
	if _, err := memory.SetMany(ctx, map[string]any{"f": func() {}}); err == nil || !strings.Contains(err.Error(), `"f"`) {
		t.Fatalf("an unmarshalable value: %v", err)
	}
}

// botStep is a bot's state as Go code names it: a string of its own type.
type botStep string

// Set and SetMany store the same Go values as the same kinds: a named string
// type, a uint8 or a json.Number is a scalar in both (SetMany once stored them
// as JSON, which Set refused), and -0 read back by GetNumber is 0.
func TestSetAndSetManyStoreGoScalarsAlike(t *testing.T) {
	ctx := context.Background()
	memory := fresh(t)
	values := map[string]any{
		"step": botStep("email"), "verified": flag(true), "age": uint8(36), "big": uint64(1 << 40),
		"small": int16(-3), "price": json.Number("2.5"), "zero": "-0",
	}
	want := map[string]string{"step": "string", "verified": "boolean", "age": "number", "big": "number",
		"small": "number", "price": "number", "zero": "string"}
	if _, err := memory.SetMany(ctx, values, sm.TTL(time.Minute)); err != nil {
		t.Fatal(err)
	}
	for key, kind := range want {
		e, err := memory.Get(ctx, key)
		if err != nil || e == nil || e.Kind != kind {
			t.Fatalf("SetMany %s = %+v, %v; want a %s", key, e, err, kind)
		}
		if _, err := memory.Set(ctx, key+"-set", values[key], sm.TTL(time.Minute)); err != nil {
			t.Fatalf("Set(%T): %v", values[key], err)
		}
		if e, err := memory.Get(ctx, key+"-set"); err != nil || e == nil || e.Kind != kind {
			t.Fatalf("Set %s = %+v, %v; want a %s", key, e, err, kind)
		}
	}
	if s, err := memory.GetString(ctx, "step", ""); err != nil || s != "email" {
		t.Fatalf("step = %q, %v", s, err)
	}
	if n, err := memory.GetNumber(ctx, "price", 0); err != nil || n != 2.5 {
		t.Fatalf("price = %v, %v", n, err)
	}
	if n, err := memory.GetNumber(ctx, "zero", 1); err != nil || n != 0 || math.Signbit(n) {
		t.Fatalf(`"-0" read as %v, %v; want 0`, n, err)
	}
	if _, err := memory.Set(ctx, "list", []string{"a"}); err == nil || !strings.Contains(err.Error(), "use SetJSON") {
		t.Fatalf("Set of a slice: %v", err)
	}
}

// flag is a named bool.
type flag bool

func TestErrorsAreErrorsIsFriendly(t *testing.T) {
	ctx := context.Background()
	memory := fresh(t)
	_, err := memory.Set(ctx, "s", strings.Repeat("x", 256))
	if !errors.Is(err, sm.ErrValueTooLong) {
		t.Fatalf("err = %v", err)
	}
	var e *sm.Error
	if !errors.As(err, &e) || e.Code != codes.InvalidArgument || e.Metadata["limit"] != "255" {
		t.Fatalf("err = %#v", err)
	}
	if _, err := memory.Set(ctx, "s", "x"); err != nil {
		t.Fatal(err)
	}
	if _, err := memory.Increment(ctx, "s", 1); !errors.Is(err, sm.ErrNotANumber) {
		t.Fatalf("err = %v", err)
	}
	if _, err := memory.Set(ctx, "s", "y", sm.OnlyIfAbsent()); !errors.Is(err, sm.ErrKeyExists) {
		t.Fatalf("err = %v", err)
	}
	bad := newClient(t, "smk_x_y").Session("s")
	if _, err := bad.Get(ctx, "k"); !errors.Is(err, sm.ErrAPIKeyInvalid) {
		t.Fatalf("err = %v", err)
	}
	keyless := newClient(t, "").Session("s")
	if keyless.Available() {
		t.Fatal("available without a key")
	}
	if _, err := keyless.Get(ctx, "k"); !errors.Is(err, sm.ErrMemoryUnavailable) {
		t.Fatalf("err = %v", err)
	}
}

func TestTenantsAreIsolated(t *testing.T) {
	ctx := context.Background()
	id := fmt.Sprintf("go-iso-%d", time.Now().UnixNano())
	if _, err := newClient(t, stack.APIKey).Session(id).Set(ctx, "secret", "acme"); err != nil {
		t.Fatal(err)
	}
	got, err := newClient(t, stack.OtherAPIKey).Session(id).Get(ctx, "secret")
	if err != nil || got != nil {
		t.Fatalf("other tenant read %v, %v", got, err)
	}
}

func TestFiles(t *testing.T) {
	ctx := context.Background()
	memory := fresh(t)
	data := append([]byte("%PDF-1.4\n"), bytes.Repeat([]byte("x"), 600*1024)...)
	info, err := memory.SetFile(ctx, "receipt", bytes.NewReader(data), 7*24*time.Hour, "application/pdf")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if info.SizeBytes != int64(len(data)) || info.SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("info = %+v", info)
	}
	fh, err := memory.GetFile(ctx, "receipt")
	if err != nil || fh == nil {
		t.Fatal(err)
	}
	raw, err := fh.Bytes()
	if err != nil || !bytes.Equal(raw, data) {
		t.Fatalf("read %d bytes, %v", len(raw), err)
	}
	resp, err := http.Get(fh.URL())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if !bytes.Equal(body, data) {
		t.Fatal("URL bytes differ")
	}
	_, err = memory.SetFile(ctx, "bad", bytes.NewReader([]byte("MZ\x90\x00")), time.Minute, "image/png")
	if !errors.Is(err, sm.ErrContentMismatch) {
		t.Fatalf("err = %v", err)
	}
}

// --- structured memory ---------------------------------------------------------

// agentSchema is the agent-framework example: a user, the conversation and an order.
func agentSchema() map[string]any {
	return map[string]any{
		"type": "object",
		"properties": map[string]any{
			"user": map[string]any{"type": "object", "required": []any{"name"},
				"properties": map[string]any{"name": map[string]any{"type": "string"}, "email": map[string]any{"type": "string"}}},
			"conversation": map[string]any{"type": "object", "properties": map[string]any{
				"turns": map[string]any{"type": "integer", "minimum": 0},
				"topic": map[string]any{"type": "string", "default": "general"}}},
			"order": map[string]any{"type": "object", "required": []any{"id", "status"}, "properties": map[string]any{
				"id":             map[string]any{"type": "string"},
				"status":         map[string]any{"enum": []any{"pending", "shipped", "delivered"}},
				"trackingNumber": map[string]any{"type": "string"}}},
		},
		"required":             []any{"user"},
		"additionalProperties": false,
	}
}

// AgentMemory is what the agent reads back.
type AgentMemory struct {
	User struct {
		Name  string `json:"name"`
		Email string `json:"email,omitempty"`
	} `json:"user"`
	Conversation struct {
		Turns int    `json:"turns"`
		Topic string `json:"topic"`
	} `json:"conversation"`
	Order *struct {
		ID             string `json:"id"`
		Status         string `json:"status"`
		TrackingNumber string `json:"trackingNumber,omitempty"`
	} `json:"order,omitempty"`
}

func TestAgentFrameworkFlow(t *testing.T) {
	ctx := context.Background()
	client, memory := freshWithClient(t)
	schema := schemaName("support_agent")
	if _, err := client.PutSchema(ctx, schema, agentSchema()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = client.DeleteSchema(context.Background(), schema) })

	// The trigger initializes the memory and binds the schema.
	rev, err := memory.Update(ctx, map[string]any{
		"user":         map[string]any{"name": "Ada"},
		"conversation": map[string]any{"turns": 1},
		"order":        map[string]any{"id": "ORD-123", "status": "pending"},
	}, time.Hour, sm.WithSchema(schema))
	if err != nil || rev <= 0 {
		t.Fatalf("rev = %d, %v", rev, err)
	}
	// A tool merges order.status.
	toolRev, err := memory.Update(ctx, map[string]any{"order": map[string]any{"status": "shipped"}}, time.Hour)
	if err != nil || toolRev <= rev {
		t.Fatalf("rev = %d after %d, %v", toolRev, rev, err)
	}
	// A tool result the schema refuses changes nothing.
	_, err = memory.Update(ctx, map[string]any{"order": map[string]any{"status": "lost"}}, time.Hour)
	var e *sm.Error
	if !errors.Is(err, sm.ErrSchemaViolation) || !errors.As(err, &e) || e.Code != codes.InvalidArgument ||
		e.Metadata["pointer"] != "/order/status" || e.Metadata["keyword"] != "enum" || e.Metadata["schema"] != schema {
		t.Fatalf("err = %#v", err)
	}
	// The key/value API cannot make the document invalid either.
	if _, err := memory.Set(ctx, "unexpected", "x", sm.TTL(time.Hour)); !errors.Is(err, sm.ErrSchemaViolation) {
		t.Fatalf("Set on a bound session: %v", err)
	}
	// A webhook, outside the agent, merges order.trackingNumber.
	outside := newClient(t, stack.APIKey)
	hookRev, err := outside.UpdateMemory(ctx, memory.ID(), map[string]any{"order": map[string]any{"trackingNumber": "1Z999"}}, time.Hour)
	if err != nil || hookRev <= toolRev {
		t.Fatalf("rev = %d after %d, %v", hookRev, toolRev, err)
	}
	// The agent reads the merged document, with the schema's defaults.
	mem, docRev, err := sm.DocumentAs[AgentMemory](ctx, memory)
	if err != nil || docRev != hookRev {
		t.Fatalf("revision %d, want %d: %v", docRev, hookRev, err)
	}
	if mem.User.Name != "Ada" || mem.Conversation.Turns != 1 || mem.Conversation.Topic != "general" || mem.Order == nil ||
		mem.Order.ID != "ORD-123" || mem.Order.Status != "shipped" || mem.Order.TrackingNumber != "1Z999" {
		t.Fatalf("memory = %+v (order %+v)", mem, mem.Order)
	}
	doc, err := memory.Document(ctx)
	if err != nil || doc.Schema != schema || !reflect.DeepEqual(doc.Defaulted, []string{"conversation.topic"}) {
		t.Fatalf("doc = %+v, %v", doc, err)
	}
	stored, err := memory.Document(ctx, sm.OmitDefaults())
	if err != nil || len(stored.Defaulted) != 0 || stored.Fields["conversation"].(map[string]any)["topic"] != nil {
		t.Fatalf("stored = %+v, %v", stored, err)
	}
	// A stale revision is refused; the current one is accepted.
	if _, err := memory.Update(ctx, map[string]any{"conversation": map[string]any{"turns": 2}}, time.Hour,
		sm.IfRevision(toolRev)); !errors.Is(err, sm.ErrRevisionMismatch) {
		t.Fatalf("err = %v", err)
	}
	if _, err := memory.Update(ctx, map[string]any{"conversation": map[string]any{"turns": 2}}, time.Hour,
		sm.IfRevision(doc.Revision)); err != nil {
		t.Fatal(err)
	}
	// Another schema than the bound one is refused.
	other := schemaName("other")
	if _, err := client.PutSchema(ctx, other, map[string]any{"type": "object"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = client.DeleteSchema(context.Background(), other) })
	if _, err := memory.Update(ctx, map[string]any{"user": map[string]any{"name": "Bo"}}, time.Hour,
		sm.WithSchema(other)); !errors.Is(err, sm.ErrSchemaMismatch) {
		t.Fatalf("err = %v", err)
	}
	// An update from outside never revives an ended (or never started) conversation.
	ended := outside.Session(sessionID(t) + "-ended")
	if _, err := outside.UpdateMemory(ctx, ended.ID(), map[string]any{"order": map[string]any{"status": "shipped"}},
		time.Hour); !errors.Is(err, sm.ErrSessionNotFound) || !errors.As(err, &e) || e.Code != codes.NotFound {
		t.Fatalf("err = %v", err)
	}
	if doc, err := ended.Document(ctx); err != nil || len(doc.Fields) != 0 {
		t.Fatalf("doc = %+v, %v", doc, err)
	}
}

func TestWorkflowPathRead(t *testing.T) {
	ctx := context.Background()
	memory := fresh(t)
	lastOrder := map[string]any{"id": "ORD-123", "status": "on the way", "items": []any{map[string]any{"name": "tea", "qty": 2}}}
	if _, err := memory.SetJSON(ctx, "lastOrder", lastOrder, time.Hour); err != nil {
		t.Fatal(err)
	}
	if status, err := memory.GetString(ctx, "lastOrder.status", ""); err != nil || status != "on the way" {
		t.Fatalf("status = %q, %v", status, err)
	}
	if qty, err := memory.GetNumber(ctx, "lastOrder.items.0.qty", 0); err != nil || qty != 2 {
		t.Fatalf("qty = %v, %v", qty, err)
	}
	e, err := memory.Get(ctx, "lastOrder.items.0")
	if err != nil || e == nil || e.Key != "lastOrder.items.0" || e.Kind != "json" || string(e.Value.(json.RawMessage)) != `{"name":"tea","qty":2}` {
		t.Fatalf("entry = %+v, %v", e, err)
	}
	if missing, err := memory.GetString(ctx, "lastOrder.carrier", "unknown"); err != nil || missing != "unknown" {
		t.Fatalf("missing = %q, %v", missing, err)
	}
	many, err := memory.GetMany(ctx, "lastOrder.id", "lastOrder.items.0.name", "lastOrder.nothing")
	if err != nil || !reflect.DeepEqual(many, map[string]any{"lastOrder.id": "ORD-123", "lastOrder.items.0.name": "tea"}) {
		t.Fatalf("many = %v, %v", many, err)
	}
	doc, err := memory.Document(ctx, sm.Paths("lastOrder.status", "lastOrder.nothing"))
	if err != nil || !reflect.DeepEqual(doc.Fields, map[string]any{"lastOrder": map[string]any{"status": "on the way"}}) {
		t.Fatalf("doc = %+v, %v", doc, err)
	}
	if _, err := memory.Get(ctx, "lastOrder..status"); !errors.Is(err, sm.ErrInvalidPath) {
		t.Fatalf("err = %v", err)
	}
}

func TestSchemas(t *testing.T) {
	ctx := context.Background()
	client, memory := freshWithClient(t)
	name := schemaName("crud")
	t.Cleanup(func() { _, _ = client.DeleteSchema(context.Background(), name) })
	first, err := client.PutSchema(ctx, name, map[string]any{"type": "object"})
	if err != nil || first.Name != name || first.Version < 1 || first.SizeBytes != int64(len(`{"type":"object"}`)) ||
		time.Since(first.UpdatedAt) > time.Minute {
		t.Fatalf("info = %+v, %v", first, err)
	}
	second, err := client.PutSchema(ctx, name, json.RawMessage(`{"type": "object", "properties": {"step": {"type": "string"}}}`))
	if err != nil || second.Version <= first.Version {
		t.Fatalf("info = %+v, %v", second, err)
	}
	got, err := client.GetSchema(ctx, name)
	var text any
	if err == nil {
		err = json.Unmarshal(got.JSON, &text)
	}
	want := map[string]any{"type": "object", "properties": map[string]any{"step": map[string]any{"type": "string"}}}
	if err != nil || got.Name != name || got.Version != second.Version || !reflect.DeepEqual(text, want) {
		t.Fatalf("schema = %+v, %v", got, err)
	}
	all, err := client.ListSchemas(ctx)
	if err != nil || !slices.ContainsFunc(all, func(s sm.SchemaInfo) bool { return s.Name == name && s.Version == second.Version }) {
		t.Fatalf("list = %+v, %v", all, err)
	}
	if !slices.IsSortedFunc(all, func(a, b sm.SchemaInfo) int { return strings.Compare(a.Name, b.Name) }) {
		t.Fatalf("list is not sorted: %+v", all)
	}
	// Schemas are the tenant's own.
	if _, err := newClient(t, stack.OtherAPIKey).GetSchema(ctx, name); !errors.Is(err, sm.ErrSchemaNotFound) {
		t.Fatalf("other tenant: %v", err)
	}

	// Binding validates the current document; "" unbinds.
	if _, err := memory.Set(ctx, "step", 3, sm.TTL(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := memory.BindSchema(ctx, name); !errors.Is(err, sm.ErrSchemaViolation) {
		t.Fatalf("err = %v", err)
	}
	if _, err := memory.Set(ctx, "step", "start", sm.TTL(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if rev, err := memory.BindSchema(ctx, name); err != nil || rev <= 0 {
		t.Fatalf("rev = %d, %v", rev, err)
	}
	if _, err := memory.Set(ctx, "step", 4, sm.TTL(time.Hour)); !errors.Is(err, sm.ErrSchemaViolation) {
		t.Fatalf("err = %v", err)
	}
	if doc, err := memory.Document(ctx); err != nil || doc.Schema != name {
		t.Fatalf("doc = %+v, %v", doc, err)
	}
	if _, err := memory.BindSchema(ctx, ""); err != nil {
		t.Fatal(err)
	}
	if doc, err := memory.Document(ctx); err != nil || doc.Schema != "" {
		t.Fatalf("unbound doc = %+v, %v", doc, err)
	}
	if _, err := memory.Set(ctx, "step", 4, sm.TTL(time.Hour)); err != nil {
		t.Fatalf("unbound: %v", err)
	}
	if _, err := memory.BindSchema(ctx, schemaName("missing")); !errors.Is(err, sm.ErrSchemaNotFound) {
		t.Fatalf("err = %v", err)
	}

	// Bad schemas are refused.
	for what, bad := range map[string]any{
		"invalid":       map[string]any{"type": 12},
		"remote ref":    map[string]any{"$ref": "https://example.com/schema.json"},
		"too large":     map[string]any{"description": strings.Repeat("x", 70*1024)},
		"backreference": map[string]any{"type": "string", "pattern": `(a)\1`},
	} {
		if _, err := client.PutSchema(ctx, schemaName("bad"), bad); !errors.Is(err, sm.ErrSchemaInvalid) {
			t.Errorf("%s: err = %v", what, err)
		}
	}
	_, err = client.PutSchema(ctx, schemaName("bad"), []byte(`{"type":`))
	if !errors.Is(err, sm.ErrSchemaInvalid) && !errors.Is(err, sm.ErrInvalidJSON) {
		t.Errorf("not JSON: err = %v", err)
	}

	if deleted, err := client.DeleteSchema(ctx, name); err != nil || !deleted {
		t.Fatalf("deleted = %v, %v", deleted, err)
	}
	if deleted, err := client.DeleteSchema(ctx, name); err != nil || deleted {
		t.Fatalf("deleted again = %v, %v", deleted, err)
	}
	if _, err := client.GetSchema(ctx, name); !errors.Is(err, sm.ErrSchemaNotFound) {
		t.Fatalf("err = %v", err)
	}
}

func TestWatchSeesChangesInOrder(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	memory := fresh(t)
	if _, err := memory.Set(ctx, "started", true, sm.TTL(time.Hour)); err != nil {
		t.Fatal(err)
	}
	doc, err := memory.Document(ctx)
	if err != nil {
		t.Fatal(err)
	}
	go func() { // written while the watch runs (AfterRevision covers the start)
		time.Sleep(100 * time.Millisecond)
		_, _ = memory.Set(ctx, "step", "name", sm.TTL(time.Hour))
		_, _ = memory.Update(ctx, map[string]any{"cart": map[string]any{"items": 1}}, time.Hour)
		_, _ = memory.Delete(ctx, "step")
	}()
	var changes []sm.Change
	for change, err := range memory.Watch(ctx, sm.AfterRevision(doc.Revision)) {
		if err != nil {
			t.Fatal(err)
		}
		changes = append(changes, change)
		if len(changes) == 3 {
			break
		}
	}
	if len(changes) != 3 {
		t.Fatalf("changes = %+v (ctx %v)", changes, ctx.Err())
	}
	set, patch, del := changes[0], changes[1], changes[2]
	if set.Key != "step" || set.Operation != sm.OperationSet || set.Kind != "string" || set.Version <= 0 || set.ExpiresAt.IsZero() ||
		patch.Key != "cart" || patch.Operation != sm.OperationSet || patch.Kind != "json" ||
		del.Key != "step" || del.Operation != sm.OperationDelete || del.Kind != "" ||
		!(doc.Revision < set.Revision && set.Revision < patch.Revision && patch.Revision < del.Revision) {
		t.Fatalf("changes = %+v", changes)
	}
}

// A session never written has revision 0: watching after it replays the
// session's changes (none is gone), so reading the document of a new session
// and then watching misses nothing.
func TestWatchAfterRevisionZeroReplaysANewSession(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	memory := fresh(t)
	doc, err := memory.Document(ctx)
	if err != nil || doc.Revision != 0 {
		t.Fatalf("doc = %+v, %v", doc, err)
	}
	if _, err := memory.Set(ctx, "a", 1, sm.TTL(time.Hour)); err != nil {
		t.Fatal(err)
	}
	for change, err := range memory.Watch(ctx, sm.AfterRevision(doc.Revision)) {
		if err != nil || change.Key != "a" || change.Operation != sm.OperationSet {
			t.Fatalf("first change = %+v, %v", change, err)
		}
		break
	}
}

// proxy forwards TCP connections to addr until cut closes the open ones.
type proxy struct {
	ln       net.Listener
	mu       sync.Mutex
	conns    []net.Conn
	accepted int
}

func newProxy(t *testing.T, addr string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln}
	t.Cleanup(func() { _ = ln.Close(); p.cut() })
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", addr)
			if err != nil {
				_ = in.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, in, out)
			p.accepted++
			p.mu.Unlock()
			go func() { _, _ = io.Copy(out, in); _ = out.Close() }()
			go func() { _, _ = io.Copy(in, out); _ = in.Close() }()
		}
	}()
	return p
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

func TestWatchResumesAfterADisconnect(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id := sessionID(t)
	p := newProxy(t, stack.Address)
	watcher, err := sm.New(p.ln.Addr().String(), sm.WithAPIKey(stack.APIKey))
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	memory := newClient(t, stack.APIKey).Session(id)
	if _, err := memory.Set(ctx, "started", true, sm.TTL(time.Hour)); err != nil {
		t.Fatal(err)
	}
	doc, err := memory.Document(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := memory.Set(ctx, "a", 1, sm.TTL(time.Hour)); err != nil {
		t.Fatal(err)
	}
	var keys []string
	var revisions []int64
	for change, err := range watcher.Session(id).Watch(ctx, sm.AfterRevision(doc.Revision)) {
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, change.Key)
		revisions = append(revisions, change.Revision)
		if change.Key == "a" { // drop the connection, then write while the watcher is away
			p.cut()
			for _, k := range []string{"b", "c"} {
				if _, err := memory.Set(ctx, k, 1, sm.TTL(time.Hour)); err != nil {
					t.Fatal(err)
				}
			}
		}
		if change.Key == "c" {
			break
		}
	}
	if !reflect.DeepEqual(keys, []string{"a", "b", "c"}) || !slices.IsSorted(revisions) {
		t.Fatalf("keys %v, revisions %v (ctx %v)", keys, revisions, ctx.Err())
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.accepted < 2 {
		t.Fatalf("the watcher connected %d times; it should have reconnected", p.accepted)
	}
}

// --- shared vectors ------------------------------------------------------------

type step struct {
	Op     string         `json:"op"`
	Args   map[string]any `json:"args"`
	Expect map[string]any `json:"expect"`
}

func decode(v any) any {
	switch x := v.(type) {
	case map[string]any:
		if r, ok := x["$repeat"].([]any); ok {
			return strings.Repeat(r[0].(string), int(r[1].(float64)))
		}
		if n, ok := x["$number"].(string); ok {
			return map[string]float64{"NaN": math.NaN(), "Infinity": math.Inf(1), "-Infinity": math.Inf(-1), "-0": math.Copysign(0, -1)}[n]
		}
		if n, ok := x["$keys"].(float64); ok {
			keys := make([]any, int(n))
			for i := range keys {
				keys[i] = fmt.Sprintf("k%d", i)
			}
			return keys
		}
		out := map[string]any{}
		for k, e := range x {
			out[k] = decode(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = decode(e)
		}
		return out
	}
	return v
}

func strs(v any) []string {
	var out []string
	for _, k := range v.([]any) {
		out = append(out, k.(string))
	}
	return out
}

func plain(v any) any {
	switch x := v.(type) {
	case json.RawMessage:
		var out any
		_ = json.Unmarshal(x, &out)
		return out
	case int64:
		return float64(x)
	case map[string]any:
		out := map[string]any{}
		for k, e := range x {
			out[k] = plain(e)
		}
		return out
	}
	return v
}

// vectorCase is the state of one vectors case: its session, the per-case
// suffix of schema names (schemas are tenant-wide) and the revision the latest
// update or document step returned (for {"$revision": d}).
type vectorCase struct {
	client   *sm.Client
	memory   *sm.Session
	suffix   string
	revision int64
}

func (vc *vectorCase) schema(name string) string {
	if name == "" {
		return ""
	}
	return name + vc.suffix
}

func (vc *vectorCase) run(ctx context.Context, s step) (any, error) {
	memory := vc.memory
	a := decode(s.Args).(map[string]any)
	var opts []sm.WriteOption
	if ttl, ok := a["ttl"].(float64); ok {
		opts = append(opts, sm.TTL(time.Duration(ttl)*time.Second))
	}
	if v, ok := a["if_version"].(float64); ok {
		opts = append(opts, sm.IfVersion(int64(v)))
	}
	if a["only_if_absent"] == true {
		opts = append(opts, sm.OnlyIfAbsent())
	}
	if id, ok := a["request_id"].(string); ok {
		opts = append(opts, sm.RequestID(id))
	}
	key, _ := a["key"].(string)
	switch s.Op {
	case "set":
		return memory.Set(ctx, key, a["value"], opts...)
	case "set_json":
		return memory.SetJSON(ctx, key, a["value"], time.Duration(a["ttl"].(float64))*time.Second)
	case "get":
		switch def := a["default"].(type) { // get with a default: the getter of its type
		case string:
			return memory.GetString(ctx, key, def)
		case float64:
			return memory.GetNumber(ctx, key, def)
		case bool:
			return memory.GetBool(ctx, key, def)
		case nil:
		default:
			return nil, fmt.Errorf("no Go getter takes a %T default", def)
		}
		e, err := memory.Get(ctx, key)
		if e == nil {
			return nil, err
		}
		return plain(e.Value), err
	case "increment":
		return memory.Increment(ctx, key, a["delta"].(float64), opts...)
	case "delete":
		return memory.Delete(ctx, strs(a["keys"])...)
	case "touch":
		return memory.Touch(ctx, time.Duration(a["ttl"].(float64))*time.Second, strs(a["keys"])...)
	case "get_many":
		m, err := memory.GetMany(ctx, strs(a["keys"])...)
		return plain(map[string]any(m)), err
	case "update":
		req := &pb.PatchDocumentRequest{SessionId: memory.ID(), MustExist: a["must_exist"] == true}
		var uopts []sm.UpdateOption
		if name, ok := a["schema"].(string); ok {
			req.Schema = vc.schema(name)
			uopts = append(uopts, sm.WithSchema(req.Schema))
		}
		switch r := a["if_revision"].(type) {
		case float64:
			req.IfRevision = proto.Int64(int64(r))
		case map[string]any:
			req.IfRevision = proto.Int64(vc.revision + int64(r["$revision"].(float64)))
		}
		if req.IfRevision != nil {
			uopts = append(uopts, sm.IfRevision(*req.IfRevision))
		}
		if req.MustExist {
			uopts = append(uopts, sm.MustExist())
		}
		var rev int64
		var err error
		if ttl, ok := a["ttl"].(float64); ok {
			rev, err = memory.Update(ctx, a["patch"], time.Duration(ttl)*time.Second, uopts...)
		} else { // Update always sends its ttl; the raw stub shows the server's answer to none
			rev, err = vc.rawUpdate(ctx, req, a["patch"])
		}
		if err == nil {
			vc.revision = rev
		}
		return rev, err
	case "document":
		var dopts []sm.DocumentOption
		if paths, ok := a["paths"]; ok {
			dopts = append(dopts, sm.Paths(strs(paths)...))
		}
		if a["defaults"] == false {
			dopts = append(dopts, sm.OmitDefaults())
		}
		doc, err := memory.Document(ctx, dopts...)
		if err != nil {
			return nil, err
		}
		vc.revision = doc.Revision
		return doc.Fields, nil
	case "put_schema":
		return vc.client.PutSchema(ctx, vc.schema(a["name"].(string)), a["schema"])
	case "bind_schema":
		name, _ := a["name"].(string)
		return memory.BindSchema(ctx, vc.schema(name))
	}
	return nil, fmt.Errorf("unknown op %s", s.Op)
}

// rawUpdate sends req (no ttl_seconds) with patch through the generated stub.
func (vc *vectorCase) rawUpdate(ctx context.Context, req *pb.PatchDocumentRequest, patch any) (int64, error) {
	text, err := json.Marshal(patch)
	if err != nil {
		return 0, err
	}
	req.MergePatch = string(text)
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+stack.APIKey)
	r, err := vc.client.Raw().PatchDocument(ctx, req)
	if err != nil {
		st, _ := status.FromError(err)
		e := &sm.Error{Code: st.Code(), Message: st.Message()}
		for _, d := range st.Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok {
				e.Reason = info.GetReason()
			}
		}
		return 0, e
	}
	return r.GetRevision(), nil
}

func TestVectors(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(repoRoot(), "tests", "vectors", "*.json"))
	for _, file := range files {
		raw, _ := os.ReadFile(file)
		var cases []struct {
			Name  string `json:"name"`
			Steps []step `json:"steps"`
		}
		if err := json.Unmarshal(raw, &cases); err != nil {
			t.Fatal(err)
		}
		for _, c := range cases {
			t.Run(c.Name, func(t *testing.T) { runVectorCase(t, c.Steps) })
		}
	}
}

// runVectorCase runs one case's steps in a fresh session.
func runVectorCase(t *testing.T, steps []step) {
	ctx := context.Background()
	client, memory := freshWithClient(t)
	vc := &vectorCase{client: client, memory: memory, suffix: schemaName("")}
	for i, s := range steps {
		expect := decode(s.Expect).(map[string]any)
		result, err := vc.run(ctx, s)
		if expect["type_error"] == true {
			var te *sm.TypeError
			var e *sm.Error
			if !errors.As(err, &te) || errors.As(err, &e) {
				t.Fatalf("step %d (%s): want a *sm.TypeError, got %#v, %v", i, s.Op, result, err)
			}
			continue
		}
		if want, ok := expect["error"]; ok {
			var e *sm.Error
			if !errors.As(err, &e) || e.Reason != want || codeName(e.Code) != expect["status"] {
				t.Fatalf("step %d (%s): want %v/%v, got %v", i, s.Op, want, expect["status"], err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("step %d (%s): %v", i, s.Op, err)
		}
		if want, ok := expect["value"]; ok {
			got := result
			if n, ok := got.(int64); ok {
				got = float64(n)
			}
			if !reflect.DeepEqual(got, want) && !(want == nil && got == nil) {
				t.Fatalf("step %d (%s): got %#v, want %#v", i, s.Op, got, want)
			}
		}
	}
}

func codeName(c codes.Code) string {
	names := map[codes.Code]string{codes.InvalidArgument: "INVALID_ARGUMENT", codes.Aborted: "ABORTED",
		codes.FailedPrecondition: "FAILED_PRECONDITION", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
		codes.Unauthenticated: "UNAUTHENTICATED", codes.NotFound: "NOT_FOUND", codes.Unavailable: "UNAVAILABLE"}
	return names[c]
}
