// Registration: a multi-step form (name, then email) kept in the conversation's memory.
//
//	SESSION_MEMORY_ADDR=localhost:50051 SESSION_MEMORY_API_KEY=<key> go run ./registration
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/session-memory/session-memory/clients/go"
)

// stepTTL is how long an unfinished registration is remembered.
const stepTTL = time.Hour

// handle is the bot: one message in, one reply out, state in memory.
func handle(ctx context.Context, memory *sessionmemory.Session, message string) (string, error) {
	step, err := memory.GetString(ctx, "step", "start")
	if err != nil {
		return "", err
	}
	switch step {
	case "name":
		_, err := memory.SetMany(ctx, map[string]any{"name": message, "step": "email"}, sessionmemory.TTL(stepTTL))
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("Nice to meet you, %s. What is your email?", message), nil
	case "email":
		if _, err := memory.Set(ctx, "email", message, sessionmemory.TTL(stepTTL)); err != nil {
			return "", err
		}
		form, err := memory.GetMany(ctx, "name", "email")
		if err != nil {
			return "", err
		}
		if _, err := memory.Delete(ctx, "step", "name", "email"); err != nil {
			return "", err
		}
		return fmt.Sprintf("Thanks, %s. We will write to %s.", form["name"], form["email"]), nil
	}
	if _, err := memory.Set(ctx, "step", "name", sessionmemory.TTL(stepTTL)); err != nil {
		return "", err
	}
	return "Welcome! What is your name?", nil
}

func main() {
	if err := run(context.Background()); err != nil {
		log.SetFlags(0)
		log.Fatal("registration: ", err) // one line, exit status 1
	}
}

// run plays one conversation through handle and prints it.
func run(ctx context.Context) error {
	client, err := sessionmemory.NewFromEnv() // SESSION_MEMORY_ADDR, SESSION_MEMORY_API_KEY
	if err != nil {
		return err
	}
	defer client.Close()
	memory := client.Session(sessionID())
	for _, message := range []string{"hi", "Ada", "ada@example.com", "hi"} {
		fmt.Println("user:", message)
		reply, err := handle(ctx, memory, message)
		if err != nil {
			return err
		}
		fmt.Println("bot:", reply)
	}
	return nil
}

// sessionID is the conversation: EXAMPLE_SESSION_ID, else a new one.
func sessionID() string {
	if id := os.Getenv("EXAMPLE_SESSION_ID"); id != "" {
		return id
	}
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return "example-" + hex.EncodeToString(b)
}
