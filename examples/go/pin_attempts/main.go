// PIN attempts: a counter of wrong PINs that locks after three.
//
//	SESSION_MEMORY_ADDR=localhost:50051 SESSION_MEMORY_API_KEY=<key> go run ./pin_attempts
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

const (
	rightPIN    = "4321"
	maxAttempts = 3
	lockTTL     = 30 * time.Minute // the lock ends when the counter expires
)

// handle is the bot: each message is a PIN.
func handle(ctx context.Context, memory *sessionmemory.Session, message string) (string, error) {
	attempts, err := memory.GetNumber(ctx, "pin_attempts", 0)
	if err != nil {
		return "", err
	}
	if attempts >= maxAttempts {
		return locked(), nil
	}
	if message == rightPIN {
		if _, err := memory.Delete(ctx, "pin_attempts"); err != nil {
			return "", err
		}
		return "PIN accepted.", nil
	}
	// Atomic: two messages at once cannot both see the same count.
	attempts, err = memory.Increment(ctx, "pin_attempts", 1, sessionmemory.TTL(lockTTL))
	if err != nil {
		return "", err
	}
	switch left := maxAttempts - int(attempts); {
	case left <= 0:
		return locked(), nil
	case left == 1:
		return "Wrong PIN. 1 attempt left.", nil
	default:
		return fmt.Sprintf("Wrong PIN. %d attempts left.", left), nil
	}
}

func locked() string {
	return fmt.Sprintf("Too many wrong PINs. Try again in %d minutes.", int(lockTTL.Minutes()))
}

func main() {
	if err := run(context.Background()); err != nil {
		log.SetFlags(0)
		log.Fatal("pin_attempts: ", err) // one line, exit status 1
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
	for _, message := range []string{"1111", "4321", "0000", "1111", "2222", "4321"} {
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
