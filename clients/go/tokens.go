package sessionmemory

import (
	"context"
	"fmt"
	"time"

	pb "github.com/session-memory/session-memory/clients/go/gen/sessionmemory/v1"
)

// Permission is what a session token may do on its session.
type Permission int32

// The permissions a session token can carry.
const (
	PermissionRead  Permission = Permission(pb.TokenPermission_TOKEN_PERMISSION_READ)  // Get, GetMany, List, Document, Watch
	PermissionWrite Permission = Permission(pb.TokenPermission_TOKEN_PERMISSION_WRITE) // Set, SetJSON, Increment, Delete, Touch, Clear, Update
	PermissionFiles Permission = Permission(pb.TokenPermission_TOKEN_PERMISSION_FILES) // SetFile, GetFile and the file's bytes
)

// SessionToken is a token scoped to one session, from CreateSessionToken.
type SessionToken struct {
	Token     string    // "smt_...": pass it to WithAPIKey in place of an API key
	TokenID   string    // for RevokeSessionToken
	ExpiresAt time.Time // when it stops working
}

// CreateSessionToken issues a token that authorizes only sessionID and perms,
// for a party that must not hold the tenant's API key (a browser widget): a
// client built with WithAPIKey(token.Token) works on that session only, and
// anything else fails with ErrPermissionDenied. TTL(d) sets its lifetime (1 s
// to 1 h; default 15 min). It needs the tenant's API key, and is not retried
// (a retry after a lost answer would issue a second token). No permission, a
// repeated one or a TTL out of range fail with ErrInvalidTokenRequest or
// ErrTTLOutOfRange.
func (c *Client) CreateSessionToken(ctx context.Context, sessionID string, perms []Permission,
	opts ...WriteOption) (*SessionToken, error) {
	req := &pb.CreateSessionTokenRequest{SessionId: sessionID, TtlSeconds: options(opts).ttl}
	for _, p := range perms {
		if p < PermissionRead || p > PermissionFiles {
			return nil, fmt.Errorf("sessionmemory: unknown permission %d", p)
		}
		req.Permissions = append(req.Permissions, pb.TokenPermission(p))
	}
	s := c.Session(sessionID)
	r, err := call(ctx, s, false, c.timeout, func(ctx context.Context) (*pb.CreateSessionTokenResponse, error) {
		return c.stub.CreateSessionToken(ctx, req)
	})
	if err != nil {
		return nil, err
	}
	return &SessionToken{Token: r.GetToken(), TokenID: r.GetTokenId(), ExpiresAt: r.GetExpiresAt().AsTime()}, nil
}

// RevokeSessionToken stops the token with this id (SessionToken.TokenID):
// every server process refuses it within about a second (ErrTokenRevoked).
// Revoking twice is harmless.
func (c *Client) RevokeSessionToken(ctx context.Context, tokenID string) error {
	return c.revoke(ctx, &pb.RevokeSessionTokenRequest{Target: &pb.RevokeSessionTokenRequest_TokenId{TokenId: tokenID}})
}

// RevokeSessionTokens stops every token issued so far for sessionID.
func (c *Client) RevokeSessionTokens(ctx context.Context, sessionID string) error {
	return c.revoke(ctx, &pb.RevokeSessionTokenRequest{Target: &pb.RevokeSessionTokenRequest_SessionId{SessionId: sessionID}})
}

func (c *Client) revoke(ctx context.Context, req *pb.RevokeSessionTokenRequest) error {
	_, err := invoke(ctx, c, true, c.timeout, func(ctx context.Context) (*pb.RevokeSessionTokenResponse, error) {
		return c.stub.RevokeSessionToken(ctx, req)
	})
	return err
}
