package native_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/server"
	"github.com/clickgate/clickgate/internal/servertest"
	"github.com/clickgate/clickgate/internal/testkit"
)

// selfSigned writes a certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T) (certFile, keyFile string) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "clickgate"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// server.native_tls: the native listener speaks TLS (as serve runs it,
// through Live.ServeNative).
func TestNativeTLS(t *testing.T) {
	ch := chtest.Start(t, chtest.Options{})
	iss := servertest.NewIssuer(t)
	certFile, keyFile := selfSigned(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
server: {listen: %s, native_listen: %s, native_tls: {cert_file: %s, key_file: %s}}
token_processors:
  corp: %s
directory:
  roles: {filter: "^ch-.*$", transform: "s/^ch-//", common: [mcp_reader]}
clickhouse:
  url: %s
  native_url: tcp://%s
%s`, testkit.FreeAddr(t), l.Addr(), certFile, keyFile, iss.Processor(), ch.HTTPURL, ch.TCPAddr, mappedYAML)))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(cfg, server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	live := server.NewLive(srv)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- live.ServeNative(ctx, l) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeNative: %v", err)
		}
		_ = srv.Close(context.Background())
	}()
	c, err := clickhouse.Open(&clickhouse.Options{Addr: []string{l.Addr().String()},
		Auth: clickhouse.Auth{Password: iss.Token(t, "clickhouse", "bob@example.com", "ch-admin")},
		TLS:  &tls.Config{InsecureSkipVerify: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var user string
	if err := c.QueryRow(ctx, chtest.CurrentUserSQL()).Scan(&user); err != nil || user != "ch_admin" {
		t.Fatalf("over TLS: %q %v", user, err)
	}
	// A plain client is not served.
	plain, err := clickhouse.Open(&clickhouse.Options{Addr: []string{l.Addr().String()}, Auth: clickhouse.Auth{Password: "x"}, DialTimeout: 2 * time.Second})
	if err == nil {
		err = plain.Ping(ctx)
		plain.Close()
	}
	if err == nil {
		t.Fatal("a plain-TCP client was served on the TLS listener")
	}
}
