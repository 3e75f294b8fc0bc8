package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	_ "embed"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/clickgate/clickgate/internal/config"
)

//go:embed demo.yaml
var demoConfigTemplate string

// demoPerson is someone the demo mints a token for.
type demoPerson struct {
	Email  string
	Groups []string
}

var demoPeople = []demoPerson{
	{Email: "alice@example.com", Groups: []string{"ch-analysts", "staff"}},
	{Email: "bob@example.com", Groups: []string{"/ch-admins", "ch-data-eng"}},
}

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", "demo [--dir .clickgate-demo] [--listen 127.0.0.1:8443] [--once]", stderr)
	dir := fs.String("dir", ".clickgate-demo", "directory for the demo's key and configuration (reused by later runs)")
	listen := fs.String("listen", "127.0.0.1:8443", "address to listen on")
	once := fs.Bool("once", false, "check the running demo with its own tokens, print the results and exit")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	logger, err := newLogger(stderr, "info")
	if err != nil {
		return err
	}
	cfgPath, signer, err := prepareDemo(*dir, *listen)
	if err != nil {
		return err
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	tokens := map[string]string{}
	for _, p := range demoPeople {
		tok, err := mintDemoToken(signer, cfg.TokenProcessors["demo"].Issuer, p, time.Hour)
		if err != nil {
			return err
		}
		tokens[p.Email] = tok
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ready := make(chan string, 1)
	errc := make(chan error, 1)
	go func() { errc <- serve(ctx, cfg, logger, ready) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-errc:
		return err
	}
	base := "http://" + addr
	printDemoHelp(stdout, base, cfgPath, tokens)
	if *once {
		err := checkDemo(ctx, stdout, base, tokens)
		cancel()
		if serr := <-errc; serr != nil && err == nil {
			err = serr
		}
		return err
	}
	fmt.Fprintln(stdout, "Press Ctrl-C to stop.")
	return <-errc
}

// prepareDemo creates (or reuses) the demo directory: an Ed25519 signing
// key, its public JWKS and the configuration file.
func prepareDemo(dir, listen string) (cfgPath string, signer jose.Signer, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, err
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", nil, err
	}
	keyPath := filepath.Join(abs, "signing-key.pem")
	priv, err := loadOrCreateKey(keyPath)
	if err != nil {
		return "", nil, err
	}
	kid := "demo-" + fmt.Sprintf("%x", priv.Public().(ed25519.PublicKey)[:4])
	jwk := jose.JSONWebKey{Key: priv.Public(), KeyID: kid, Algorithm: string(jose.EdDSA), Use: "sig"}
	jwks, err := json.MarshalIndent(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk}}, "", "  ")
	if err != nil {
		return "", nil, err
	}
	jwksPath := filepath.Join(abs, "jwks.json")
	if err := os.WriteFile(jwksPath, jwks, 0o644); err != nil {
		return "", nil, err
	}
	var buf bytes.Buffer
	tmpl := template.Must(template.New("demo").Parse(demoConfigTemplate))
	if err := tmpl.Execute(&buf, map[string]string{
		"Listen":   listen,
		"Issuer":   "clickgate-demo",
		"JWKSFile": jwksPath,
	}); err != nil {
		return "", nil, err
	}
	cfgPath = filepath.Join(abs, "clickgate.yaml")
	if err := os.WriteFile(cfgPath, buf.Bytes(), 0o644); err != nil {
		return "", nil, err
	}
	signer, err = jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: jose.JSONWebKey{Key: priv, KeyID: kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	return cfgPath, signer, err
}

func loadOrCreateKey(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(priv)
		if err != nil {
			return nil, err
		}
		pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
		return priv, os.WriteFile(path, pemBytes, 0o600)
	}
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s: no PEM key; delete it to have a new one generated", path)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %v; delete it to have a new one generated", path, err)
	}
	priv, ok := key.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an Ed25519 key; delete it to have a new one generated", path)
	}
	return priv, nil
}

func mintDemoToken(signer jose.Signer, issuer string, p demoPerson, ttl time.Duration) (string, error) {
	now := time.Now()
	claims := map[string]any{
		"iss": issuer, "sub": strings.Split(p.Email, "@")[0], "aud": []string{"clickhouse"},
		"email": p.Email, "email_verified": true, "groups": p.Groups,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(ttl).Unix(),
	}
	return jwt.Signed(signer).Claims(claims).Serialize()
}

func printDemoHelp(w io.Writer, base, cfgPath string, tokens map[string]string) {
	fmt.Fprintf(w, `
clickgate demo is running at %[1]s  (configuration: %[2]s)

Two people have one-hour tokens signed by the demo key:
  alice@example.com, groups ch-analysts, staff   → roles analysts, mcp_reader
  bob@example.com,   groups /ch-admins, ch-data-eng → roles admin, data_eng, mcp_reader

Try it (paste into another terminal):

  export ALICE_TOKEN='%[3]s'
  curl -s -H "Authorization: Bearer $ALICE_TOKEN" %[1]s/whoami
  curl -s -o /dev/null -w '%%{http_code}\n' -u "alice@example.com:$ALICE_TOKEN" %[1]s/clickhouse/auth   # 200: ClickHouse would let alice in
  curl -s -o /dev/null -w '%%{http_code}\n' -u "bob@example.com:$ALICE_TOKEN" %[1]s/clickhouse/auth     # 403: alice's token is not bob's password
  curl -s -H "Authorization: Bearer not-a-token" %[1]s/whoami                                         # a clear refusal
  clickgate check-config --config %[2]s

Bob's token: %[4]s

`, base, cfgPath, tokens["alice@example.com"], tokens["bob@example.com"])
}

// checkDemo exercises the running demo the way the printed commands do.
func checkDemo(ctx context.Context, w io.Writer, base string, tokens map[string]string) error {
	alice := tokens["alice@example.com"]
	checks := []struct {
		name, path, user, token string
		bearer                  bool
		want                    int
	}{
		{"whoami with alice's token", "/whoami", "", alice, true, http.StatusOK},
		{"auth endpoint, alice as alice", "/clickhouse/auth", "alice@example.com", alice, false, http.StatusOK},
		{"auth endpoint, alice's token as bob", "/clickhouse/auth", "bob@example.com", alice, false, http.StatusForbidden},
		{"whoami with garbage", "/whoami", "", "not-a-token", true, http.StatusUnauthorized},
	}
	var failed int
	for _, c := range checks {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+c.path, nil)
		if err != nil {
			return err
		}
		if c.bearer {
			req.Header.Set("Authorization", "Bearer "+c.token)
		} else {
			req.SetBasicAuth(c.user, c.token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		verdict := "ok"
		if resp.StatusCode != c.want {
			verdict, failed = "FAILED", failed+1
		}
		fmt.Fprintf(w, "%-6s %-40s HTTP %d (want %d)\n", verdict, c.name, resp.StatusCode, c.want)
		if c.path == "/whoami" && resp.StatusCode == http.StatusOK {
			fmt.Fprintf(w, "%s\n", body)
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d demo checks failed", failed)
	}
	return nil
}
