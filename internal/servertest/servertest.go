// Package servertest runs a clickgate server in process for tests:
// config.Parse and server.New on a YAML configuration, served by
// httptest, with a signing key whose JWKS file the configuration's jwt
// processor reads.
//
// Packages that server itself imports (gateway, mcp, authn, …) can use it
// only from their external _test packages, and package server's own tests
// not at all. It is not part of internal/testkit because in-package tests
// of server's dependencies import testkit.
package servertest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/server"
	"github.com/clickgate/clickgate/internal/testkit"
)

// IssuerURL is the iss of the tokens an [Issuer] signs.
const IssuerURL = "https://idp.test/realms/corp"

// Issuer is an IdP of the test: a signing key (ES256, kid k1) and the
// JWKS file that publishes it.
type Issuer struct {
	Key      *testkit.Key
	JWKSFile string
}

// NewIssuer makes a key and writes its JWKS in a directory of the test.
func NewIssuer(tb testing.TB) Issuer {
	tb.Helper()
	key := testkit.NewKey(tb, jose.ES256, "k1")
	return Issuer{Key: key, JWKSFile: testkit.WriteJWKS(tb, tb.TempDir(), key)}
}

// Processor is the YAML flow mapping of a jwt token processor that
// trusts the issuer: audience clickhouse, user name from email. Use it as
// `token_processors: {corp: <Processor>}`.
func (i Issuer) Processor() string {
	return fmt.Sprintf("{type: jwt, issuer: %s, jwks_file: %s, audiences: [clickhouse], username_claim: email}", IssuerURL, i.JWKSFile)
}

// Token signs testkit.Claims for aud, email and groups.
func (i Issuer) Token(tb testing.TB, aud, email string, groups ...string) string {
	tb.Helper()
	return i.Key.Sign(tb, testkit.Claims(IssuerURL, aud, email, groups...))
}

// Handler parses yaml and builds a clickgate server from it, returning
// its handler. A nil opt.Logger discards the logs.
func Handler(tb testing.TB, yaml string, opt server.Options) http.Handler {
	tb.Helper()
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		tb.Fatalf("config: %v\n%s", err, yaml)
	}
	if opt.Logger == nil {
		opt.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	srv, err := server.New(cfg, opt)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	srv.RunBackground(ctx) // the nodes' health checks, as Serve would
	return srv.Handler()
}

// Start serves the clickgate server of yaml (see [Handler]) until the
// test ends.
func Start(tb testing.TB, yaml string, opt server.Options) *httptest.Server {
	tb.Helper()
	return StartWithURL(tb, func(string) string { return yaml }, opt)
}

// StartWithURL is [Start] for a configuration that names the server's own
// address (server.public_url, MCP's resource): the listener is opened
// first and yaml gets its base URL (http://127.0.0.1:port).
func StartWithURL(tb testing.TB, yaml func(url string) string, opt server.Options) *httptest.Server {
	tb.Helper()
	cg := httptest.NewUnstartedServer(nil)
	tb.Cleanup(cg.Close)
	url := "http://" + cg.Listener.Addr().String()
	cg.Config.Handler = Handler(tb, yaml(url), opt)
	cg.Start()
	return cg
}
