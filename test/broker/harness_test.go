// Package broker tests clickgate's OAuth broker end to end: a clickgate
// server with its development IdP as the upstream, MCP clients signing in
// through /oauth/*, and the attacks the broker must stop.
package broker

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/server"
	"github.com/clickgate/clickgate/internal/testkit"
)

// stack is a clickgate server with the broker on, signing people in at
// its development IdP.
type stack struct {
	base  string
	clock *testkit.Clock // the real time, moved forward by the test
	logs  *testkit.SyncBuffer
	cfg   *config.Config

	mu      sync.Mutex
	secrets []string // codes and tokens handed out: never to be logged
}

func (s *stack) secret(v string) {
	if len(v) >= 16 {
		s.mu.Lock()
		s.secrets = append(s.secrets, v)
		s.mu.Unlock()
	}
}

// brokerConfig is the configuration of a stack (testkit.BrokerConfig's
// parameters) with two pre-registered clients.
const brokerConfig = testkit.BrokerConfig + `  access_token_ttl: 1m
  clients:
    - {client_id: test-client, client_name: Test Client, redirect_uris: ["http://127.0.0.1/callback", "https://app.example/cb"]}
    - {client_id: secret-client, client_secret: s3cret-s3cret, redirect_uris: ["https://app.example/cb"]}
`

type stackOptions struct {
	template       string // default brokerConfig
	clickhouseURL  string // default: nothing listens there
	clickhouseMode string // default testkit.MappedMode
	extra          string // appended to the configuration (under broker: indent 2)
	stateDir       string // default: a temporary directory
}

func newStack(t testing.TB, o stackOptions) *stack {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + l.Addr().String()
	if o.clickhouseURL == "" {
		o.clickhouseURL = "http://127.0.0.1:9"
	}
	if o.stateDir == "" {
		o.stateDir = t.TempDir()
	}
	if o.clickhouseMode == "" {
		o.clickhouseMode = testkit.MappedMode
	}
	if o.template == "" {
		o.template = brokerConfig
	}
	cfg, err := config.Parse([]byte(fmt.Sprintf(o.template, l.Addr().String(), base, o.stateDir, o.clickhouseURL, o.clickhouseMode) + o.extra))
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{base: base, clock: testkit.RealClock(), logs: &testkit.SyncBuffer{}, cfg: cfg}
	srv, err := server.New(cfg, server.Options{Logger: slog.New(slog.NewTextHandler(s.logs, nil)), Now: s.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewUnstartedServer(srv.Handler())
	hs.Listener.Close()
	hs.Listener = l
	hs.Start()
	t.Cleanup(func() {
		hs.CloseClientConnections()
		hs.Close()
		logs := s.logs.String()
		s.mu.Lock()
		for _, v := range s.secrets {
			if strings.Contains(logs, v) {
				t.Errorf("a code or token reached the log: %.12s…", v)
			}
		}
		s.mu.Unlock()
		if t.Failed() {
			t.Logf("clickgate log:\n%s", logs)
		}
	})
	return s
}

// browser is a cookie-keeping HTTP client that does not follow redirects.
type browser struct {
	*http.Client
}

func newBrowser(t testing.TB) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{&http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

type response struct {
	status   int
	location string
	body     string
	header   http.Header
}

func (b *browser) do(t testing.TB, method, target string, form url.Values) response {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	loc := resp.Header.Get("Location")
	if loc != "" {
		u, err := req.URL.Parse(loc)
		if err != nil {
			t.Fatal(err)
		}
		loc = u.String()
	}
	return response{status: resp.StatusCode, location: loc, body: string(data), header: resp.Header}
}

// client is an MCP client's side of a sign-in.
type client struct {
	id, secret, redirect string
	verifier             string
	state                string
}

func newClient(id, redirect string) *client {
	return &client{id: id, redirect: redirect, verifier: strings.Repeat("v", 20) + randomish(), state: "st-" + randomish()}
}

func randomish() string { return fmt.Sprintf("%d", time.Now().UnixNano()) + strings.Repeat("x", 30) }

func challenge(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// authorizeURL is the client's authorization request; set overrides or
// removes (empty value) parameters.
func (s *stack) authorizeURL(c *client, set map[string]string) string {
	q := url.Values{
		"response_type": {"code"}, "client_id": {c.id}, "redirect_uri": {c.redirect},
		"code_challenge": {challenge(c.verifier)}, "code_challenge_method": {"S256"},
		"state": {c.state}, "resource": {s.base + "/mcp"},
	}
	for k, v := range set {
		if v == "" {
			q.Del(k)
		} else {
			q.Set(k, v)
		}
	}
	return s.base + "/oauth/authorize?" + q.Encode()
}

// consentForm opens the consent page and returns its form values.
func (s *stack) consentForm(t testing.TB, b *browser, authorizeURL string) url.Values {
	t.Helper()
	r := b.do(t, "GET", authorizeURL, nil)
	if r.status != http.StatusOK || !strings.Contains(r.body, "Allow access to ClickHouse?") {
		t.Fatalf("consent page: %d %s %s", r.status, r.location, r.body)
	}
	return url.Values{"request": {testkit.FormField(t, r.body, "request")}, "csrf": {testkit.FormField(t, r.body, "csrf")}, "action": {"allow"}}
}

// follow follows redirects within the stack and returns the first
// redirect that leaves it (to the client), or the last page.
func (s *stack) follow(t testing.TB, b *browser, r response) response {
	t.Helper()
	for i := 0; i < 10 && r.location != "" && strings.HasPrefix(r.location, s.base+"/"); i++ {
		r = b.do(t, "GET", r.location, nil)
	}
	return r
}

// upstreamSignIn goes from the consent form to the dev IdP's login and
// returns the response that leaves the stack (the redirect to the client)
// or the last page, plus the broker callback URL it passed through.
func (s *stack) upstreamSignIn(t testing.TB, b *browser, form url.Values, user, password string) (response, string) {
	t.Helper()
	r := s.follow(t, b, b.do(t, "POST", s.base+"/oauth/authorize", form))
	if !strings.Contains(r.body, `name="authRequestID"`) {
		t.Fatalf("expected the dev IdP login page, got %d %s %s", r.status, r.location, r.body)
	}
	r = b.do(t, "POST", s.base+"/idp/login", url.Values{"authRequestID": {testkit.FormField(t, r.body, "authRequestID")}, "username": {user}, "password": {password}})
	var callback string
	for i := 0; i < 10 && strings.HasPrefix(r.location, s.base+"/"); i++ {
		if strings.HasPrefix(r.location, s.base+"/oauth/callback") {
			callback = r.location
		}
		r = b.do(t, "GET", r.location, nil)
	}
	return r, callback
}

// signIn runs a whole sign-in and returns the redirect to the client's
// redirect_uri, parsed.
func (s *stack) signIn(t testing.TB, b *browser, c *client, user, password string) url.Values {
	t.Helper()
	r, _ := s.upstreamSignIn(t, b, s.consentForm(t, b, s.authorizeURL(c, nil)), user, password)
	return s.clientRedirect(t, c, r)
}

// clientRedirect checks that r sends the browser to c's redirect_uri and
// returns its query.
func (s *stack) clientRedirect(t testing.TB, c *client, r response) url.Values {
	t.Helper()
	if r.status != http.StatusSeeOther || !strings.HasPrefix(r.location, c.redirect+"?") {
		t.Fatalf("want a redirect to %s, got %d %q %s", c.redirect, r.status, r.location, r.body)
	}
	u, _ := url.Parse(r.location)
	q := u.Query()
	s.secret(q.Get("code"))
	if q.Get("iss") != s.base {
		t.Errorf("iss = %q, want %q (RFC 9207)", q.Get("iss"), s.base)
	}
	if q.Get("state") != c.state {
		t.Errorf("state = %q, want %q", q.Get("state"), c.state)
	}
	return q
}

// tokenRequest posts form to the token endpoint and decodes the answer.
func (s *stack) tokenRequest(t testing.TB, form url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := http.PostForm(s.base+"/oauth/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("token endpoint answered %d with non-JSON: %v", resp.StatusCode, err)
	}
	for _, k := range []string{"access_token", "refresh_token"} {
		if v, ok := out[k].(string); ok {
			s.secret(v)
		}
	}
	return resp.StatusCode, out
}

// redeem trades code for tokens as c.
func (s *stack) redeem(t testing.TB, c *client, code string) (int, map[string]any) {
	t.Helper()
	return s.tokenRequest(t, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {c.id},
		"redirect_uri": {c.redirect}, "code_verifier": {c.verifier}, "resource": {s.base + "/mcp"}})
}

func (s *stack) refresh(t testing.TB, c *client, refreshToken string) (int, map[string]any) {
	t.Helper()
	return s.tokenRequest(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}, "client_id": {c.id}})
}

// tokens runs a sign-in as alice and redeems the code.
func (s *stack) tokens(t testing.TB, c *client) map[string]any {
	t.Helper()
	q := s.signIn(t, newBrowser(t), c, "alice", "alice-pw")
	status, tok := s.redeem(t, c, q.Get("code"))
	if status != http.StatusOK {
		t.Fatalf("token: %d %v", status, tok)
	}
	return tok
}

// get sends a GET with a bearer token.
func (s *stack) get(t testing.TB, path, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", s.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func stateDir(t testing.TB) string { return filepath.Join(t.TempDir(), "state") }
