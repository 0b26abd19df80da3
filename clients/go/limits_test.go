package sessionmemory_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	sm "github.com/session-memory/session-memory/clients/go"
)

// untilRateLimited calls f until it fails with a rate limit (at most 5 s) and
// returns that error.
func untilRateLimited(t *testing.T, f func() error) *sm.Error {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		err := f()
		if err == nil {
			continue
		}
		var e *sm.Error
		if !errors.Is(err, sm.ErrRateLimited) || !errors.As(err, &e) {
			t.Fatalf("err = %v, want ErrRateLimited", err)
		}
		return e
	}
	t.Fatal("the limited tenant was never rate-limited")
	return nil
}

func TestRateLimitedTenant(t *testing.T) {
	ctx := context.Background()
	limited := newClient(t, stack.LimitedAPIKey)

	t.Run("writes", func(t *testing.T) {
		memory := limited.Session(sessionID(t))
		e := untilRateLimited(t, func() error { _, err := memory.Set(ctx, "step", "confirm"); return err })
		if !e.IsRateLimit() || e.IsQuotaExceeded() || errors.Is(e, sm.ErrQuotaExceeded) ||
			e.Code != codes.ResourceExhausted || e.Metadata["limit"] != "writes" {
			t.Fatalf("err = %#v", e)
		}
		if e.RetryAfter <= 0 || e.RetryAfter > time.Second {
			t.Fatalf("RetryAfter = %v", e.RetryAfter)
		}
		time.Sleep(e.RetryAfter) // waiting what the server said lets a call pass
		if _, err := memory.Set(ctx, "step", "confirm"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("reads", func(t *testing.T) {
		memory := limited.Session(sessionID(t))
		e := untilRateLimited(t, func() error { _, err := memory.Get(ctx, "step"); return err })
		if e.Metadata["limit"] != "reads" || e.RetryAfter <= 0 {
			t.Fatalf("err = %#v", e)
		}
	})

	t.Run("another tenant is not limited", func(t *testing.T) {
		memory := fresh(t)
		for range 20 {
			if _, err := memory.Get(ctx, "k"); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// untilRefused calls f until it fails (at most 2 s) and returns that error.
func untilRefused(t *testing.T, f func() error) error {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		if err := f(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			t.Fatal("the revoked token still works after 2 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestSessionTokens(t *testing.T) {
	ctx := context.Background()
	tenant := newClient(t, stack.APIKey)
	id := sessionID(t)
	memory := tenant.Session(id)
	if _, err := memory.Set(ctx, "name", "Ada"); err != nil {
		t.Fatal(err)
	}
	token, err := tenant.CreateSessionToken(ctx, id, []sm.Permission{sm.PermissionRead, sm.PermissionWrite},
		sm.TTL(10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(token.Token, "smt_") || token.TokenID == "" ||
		time.Until(token.ExpiresAt) < 9*time.Minute || time.Until(token.ExpiresAt) > 11*time.Minute {
		t.Fatalf("token = %+v", token)
	}

	browser := newClient(t, token.Token)
	own := browser.Session(id)
	if name, err := own.GetString(ctx, "name", ""); err != nil || name != "Ada" {
		t.Fatalf("read with the token: %q, %v", name, err)
	}
	if _, err := own.Set(ctx, "step", "confirm"); err != nil {
		t.Fatal(err)
	}
	if step, _ := memory.GetString(ctx, "step", ""); step != "confirm" {
		t.Fatalf("the tenant sees step = %q", step)
	}

	if _, err := browser.Session(id+"-other").Get(ctx, "name"); !errors.Is(err, sm.ErrPermissionDenied) {
		t.Fatalf("another session: %v", err)
	}
	var e *sm.Error
	_, err = own.SetFile(ctx, "f", strings.NewReader("hi"), time.Minute, "text/plain")
	if !errors.As(err, &e) || e.Code != codes.PermissionDenied || e.Metadata["permission"] != "files" {
		t.Fatalf("a file without the files permission: %v", err)
	}
	if _, err := browser.CreateSessionToken(ctx, id, []sm.Permission{sm.PermissionRead}); !errors.Is(err, sm.ErrPermissionDenied) {
		t.Fatalf("a token minting tokens: %v", err)
	}
	if _, err := browser.ListSchemas(ctx); !errors.Is(err, sm.ErrPermissionDenied) {
		t.Fatalf("a token listing schemas: %v", err)
	}

	if err := tenant.RevokeSessionToken(ctx, token.TokenID); err != nil {
		t.Fatal(err)
	}
	err = untilRefused(t, func() error { _, err := own.Get(ctx, "name"); return err })
	if !errors.Is(err, sm.ErrTokenRevoked) || !errors.Is(err, sm.ErrUnauthenticated) {
		t.Fatalf("after revoking: %v", err)
	}
}

func TestReadTokenFromEnvAndRevokingASession(t *testing.T) {
	ctx := context.Background()
	tenant := newClient(t, stack.APIKey)
	id := sessionID(t)
	token, err := tenant.CreateSessionToken(ctx, id, []sm.Permission{sm.PermissionRead})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SESSION_MEMORY_ADDR", stack.Address)
	t.Setenv("SESSION_MEMORY_API_KEY", token.Token)
	browser, err := sm.NewFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = browser.Close() }()
	memory := browser.Session(id)
	if !memory.Available() {
		t.Fatal("a token is not taken as a key")
	}
	if v, err := memory.GetString(ctx, "missing", "none"); err != nil || v != "none" {
		t.Fatalf("read: %q, %v", v, err)
	}
	var e *sm.Error
	if _, err := memory.Set(ctx, "k", "v"); !errors.As(err, &e) || !errors.Is(err, sm.ErrPermissionDenied) ||
		e.Metadata["permission"] != "write" {
		t.Fatalf("write with a read token: %v", err)
	}
	if err := tenant.RevokeSessionTokens(ctx, id); err != nil {
		t.Fatal(err)
	}
	err = untilRefused(t, func() error { _, err := memory.Get(ctx, "k"); return err })
	if !errors.Is(err, sm.ErrTokenRevoked) {
		t.Fatalf("after revoking the session: %v", err)
	}
}

func TestGetLimits(t *testing.T) {
	ctx := context.Background()
	limits, err := newClient(t, stack.APIKey).GetLimits(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if limits.MaxStringLength != 255 || limits.MaxNumberDigits != 15 || limits.MaxJSONBytes != 5*1024 {
		t.Fatalf("value limits: %+v", limits)
	}
	if limits.MaxFileBytes != 10*1024*1024 || limits.MaxFileTTL != 7*24*time.Hour || limits.MaxJSONTTL != 24*time.Hour {
		t.Fatalf("file and JSON limits: %+v", limits)
	}
	if len(limits.AllowedMIMETypes) == 0 || limits.KeyPattern == "" || limits.MaxBatchKeys <= 0 {
		t.Fatalf("keys and files: %+v", limits)
	}
	// The test stack turns rates off for the main tenant; the limited one has its own.
	if limits.Tenant.ReadsPerSecond != 0 {
		t.Fatalf("main tenant: %+v", limits.Tenant)
	}
	time.Sleep(1200 * time.Millisecond) // the limited tenant's bucket refills (5/s) after other tests
	limited, err := newClient(t, stack.LimitedAPIKey).GetLimits(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if limited.Tenant.ReadsPerSecond != 5 || limited.Tenant.ReadBurst != 5 || limited.Tenant.WritesPerSecond != 5 {
		t.Fatalf("limited tenant: %+v", limited.Tenant)
	}
}
