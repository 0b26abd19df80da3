// Command xlang is the Go side of the cross-language tests (driven by
// tests/integration/test_cross_language.py). It prints JSON on stdout:
//
//	xlang write ADDR API_KEY SESSION LANG                   a text, a JSON value and a file
//	xlang read ADDR API_KEY SESSION LANG...                 what write wrote, per language
//	xlang update-memory ADDR API_KEY SESSION TTL PATCH...   UpdateMemory each patch: outcomes
//	xlang set ADDR API_KEY SESSION KEY VALUE                Set a JSON scalar: [outcome]
//	xlang document ADDR API_KEY SESSION PATH...             Document, DocumentAs, path reads, the schema
//	xlang watch ADDR API_KEY SESSION AFTER COUNT SECONDS    the first COUNT changes after revision AFTER
//
// An outcome is {"revision": N} (update-memory) or {"version": N} (set), or
// {"error": {"status", "reason", "metadata"}}:
// a refusal is data for the test, any other failure exits 1.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/genproto/googleapis/rpc/code"

	sm "github.com/session-memory/session-memory/clients/go"
)

func text(lang string) string { return "héllo ✓ 😀 from " + lang }

func doc(lang string) map[string]any {
	return map[string]any{"lang": lang, "items": []any{1, 2.5, "x"}, "nested": map[string]any{"ok": true}}
}

func file(lang string) []byte { return []byte("%PDF-1.4\n" + strings.Repeat(lang+"\n", 5000)) }

// supportMemory is the test's user / conversation / order schema as a Go
// type, the way an agent written in Go would read it with DocumentAs.
type supportMemory struct {
	User struct {
		Name     string `json:"name"`
		Language string `json:"language"`
	} `json:"user"`
	Conversation struct {
		Topic string `json:"topic"`
		Turns int    `json:"turns"`
	} `json:"conversation"`
	Order *struct {
		ID             string `json:"id"`
		Status         string `json:"status"`
		TrackingNumber string `json:"trackingNumber,omitempty"`
	} `json:"order,omitempty"`
}

func main() {
	if len(os.Args) < 5 {
		fmt.Fprintln(os.Stderr, "usage: xlang MODE ADDR API_KEY SESSION ARGS...")
		os.Exit(2)
	}
	out, err := run(os.Args[1], os.Args[2], os.Args[3], os.Args[4], os.Args[5:])
	if err == nil && out != nil {
		err = json.NewEncoder(os.Stdout).Encode(out)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(mode, addr, key, session string, args []string) (any, error) {
	ctx := context.Background()
	client, err := sm.New(addr, sm.WithAPIKey(key))
	if err != nil {
		return nil, err
	}
	defer client.Close()
	memory := client.Session(session)
	switch mode {
	case "write":
		return nil, write(ctx, memory, args[0])
	case "read":
		return read(ctx, memory, args)
	case "update-memory":
		ttl, err := strconv.Atoi(args[0])
		if err != nil {
			return nil, err
		}
		outcomes := []any{}
		for _, patch := range args[1:] {
			rev, err := client.UpdateMemory(ctx, session, json.RawMessage(patch), time.Duration(ttl)*time.Second)
			o, err := outcome(map[string]any{"revision": rev}, err)
			if err != nil {
				return nil, err
			}
			outcomes = append(outcomes, o)
		}
		return outcomes, nil
	case "set":
		var value any
		if err := json.Unmarshal([]byte(args[1]), &value); err != nil {
			return nil, err
		}
		w, err := memory.Set(ctx, args[0], value, sm.TTL(10*time.Minute))
		var result map[string]any
		if err == nil {
			result = map[string]any{"version": w.Version}
		}
		o, err := outcome(result, err)
		if err != nil {
			return nil, err
		}
		return []any{o}, nil
	case "document":
		return document(ctx, client, memory, args)
	case "watch":
		return watch(ctx, memory, args)
	}
	return nil, fmt.Errorf("unknown mode %q", mode)
}

func write(ctx context.Context, memory *sm.Session, lang string) error {
	if _, err := memory.Set(ctx, lang+"_text", text(lang), sm.TTL(10*time.Minute)); err != nil {
		return err
	}
	if _, err := memory.SetJSON(ctx, lang+"_json", doc(lang), 10*time.Minute); err != nil {
		return err
	}
	_, err := memory.SetFile(ctx, lang+"_file", bytes.NewReader(file(lang)), 10*time.Minute, "application/pdf")
	return err
}

func read(ctx context.Context, memory *sm.Session, langs []string) (any, error) {
	out := map[string]any{}
	for _, lang := range langs {
		s, err := memory.GetString(ctx, lang+"_text", "")
		if err != nil {
			return nil, err
		}
		out[lang+"_text"] = s
		var v any
		if _, err := memory.GetJSON(ctx, lang+"_json", &v); err != nil {
			return nil, err
		}
		out[lang+"_json"] = v
		fh, err := memory.GetFile(ctx, lang+"_file")
		if err != nil || fh == nil {
			return nil, fmt.Errorf("file of %s: %v", lang, err)
		}
		raw, err := fh.Bytes()
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(raw)
		out[lang+"_file"] = map[string]any{"mime": fh.Info.MimeType, "sha256": hex.EncodeToString(sum[:])}
	}
	return out, nil
}

// outcome is a write's result as the test compares it: what it returned, or
// the refusal's status (as the proto names it), reason and ErrorInfo metadata.
func outcome(result map[string]any, err error) (map[string]any, error) {
	if err == nil {
		return result, nil
	}
	var e *sm.Error
	if !errors.As(err, &e) || e.Reason == "" {
		return nil, err
	}
	metadata := e.Metadata
	if metadata == nil {
		metadata = map[string]string{}
	}
	return map[string]any{"error": map[string]any{
		"status": code.Code(e.Code).String(), "reason": e.Reason, "metadata": metadata,
	}}, nil
}

func document(ctx context.Context, client *sm.Client, memory *sm.Session, paths []string) (any, error) {
	d, err := memory.Document(ctx)
	if err != nil {
		return nil, err
	}
	typed, typedRevision, err := sm.DocumentAs[supportMemory](ctx, memory)
	if err != nil {
		return nil, err
	}
	values := map[string]any{}
	for _, path := range paths {
		if values[path], err = memory.GetString(ctx, path, ""); err != nil {
			return nil, err
		}
	}
	projected, err := memory.Document(ctx, sm.Paths(paths...))
	if err != nil {
		return nil, err
	}
	schema, err := client.GetSchema(ctx, d.Schema)
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"document": d.Fields, "revision": d.Revision, "schema": d.Schema, "defaulted": d.Defaulted,
		"paths": values, "projected": projected.Fields, "schema_json": schema.JSON,
		"typed": typed, "typed_revision": typedRevision,
	}, nil
}

func watch(ctx context.Context, memory *sm.Session, args []string) (any, error) {
	after, err := strconv.ParseInt(args[0], 10, 64)
	if err != nil {
		return nil, err
	}
	count, err := strconv.Atoi(args[1])
	if err != nil {
		return nil, err
	}
	seconds, err := strconv.ParseFloat(args[2], 64)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(seconds*float64(time.Second)))
	defer cancel()
	changes := []any{}
	for change, err := range memory.Watch(ctx, sm.AfterRevision(after)) {
		if err != nil {
			return nil, err
		}
		var kind any // null, as in the other languages, when the change wrote nothing
		if change.Kind != "" {
			kind = change.Kind
		}
		changes = append(changes, map[string]any{
			"key": change.Key, "operation": change.Operation, "kind": kind,
			"version": change.Version, "revision": change.Revision,
		})
		if len(changes) == count {
			break
		}
	}
	return changes, nil
}
