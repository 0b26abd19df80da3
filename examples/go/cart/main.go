// Cart: a shopping cart kept as one JSON value.
//
//	SESSION_MEMORY_ADDR=localhost:50051 SESSION_MEMORY_API_KEY=<key> go run ./cart
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/session-memory/session-memory/clients/go"
)

// cartTTL is how long a cart is kept after its last change (JSON needs a TTL).
const cartTTL = 24 * time.Hour

// Item is one line of the cart.
type Item struct {
	SKU   string  `json:"sku"`
	Qty   int     `json:"qty"`
	Price float64 `json:"price"`
}

// Cart is the value stored under "cart".
type Cart struct {
	Items []Item  `json:"items"`
	Total float64 `json:"total"`
}

// handle is the bot: "add <sku> <qty> <price>", "show" or "checkout".
func handle(ctx context.Context, memory *sessionmemory.Session, message string) (string, error) {
	var cart Cart // the empty cart when none is stored
	if _, err := memory.GetJSON(ctx, "cart", &cart); err != nil {
		return "", err
	}
	words := strings.Fields(message)
	switch {
	case len(words) == 4 && words[0] == "add":
		qty, errQty := strconv.Atoi(words[2])
		price, errPrice := strconv.ParseFloat(words[3], 64)
		if errQty != nil || errPrice != nil || qty <= 0 || price < 0 {
			return "Say: add <sku> <qty> <price>, e.g. add tea 2 3.50", nil
		}
		cart.Items = append(cart.Items, Item{SKU: words[1], Qty: qty, Price: price})
		cart.Total = 0
		for _, item := range cart.Items {
			cart.Total += float64(item.Qty) * item.Price
		}
		cart.Total = math.Round(cart.Total*100) / 100
		if _, err := memory.SetJSON(ctx, "cart", cart, cartTTL); err != nil {
			return "", err
		}
		return fmt.Sprintf("Added %d x %s. Total: %.2f", qty, words[1], cart.Total), nil
	case message == "show":
		if len(cart.Items) == 0 {
			return "Your cart is empty.", nil
		}
		lines := make([]string, len(cart.Items))
		for i, item := range cart.Items {
			lines[i] = fmt.Sprintf("%d x %s", item.Qty, item.SKU)
		}
		return fmt.Sprintf("%s. Total: %.2f", strings.Join(lines, ", "), cart.Total), nil
	case message == "checkout":
		if len(cart.Items) == 0 {
			return "Your cart is empty.", nil
		}
		if _, err := memory.Delete(ctx, "cart"); err != nil {
			return "", err
		}
		count := 0
		for _, item := range cart.Items {
			count += item.Qty
		}
		return fmt.Sprintf("Order placed: %d items, %.2f. Your cart is empty.", count, cart.Total), nil
	}
	return "Say: add <sku> <qty> <price>, show or checkout.", nil
}

func main() {
	if err := run(context.Background()); err != nil {
		log.SetFlags(0)
		log.Fatal("cart: ", err) // one line, exit status 1
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
	for _, message := range []string{"show", "add tea 2 3.50", "add cake 1 4.25", "show", "checkout", "show"} {
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
