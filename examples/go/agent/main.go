// Agent: structured memory. The agent keeps the last order in the session's
// document; the shop, outside the conversation, patches its status.
//
//	SESSION_MEMORY_ADDR=localhost:50051 SESSION_MEMORY_API_KEY=<key> go run ./agent
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/session-memory/session-memory/clients/go"
)

// memoryTTL is how long the conversation's memory lives after each write.
const memoryTTL = 24 * time.Hour

// Order is the session document's lastOrder.
type Order struct {
	ID     string `json:"id"`
	Item   string `json:"item"`
	Status string `json:"status"` // placed, shipped, delivered
}

// handle is the agent: "I would like a <item>" orders, "where is my order?" tells.
func handle(ctx context.Context, memory *sessionmemory.Session, message string) (string, error) {
	if item, ok := strings.CutPrefix(message, "I would like a "); ok {
		// A path read: only the status, not the whole order.
		status, err := memory.GetString(ctx, "lastOrder.status", "")
		if err != nil {
			return "", err
		}
		if status == "placed" || status == "shipped" {
			id, err := memory.GetString(ctx, "lastOrder.id", "")
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("You have an order on its way (%s). I will take a new one once it is delivered.", id), nil
		}
		n, err := memory.Increment(ctx, "orderSeq", 1, sessionmemory.TTL(memoryTTL))
		if err != nil {
			return "", err
		}
		order := Order{ID: fmt.Sprintf("A-%d", 1000+int(n)), Item: item, Status: "placed"}
		if _, err := memory.Update(ctx, map[string]any{"lastOrder": order}, memoryTTL); err != nil {
			return "", err
		}
		return fmt.Sprintf("Order %s for a %s is placed.", order.ID, order.Item), nil
	}
	if message == "where is my order?" {
		var order Order
		found, err := memory.GetJSON(ctx, "lastOrder", &order)
		if err != nil {
			return "", err
		}
		if !found {
			return "You have no order yet.", nil
		}
		return fmt.Sprintf("Order %s (%s) is %s.", order.ID, order.Item, order.Status), nil
	}
	return "Say: I would like a <item>, or: where is my order?", nil
}

// setOrderStatus is the shop's side: a webhook with its own client, patching the
// conversation's memory from outside (UpdateMemory fails once the session ended).
func setOrderStatus(ctx context.Context, shop *sessionmemory.Client, sessionID, status string) error {
	_, err := shop.UpdateMemory(ctx, sessionID, map[string]any{"lastOrder": map[string]any{"status": status}}, memoryTTL)
	return err
}

func main() {
	if err := run(context.Background()); err != nil {
		log.SetFlags(0)
		log.Fatal("agent: ", err) // one line, exit status 1
	}
}

// run plays one conversation through handle and prints it.
func run(ctx context.Context) error {
	client, err := sessionmemory.NewFromEnv() // SESSION_MEMORY_ADDR, SESSION_MEMORY_API_KEY
	if err != nil {
		return err
	}
	defer client.Close()
	shop, err := sessionmemory.NewFromEnv()
	if err != nil {
		return err
	}
	defer shop.Close()
	id := sessionID()
	memory := client.Session(id)

	for _, turn := range []struct{ who, text string }{
		{"user", "I would like a teapot"},
		{"shop", "A-1001 shipped"},
		{"user", "where is my order?"},
		{"user", "I would like a kettle"},
		{"shop", "A-1001 delivered"},
		{"user", "I would like a kettle"},
		{"user", "where is my order?"},
	} {
		if turn.who == "shop" {
			order, status, _ := strings.Cut(turn.text, " ")
			fmt.Printf("shop: order %s %s\n", order, status)
			if err := setOrderStatus(ctx, shop, id, status); err != nil {
				return err
			}
			continue
		}
		fmt.Println("user:", turn.text)
		reply, err := handle(ctx, memory, turn.text)
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
