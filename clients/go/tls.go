package sessionmemory

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc/credentials"
)

// ErrTLSConfig is wrapped by the errors of NewFromEnv when the
// SESSION_MEMORY_TLS* variables do not make a TLS configuration.
var ErrTLSConfig = errors.New("sessionmemory: TLS configuration")

// WithTLS makes the client speak TLS with cfg; nil verifies the server with the
// system roots. For mTLS give the client certificate in cfg.Certificates; to
// verify against your own CA set cfg.RootCAs; cfg.ServerName overrides the
// name checked in the server's certificate. It wins over the transport
// credentials of WithDialOptions.
func WithTLS(cfg *tls.Config) Option {
	return func(c *Client) {
		if cfg == nil {
			cfg = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		c.creds = credentials.NewTLS(cfg)
	}
}

// envTLS is the TLS configuration of the SESSION_MEMORY_TLS* variables, or nil
// for plaintext:
//
//	SESSION_MEMORY_TLS=true           TLS, the server verified with the system roots
//	SESSION_MEMORY_TLS_CA=ca.pem      a PEM CA bundle to verify the server with
//	SESSION_MEMORY_CLIENT_CERT=c.pem     a PEM client certificate (mTLS), with
//	SESSION_MEMORY_CLIENT_KEY=k.pem      its private key
//	SESSION_MEMORY_TLS_SERVER_NAME=n  the name to check in the server's certificate
//
// Each but the first turns TLS on by itself.
func envTLS(getenv func(string) string) (*tls.Config, error) {
	flag := strings.ToLower(strings.TrimSpace(getenv("SESSION_MEMORY_TLS")))
	on, off := map[string]bool{"1": true, "true": true, "yes": true, "on": true},
		map[string]bool{"0": true, "false": true, "no": true, "off": true}
	if flag != "" && !on[flag] && !off[flag] {
		return nil, fmt.Errorf("%w: SESSION_MEMORY_TLS=%q: use true or false", ErrTLSConfig, flag)
	}
	certPath, keyPath := getenv("SESSION_MEMORY_CLIENT_CERT"), getenv("SESSION_MEMORY_CLIENT_KEY")
	if (certPath == "") != (keyPath == "") {
		given, missing := "SESSION_MEMORY_CLIENT_CERT", "SESSION_MEMORY_CLIENT_KEY"
		if certPath == "" {
			given, missing = missing, given
		}
		return nil, fmt.Errorf("%w: %s is set without %s: a client certificate needs its private key",
			ErrTLSConfig, given, missing)
	}
	var implied string
	for _, name := range []string{"SESSION_MEMORY_TLS_CA", "SESSION_MEMORY_CLIENT_CERT", "SESSION_MEMORY_TLS_SERVER_NAME"} {
		if getenv(name) != "" {
			implied = name
			break
		}
	}
	if off[flag] && implied != "" {
		return nil, fmt.Errorf("%w: SESSION_MEMORY_TLS=%s but %s is set: that needs TLS", ErrTLSConfig, flag, implied)
	}
	if !on[flag] && implied == "" {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: getenv("SESSION_MEMORY_TLS_SERVER_NAME")}
	if caPath := getenv("SESSION_MEMORY_TLS_CA"); caPath != "" {
		pem, err := os.ReadFile(caPath)
		if err != nil {
			return nil, fmt.Errorf("%w: SESSION_MEMORY_TLS_CA=%s: %v", ErrTLSConfig, caPath, err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: SESSION_MEMORY_TLS_CA=%s: no PEM certificate in it", ErrTLSConfig, caPath)
		}
	}
	if certPath != "" {
		pair, err := tls.LoadX509KeyPair(certPath, keyPath)
		if err != nil {
			return nil, fmt.Errorf("%w: SESSION_MEMORY_CLIENT_CERT=%s, SESSION_MEMORY_CLIENT_KEY=%s: %v",
				ErrTLSConfig, certPath, keyPath, err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}
