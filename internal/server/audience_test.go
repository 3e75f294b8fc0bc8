package server_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/server"
	"github.com/clickgate/clickgate/internal/testkit"
)

const (
	audPublicURL = "https://clickgate.test"
	audResource  = audPublicURL + "/mcp"
	audAltMCP    = "https://mcp.example/alt" // an mcp.audiences entry
	audCorp      = "https://idp.test/realms/corp"
	audMCPOnly   = "https://mcp-idp.test"
)

// audienceStack is clickgate in mapped mode before a real ClickHouse, with
// processors corp (audiences clickhouse and the mcp.audiences entry),
// mcponly (the MCP resource only) and gh (GitHub, whose tokens have no
// aud). Every person is an admin, so an INSERT that reached ClickHouse
// would land in default.reached.
type audienceStack struct {
	ch    *chtest.Server
	url   string
	key   *testkit.Key
	audit string
}

func newAudienceStack(t *testing.T) *audienceStack {
	t.Helper()
	ch := chtest.Start(t, chtest.Options{})
	ch.Query(t, chtest.AdminUser, chtest.AdminPassword, "CREATE TABLE default.reached (name String) ENGINE = Memory")
	github := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/user":
			fmt.Fprint(w, `{"id":42,"login":"octocat"}`)
		case "/user/orgs":
			fmt.Fprint(w, `[{"login":"ch-admin"}]`)
		case "/user/teams":
			fmt.Fprint(w, `[]`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(github.Close)
	dir := t.TempDir()
	s := &audienceStack{ch: ch, key: testkit.NewKey(t, jose.ES256, "k1"), audit: filepath.Join(dir, "session.log")}
	jwks := testkit.WriteJWKS(t, dir, s.key)
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
server: {public_url: %s}
token_processors:
  corp: {type: jwt, issuer: %s, jwks_file: %s, audiences: [clickhouse, %s], username_claim: email}
  mcponly: {type: jwt, issuer: %s, jwks_file: %s, audiences: [%s], username_claim: email}
  gh: {type: github, api_url: %s}
directory:
  processors: [corp, mcponly, gh]
  roles: {filter: "^ch-.*$", transform: "s/^ch-//"}
clickhouse:
  url: %s
  mode: mapped
  accounts: [{role: admin, user: %s, password: %s}]
mcp: {audiences: [%s]}
audit: {file: %s}
`, audPublicURL, audCorp, jwks, audAltMCP, audMCPOnly, jwks, audResource, github.URL,
		ch.HTTPURL, chtest.AdminUser, chtest.AdminPassword, audAltMCP, s.audit)))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(cfg, server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	cg := httptest.NewServer(srv.Handler())
	t.Cleanup(cg.Close)
	s.url = cg.URL
	return s
}

// token is alice's (an admin) from issuer for aud.
func (s *audienceStack) token(t *testing.T, issuer string, aud ...string) string {
	c := testkit.Claims(issuer, "", "alice@example.com", "ch-admin")
	c["aud"] = aud
	return s.key.Sign(t, c)
}

func (s *audienceStack) do(t *testing.T, method, path, body string, set func(*http.Request)) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, s.url+path, strings.NewReader(body))
	set(req)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// lastRecord is the session log's last record.
func (s *audienceStack) lastRecord(t *testing.T) map[string]any {
	t.Helper()
	data, err := os.ReadFile(s.audit)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	var rec map[string]any
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rec); err != nil {
		t.Fatal(err)
	}
	return rec
}

// The gateway and /clickhouse/auth take a token only when its aud names an
// audience configured for ClickHouse on the processor that proved it; the
// MCP resource and mcp.audiences admit it at /mcp only.
func TestAudiencesForClickHouse(t *testing.T) {
	s := newAudienceStack(t)
	var admitted []string // the markers ClickHouse should see
	for i, tc := range []struct {
		name, processor, user string
		token                 string
		refusal               string // empty: admitted
	}{
		{"MCP resource and Keycloak's account", "corp", "alice@example.com", s.token(t, audCorp, audResource, "account"), "aud must include one of clickhouse ("},
		{"MCP resource and Auth0's userinfo", "corp", "alice@example.com", s.token(t, audCorp, audResource, "https://tenant.example/userinfo"), "aud must include one of clickhouse ("},
		{"mcp.audiences entry and another", "corp", "alice@example.com", s.token(t, audCorp, audAltMCP, "other"), "aud must include one of clickhouse ("},
		{"another audience only (refused by the processor)", "corp", "alice@example.com", s.token(t, audCorp, "other"), "is not one of clickhouse"},
		{"processor for MCP only: MCP resource", "mcponly", "alice@example.com", s.token(t, audMCPOnly, audResource), "MCP endpoint only"},
		{"processor for MCP only: with clickhouse", "mcponly", "alice@example.com", s.token(t, audMCPOnly, audResource, "clickhouse"), "MCP endpoint only"},
		{"processor for MCP only: with account", "mcponly", "alice@example.com", s.token(t, audMCPOnly, "account", audResource), "MCP endpoint only"},
		{"clickhouse", "corp", "alice@example.com", s.token(t, audCorp, "clickhouse"), ""},
		{"clickhouse and the MCP resource", "corp", "alice@example.com", s.token(t, audCorp, "clickhouse", audResource), ""},
		{"GitHub (no aud)", "gh", "octocat", "gho_" + strings.Repeat("a", 36), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			marker := fmt.Sprintf("case-%02d", i)
			if tc.refusal == "" {
				admitted = append(admitted, marker)
			}
			insert := fmt.Sprintf("INSERT INTO default.reached VALUES ('%s')", marker)
			status, body := s.do(t, "POST", "/", insert, func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tc.token) })
			rec := s.lastRecord(t)
			if tc.refusal == "" {
				// The login, then the query, are in the audit trail.
				if status != http.StatusOK || rec["type"] != "Query" || rec["outcome"] != "ok" || rec["processor"] != tc.processor || rec["user"] != tc.user {
					t.Errorf("gateway: %d %s; audit trail %v", status, body, rec)
				}
			} else {
				if status != http.StatusUnauthorized || !strings.HasPrefix(body, "Code: 516. DB::Exception: clickgate: token: "+tc.processor+": ") || !strings.Contains(body, tc.refusal) {
					t.Errorf("gateway: %d %q; want 401 naming %s and %q", status, body, tc.processor, tc.refusal)
				}
				if sig := tc.token[strings.LastIndex(tc.token, ".")+1:]; strings.Contains(body, sig) {
					t.Errorf("gateway: the refusal echoes the token: %s", body)
				}
				if rec["type"] != "LoginFailure" || rec["interface"] != "gateway" || rec["processor"] != tc.processor ||
					!strings.Contains(fmt.Sprint(rec["failure_reason"]), tc.refusal) {
					t.Errorf("gateway: session log %v", rec)
				}
			}

			status, body = s.do(t, "GET", "/clickhouse/auth?user="+tc.user, "", func(r *http.Request) { r.SetBasicAuth(tc.user, tc.token) })
			rec = s.lastRecord(t)
			if want := map[bool]int{true: http.StatusOK, false: http.StatusUnauthorized}[tc.refusal == ""]; status != want ||
				(tc.refusal != "" && (!strings.Contains(body, tc.refusal) || rec["processor"] != tc.processor || rec["interface"] != "auth_endpoint")) {
				t.Errorf("/clickhouse/auth: %d %q, want %d; session log %v", status, body, want, rec)
			}
		})
	}

	// Only the admitted requests reached ClickHouse.
	reached := strings.Fields(s.ch.Query(t, chtest.AdminUser, chtest.AdminPassword, "SELECT name FROM default.reached ORDER BY name"))
	if !slices.Equal(reached, admitted) {
		t.Errorf("ClickHouse saw the INSERTs of %v, want those of %v", reached, admitted)
	}
	// Every refusal was for the audience.
	_, metrics := s.do(t, "GET", "/metrics", "", func(*http.Request) {})
	for _, want := range []string{
		`clickgate_auth_attempts_total{interface="gateway",processor="corp",result="wrong_audience"} 4`,
		`clickgate_auth_attempts_total{interface="gateway",processor="mcponly",result="wrong_audience"} 3`,
		`clickgate_auth_attempts_total{interface="auth_endpoint",processor="corp",result="wrong_audience"} 4`,
		`clickgate_auth_attempts_total{interface="auth_endpoint",processor="mcponly",result="wrong_audience"} 3`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// At /mcp the MCP audiences admit a token whatever else its aud holds, and
// a token for ClickHouse only is refused.
func TestAudiencesForMCP(t *testing.T) {
	s := newAudienceStack(t)
	initialize := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`
	for _, tc := range []struct {
		name   string
		token  string
		status int
	}{
		{"clickhouse only", s.token(t, audCorp, "clickhouse"), http.StatusUnauthorized},
		{"GitHub (no aud)", "gho_" + strings.Repeat("b", 36), http.StatusUnauthorized},
		{"MCP resource and Keycloak's account", s.token(t, audCorp, audResource, "account"), http.StatusOK},
		{"mcp.audiences entry and another", s.token(t, audCorp, audAltMCP, "other"), http.StatusOK},
		{"processor for MCP only", s.token(t, audMCPOnly, audResource), http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := s.do(t, "POST", "/mcp", initialize, func(r *http.Request) {
				r.Header.Set("Authorization", "Bearer "+tc.token)
				r.Header.Set("Content-Type", "application/json")
				r.Header.Set("Accept", "application/json, text/event-stream")
			})
			if status != tc.status {
				t.Fatalf("got %d %s, want %d", status, body, tc.status)
			}
		})
	}
}
