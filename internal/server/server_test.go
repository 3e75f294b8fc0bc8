package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/testkit"
)

const issuer = "https://idp.test/realms/corp"

type fixture struct {
	srv    *httptest.Server
	key    *testkit.Key
	audit  string
	logs   *bytes.Buffer
	tokens []string // every token the test minted, to check logs for leaks
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{key: testkit.NewKey(t, jose.ES256, "k1"), audit: filepath.Join(dir, "session.log"), logs: &bytes.Buffer{}}
	yaml := fmt.Sprintf(`
token_processors:
  corp:
    type: jwt
    issuer: %s
    jwks_file: %s
    audiences: [clickhouse]
    username_claim: email
directory:
  allowed_domains: [example.com]
  roles: {filter: "^ch-.*$", transform: "s/^ch-//", common: [reader]}
audit: {file: %s}
`, issuer, testkit.WriteJWKS(t, dir, f.key), f.audit)
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(f.logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	f.srv = httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		f.srv.Close()
		s.audit.Close()
		f.checkNoLeaks(t)
	})
	return f
}

func (f *fixture) token(t *testing.T, email string, change func(map[string]any)) string {
	c := testkit.Claims(issuer, "clickhouse", email, "ch-analysts", "staff")
	if change != nil {
		change(c)
	}
	tok := f.key.Sign(t, c)
	f.tokens = append(f.tokens, tok)
	return tok
}

func (f *fixture) get(t *testing.T, path string, set func(*http.Request)) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, f.srv.URL+path, nil)
	if set != nil {
		set(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// checkNoLeaks fails if any token (or its signature) reached the session
// log or the server log.
func (f *fixture) checkNoLeaks(t *testing.T) {
	audit, _ := os.ReadFile(f.audit)
	for _, tok := range f.tokens {
		sig := tok[strings.LastIndex(tok, ".")+1:]
		for name, text := range map[string]string{"session log": string(audit), "server log": f.logs.String()} {
			if strings.Contains(text, sig) {
				t.Errorf("a token reached the %s", name)
			}
		}
	}
}

func bearer(tok string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
}

func basic(user, pass string) func(*http.Request) {
	return func(r *http.Request) { r.SetBasicAuth(user, pass) }
}

func TestWhoami(t *testing.T) {
	f := newFixture(t)
	resp, body := f.get(t, "/whoami", bearer(f.token(t, "alice@example.com", nil)))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	var got whoamiResponse
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if got.Principal.User != "alice@example.com" || strings.Join(got.Principal.Roles, ",") != "analysts,reader" || got.Identity.Processor != "corp" {
		t.Fatalf("whoami = %s", body)
	}
	// Basic with the token as password works too (for clients that only know Basic).
	if resp, body := f.get(t, "/whoami", basic("", f.token(t, "alice@example.com", nil))); resp.StatusCode != http.StatusOK {
		t.Fatalf("Basic: %d %s", resp.StatusCode, body)
	}
}

func TestWhoamiRefusals(t *testing.T) {
	f := newFixture(t)
	expired := f.token(t, "alice@example.com", func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() })
	wrongAud := f.token(t, "alice@example.com", func(c map[string]any) { c["aud"] = "grafana" })
	tests := []struct {
		name   string
		set    func(*http.Request)
		status int
		reason string
	}{
		{"no credentials", nil, 401, "no credentials"},
		{"unknown scheme", func(r *http.Request) { r.Header.Set("Authorization", "Digest x") }, 401, "unsupported Authorization scheme"},
		{"garbage", bearer("garbage"), 401, "not a JWT"},
		{"expired", bearer(expired), 401, "expired"},
		{"wrong audience", bearer(wrongAud), 401, "audience"},
		{"oversized", bearer(strings.Repeat("a", 20<<10)), 401, "limit is"},
		{"other domain", bearer(f.token(t, "eve@evil.com", nil)), 403, "allowed_domains"},
		{"Basic user of someone else", basic("bob@example.com", f.token(t, "alice@example.com", nil)), 403, "user mismatch"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := f.get(t, "/whoami", tc.set)
			if resp.StatusCode != tc.status || !strings.Contains(body, tc.reason) {
				t.Fatalf("got %d %s; want %d mentioning %q", resp.StatusCode, body, tc.status, tc.reason)
			}
			if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Fatalf("WWW-Authenticate = %q", resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
	// The server keeps serving after all that.
	if resp, _ := f.get(t, "/whoami", bearer(f.token(t, "alice@example.com", nil))); resp.StatusCode != 200 {
		t.Fatalf("after bad input: %d", resp.StatusCode)
	}
}

// TestAuthEndpointContract sends what ClickHouse's HTTPAuthClient sends:
// GET over HTTP/1.1 with Basic(user, password) and forwarded headers;
// only 200 authenticates, and a 200 body's "settings" object is applied.
func TestAuthEndpointContract(t *testing.T) {
	f := newFixture(t)
	alice := f.token(t, "alice@example.com", nil)
	tests := []struct {
		name   string
		set    func(*http.Request)
		status int
	}{
		{"the token's own user", basic("alice@example.com", alice), 200},
		{"another user with alice's token", basic("bob@example.com", alice), 403},
		{"case differs", basic("Alice@example.com", alice), 403},
		{"no password", basic("alice@example.com", ""), 401},
		{"no Authorization", nil, 401},
		{"bad token", basic("alice@example.com", "x.y.z"), 401},
		{"expired", basic("alice@example.com", f.token(t, "alice@example.com", func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() })), 401},
		{"with forwarded headers", func(r *http.Request) {
			r.SetBasicAuth("alice@example.com", alice)
			r.Header.Set("X-Forwarded-For", "10.0.0.1")
		}, 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := f.get(t, "/clickhouse/auth?user=ignored", tc.set)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, body, tc.status)
			}
			if tc.status == 200 {
				var r struct {
					Settings map[string]string `json:"settings"`
				}
				if err := json.Unmarshal([]byte(body), &r); err != nil || r.Settings == nil {
					t.Fatalf("200 body %q is not {\"settings\":{…}}: %v", body, err)
				}
			}
		})
	}
}

func TestSessionLog(t *testing.T) {
	f := newFixture(t)
	f.get(t, "/clickhouse/auth", basic("alice@example.com", f.token(t, "alice@example.com", nil)))
	f.get(t, "/whoami", func(r *http.Request) {
		r.Header.Set("Authorization", "Bearer nope")
		r.Header.Set("User-Agent", "clickhouse-test/1.0")
	})
	data, err := os.ReadFile(f.audit)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d session log lines, want 2:\n%s", len(lines), data)
	}
	var ok, bad map[string]any
	json.Unmarshal([]byte(lines[0]), &ok)
	json.Unmarshal([]byte(lines[1]), &bad)
	for _, c := range []struct {
		rec   map[string]any
		field string
		want  any
	}{
		{ok, "type", "LoginSuccess"},
		{ok, "user", "alice@example.com"},
		{ok, "interface", "auth_endpoint"},
		{ok, "processor", "corp"},
		{ok, "client_address", "127.0.0.1"},
		{bad, "type", "LoginFailure"},
		{bad, "interface", "whoami"},
		{bad, "http_user_agent", "clickhouse-test/1.0"},
	} {
		if c.rec[c.field] != c.want {
			t.Errorf("%s = %v, want %v", c.field, c.rec[c.field], c.want)
		}
	}
	if ok["event_id"] == "" || ok["event_id"] == bad["event_id"] || ok["event_time_microseconds"] == nil {
		t.Errorf("event_id/event time missing or reused: %v / %v", ok, bad)
	}
	if bad["failure_reason"] == nil {
		t.Error("failure without failure_reason")
	}
}

func TestOperationalEndpoints(t *testing.T) {
	f := newFixture(t)
	f.get(t, "/whoami", bearer(f.token(t, "alice@example.com", nil)))
	f.get(t, "/whoami", bearer(f.token(t, "alice@example.com", nil)))
	tests := []struct {
		path   string
		status int
		want   string
	}{
		{"/healthz", 200, "ok"},
		{"/readyz", 200, `"ready": true`},
		{"/metrics", 200, `clickgate_auth_attempts_total{interface="whoami",processor="corp",result="success"} 2`},
		{"/metrics", 200, `clickgate_token_cache_lookups_total{result="miss"} 2`},
		{"/", 404, "gateway is off"},
		{"/?query=SELECT+1", 404, "no clickhouse section"},
	}
	for _, tc := range tests {
		resp, body := f.get(t, tc.path, nil)
		if resp.StatusCode != tc.status || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %d, want %d with %q; body:\n%.600s", tc.path, resp.StatusCode, tc.status, tc.want, body)
		}
	}
}
