package sessionmemory_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/session-memory/session-memory/clients/go"
)

// These examples run in `go test` against the real server the suite's TestMain
// starts, which it names in SESSION_MEMORY_ADDR and SESSION_MEMORY_API_KEY.

// socketID stands for the conversation id a bot platform hands its function:
// a new one per run here, so that runs never see each other's memory.
func socketID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "socket-" + hex.EncodeToString(b)
}

func ExampleNewFromEnv() {
	ctx := context.Background()
	// SESSION_MEMORY_ADDR and SESSION_MEMORY_API_KEY (TLS: SESSION_MEMORY_TLS...).
	client, err := sessionmemory.NewFromEnv()
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	memory := client.Session(socketID()) // no I/O: a handle on one conversation

	step, err := memory.GetString(ctx, "step", "start")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("step:", step)
	// Output: step: start
}

func ExampleNew() {
	ctx := context.Background()
	client, err := sessionmemory.New(os.Getenv("SESSION_MEMORY_ADDR"),
		sessionmemory.WithAPIKey(os.Getenv("SESSION_MEMORY_API_KEY")),
		sessionmemory.WithTimeout(2*time.Second)) // calls without a context deadline get this one
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	memory := client.Session(socketID())
	fmt.Println("available:", memory.Available())
	if _, err := memory.Set(ctx, "step", "name", sessionmemory.TTL(time.Hour)); err != nil {
		log.Fatal(err)
	}

	keyless, err := sessionmemory.New(os.Getenv("SESSION_MEMORY_ADDR")) // no API key: no call is made
	if err != nil {
		log.Fatal(err)
	}
	defer keyless.Close()
	_, err = keyless.Session(socketID()).Get(ctx, "step")
	fmt.Println(errors.Is(err, sessionmemory.ErrMemoryUnavailable))
	// Output:
	// available: true
	// true
}

func ExampleSession_Get() {
	ctx := context.Background()
	client, err := sessionmemory.NewFromEnv()
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	memory := client.Session(socketID())

	if _, err := memory.Set(ctx, "step", "email", sessionmemory.TTL(time.Hour)); err != nil {
		log.Fatal(err)
	}
	entry, err := memory.Get(ctx, "step")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(entry.Key, entry.Kind, entry.Value)
	fmt.Println("expires within the hour:", time.Until(entry.ExpiresAt) <= time.Hour)

	missing, err := memory.Get(ctx, "nothing")
	fmt.Println(missing, err) // a miss is no error
	// Output:
	// step string email
	// expires within the hour: true
	// <nil> <nil>
}

func ExampleSession_GetString() {
	ctx := context.Background()
	client, err := sessionmemory.NewFromEnv()
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	memory := client.Session(socketID())

	name, err := memory.GetString(ctx, "name", "stranger") // the default when missing
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(name)

	// Numbers and booleans read as text, numbers as JavaScript writes them.
	if _, err := memory.Set(ctx, "tiny", 1e-7); err != nil {
		log.Fatal(err)
	}
	tiny, err := memory.GetString(ctx, "tiny", "")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(tiny)

	// A path reads into a JSON value.
	order := map[string]any{"id": "A-1001", "status": "shipped"}
	if _, err := memory.SetJSON(ctx, "lastOrder", order, 24*time.Hour); err != nil {
		log.Fatal(err)
	}
	status, err := memory.GetString(ctx, "lastOrder.status", "unknown")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(status)
	// Output:
	// stranger
	// 1e-7
	// shipped
}

func ExampleSession_GetNumber() {
	ctx := context.Background()
	client, err := sessionmemory.NewFromEnv()
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	memory := client.Session(socketID())

	// A string reads as a number only when it is a decimal numeral.
	if _, err := memory.Set(ctx, "age", "42"); err != nil {
		log.Fatal(err)
	}
	age, err := memory.GetNumber(ctx, "age", 0)
	fmt.Println(age, err)

	if _, err := memory.Set(ctx, "amount", "1_000"); err != nil {
		log.Fatal(err)
	}
	amount, err := memory.GetNumber(ctx, "amount", 0)
	fmt.Println(amount, err)
	// Output:
	// 42 <nil>
	// 0 sessionmemory: key "amount" holds the string "1_000", which cannot be read as a number
}

func ExampleSession_GetBool() {
	ctx := context.Background()
	client, err := sessionmemory.NewFromEnv()
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	memory := client.Session(socketID())

	if _, err := memory.Set(ctx, "subscribed", "true"); err != nil { // the strings "true" and "false" read too
		log.Fatal(err)
	}
	subscribed, err := memory.GetBool(ctx, "subscribed", false)
	if err != nil {
		log.Fatal(err)
	}
	verified, err := memory.GetBool(ctx, "verified", false)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(subscribed, verified)
	// Output: true false
}

func ExampleSession_Set() {
	ctx := context.Background()
	client, err := sessionmemory.NewFromEnv()
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	memory := client.Session(socketID())

	// A string, number or bool; without TTL it lives a day.
	first, err := memory.Set(ctx, "step", "name", sessionmemory.TTL(time.Hour))
	if err != nil {
		log.Fatal(err)
	}

	// Preconditions: only if absent, or only over the version read.
	_, err = memory.Set(ctx, "step", "email", sessionmemory.OnlyIfAbsent())
	fmt.Println("exists:", errors.Is(err, sessionmemory.ErrKeyExists))
	second, err := memory.Set(ctx, "step", "email", sessionmemory.TTL(time.Hour), sessionmemory.IfVersion(first.Version))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("newer version:", second.Version > first.Version)
	_, err = memory.Set(ctx, "step", "done", sessionmemory.IfVersion(first.Version))
	fmt.Println("stale:", errors.Is(err, sessionmemory.ErrVersionMismatch))

	// The server's limits come back as errors to match.
	_, err = memory.Set(ctx, "name", strings.Repeat("x", 256))
	fmt.Println("too long:", errors.Is(err, sessionmemory.ErrValueTooLong))
	// Output:
	// exists: true
	// newer version: true
	// stale: true
	// too long: true
}

func ExampleSession_SetMany() {
	ctx := context.Background()
	client, err := sessionmemory.NewFromEnv()
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	memory := client.Session(socketID())

	// All or nothing; a map or slice is stored as JSON.
	_, err = memory.SetMany(ctx, map[string]any{
		"name":  "Ada",
		"age":   36,
		"langs": []string{"en", "fr"},
	}, sessionmemory.TTL(time.Hour))
	if err != nil {
		log.Fatal(err)
	}
	values, err := memory.GetMany(ctx, "name", "age", "langs.1", "missing")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(values) // missing keys are left out
	// Output: map[age:36 langs.1:fr name:Ada]
}

func ExampleSession_SetJSON() {
	ctx := context.Background()
	client, err := sessionmemory.NewFromEnv()
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	memory := client.Session(socketID())

	type Item struct {
		SKU   string  `json:"sku"`
		Qty   int     `json:"qty"`
		Price float64 `json:"price"`
	}
	type Cart struct {
		Items []Item  `json:"items"`
		Total float64 `json:"total"`
	}
	cart := Cart{Items: []Item{{SKU: "tea", Qty: 2, Price: 3.5}}, Total: 7}
	if _, err := memory.SetJSON(ctx, "cart", cart, 24*time.Hour); err != nil { // a TTL is required
		log.Fatal(err)
	}

	var saved Cart
	found, err := memory.GetJSON(ctx, "cart", &saved)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%v %+v\n", found, saved)
	// Output: true {Items:[{SKU:tea Qty:2 Price:3.5}] Total:7}
}

func ExampleSession_GetJSON() {
	ctx := context.Background()
	client, err := sessionmemory.NewFromEnv()
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	memory := client.Session(socketID())

	var cart struct {
		Items []string `json:"items"`
	}
	found, err := memory.GetJSON(ctx, "cart", &cart) // cart is left as it is when missing
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(found, len(cart.Items))
	// Output: false 0
}

func ExampleSession_Increment() {
	ctx := context.Background()
	client, err := sessionmemory.NewFromEnv()
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	memory := client.Session(socketID())

	// Atomic; a missing key counts from 0; retries count once.
	for range 3 {
		attempts, err := memory.Increment(ctx, "pin_attempts", 1, sessionmemory.TTL(30*time.Minute))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("attempts:", attempts)
	}

	// Your own request id (e.g. a webhook's event id) counts once however often it comes.
	for range 2 {
		credits, err := memory.Increment(ctx, "credits", -5, sessionmemory.RequestID("event-81"))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("credits:", credits)
	}
	// Output:
	// attempts: 1
	// attempts: 2
	// attempts: 3
	// credits: -5
	// credits: -5
}

func ExampleSession_Delete() {
	ctx := context.Background()
	client, err := sessionmemory.NewFromEnv()
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	memory := client.Session(socketID())

	for _, key := range []string{"step", "name"} {
		if _, err := memory.Set(ctx, key, "x", sessionmemory.TTL(time.Hour)); err != nil {
			log.Fatal(err)
		}
	}
	deleted, err := memory.Delete(ctx, "step", "name", "email")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("deleted:", deleted) // how many existed
	// Output: deleted: 2
}

// receiptPDF is the receipt of the examples: 95 bytes of PDF.
const receiptPDF = "%PDF-1.4\n% Session Memory example receipt\n1 0 obj << >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"

func ExampleSession_SetFile() {
	ctx := context.Background()
	client, err := sessionmemory.NewFromEnv()
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	memory := client.Session(socketID())

	// Any io.Reader, streamed; a TTL (at most a week) and an allowed MIME type are required.
	info, err := memory.SetFile(ctx, "receipt", strings.NewReader(receiptPDF), 7*24*time.Hour, "application/pdf")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(info.MimeType, info.SizeBytes, info.SHA256[:12])

	// The server checks the bytes against the MIME type.
	_, err = memory.SetFile(ctx, "photo", strings.NewReader(receiptPDF), time.Hour, "image/png")
	fmt.Println("mismatch:", errors.Is(err, sessionmemory.ErrContentMismatch))
	// Output:
	// application/pdf 95 bf97aa3d0bae
	// mismatch: true
}

func ExampleSession_GetFile() {
	ctx := context.Background()
	client, err := sessionmemory.NewFromEnv()
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	memory := client.Session(socketID())
	if _, err := memory.SetFile(ctx, "receipt", strings.NewReader(receiptPDF), time.Hour, "application/pdf"); err != nil {
		log.Fatal(err)
	}

	file, err := memory.GetFile(ctx, "receipt") // nil, nil when missing
	if err != nil {
		log.Fatal(err)
	}
	data, err := file.Bytes() // or file.WriteTo(w), or a plain HTTP GET of file.URL()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(file.Info.MimeType, len(data), bytes.HasPrefix(data, []byte("%PDF")))
	fmt.Println("URL:", strings.HasPrefix(file.URL(), "http"))
	// Output:
	// application/pdf 95 true
	// URL: true
}

func ExampleSession_Update() {
	ctx := context.Background()
	client, err := sessionmemory.NewFromEnv()
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	memory := client.Session(socketID())

	// A JSON merge patch (RFC 7396) of the session's document, atomic.
	order := map[string]any{"lastOrder": map[string]any{"id": "A-1001", "item": "teapot", "status": "placed"}}
	if _, err := memory.Update(ctx, order, 24*time.Hour); err != nil {
		log.Fatal(err)
	}
	// From outside the conversation (a shop's webhook): only while the session lives.
	shipped := map[string]any{"lastOrder": map[string]any{"status": "shipped"}}
	if _, err := client.UpdateMemory(ctx, memory.ID(), shipped, 24*time.Hour); err != nil {
		log.Fatal(err)
	}
	status, err := memory.GetString(ctx, "lastOrder.status", "")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(status)
	// Output: shipped
}

func ExampleSession_Document() {
	ctx := context.Background()
	client, err := sessionmemory.NewFromEnv()
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	memory := client.Session(socketID())

	if _, err := memory.Set(ctx, "step", "done", sessionmemory.TTL(time.Hour)); err != nil {
		log.Fatal(err)
	}
	user := map[string]any{"user": map[string]any{"name": "Ada", "email": "ada@example.com"}}
	if _, err := memory.Update(ctx, user, time.Hour); err != nil {
		log.Fatal(err)
	}
	doc, err := memory.Document(ctx) // every key as one JSON object
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(doc.Fields)
	names, err := memory.Document(ctx, sessionmemory.Paths("user.name"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(names.Fields)
	// Output:
	// map[step:done user:map[email:ada@example.com name:Ada]]
	// map[user:map[name:Ada]]
}

func ExampleDocumentAs() {
	ctx := context.Background()
	client, err := sessionmemory.NewFromEnv()
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	memory := client.Session(socketID())

	type Memory struct {
		User struct {
			Name string `json:"name"`
		} `json:"user"`
		Turns int `json:"turns"`
	}
	patch := map[string]any{"user": map[string]any{"name": "Ada"}, "turns": 3}
	if _, err := memory.Update(ctx, patch, time.Hour); err != nil {
		log.Fatal(err)
	}
	mem, revision, err := sessionmemory.DocumentAs[Memory](ctx, memory)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(mem.User.Name, mem.Turns, revision > 0)
	// Output: Ada 3 true
}

func ExampleSession_Watch() {
	ctx := context.Background()
	client, err := sessionmemory.NewFromEnv()
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	memory := client.Session(socketID())

	doc, err := memory.Document(ctx) // watch from what was read, so nothing is missed
	if err != nil {
		log.Fatal(err)
	}
	if _, err := memory.Set(ctx, "step", "name", sessionmemory.TTL(time.Hour)); err != nil {
		log.Fatal(err)
	}
	if _, err := memory.Delete(ctx, "step"); err != nil {
		log.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(ctx, 10*time.Second) // the context bounds the watch
	defer cancel()
	for change, err := range memory.Watch(ctx, sessionmemory.AfterRevision(doc.Revision)) {
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(change.Operation, change.Key)
		if change.Operation == sessionmemory.OperationDelete {
			break
		}
	}
	// Output:
	// set step
	// delete step
}

func ExampleClient_GetLimits() {
	ctx := context.Background()
	client, err := sessionmemory.NewFromEnv()
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	limits, err := client.GetLimits(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("string:", limits.MaxStringLength, "characters")
	fmt.Println("JSON:", limits.MaxJSONBytes, "bytes, TTL up to", limits.MaxJSONTTL)
	fmt.Println("file:", limits.MaxFileBytes>>20, "MiB, TTL up to", limits.MaxFileTTL)
	fmt.Println("reads per second:", limits.Tenant.ReadsPerSecond) // 0: unlimited
	// Output:
	// string: 255 characters
	// JSON: 5120 bytes, TTL up to 24h0m0s
	// file: 10 MiB, TTL up to 168h0m0s
	// reads per second: 0
}

func ExampleTypeError() {
	ctx := context.Background()
	client, err := sessionmemory.NewFromEnv()
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	memory := client.Session(socketID())

	if _, err := memory.SetJSON(ctx, "cart", map[string]any{"items": 2}, time.Hour); err != nil {
		log.Fatal(err)
	}
	_, err = memory.GetNumber(ctx, "cart", 0)
	var typeErr *sessionmemory.TypeError
	if errors.As(err, &typeErr) { // the value does not convert; no call failed
		fmt.Println(typeErr.Key, typeErr.Kind, typeErr.Want)
	}
	items, err := memory.GetNumber(ctx, "cart.items", 0) // a path to the number does
	fmt.Println(items, err)
	// Output:
	// cart json number
	// 2 <nil>
}

func ExampleError() {
	ctx := context.Background()
	client, err := sessionmemory.NewFromEnv()
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	memory := client.Session(socketID())

	_, err = memory.Set(ctx, "name", strings.Repeat("x", 256))
	if errors.Is(err, sessionmemory.ErrValueTooLong) { // matched by reason
		var e *sessionmemory.Error
		errors.As(err, &e)
		fmt.Println(e.Code, e.Reason, "limit", e.Metadata["limit"])
	}
	// Output: InvalidArgument VALUE_TOO_LONG limit 255
}
