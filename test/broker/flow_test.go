package broker

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/clickgate/clickgate/internal/testkit"
)

func TestSignInWithConfiguredClient(t *testing.T) {
	s := newStack(t, stackOptions{})
	c := newClient("test-client", "http://127.0.0.1:53682/callback") // loopback: any port
	tok := s.tokens(t, c)
	if tok["token_type"] != "Bearer" || tok["refresh_token"] == "" || tok["expires_in"].(float64) != 60 {
		t.Fatalf("token response %v", tok)
	}
	status, body := s.get(t, "/whoami", tok["access_token"].(string))
	if status != http.StatusOK {
		t.Fatalf("whoami: %d %s", status, body)
	}
	var who struct {
		Principal struct {
			User  string   `json:"user"`
			Roles []string `json:"roles"`
		} `json:"principal"`
	}
	if err := json.Unmarshal([]byte(body), &who); err != nil {
		t.Fatal(err)
	}
	if who.Principal.User != "alice@example.com" || !slices.Equal(who.Principal.Roles, []string{"analysts", "mcp_reader"}) {
		t.Fatalf("whoami: %s", body)
	}
}

// In bearer mode ClickHouse verifies the forwarded token itself (trusting
// /oauth/jwks), so broker tokens also name ClickHouse's audience and the
// gateway passes them on.
func TestBearerModeTokensNameClickHouse(t *testing.T) {
	s := newStack(t, stackOptions{clickhouseMode: "  mode: bearer\n  audience: clickhouse-prod"})
	access := s.tokens(t, newClient("test-client", "http://127.0.0.1/callback"))["access_token"].(string)
	claims := testkit.UnverifiedClaims(t, access)
	if aud := fmt.Sprint(claims["aud"]); aud != "["+s.base+"/mcp clickhouse-prod]" {
		t.Fatalf("aud %s", aud)
	}
	// Nothing listens at the ClickHouse URL: ClickHouse's network error
	// (502, or 503 once the health check found no node) shows the token
	// was let through.
	if status, body := s.get(t, "/?query=SELECT+1", access); (status != http.StatusBadGateway && status != http.StatusServiceUnavailable) || !strings.Contains(body, "Code: 210") {
		t.Fatalf("gateway: %d %s", status, body)
	}
	// /clickhouse/auth takes it too, as ClickHouse's http authentication presents it.
	req, _ := http.NewRequest("GET", s.base+"/clickhouse/auth", nil)
	req.SetBasicAuth("alice@example.com", access)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/clickhouse/auth: %d", resp.StatusCode)
	}
	// At /mcp as well: it names the MCP resource.
	if status, body := s.mcpInitialize(t, access); status != http.StatusOK {
		t.Fatalf("/mcp: %d %s", status, body)
	}
}

// A client with one registered redirect may leave redirect_uri out of
// both requests; one that named it must name it again.
func TestRedirectURIOmitted(t *testing.T) {
	s := newStack(t, stackOptions{})
	c := newClient("secret-client", "https://app.example/cb")
	c.secret = "s3cret-s3cret"
	b := newBrowser(t)
	r, _ := s.upstreamSignIn(t, b, s.consentForm(t, b, s.authorizeURL(c, map[string]string{"redirect_uri": ""})), "alice", "alice-pw")
	q := s.clientRedirect(t, c, r)
	status, body := s.tokenRequest(t, url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")},
		"client_id": {c.id}, "client_secret": {c.secret}, "code_verifier": {c.verifier}})
	if status != http.StatusOK {
		t.Fatalf("token without redirect_uri: %d %v", status, body)
	}
	q = s.signIn(t, newBrowser(t), c, "alice", "alice-pw") // names redirect_uri
	status, body = s.tokenRequest(t, url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")},
		"client_id": {c.id}, "client_secret": {c.secret}, "code_verifier": {c.verifier}})
	if status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Fatalf("token without the redirect_uri the request named: %d %v", status, body)
	}
}

func TestPromptNoneAndScopes(t *testing.T) {
	s := newStack(t, stackOptions{extra: "mcp:\n  scopes: {read: clickhouse:read}\n"})
	c := newClient("test-client", "http://127.0.0.1/callback")
	q := s.clientRedirect(t, c, newBrowser(t).do(t, "GET", s.authorizeURL(c, map[string]string{"prompt": "none"}), nil))
	if q.Get("error") != "consent_required" {
		t.Fatalf("prompt=none: %v", q)
	}
	// Scopes clickgate does not offer are not granted; offered ones are.
	b := newBrowser(t)
	page := b.do(t, "GET", s.authorizeURL(c, map[string]string{"scope": "openid claudeai clickhouse:read"}), nil)
	if !strings.Contains(page.body, "<code>clickhouse:read</code>") || strings.Contains(page.body, "claudeai") {
		t.Fatalf("consent page scopes:\n%s", page.body)
	}
	status, tok := s.redeem(t, c, s.signIn(t, newBrowser(t), c, "alice", "alice-pw").Get("code"))
	if status != http.StatusOK || tok["scope"] != "clickhouse:read" || testkit.UnverifiedClaims(t, tok["access_token"].(string))["scope"] != "clickhouse:read" {
		t.Fatalf("token: %d %v", status, tok)
	}
}

func TestMetrics(t *testing.T) {
	s := newStack(t, stackOptions{})
	c := newClient("test-client", "http://127.0.0.1/callback")
	q := s.signIn(t, newBrowser(t), c, "alice", "alice-pw")
	s.redeem(t, c, q.Get("code"))
	s.redeem(t, c, q.Get("code")) // replay
	resp, err := http.Get(s.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`clickgate_oauth_sign_ins_total{result="success"} 1`,
		`clickgate_oauth_token_requests_total{grant_type="authorization_code",result="success"} 1`,
		`clickgate_oauth_token_requests_total{grant_type="authorization_code",result="invalid_grant"} 1`,
		`clickgate_auth_attempts_total{interface="oauth_broker",processor="dev",result="success"} 1`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
