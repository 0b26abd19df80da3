package sessionmemory

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// pemFiles writes a self-signed certificate and its key; both serve as a CA
// bundle and as a client certificate for the parser.
func pemFiles(t *testing.T) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	template := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "unit"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	write := func(path, kind string, der []byte) {
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(certPath, "CERTIFICATE", der)
	write(keyPath, "PRIVATE KEY", keyDER)
	return certPath, keyPath
}

func env(vars map[string]string) func(string) string {
	return func(name string) string { return vars[name] }
}

func TestNoTLSVariableIsPlaintext(t *testing.T) {
	for _, vars := range []map[string]string{{}, {"SESSION_MEMORY_TLS": "false"}} {
		cfg, err := envTLS(env(vars))
		if cfg != nil || err != nil {
			t.Fatalf("%v: got %v, %v; want plaintext", vars, cfg, err)
		}
	}
}

func TestTLSFlagAloneUsesTheSystemRoots(t *testing.T) {
	for _, flag := range []string{"true", "1", "yes", "TRUE", " on "} {
		cfg, err := envTLS(env(map[string]string{"SESSION_MEMORY_TLS": flag}))
		if err != nil || cfg == nil {
			t.Fatalf("%q: got %v, %v", flag, cfg, err)
		}
		if cfg.RootCAs != nil || len(cfg.Certificates) != 0 || cfg.ServerName != "" {
			t.Fatalf("%q: want the system roots only, got %+v", flag, cfg)
		}
	}
}

func TestTLSCAClientCertificateAndServerName(t *testing.T) {
	cert, key := pemFiles(t)
	cfg, err := envTLS(env(map[string]string{
		"SESSION_MEMORY_TLS_CA": cert, "SESSION_MEMORY_CLIENT_CERT": cert, "SESSION_MEMORY_CLIENT_KEY": key,
		"SESSION_MEMORY_TLS_SERVER_NAME": "memory.internal",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RootCAs == nil || len(cfg.Certificates) != 1 || cfg.ServerName != "memory.internal" {
		t.Fatalf("got %+v", cfg)
	}
	// Each of them turns TLS on by itself.
	for _, vars := range []map[string]string{
		{"SESSION_MEMORY_TLS_CA": cert},
		{"SESSION_MEMORY_CLIENT_CERT": cert, "SESSION_MEMORY_CLIENT_KEY": key},
		{"SESSION_MEMORY_TLS_SERVER_NAME": "memory.internal"},
	} {
		if cfg, err := envTLS(env(vars)); cfg == nil || err != nil {
			t.Fatalf("%v: got %v, %v; want TLS", vars, cfg, err)
		}
	}
}

func TestTLSConfigurationsThatDoNotFit(t *testing.T) {
	cert, key := pemFiles(t)
	for _, c := range []struct {
		vars map[string]string
		want string
	}{
		{map[string]string{"SESSION_MEMORY_CLIENT_CERT": cert},
			"SESSION_MEMORY_CLIENT_CERT is set without SESSION_MEMORY_CLIENT_KEY: a client certificate needs its private key"},
		{map[string]string{"SESSION_MEMORY_CLIENT_KEY": key},
			"SESSION_MEMORY_CLIENT_KEY is set without SESSION_MEMORY_CLIENT_CERT: a client certificate needs its private key"},
		{map[string]string{"SESSION_MEMORY_TLS": "maybe"}, `SESSION_MEMORY_TLS="maybe": use true or false`},
		{map[string]string{"SESSION_MEMORY_TLS": "no", "SESSION_MEMORY_TLS_CA": cert},
			"SESSION_MEMORY_TLS=no but SESSION_MEMORY_TLS_CA is set"},
		{map[string]string{"SESSION_MEMORY_TLS_CA": cert + ".missing"}, "no such file"},
		{map[string]string{"SESSION_MEMORY_TLS_CA": key}, "no PEM certificate in it"},
		{map[string]string{"SESSION_MEMORY_CLIENT_CERT": key, "SESSION_MEMORY_CLIENT_KEY": key}, "SESSION_MEMORY_CLIENT_CERT="},
	} {
		cfg, err := envTLS(env(c.vars))
		if err == nil || !errors.Is(err, ErrTLSConfig) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: got %v, %v; want an ErrTLSConfig with %q", c.vars, cfg, err, c.want)
		}
	}
}

func TestNewFromEnvRefusesACertificateWithoutItsKey(t *testing.T) {
	cert, _ := pemFiles(t)
	t.Setenv("SESSION_MEMORY_CLIENT_CERT", cert)
	t.Setenv("SESSION_MEMORY_CLIENT_KEY", "")
	if _, err := NewFromEnv(); !errors.Is(err, ErrTLSConfig) {
		t.Fatalf("got %v, want ErrTLSConfig", err)
	}
}
