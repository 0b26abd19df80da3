// Receipt upload: a file the user sends, kept for a week.
//
//	SESSION_MEMORY_ADDR=localhost:50051 SESSION_MEMORY_API_KEY=<key> go run ./receipt_upload
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/session-memory/session-memory/clients/go"
)

// receiptTTL is how long a receipt is kept (at most a week).
const receiptTTL = 7 * 24 * time.Hour

// Message is what the platform delivers: text, or a file the user attached.
type Message struct {
	Text string
	File *Attachment
}

// Attachment is a file sent in the conversation.
type Attachment struct {
	Name     string
	MimeType string
	Data     []byte
}

func (m Message) String() string {
	if m.File != nil {
		return "[file " + m.File.Name + "]"
	}
	return m.Text
}

// handle is the bot: a file is stored as the receipt; "show my receipt" and
// "delete my receipt" act on it.
func handle(ctx context.Context, memory *sessionmemory.Session, message Message) (string, error) {
	if message.File != nil {
		info, err := memory.SetFile(ctx, "receipt", bytes.NewReader(message.File.Data), receiptTTL, message.File.MimeType)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("Got your receipt: %s, %d bytes. I will keep it for %d days.",
			info.MimeType, info.SizeBytes, int(receiptTTL.Hours()/24)), nil
	}
	switch message.Text {
	case "show my receipt":
		file, err := memory.GetFile(ctx, "receipt")
		if err != nil {
			return "", err
		}
		if file == nil {
			return "I have no receipt from you.", nil
		}
		data, err := file.Bytes()
		if err != nil {
			return "", err
		}
		sum := sha256.Sum256(data)
		return fmt.Sprintf("Your receipt: %s, %d bytes, sha256 %s.",
			file.Info.MimeType, file.Info.SizeBytes, hex.EncodeToString(sum[:])[:12]), nil
	case "delete my receipt":
		if _, err := memory.Delete(ctx, "receipt"); err != nil {
			return "", err
		}
		return "Deleted.", nil
	}
	return "Send me your receipt, or say: show my receipt, delete my receipt.", nil
}

// receipt is the file the user sends: a 95-byte PDF.
var receipt = []byte("%PDF-1.4\n% Session Memory example receipt\n1 0 obj << >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n")

func main() {
	if err := run(context.Background()); err != nil {
		log.SetFlags(0)
		log.Fatal("receipt_upload: ", err) // one line, exit status 1
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
	for _, message := range []Message{
		{Text: "show my receipt"},
		{File: &Attachment{Name: "receipt.pdf", MimeType: "application/pdf", Data: receipt}},
		{Text: "show my receipt"},
		{Text: "delete my receipt"},
		{Text: "show my receipt"},
	} {
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
