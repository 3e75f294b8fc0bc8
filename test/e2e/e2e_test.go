// Package e2e runs the clickgate binary as a user would: built from
// source, started as its own process, spoken to over HTTP.
package e2e

import (
	"bufio"
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
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/clickgate/clickgate/internal/testkit"
)

func TestMain(m *testing.M) { os.Exit(testkit.MainWithClickgate(m)) }

// clickgate runs the binary to completion and returns its combined output.
func clickgate(t *testing.T, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, testkit.Clickgate, args...).CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

const issuer = "https://idp.test/realms/corp"

// writeConfig writes a configuration with the identity core only (no
// clickhouse section) trusting key, and returns its path.
func writeConfig(t *testing.T, dir, listen string, key *testkit.Key, extra string) string {
	t.Helper()
	cfg := fmt.Sprintf(`server:
  listen: %s
%s
token_processors:
  corp:
    type: jwt
    issuer: %s
    jwks_file: %s
    audiences: [clickhouse]
    username_claim: email
directory:
  roles:
    mapping: {"/ch-admins": ch-admin}
    filter: "^ch-.*$"
    transform: "s/^ch-//; s/-/_/g"
    common: [mcp_reader]
audit:
  file: %s
`, listen, extra, issuer, testkit.WriteJWKS(t, dir, key), filepath.Join(dir, "session.log"))
	path := filepath.Join(dir, "clickgate.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startServe starts 'clickgate serve' and waits until /healthz answers.
func startServe(t *testing.T, cfgPath, base string, client *http.Client) *testkit.SyncBuffer {
	t.Helper()
	cmd := exec.Command(testkit.Clickgate, "serve", "--config", cfgPath)
	logs := &testkit.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("clickgate serve did not stop cleanly on SIGINT: %v\n%s", err, logs)
			}
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			t.Errorf("clickgate serve ignored SIGINT")
		}
	})
	for i := 0; i < 100; i++ {
		resp, err := client.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			return logs
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("clickgate serve did not come up:\n%s", logs)
	return nil
}

func call(t *testing.T, client *http.Client, method, url string, set func(*http.Request)) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if set != nil {
		set(req)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestServeIdentityCore(t *testing.T) {
	dir := t.TempDir()
	key := testkit.NewKey(t, jose.RS256, "k1")
	listen := testkit.FreeAddr(t)
	base := "http://" + listen
	logs := startServe(t, writeConfig(t, dir, listen, key, ""), base, http.DefaultClient)
	alice := key.Sign(t, testkit.Claims(issuer, "clickhouse", "alice@example.com", "ch-analysts", "/ch-admins"))

	status, body := call(t, http.DefaultClient, "GET", base+"/whoami", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+alice) })
	if status != 200 || !strings.Contains(body, `"user": "alice@example.com"`) || !strings.Contains(body, `"admin"`) || !strings.Contains(body, `"analysts"`) {
		t.Fatalf("whoami: %d %s", status, body)
	}
	status, _ = call(t, http.DefaultClient, "GET", base+"/clickhouse/auth", func(r *http.Request) { r.SetBasicAuth("alice@example.com", alice) })
	if status != 200 {
		t.Fatalf("auth endpoint for alice: %d", status)
	}
	status, _ = call(t, http.DefaultClient, "GET", base+"/clickhouse/auth", func(r *http.Request) { r.SetBasicAuth("root", alice) })
	if status != 403 {
		t.Fatalf("auth endpoint for root with alice's token: %d", status)
	}
	// Hostile input, then the server still serves.
	for _, bad := range []string{strings.Repeat("x", 60<<10), "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", alice[:len(alice)-5]} {
		status, _ := call(t, http.DefaultClient, "GET", base+"/whoami", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+bad) })
		if status != 401 && status != 431 {
			t.Errorf("hostile token: status %d", status)
		}
	}
	if status, _ := call(t, http.DefaultClient, "GET", base+"/healthz", nil); status != 200 {
		t.Fatalf("server stopped serving after hostile input: %d", status)
	}
	if strings.Contains(logs.String(), alice[len(alice)-20:]) {
		t.Fatal("the server log contains a token")
	}
	session, _ := os.ReadFile(filepath.Join(dir, "session.log"))
	if !strings.Contains(string(session), `"type":"LoginSuccess"`) || strings.Contains(string(session), alice[len(alice)-20:]) {
		t.Fatalf("session log:\n%s", session)
	}
}

func TestServeTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	key := testkit.NewKey(t, jose.EdDSA, "k1")
	listen := testkit.FreeAddr(t)
	base := "https://" + listen
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	startServe(t, writeConfig(t, dir, listen, key, fmt.Sprintf("  tls: {cert_file: %s, key_file: %s}", certFile, keyFile)), base, client)
	tok := key.Sign(t, testkit.Claims(issuer, "clickhouse", "bob@example.com"))
	status, body := call(t, client, "GET", base+"/whoami", func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) })
	if status != 200 || !strings.Contains(body, "bob@example.com") {
		t.Fatalf("whoami over TLS: %d %s", status, body)
	}
}

func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:   time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(priv)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestCheckConfigExplains(t *testing.T) {
	dir := t.TempDir()
	path := writeConfig(t, dir, "127.0.0.1:8443", testkit.NewKey(t, jose.ES256, "k"), "")
	out, code := clickgate(t, "check-config", "--config", path, "--groups", "/ch-admins,ch-data-eng,staff")
	if code != 0 {
		t.Fatalf("exit %d:\n%s", code, out)
	}
	for _, want := range []string{
		"is valid", "1. corp (jwt)", "keys from the file", `iss must be "` + issuer + `"`,
		"aud must include one of: clickhouse", "groups [/ch-admins, ch-data-eng, staff] become roles [admin, data_eng, mcp_reader]",
		"gateway is off",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check-config output lacks %q:\n%s", want, out)
		}
	}

	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("token_processors:\n  corp:\n    type: jwt\n    isuser: x\n"), 0o600)
	out, code = clickgate(t, "check-config", "--config", bad)
	if code != 1 || !strings.Contains(out, "token_processors.corp.isuser") || !strings.Contains(out, "issuer") {
		t.Fatalf("bad config: exit %d:\n%s", code, out)
	}
}

func TestHelpOnEveryCommand(t *testing.T) {
	out, code := clickgate(t, "--help")
	if code != 0 {
		t.Fatalf("--help exit %d", code)
	}
	var cmds []string
	sc := bufio.NewScanner(strings.NewReader(out[strings.Index(out, "Commands:"):]))
	sc.Scan()
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			break
		}
		cmds = append(cmds, f[0])
	}
	if len(cmds) < 4 {
		t.Fatalf("commands listed: %q\n%s", cmds, out)
	}
	for _, c := range cmds {
		out, code := clickgate(t, c, "--help")
		if code != 0 || !strings.Contains(out, "Usage: clickgate "+c) {
			t.Errorf("%s --help: exit %d\n%s", c, code, out)
		}
	}
	if out, code := clickgate(t, "nonsense"); code != 2 || !strings.Contains(out, `unknown command "nonsense"`) {
		t.Errorf("unknown command: exit %d\n%s", code, out)
	}
	if out, code := clickgate(t, "version"); code != 0 || !strings.HasPrefix(out, "clickgate ") {
		t.Errorf("version: exit %d %q", code, out)
	}
}
