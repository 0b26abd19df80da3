// Command tlsping is the Go side of tests/integration/test_tls.py:
// sessionmemory.NewFromEnv (SESSION_MEMORY_ADDR, SESSION_MEMORY_API_KEY and the
// SESSION_MEMORY_TLS* variables) sets a value in SESSION and reads it back,
// then prints JSON:
//
//	tlsping SESSION VALUE
//	{"value": "<what it read>"}  or  {"error": {"status": "UNAVAILABLE", "message": "..."}}
//
// A configuration the client refuses exits 2 with its message on stderr.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"google.golang.org/genproto/googleapis/rpc/code"

	sm "github.com/session-memory/session-memory/clients/go"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: tlsping SESSION VALUE")
		os.Exit(2)
	}
	client, err := sm.NewFromEnv(sm.WithTimeout(10*time.Second), sm.WithMaxAttempts(1))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	defer func() { _ = client.Close() }()
	out, err := ping(client.Session(os.Args[1]), os.Args[2])
	var refused *sm.Error
	if errors.As(err, &refused) {
		out, err = map[string]any{"error": map[string]any{
			"status": code.Code(refused.Code).String(), "message": refused.Message}}, nil
	}
	if err == nil {
		err = json.NewEncoder(os.Stdout).Encode(out)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func ping(memory *sm.Session, value string) (any, error) {
	ctx := context.Background()
	if _, err := memory.Set(ctx, "tls", value, sm.TTL(10*time.Minute)); err != nil {
		return nil, err
	}
	got, err := memory.GetString(ctx, "tls", "")
	if err != nil {
		return nil, err
	}
	return map[string]any{"value": got}, nil
}
