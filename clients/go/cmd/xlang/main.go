// Command xlang is the Go side of the cross-language round trip
// (driven by tests/integration/test_cross_language.py):
//
//	go run ./cmd/xlang write ADDR API_KEY SESSION LANG
//	go run ./cmd/xlang read ADDR API_KEY SESSION LANG...
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	sm "github.com/session-memory/session-memory/clients/go"
)

func text(lang string) string { return "héllo ✓ 😀 from " + lang }

func doc(lang string) map[string]any {
	return map[string]any{"lang": lang, "items": []any{1, 2.5, "x"}, "nested": map[string]any{"ok": true}}
}

func file(lang string) []byte { return []byte("%PDF-1.4\n" + strings.Repeat(lang+"\n", 5000)) }

func main() {
	if err := run(os.Args[1], os.Args[2], os.Args[3], os.Args[4], os.Args[5:]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(mode, addr, key, session string, langs []string) error {
	ctx := context.Background()
	client, err := sm.New(addr, sm.WithAPIKey(key))
	if err != nil {
		return err
	}
	defer client.Close()
	memory := client.Session(session)
	if mode == "write" {
		lang := langs[0]
		if _, err := memory.Set(ctx, lang+"_text", text(lang), sm.TTL(10*time.Minute)); err != nil {
			return err
		}
		if _, err := memory.SetJSON(ctx, lang+"_json", doc(lang), 10*time.Minute); err != nil {
			return err
		}
		_, err := memory.SetFile(ctx, lang+"_file", bytes.NewReader(file(lang)), 10*time.Minute, "application/pdf")
		return err
	}
	out := map[string]any{}
	for _, lang := range langs {
		s, err := memory.GetString(ctx, lang+"_text", "")
		if err != nil {
			return err
		}
		out[lang+"_text"] = s
		var v any
		if _, err := memory.GetJSON(ctx, lang+"_json", &v); err != nil {
			return err
		}
		out[lang+"_json"] = v
		fh, err := memory.GetFile(ctx, lang+"_file")
		if err != nil || fh == nil {
			return fmt.Errorf("file of %s: %v", lang, err)
		}
		raw, err := fh.Bytes()
		if err != nil {
			return err
		}
		sum := sha256.Sum256(raw)
		out[lang+"_file"] = map[string]any{"mime": fh.Info.MimeType, "sha256": hex.EncodeToString(sum[:])}
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}
