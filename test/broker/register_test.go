package broker

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// register posts a registration request and decodes the answer.
func (s *stack) register(t *testing.T, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(s.base+"/oauth/register", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("register answered %d with non-JSON: %v", resp.StatusCode, err)
	}
	return resp.StatusCode, out
}

func TestDynamicRegistration(t *testing.T) {
	s := newStack(t, stackOptions{})
	status, reg := s.register(t, `{"client_name":"Claude <b>Desktop</b>","redirect_uris":["http://127.0.0.1/callback"],"token_endpoint_auth_method":"none","grant_types":["authorization_code","refresh_token"]}`)
	if status != http.StatusCreated || reg["client_secret"] != nil || reg["token_endpoint_auth_method"] != "none" {
		t.Fatalf("register: %d %v", status, reg)
	}
	c := newClient(reg["client_id"].(string), "http://127.0.0.1:40123/callback")
	r := newBrowser(t).do(t, "GET", s.authorizeURL(c, nil), nil)
	// The self-asserted name is shown escaped and marked as unverified.
	if !strings.Contains(r.body, "Claude &lt;b&gt;Desktop&lt;/b&gt;") || !strings.Contains(r.body, "not verified") {
		t.Fatalf("consent page:\n%s", r.body)
	}
	tok := s.tokens(t, c)
	if status, body := s.get(t, "/whoami", tok["access_token"].(string)); status != http.StatusOK || !strings.Contains(body, "alice@example.com") {
		t.Fatalf("whoami: %d %s", status, body)
	}
	t.Run("tampered client id", func(t *testing.T) {
		id := []byte(c.id)
		id[len(id)-3] ^= 1
		r := newBrowser(t).do(t, "GET", s.authorizeURL(newClient(string(id), c.redirect), nil), nil)
		if r.status != http.StatusBadRequest || r.location != "" {
			t.Fatalf("got %d %q", r.status, r.location)
		}
	})
}

func TestDynamicRegistrationConfidential(t *testing.T) {
	s := newStack(t, stackOptions{})
	status, reg := s.register(t, `{"redirect_uris":["https://app.example/cb"],"token_endpoint_auth_method":"client_secret_basic"}`)
	secret, _ := reg["client_secret"].(string)
	if status != http.StatusCreated || len(secret) < 32 {
		t.Fatalf("register: %d %v", status, reg)
	}
	s.secret(secret)
	c := newClient(reg["client_id"].(string), "https://app.example/cb")
	q := s.signIn(t, newBrowser(t), c, "bob", "bob-pw")
	form := url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")}, "redirect_uri": {c.redirect}, "code_verifier": {c.verifier}}
	post := func(user, pass string) int {
		req, _ := http.NewRequest("POST", s.base+"/oauth/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if v, ok := out["access_token"].(string); ok {
			s.secret(v)
		}
		return resp.StatusCode
	}
	if got := post(c.id, secret+"x"); got != http.StatusUnauthorized {
		t.Fatalf("wrong secret: %d", got)
	}
	if got := post(c.id, secret); got != http.StatusOK {
		t.Fatalf("right secret: %d", got)
	}
}

func TestRegistrationRefusals(t *testing.T) {
	s := newStack(t, stackOptions{})
	for _, tc := range []struct{ name, body, code string }{
		{"no redirect_uris", `{"client_name":"x"}`, "invalid_redirect_uri"},
		{"javascript redirect", `{"redirect_uris":["javascript:alert(1)"]}`, "invalid_redirect_uri"},
		{"data redirect", `{"redirect_uris":["data:text/html,hi"]}`, "invalid_redirect_uri"},
		{"plain http off loopback", `{"redirect_uris":["http://evil.example/cb"]}`, "invalid_redirect_uri"},
		{"fragment", `{"redirect_uris":["https://app.example/cb#x"]}`, "invalid_redirect_uri"},
		{"userinfo", `{"redirect_uris":["https://user@app.example/cb"]}`, "invalid_redirect_uri"},
		{"relative", `{"redirect_uris":["/cb"]}`, "invalid_redirect_uri"},
		{"too many", `{"redirect_uris":[` + strings.Repeat(`"https://a.example/cb",`, 10) + `"https://a.example/cb"]}`, "invalid_redirect_uri"},
		{"private_key_jwt", `{"redirect_uris":["https://app.example/cb"],"token_endpoint_auth_method":"private_key_jwt"}`, "invalid_client_metadata"},
		{"implicit grant", `{"redirect_uris":["https://app.example/cb"],"grant_types":["implicit"]}`, "invalid_client_metadata"},
		{"token response type", `{"redirect_uris":["https://app.example/cb"],"response_types":["token"]}`, "invalid_client_metadata"},
		{"control characters in name", `{"redirect_uris":["https://app.example/cb"],"client_name":"a\u0007b"}`, "invalid_client_metadata"},
		{"not JSON", `redirect_uris=https://app.example/cb`, "invalid_client_metadata"},
		{"too large", `{"client_name":"` + strings.Repeat("a", 20<<10) + `","redirect_uris":["https://app.example/cb"]}`, "invalid_client_metadata"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := s.register(t, tc.body)
			if status < 400 || status >= 500 || body["error"] != tc.code {
				t.Fatalf("got %d %v, want %s", status, body, tc.code)
			}
		})
	}
	// The server keeps serving after all of them.
	if status, _ := s.register(t, `{"redirect_uris":["cursor://anysphere.cursor-retrieval/oauth/callback"]}`); status != http.StatusCreated {
		t.Fatalf("a private-use scheme redirect (native app): %d", status)
	}
}

func TestMetadataDocuments(t *testing.T) {
	s := newStack(t, stackOptions{})
	resp, err := http.Get(s.base + "/.well-known/oauth-authorization-server")
	if err != nil {
		t.Fatal(err)
	}
	var md map[string]any
	json.NewDecoder(resp.Body).Decode(&md)
	resp.Body.Close()
	want := map[string]any{
		"issuer": s.base, "authorization_endpoint": s.base + "/oauth/authorize", "token_endpoint": s.base + "/oauth/token",
		"registration_endpoint": s.base + "/oauth/register", "jwks_uri": s.base + "/oauth/jwks",
		"client_id_metadata_document_supported": true, "authorization_response_iss_parameter_supported": true,
	}
	for k, v := range want {
		if md[k] != v {
			t.Errorf("%s = %v, want %v", k, md[k], v)
		}
	}
	if m, _ := json.Marshal(md["code_challenge_methods_supported"]); string(m) != `["S256"]` {
		t.Errorf("code_challenge_methods_supported %s", m)
	}
	// The MCP endpoint's protected resource metadata names the broker.
	resp, err = http.Get(s.base + "/.well-known/oauth-protected-resource/mcp")
	if err != nil {
		t.Fatal(err)
	}
	var prm map[string]any
	json.NewDecoder(resp.Body).Decode(&prm)
	resp.Body.Close()
	if as, _ := json.Marshal(prm["authorization_servers"]); !bytes.Equal(as, []byte(`["`+s.base+`"]`)) {
		t.Errorf("authorization_servers %s", as)
	}
	// The JWKS verifies the tokens: a token signed by another key is refused at /mcp.
	resp, err = http.Get(s.base + "/oauth/jwks")
	if err != nil {
		t.Fatal(err)
	}
	var jwks struct {
		Keys []map[string]any `json:"keys"`
	}
	json.NewDecoder(resp.Body).Decode(&jwks)
	resp.Body.Close()
	if len(jwks.Keys) != 1 || jwks.Keys[0]["alg"] != "ES256" || jwks.Keys[0]["d"] != nil {
		t.Fatalf("jwks %v (public keys only)", jwks)
	}
}
