package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/clickgate/clickgate/internal/testkit"
)

// TestTwoProcessesShareTheKey runs two 'clickgate serve' replicas as behind
// a load balancer: one public_url (the issuer), the same seal_key, signing
// key file and state file, different listen addresses. The test's client
// sends each step of one sign-in to one replica or the other, so that what
// one replica sealed (consent request, upstream state, code, refresh token)
// the other opens, and what one recorded in the shared store (used code,
// refresh generation, revocation) the other honours. The development IdP
// keeps its sign-ins in memory, and both replicas reach it through
// public_url (replica A), so its steps all go to A.
func TestTwoProcessesShareTheKey(t *testing.T) {
	dir := t.TempDir()
	addrA, addrB := testkit.FreeAddr(t), testkit.FreeAddr(t)
	base := "http://" + addrA
	key := sealKey(t)
	config := func(listen string) string {
		// ClickHouse is not needed: nothing here runs a query.
		return brokerYAML(listen, base, dir, "http://127.0.0.1:9", "1m", "  seal_key: "+key+"\n")
	}
	// A first: it creates the key files B then reads.
	a := startClickgate(t, "replica A", addrA, dir, config(addrA))
	b := startClickgate(t, "replica B", addrB, dir, config(addrB))

	// One browser (one cookie jar) whose requests for public_url reach the
	// replica of the step.
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	on := func(p *process) *agent {
		dialer := &net.Dialer{Timeout: 5 * time.Second}
		return &agent{t: t, base: base, p: p, Client: &http.Client{
			Jar: jar, Timeout: 10 * time.Second,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			Transport: &http.Transport{
				Proxy:             nil,
				DisableKeepAlives: true, // every request dials its step's replica
				DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
					return dialer.DialContext(ctx, network, p.addr)
				},
			},
		}}
	}
	A, B := on(a), on(b)

	const redirect = "http://127.0.0.1:49152/callback" // the MCP client's; never contacted
	verifier := strings.Repeat("replica-verifier-", 4)
	sum := sha256.Sum256([]byte(verifier))
	state := "state-" + sealKey(t)[:16]
	var (
		clientID, consentRequest, csrf, upstream, authRequestID, callback, code string
		first, second                                                           tokenAnswer
	)
	tokenForm := func(grant url.Values) url.Values {
		grant.Set("client_id", clientID)
		grant.Set("resource", base+"/mcp")
		return grant
	}

	for _, step := range []struct {
		who  *agent
		what string
		do   func(*agent)
	}{
		{B, "dynamic client registration", func(x *agent) {
			status, body := x.postJSON("/oauth/register", map[string]any{
				"client_name": "Replica Test Client", "redirect_uris": []string{redirect}, "token_endpoint_auth_method": "none",
			})
			var reg struct {
				ClientID string `json:"client_id"`
			}
			if json.Unmarshal([]byte(body), &reg); status != http.StatusCreated || !strings.HasPrefix(reg.ClientID, "cg1.") {
				t.Fatalf("registration: HTTP %d %s", status, body)
			}
			clientID = reg.ClientID
		}},
		{A, "authorization request: consent page for B's client", func(x *agent) {
			r := x.do("GET", "/oauth/authorize?"+url.Values{
				"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirect}, "state": {state},
				"code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"},
				"resource": {base + "/mcp"},
			}.Encode(), nil)
			if r.status != http.StatusOK || !strings.Contains(r.body, "Allow access to ClickHouse?") || !strings.Contains(r.body, "Replica Test Client") {
				t.Fatalf("consent page: %s", r)
			}
			consentRequest, csrf = testkit.FormField(t, r.body, "request"), testkit.FormField(t, r.body, "csrf")
		}},
		{B, "consent (Allow) of A's page", func(x *agent) {
			r := x.do("POST", "/oauth/authorize", url.Values{"request": {consentRequest}, "csrf": {csrf}, "action": {"allow"}})
			if r.status != http.StatusSeeOther || !strings.HasPrefix(r.location, base+"/idp/authorize?") {
				t.Fatalf("consent: want 303 to the IdP, got %s", r)
			}
			upstream = r.location
		}},
		{A, "development IdP: login page", func(x *agent) {
			r := x.followWithin(x.do("GET", upstream, nil), "/idp/")
			if r.status != http.StatusOK {
				t.Fatalf("IdP login page: %s", r)
			}
			authRequestID = testkit.FormField(t, r.body, "authRequestID")
		}},
		{A, "development IdP: alice signs in", func(x *agent) {
			r := x.followWithin(x.do("POST", "/idp/login", url.Values{"authRequestID": {authRequestID}, "username": {"alice"}, "password": {"alice-pw"}}), "/idp/")
			if r.status/100 != 3 || !strings.HasPrefix(r.location, base+"/oauth/callback?") {
				t.Fatalf("IdP sign-in: want a redirect to the broker's callback, got %s", r)
			}
			callback = r.location
		}},
		{A, "callback of the sign-in B started", func(x *agent) {
			r := x.do("GET", callback, nil)
			u, err := url.Parse(r.location)
			if err != nil || r.status != http.StatusSeeOther || !strings.HasPrefix(r.location, redirect+"?") {
				t.Fatalf("callback: want 303 to %s, got %s", redirect, r)
			}
			q := u.Query()
			if q.Get("state") != state || q.Get("iss") != base || q.Get("code") == "" {
				t.Fatalf("callback: redirect %s (want state %s, iss %s, a code)", r.location, state, base)
			}
			code = q.Get("code")
		}},
		{B, "code from A redeemed", func(x *agent) {
			first = postToken(t, x.Client, base+"/oauth/token", tokenForm(url.Values{
				"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}, "code_verifier": {verifier},
			}))
			if first.status != http.StatusOK || first.AccessToken == "" || first.RefreshToken == "" {
				t.Fatalf("code redemption: %s", first)
			}
		}},
		{A, "B's access token accepted (the signing key is shared)", func(x *agent) {
			x.mcpAccepts(first.AccessToken)
			checkClaims(t, testkit.UnverifiedClaims(t, first.AccessToken), map[string]any{"iss": base, "aud": []any{base + "/mcp"}, "username": "alice@example.com", "client_id": clientID})
		}},
		{A, "refresh of B's refresh token", func(x *agent) {
			second = postToken(t, x.Client, base+"/oauth/token", tokenForm(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first.RefreshToken}}))
			if second.status != http.StatusOK || second.RefreshToken == "" || second.RefreshToken == first.RefreshToken || second.AccessToken == first.AccessToken {
				t.Fatalf("refresh: %s; want new tokens", second)
			}
		}},
		{B, "A's access token accepted", func(x *agent) { x.mcpAccepts(second.AccessToken) }},
		{B, "the rotated-away refresh token replayed", func(x *agent) {
			r := postToken(t, x.Client, base+"/oauth/token", tokenForm(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {first.RefreshToken}}))
			if r.status != http.StatusBadRequest || r.Error != "invalid_grant" || !strings.Contains(r.ErrorDescription, "used before") {
				t.Fatalf("replay: %s; want 400 invalid_grant (used before)", r)
			}
		}},
		{A, "the newest refresh token, after the replay at B", func(x *agent) {
			r := postToken(t, x.Client, base+"/oauth/token", tokenForm(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {second.RefreshToken}}))
			if r.status != http.StatusBadRequest || r.Error != "invalid_grant" || !strings.Contains(r.ErrorDescription, "revoked") {
				t.Fatalf("refresh after the replay: %s; want 400 invalid_grant (revoked)", r)
			}
		}},
		{B, "the code, redeemed again", func(x *agent) {
			r := postToken(t, x.Client, base+"/oauth/token", tokenForm(url.Values{
				"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}, "code_verifier": {verifier},
			}))
			if r.status != http.StatusBadRequest || r.Error != "invalid_grant" {
				t.Fatalf("code reuse: %s; want 400 invalid_grant", r)
			}
		}},
	} {
		t.Logf("%s: %s", step.who.p.name, step.what)
		step.do(step.who)
	}

	// Both publish the same keys.
	if ja, jb := A.get("/oauth/jwks"), B.get("/oauth/jwks"); ja != jb || !strings.Contains(ja, `"ES256"`) {
		t.Errorf("the replicas publish different JWKS:\nA: %s\nB: %s", ja, jb)
	}
	// The replicas' own logs show who served what.
	for _, l := range []struct {
		p        *process
		line     string
		expected bool
	}{
		{a, `msg="oauth: signed in" user=alice@example.com`, true},
		{b, `msg="oauth: signed in"`, false},
		{b, `msg="oauth: client registered"`, true},
		{b, `refresh token replayed`, true},
		{a, `refresh token replayed`, false},
	} {
		if strings.Contains(l.p.logs.String(), l.line) != l.expected {
			t.Errorf("%s's log has %q: %v, want %v", l.p.name, l.line, !l.expected, l.expected)
		}
	}
}

// agent is the test's browser and MCP client, sending every request for
// public_url to one replica.
type agent struct {
	*http.Client
	t    *testing.T
	base string
	p    *process
}

type response struct {
	status   int
	location string // absolute
	body     string
}

func (r response) String() string {
	return fmt.Sprintf("HTTP %d Location: %s\n%s", r.status, r.location, r.body)
}

// do sends a request (a path or an absolute URL) with an optional form.
func (x *agent) do(method, target string, form url.Values) response {
	x.t.Helper()
	if strings.HasPrefix(target, "/") {
		target = x.base + target
	}
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		x.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := x.Do(req)
	if err != nil {
		x.t.Fatalf("%s %s at %s: %v", method, target, x.p.name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, body: string(b)}
	if loc := resp.Header.Get("Location"); loc != "" {
		u, err := req.URL.Parse(loc)
		if err != nil {
			x.t.Fatal(err)
		}
		r.location = u.String()
	}
	return r
}

// followWithin follows redirects while they stay under base+prefix.
func (x *agent) followWithin(r response, prefix string) response {
	x.t.Helper()
	for i := 0; i < 10 && strings.HasPrefix(r.location, x.base+prefix); i++ {
		r = x.do("GET", r.location, nil)
	}
	return r
}

func (x *agent) postJSON(path string, v any) (int, string) {
	x.t.Helper()
	b, _ := json.Marshal(v)
	resp, err := x.Post(x.base+path, "application/json", bytes.NewReader(b))
	if err != nil {
		x.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func (x *agent) get(path string) string {
	x.t.Helper()
	r := x.do("GET", path, nil)
	if r.status != http.StatusOK {
		x.t.Fatalf("GET %s at %s: %s", path, x.p.name, r)
	}
	return r.body
}

// mcpAccepts checks that the replica's /mcp takes token.
func (x *agent) mcpAccepts(token string) {
	x.t.Helper()
	if status, challenge := mcpStatus(x.t, x.Client, x.base+"/mcp", token); status != http.StatusOK {
		x.t.Fatalf("%s's /mcp refuses the token: HTTP %d %s", x.p.name, status, challenge)
	}
}
