package sessionmemory_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	sm "github.com/session-memory/session-memory/clients/go"
)

var stack struct {
	Address     string `json:"address"`
	APIKey      string `json:"api_key"`
	OtherAPIKey string `json:"other_api_key"`
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// TestMain starts the real stack (Redis, SeaweedFS, the Python server).
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
	return newClient(t, stack.APIKey).Session(fmt.Sprintf("go-%s-%d", t.Name(), time.Now().UnixNano()))
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

func run(ctx context.Context, memory *sm.Session, s step) (any, error) {
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
	}
	return nil, fmt.Errorf("unknown op %s", s.Op)
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
			t.Run(c.Name, func(t *testing.T) {
				ctx := context.Background()
				memory := fresh(t)
				for i, s := range c.Steps {
					expect := decode(s.Expect).(map[string]any)
					result, err := run(ctx, memory, s)
					if want, ok := expect["error"]; ok {
						var e *sm.Error
						if !errors.As(err, &e) || e.Reason != want || codeName(e.Code) != expect["status"] {
							t.Fatalf("step %d: want %v/%v, got %v", i, want, expect["status"], err)
						}
						continue
					}
					if err != nil {
						t.Fatalf("step %d: %v", i, err)
					}
					if want, ok := expect["value"]; ok {
						got := result
						if n, ok := got.(int64); ok {
							got = float64(n)
						}
						if !reflect.DeepEqual(got, want) && !(want == nil && got == nil) {
							t.Fatalf("step %d: got %#v, want %#v", i, got, want)
						}
					}
				}
			})
		}
	}
}

func codeName(c codes.Code) string {
	names := map[codes.Code]string{codes.InvalidArgument: "INVALID_ARGUMENT", codes.Aborted: "ABORTED",
		codes.FailedPrecondition: "FAILED_PRECONDITION", codes.ResourceExhausted: "RESOURCE_EXHAUSTED",
		codes.Unauthenticated: "UNAUTHENTICATED", codes.NotFound: "NOT_FOUND", codes.Unavailable: "UNAVAILABLE"}
	return names[c]
}
