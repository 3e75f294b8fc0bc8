package broker

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/clickgate/clickgate/internal/testkit"
)

// Each attack the broker must stop is its own test.

func TestPKCEVerifierMissingOrWrong(t *testing.T) {
	s := newStack(t, stackOptions{})
	for _, tc := range []struct{ name, verifier string }{
		{"missing", ""},
		{"wrong", strings.Repeat("w", 50)},
		{"too short", "abc"},
		{"the challenge itself", ""}, // filled below
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient("test-client", "http://127.0.0.1/callback")
			q := s.signIn(t, newBrowser(t), c, "alice", "alice-pw")
			v := tc.verifier
			if tc.name == "the challenge itself" {
				v = challenge(c.verifier)
			}
			status, body := s.tokenRequest(t, url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")},
				"client_id": {c.id}, "redirect_uri": {c.redirect}, "code_verifier": {v}})
			if status != http.StatusBadRequest || body["error"] != "invalid_grant" {
				t.Fatalf("got %d %v, want invalid_grant", status, body)
			}
			// The right verifier still works: a failed attempt does not burn the code.
			if status, body := s.redeem(t, c, q.Get("code")); status != http.StatusOK {
				t.Fatalf("right verifier after a wrong one: %d %v", status, body)
			}
		})
	}
}

func TestPKCEPlainOrMissingRefused(t *testing.T) {
	s := newStack(t, stackOptions{})
	c := newClient("test-client", "http://127.0.0.1/callback")
	for name, set := range map[string]map[string]string{
		"plain":          {"code_challenge_method": "plain", "code_challenge": c.verifier},
		"no method":      {"code_challenge_method": ""},
		"no challenge":   {"code_challenge": "", "code_challenge_method": ""},
		"short":          {"code_challenge": "abc"},
		"unknown method": {"code_challenge_method": "S512"},
	} {
		t.Run(name, func(t *testing.T) {
			r := newBrowser(t).do(t, "GET", s.authorizeURL(c, set), nil)
			q := s.clientRedirect(t, c, r)
			if q.Get("error") != "invalid_request" || !strings.Contains(q.Get("error_description"), "S256") || q.Get("code") != "" {
				t.Fatalf("redirect %v", q)
			}
		})
	}
}

func TestCodeReplayRevokesItsTokens(t *testing.T) {
	s := newStack(t, stackOptions{})
	c := newClient("test-client", "http://127.0.0.1/callback")
	q := s.signIn(t, newBrowser(t), c, "alice", "alice-pw")
	status, first := s.redeem(t, c, q.Get("code"))
	if status != http.StatusOK {
		t.Fatalf("first redemption: %d %v", status, first)
	}
	status, second := s.redeem(t, c, q.Get("code"))
	if status != http.StatusBadRequest || second["error"] != "invalid_grant" || !strings.Contains(second["error_description"].(string), "used before") {
		t.Fatalf("replay: %d %v", status, second)
	}
	if status, body := s.refresh(t, c, first["refresh_token"].(string)); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Fatalf("refresh token of a replayed code still works: %d %v", status, body)
	}
}

func TestCodeExpires(t *testing.T) {
	s := newStack(t, stackOptions{})
	c := newClient("test-client", "http://127.0.0.1/callback")
	q := s.signIn(t, newBrowser(t), c, "alice", "alice-pw")
	s.clock.Advance(61 * time.Second)
	status, body := s.redeem(t, c, q.Get("code"))
	if status != http.StatusBadRequest || body["error"] != "invalid_grant" || !strings.Contains(body["error_description"].(string), "expired") {
		t.Fatalf("got %d %v, want invalid_grant: expired", status, body)
	}
}

func TestCodeBoundToClientAndRedirect(t *testing.T) {
	s := newStack(t, stackOptions{})
	c := newClient("test-client", "https://app.example/cb")
	q := s.signIn(t, newBrowser(t), c, "alice", "alice-pw")
	code := q.Get("code")
	for name, form := range map[string]url.Values{
		"other redirect_uri": {"redirect_uri": {"http://127.0.0.1/callback"}, "client_id": {c.id}},
		"no redirect_uri":    {"client_id": {c.id}},
		"other client":       {"redirect_uri": {c.redirect}, "client_id": {"secret-client"}, "client_secret": {"s3cret-s3cret"}},
	} {
		t.Run(name, func(t *testing.T) {
			form.Set("grant_type", "authorization_code")
			form.Set("code", code)
			form.Set("code_verifier", c.verifier)
			status, body := s.tokenRequest(t, form)
			if status != http.StatusBadRequest || body["error"] != "invalid_grant" {
				t.Fatalf("got %d %v, want invalid_grant", status, body)
			}
		})
	}
	t.Run("tampered code", func(t *testing.T) {
		b := []byte(code)
		b[len(b)/2] ^= 1
		status, body := s.redeem(t, c, string(b))
		if status != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Fatalf("got %d %v", status, body)
		}
	})
}

func TestRedirectURIMismatchAndOpenRedirect(t *testing.T) {
	s := newStack(t, stackOptions{})
	c := newClient("test-client", "http://127.0.0.1/callback")
	for _, evil := range []string{
		"https://evil.example/cb",
		"https://app.example/cb/../../evil",
		"https://app.example/cb?next=https://evil.example",
		"https://app.example/cb#frag",
		"https://app.example.evil.example/cb",
		"https://evil.example@app.example/cb",
		"https://app.example@evil.example/cb",
		"http://app.example/cb",
		"http://127.0.0.1.evil.example/callback",
		"http://127.0.0.1/callback/../x",
		"http://localhost/callback",
		"//evil.example/cb",
		"javascript:alert(1)",
		"",
	} {
		t.Run(evil, func(t *testing.T) {
			set := map[string]string{"redirect_uri": evil}
			if evil == "" {
				set["redirect_uri"] = "" // two are registered: none may be assumed
			}
			r := newBrowser(t).do(t, "GET", s.authorizeURL(c, set), nil)
			if r.status != http.StatusBadRequest || r.location != "" || !strings.Contains(r.body, "Invalid redirect") {
				t.Fatalf("got %d location %q, want the error page and no redirect", r.status, r.location)
			}
		})
	}
	t.Run("unknown client", func(t *testing.T) {
		r := newBrowser(t).do(t, "GET", s.authorizeURL(newClient("nobody", "https://evil.example/cb"), nil), nil)
		if r.status != http.StatusBadRequest || r.location != "" || !strings.Contains(r.body, "Unknown application") {
			t.Fatalf("got %d %q", r.status, r.location)
		}
	})
}

func TestResourceNamingAnotherServer(t *testing.T) {
	s := newStack(t, stackOptions{})
	c := newClient("test-client", "http://127.0.0.1/callback")
	for _, res := range []string{"https://other.example/mcp", s.base + "/mcp2", s.base, s.base + "/clickhouse"} {
		r := newBrowser(t).do(t, "GET", s.authorizeURL(c, map[string]string{"resource": res}), nil)
		if q := s.clientRedirect(t, c, r); q.Get("error") != "invalid_target" || q.Get("code") != "" {
			t.Errorf("resource %s: redirect %v", res, q)
		}
	}
	// At the token endpoint too.
	q := s.signIn(t, newBrowser(t), c, "alice", "alice-pw")
	status, body := s.tokenRequest(t, url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")}, "client_id": {c.id},
		"redirect_uri": {c.redirect}, "code_verifier": {c.verifier}, "resource": {"https://other.example/mcp"}})
	if status != http.StatusBadRequest || body["error"] != "invalid_target" {
		t.Fatalf("token with another resource: %d %v", status, body)
	}
}

// A client metadata document at a private address is refused, and the
// refusal is no DNS oracle: neither the page nor the token endpoint says
// how the name resolved or which resolver answered; the log does, under
// the request id they name.
func TestClientMetadataDocumentAtPrivateAddresses(t *testing.T) {
	s := newStack(t, stackOptions{})
	for _, tc := range []struct {
		id      string
		address string // the address the refusal is about
		inLog   string // in the log line of the refusal
	}{
		{"https://127.0.0.1/client.json", "127.0.0.1", "not public"},
		{"https://169.254.169.254/latest/meta-data/client.json", "169.254.169.254", "not public"},
		{"https://[::1]/client.json", "::1", "not public"},
		{"https://10.0.0.1/client.json", "10.0.0.1", "not public"},
		{"https://localhost/client.json", "127.0.0.1", "localhost resolves to"},
		// The resolver's own error names the resolver's address.
		{"https://clickgate-test-no-such-host.invalid/client.json", "", "lookup clickgate-test-no-such-host.invalid"},
	} {
		t.Run(tc.id, func(t *testing.T) {
			u, _ := url.Parse(tc.id)
			forbidden := []string{u.Hostname(), "resolve", "not public", "lookup", "no such host", ":53", "dial", "nameserver"}
			if tc.address != "" {
				forbidden = append(forbidden, tc.address)
			}
			generic := func(where, text string) {
				t.Helper()
				for _, f := range forbidden {
					if strings.Contains(text, f) {
						t.Errorf("%s reveals %q:\n%s", where, f, text)
					}
				}
				m := regexp.MustCompile(`request id ([A-Za-z0-9_-]{16})`).FindStringSubmatch(text)
				if m == nil {
					t.Fatalf("%s names no request id:\n%s", where, text)
				}
				for _, line := range strings.Split(s.logs.String(), "\n") {
					if strings.Contains(line, "request_id="+m[1]) {
						if !strings.Contains(line, tc.inLog) || (tc.address != "" && !strings.Contains(line, tc.address)) {
							t.Errorf("the log line of request %s lacks %q or %q:\n%s", m[1], tc.inLog, tc.address, line)
						}
						return
					}
				}
				t.Errorf("no log line has request_id=%s", m[1])
			}

			c := newClient(tc.id, "http://127.0.0.1/callback")
			r := newBrowser(t).do(t, "GET", s.authorizeURL(c, nil), nil)
			if r.status != http.StatusBadRequest || r.location != "" || !strings.Contains(r.body, "could not be verified") {
				t.Fatalf("got %d %q %s", r.status, r.location, r.body)
			}
			// The page is about the address, not the form of the URL, so
			// the authorize URL itself (which names the host) is not on it.
			generic("the authorize page", r.body)

			status, body := s.tokenRequest(t, url.Values{"grant_type": {"authorization_code"}, "code": {"x"}, "client_id": {tc.id},
				"redirect_uri": {c.redirect}, "code_verifier": {c.verifier}})
			desc, _ := body["error_description"].(string)
			if status != http.StatusUnauthorized || body["error"] != "invalid_client" {
				t.Fatalf("token endpoint: %d %v", status, body)
			}
			generic("the token endpoint's error_description", desc)
		})
	}
}

func TestRefreshRotationAndReplay(t *testing.T) {
	s := newStack(t, stackOptions{})
	c := newClient("test-client", "http://127.0.0.1/callback")
	tok := s.tokens(t, c)
	r0 := tok["refresh_token"].(string)
	status, tok1 := s.refresh(t, c, r0)
	if status != http.StatusOK || tok1["refresh_token"] == r0 || tok1["access_token"] == tok["access_token"] {
		t.Fatalf("refresh: %d %v", status, tok1)
	}
	r1 := tok1["refresh_token"].(string)
	// Replaying the old one is refused and revokes the whole family...
	status, body := s.refresh(t, c, r0)
	if status != http.StatusBadRequest || body["error"] != "invalid_grant" || !strings.Contains(body["error_description"].(string), "revoked") {
		t.Fatalf("replay: %d %v", status, body)
	}
	// ...so the newest refresh token no longer works either.
	if status, body := s.refresh(t, c, r1); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Fatalf("newest refresh token after a replay: %d %v", status, body)
	}
	// Another sign-in is a family of its own and unaffected.
	if status, body := s.refresh(t, c, s.tokens(t, c)["refresh_token"].(string)); status != http.StatusOK {
		t.Fatalf("another sign-in: %d %v", status, body)
	}
	t.Run("other client", func(t *testing.T) {
		rt := s.tokens(t, c)["refresh_token"].(string)
		status, body := s.tokenRequest(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {"secret-client"}, "client_secret": {"s3cret-s3cret"}})
		if status != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Fatalf("got %d %v", status, body)
		}
	})
	t.Run("expired sign-in", func(t *testing.T) {
		rt := s.tokens(t, c)["refresh_token"].(string)
		s.clock.Advance(7*24*time.Hour + time.Minute)
		defer s.clock.Advance(-(7*24*time.Hour + time.Minute))
		if status, body := s.refresh(t, c, rt); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
			t.Fatalf("got %d %v", status, body)
		}
	})
}

func TestBrokerTokenRefusedOutsideMCP(t *testing.T) {
	s := newStack(t, stackOptions{})
	access := s.tokens(t, newClient("test-client", "http://127.0.0.1/callback"))["access_token"].(string)
	status, body := s.get(t, "/?query=SELECT+1", access)
	if status != http.StatusUnauthorized || !strings.Contains(body, "MCP endpoint only") {
		t.Errorf("gateway: got %d %s, want 401 naming the MCP-only audience", status, body)
	}
	// As ClickHouse's http authentication would present it.
	req, _ := http.NewRequest("GET", s.base+"/clickhouse/auth", nil)
	req.SetBasicAuth("alice@example.com", access)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("/clickhouse/auth: got %d, want 401", resp.StatusCode)
	}
	// Both refusals were for the audience, not for anything else.
	status, metrics := s.get(t, "/metrics", "")
	for _, iface := range []string{"gateway", "auth_endpoint"} {
		if want := `clickgate_auth_attempts_total{interface="` + iface + `",processor="clickgate-broker",result="wrong_audience"} 1`; status != http.StatusOK || !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// At /mcp the token is accepted (initialize needs no ClickHouse).
	if status, body := s.mcpInitialize(t, access); status != http.StatusOK {
		t.Fatalf("/mcp initialize with the broker token: %d %s", status, body)
	}
}

func TestConsentWithoutCSRFValue(t *testing.T) {
	s := newStack(t, stackOptions{})
	c := newClient("test-client", "http://127.0.0.1/callback")
	b := newBrowser(t)
	form := s.consentForm(t, b, s.authorizeURL(c, nil))
	for name, mutate := range map[string]func(url.Values) (url.Values, *browser){
		"no csrf field":   func(f url.Values) (url.Values, *browser) { f.Del("csrf"); return f, b },
		"wrong csrf":      func(f url.Values) (url.Values, *browser) { f.Set("csrf", strings.Repeat("A", 43)); return f, b },
		"another browser": func(f url.Values) (url.Values, *browser) { return f, newBrowser(t) }, // the attacker's form posted from the victim's browser: no cookie
	} {
		t.Run(name, func(t *testing.T) {
			f := url.Values{}
			for k, v := range form {
				f[k] = append([]string(nil), v...)
			}
			f, from := mutate(f)
			r := from.do(t, "POST", s.base+"/oauth/authorize", f)
			if r.status != http.StatusForbidden || r.location != "" || !strings.Contains(r.body, "CSRF") {
				t.Fatalf("got %d %q %s", r.status, r.location, r.body)
			}
		})
	}
	t.Run("tampered request", func(t *testing.T) {
		f := url.Values{"request": {form.Get("request") + "x"}, "csrf": form["csrf"], "action": {"allow"}}
		if r := b.do(t, "POST", s.base+"/oauth/authorize", f); r.status != http.StatusBadRequest || r.location != "" {
			t.Fatalf("got %d %q", r.status, r.location)
		}
	})
	// The untouched form still works.
	r, _ := s.upstreamSignIn(t, b, form, "alice", "alice-pw")
	if q := s.clientRedirect(t, c, r); q.Get("code") == "" {
		t.Fatalf("the real form: %v", q)
	}
}

func TestStateReusedAtCallback(t *testing.T) {
	s := newStack(t, stackOptions{})
	c := newClient("test-client", "http://127.0.0.1/callback")
	b := newBrowser(t)
	form := s.consentForm(t, b, s.authorizeURL(c, nil))
	oauthURL, _ := url.Parse(s.base + "/oauth/")
	nonceCookies := b.Jar.Cookies(oauthURL)
	r, callback := s.upstreamSignIn(t, b, form, "alice", "alice-pw")
	s.clientRedirect(t, c, r)
	if callback == "" || len(nonceCookies) == 0 {
		t.Fatalf("no callback (%q) or no nonce cookie (%v) seen", callback, nonceCookies)
	}
	// The browser's cookie is gone once the sign-in finished...
	if again := b.do(t, "GET", callback, nil); again.status != http.StatusForbidden || again.location != "" {
		t.Fatalf("replayed callback: %d %q", again.status, again.location)
	}
	// ...and with the cookie put back, the state itself is refused as used.
	b.Jar.SetCookies(oauthURL, nonceCookies)
	again := b.do(t, "GET", callback, nil)
	if again.status != http.StatusBadRequest || again.location != "" || !strings.Contains(again.body, "used before") {
		t.Fatalf("replayed callback with the cookie: %d %q", again.status, again.location)
	}
	t.Run("forged state", func(t *testing.T) {
		u, _ := url.Parse(callback)
		q := u.Query()
		q.Set("state", "forged")
		u.RawQuery = q.Encode()
		if r := b.do(t, "GET", u.String(), nil); r.status != http.StatusBadRequest || r.location != "" {
			t.Fatalf("forged state: %d %q", r.status, r.location)
		}
	})
}

func TestCallbackFromAnotherBrowser(t *testing.T) {
	s := newStack(t, stackOptions{})
	c := newClient("test-client", "http://127.0.0.1/callback")
	b := newBrowser(t)
	form := s.consentForm(t, b, s.authorizeURL(c, nil))
	r := s.follow(t, b, b.do(t, "POST", s.base+"/oauth/authorize", form))
	r = b.do(t, "POST", s.base+"/idp/login", url.Values{"authRequestID": {testkit.FormField(t, r.body, "authRequestID")}, "username": {"alice"}, "password": {"alice-pw"}})
	for i := 0; i < 10 && !strings.HasPrefix(r.location, s.base+"/oauth/callback"); i++ {
		r = b.do(t, "GET", r.location, nil)
	}
	// The attacker's callback URL opened in the victim's browser (no cookie).
	got := newBrowser(t).do(t, "GET", r.location, nil)
	if got.status != http.StatusForbidden || got.location != "" {
		t.Fatalf("got %d %q", got.status, got.location)
	}
}

func TestPolicyDeniedPersonGetsNoCode(t *testing.T) {
	s := newStack(t, stackOptions{})
	c := newClient("test-client", "http://127.0.0.1/callback")
	b := newBrowser(t)
	r, _ := s.upstreamSignIn(t, b, s.consentForm(t, b, s.authorizeURL(c, nil)), "mallory", "mallory-pw")
	q := s.clientRedirect(t, c, r)
	if q.Get("error") != "access_denied" || q.Get("code") != "" || !strings.Contains(q.Get("error_description"), "allowed_domains") {
		t.Fatalf("mallory (evil.example) got %v", q)
	}
	// Recorded as denied by policy, with the processor that proved who she is.
	want := `clickgate_auth_attempts_total{interface="oauth_broker",processor="dev",result="denied"} 1`
	if _, metrics := s.get(t, "/metrics", ""); !strings.Contains(metrics, want) {
		t.Errorf("metrics lack %s", want)
	}
}

func TestDenyAtConsent(t *testing.T) {
	s := newStack(t, stackOptions{})
	c := newClient("test-client", "http://127.0.0.1/callback")
	b := newBrowser(t)
	form := s.consentForm(t, b, s.authorizeURL(c, nil))
	form.Set("action", "deny")
	q := s.clientRedirect(t, c, b.do(t, "POST", s.base+"/oauth/authorize", form))
	if q.Get("error") != "access_denied" || q.Get("code") != "" {
		t.Fatalf("deny: %v", q)
	}
}

func TestConfidentialClientMustAuthenticate(t *testing.T) {
	s := newStack(t, stackOptions{})
	c := newClient("secret-client", "https://app.example/cb")
	q := s.signIn(t, newBrowser(t), c, "alice", "alice-pw")
	form := url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")}, "client_id": {c.id},
		"redirect_uri": {c.redirect}, "code_verifier": {c.verifier}}
	for _, secret := range []string{"", "wrong"} {
		f := url.Values{}
		for k, v := range form {
			f[k] = v
		}
		if secret != "" {
			f.Set("client_secret", secret)
		}
		if status, body := s.tokenRequest(t, f); status != http.StatusUnauthorized || body["error"] != "invalid_client" {
			t.Fatalf("secret %q: %d %v", secret, status, body)
		}
	}
	req, _ := http.NewRequest("POST", s.base+"/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(c.id), url.QueryEscape("s3cret-s3cret"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("Basic with the right secret: %d", resp.StatusCode)
	}
}

func TestDuplicatedParametersRefused(t *testing.T) {
	s := newStack(t, stackOptions{})
	c := newClient("test-client", "http://127.0.0.1/callback")
	u := s.authorizeURL(c, nil) + "&redirect_uri=" + url.QueryEscape("https://evil.example/cb")
	if r := newBrowser(t).do(t, "GET", u, nil); r.status != http.StatusBadRequest || r.location != "" {
		t.Fatalf("duplicated redirect_uri: %d %q", r.status, r.location)
	}
	status, body := s.tokenRequest(t, url.Values{"grant_type": {"authorization_code", "refresh_token"}, "client_id": {c.id}})
	if status != http.StatusBadRequest || body["error"] != "invalid_request" {
		t.Fatalf("duplicated grant_type: %d %v", status, body)
	}
}

// Tokens that look like the broker's but are not accepted at /mcp.
func TestForgedBrokerTokens(t *testing.T) {
	s := newStack(t, stackOptions{})
	real := s.tokens(t, newClient("test-client", "http://127.0.0.1/callback"))["access_token"].(string)
	claims := testkit.UnverifiedClaims(t, real)
	kid := headerKid(t, real)
	with := func(k string, v any) map[string]any {
		c := map[string]any{}
		for key, val := range claims {
			c[key] = val
		}
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	foreign := testkit.NewKey(t, jose.ES256, kid) // same kid, another key
	parts := strings.Split(real, ".")
	payload, _ := json.Marshal(with("username", "bob@example.com"))
	noneHeader := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","kid":"` + kid + `"}`))
	for name, tok := range map[string]string{
		"foreign key with the real kid": foreign.Sign(t, claims),
		"alg none":                      noneHeader + "." + parts[1] + ".",
		"payload swapped":               parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload) + "." + parts[2],
		"HS256 with the public key":     hs256WithJWKS(t, s, claims, kid),
	} {
		t.Run(name, func(t *testing.T) {
			if status, body := s.mcpInitialize(t, tok); status != http.StatusUnauthorized {
				t.Fatalf("got %d %s", status, body)
			}
		})
	}
	if status, body := s.mcpInitialize(t, real); status != http.StatusOK {
		t.Fatalf("the real token: %d %s", status, body)
	}
	s.clock.Advance(2 * time.Minute) // access_token_ttl is 1m, leeway 1s
	if status, body := s.mcpInitialize(t, real); status != http.StatusUnauthorized || !strings.Contains(body, "expired") ||
		!strings.HasPrefix(body, `Bearer error="invalid_token"`) || !strings.Contains(body, "resource_metadata=") {
		t.Fatalf("expired: got %d %s, want 401 with the challenge naming the metadata", status, body)
	}
}

// hs256WithJWKS signs claims with HMAC keyed by the broker's public key
// (algorithm confusion).
func hs256WithJWKS(t *testing.T, s *stack, claims map[string]any, kid string) string {
	t.Helper()
	resp, err := http.Get(s.base + "/oauth/jwks")
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: jose.JSONWebKey{Key: pub, KeyID: kid}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// mcpInitialize sends an MCP initialize request with token.
func (s *stack) mcpInitialize(t testing.TB, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", s.base+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate") + " " + string(body)
}
