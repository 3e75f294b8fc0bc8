package devidp_test

// The development IdP mounted in a real clickgate server (server.New on an
// httptest listener), driven over HTTP the way browsers, the CLI, services
// and clickgate itself use it. Tokens are checked by clickgate's own oidc
// token processor through /whoami: discovery, JWKS and claims as with any
// IdP.

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/devidp"
	"github.com/clickgate/clickgate/internal/keyring"
	"github.com/clickgate/clickgate/internal/server"
	"github.com/clickgate/clickgate/internal/testkit"
)

const (
	cliClient  = devidp.CLIClientID
	botClient  = "etl-bot"
	botSecret  = "bot-secret-0123456789"
	exchClient = "ch-exchange"
	exchSecret = "exchange-secret-0123456789"
	loopback   = "http://127.0.0.1:53219/callback"
)

// ---------------------------------------------------------------------------
// The stack: clickgate with the dev IdP, and a processor that trusts it.

type stack struct {
	t       *testing.T
	srv     *httptest.Server
	base    string
	issuer  string
	keyFile string
	clock   *testkit.Clock // stands still, starting at the real time
	logs    *testkit.SyncBuffer
}

type stackOptions struct {
	keyFile string
	// addr reuses a listen address (a restart keeps the issuer).
	addr string
	// service: the processor names people and services by sub, without
	// requiring a verified email.
	service bool
}

var bobHash = func() string {
	h, err := bcrypt.GenerateFromPassword([]byte("bob-pw"), bcrypt.MinCost)
	if err != nil {
		panic(err)
	}
	return string(h)
}()

func newStack(t *testing.T, o stackOptions) *stack {
	t.Helper()
	if o.keyFile == "" {
		o.keyFile = filepath.Join(t.TempDir(), "state", "dev-idp-keys.json")
	}
	addr := o.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var l net.Listener
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if l, err = net.Listen("tcp", addr); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + l.Addr().String()
	processor := `
    audiences: [clickhouse]
    username_claim: email
    required_claims: {email_verified: true}`
	if o.service {
		processor = `
    audiences: [clickhouse]`
	}
	yaml := fmt.Sprintf(`
server:
  listen: %[1]s
  public_url: %[2]s
token_processors:
  dev:
    type: oidc
    issuer: %[2]s/idp%[3]s
directory:
  roles:
    mapping: {"ch-admins": ch-admin}
    filter: "^ch-.*$"
    transform: "s/^ch-//"
    common: [reader]
dev_idp:
  enabled: true
  key_file: %[4]s
  users:
    - {username: alice, password: alice-pw, email: alice@example.com, name: Alice Liddell, groups: [ch-analysts, staff]}
    - {username: bob, password: "%[5]s", email: bob@example.com, groups: [ch-admins]}
    - {username: carol, password: carol-pw, email: carol@example.com, email_verified: false}
  clients:
    - {client_id: %[6]s, client_secret: %[7]s, grant_types: [client_credentials], groups: [ch-etl]}
    - {client_id: %[8]s, client_secret: %[9]s, grant_types: [token_exchange]}
    - {client_id: grafana, client_secret: grafana-secret-0123456789, redirect_uris: ["http://127.0.0.1:3000/login/generic_oauth"]}
`, l.Addr().String(), base, processor, o.keyFile, bobHash, botClient, botSecret, exchClient, exchSecret)
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	s := &stack{t: t, base: base, issuer: base + "/idp", keyFile: o.keyFile, clock: testkit.NewClock(time.Now()), logs: &testkit.SyncBuffer{}}
	srv, err := server.New(cfg, server.Options{Logger: slog.New(slog.NewTextHandler(s.logs, nil)), Now: s.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	s.srv = httptest.NewUnstartedServer(srv.Handler())
	s.srv.Listener.Close()
	s.srv.Listener = l
	s.srv.Start()
	t.Cleanup(s.close)
	return s
}

func (s *stack) close() {
	s.srv.CloseClientConnections()
	s.srv.Close()
}

var noRedirect = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       10 * time.Second,
}

type response struct {
	status int
	header http.Header
	body   string
}

func (r *response) location(t *testing.T) *url.URL {
	t.Helper()
	if r.status != http.StatusFound && r.status != http.StatusSeeOther {
		t.Fatalf("HTTP %d, want a redirect: %s", r.status, clip(r.body))
	}
	u, err := url.Parse(r.header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func (r *response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.body), &m); err != nil {
		t.Fatalf("HTTP %d, not JSON: %s", r.status, clip(r.body))
	}
	return m
}

func clip(s string) string {
	if len(s) > 600 {
		return s[:600] + "…"
	}
	return s
}

func do(t *testing.T, req *http.Request) *response {
	t.Helper()
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

func (s *stack) get(t *testing.T, rawURL string) *response {
	t.Helper()
	if strings.HasPrefix(rawURL, "/") {
		rawURL = s.base + rawURL
	}
	req, _ := http.NewRequest(http.MethodGet, rawURL, nil)
	return do(t, req)
}

// post sends a form; user and password, when set, are HTTP Basic client
// credentials.
func (s *stack) post(t *testing.T, rawURL string, form url.Values, basic ...string) *response {
	t.Helper()
	if strings.HasPrefix(rawURL, "/") {
		rawURL = s.base + rawURL
	}
	req, _ := http.NewRequest(http.MethodPost, rawURL, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if len(basic) == 2 {
		req.SetBasicAuth(basic[0], basic[1])
	}
	return do(t, req)
}

func (s *stack) bearer(t *testing.T, path, token string) *response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, s.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	return do(t, req)
}

type whoami struct {
	Identity struct {
		Username string         `json:"username"`
		Subject  string         `json:"subject"`
		Groups   []string       `json:"groups"`
		Claims   map[string]any `json:"claims"`
	} `json:"identity"`
	Principal struct {
		User  string   `json:"user"`
		Roles []string `json:"roles"`
	} `json:"principal"`
}

// whoami asks clickgate who the token's bearer is.
func (s *stack) whoami(t *testing.T, token string) *whoami {
	t.Helper()
	r := s.bearer(t, "/whoami", token)
	if r.status != http.StatusOK {
		t.Fatalf("whoami: HTTP %d: %s", r.status, clip(r.body))
	}
	var w whoami
	if err := json.Unmarshal([]byte(r.body), &w); err != nil {
		t.Fatal(err)
	}
	return &w
}

type tokens struct {
	AccessToken  string `json:"access_token"`
	IDToken      string `json:"id_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	Scope        string `json:"scope"`
	Error        string `json:"error"`
	Description  string `json:"error_description"`
}

func (s *stack) token(t *testing.T, form url.Values, basic ...string) (*tokens, int) {
	t.Helper()
	r := s.post(t, "/idp/oauth/token", form, basic...)
	var tok tokens
	if err := json.Unmarshal([]byte(r.body), &tok); err != nil {
		t.Fatalf("token endpoint: HTTP %d, not JSON: %s", r.status, clip(r.body))
	}
	return &tok, r.status
}

func (s *stack) mustToken(t *testing.T, form url.Values, basic ...string) *tokens {
	t.Helper()
	tok, status := s.token(t, form, basic...)
	if status != http.StatusOK || tok.AccessToken == "" {
		t.Fatalf("token endpoint: HTTP %d: %s: %s", status, tok.Error, tok.Description)
	}
	return tok
}

func header(t *testing.T, jwt string) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(jwt, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	_ = json.Unmarshal(b, &h)
	return h
}

func strs(v any) []string {
	var out []string
	switch x := v.(type) {
	case string:
		out = append(out, x)
	case []any:
		for _, e := range x {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

// TestMain quiets the OpenID provider library, which logs every refused
// request to the default logger.
func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	os.Exit(m.Run())
}

// ---------------------------------------------------------------------------
// Browser steps.

type pkce struct{ verifier, challenge string }

func newPKCE() pkce {
	b := make([]byte, 32)
	rand.Read(b)
	v := base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(v))
	return pkce{verifier: v, challenge: base64.RawURLEncoding.EncodeToString(sum[:])}
}

var hiddenField = regexp.MustCompile(`name="(authRequestID|approval)" value="([^"]*)"`)

func hidden(t *testing.T, page, name string) string {
	t.Helper()
	for _, m := range hiddenField.FindAllStringSubmatch(page, -1) {
		if m[1] == name {
			return m[2]
		}
	}
	t.Fatalf("page has no %s field: %s", name, clip(page))
	return ""
}

// authorize starts a sign-in and returns the login page's URL.
func (s *stack) authorize(t *testing.T, client, redirect string, p pkce, scope string) *url.URL {
	t.Helper()
	q := url.Values{
		"client_id":             {client},
		"redirect_uri":          {redirect},
		"response_type":         {"code"},
		"scope":                 {scope},
		"state":                 {"state-42"},
		"code_challenge":        {p.challenge},
		"code_challenge_method": {"S256"},
	}
	login := s.get(t, "/idp/authorize?"+q.Encode()).location(t)
	if login.Path != "/idp/login" || login.Query().Get("authRequestID") == "" {
		t.Fatalf("authorize sent the browser to %s, want the login page", login)
	}
	return login
}

// submitLogin fills in and submits the login page at login.
func (s *stack) submitLogin(t *testing.T, login *url.URL, username, password string) *response {
	t.Helper()
	page := s.get(t, login.String())
	if page.status != http.StatusOK {
		t.Fatalf("login page: HTTP %d", page.status)
	}
	form := url.Values{"authRequestID": {hidden(t, page.body, "authRequestID")}, "username": {username}, "password": {password}}
	return s.post(t, "/idp/login", form)
}

// code follows a successful login to the application's redirect and
// returns the code.
func (s *stack) code(t *testing.T, afterLogin *response, redirect string) string {
	t.Helper()
	callback := afterLogin.location(t)
	app := s.get(t, callback.String()).location(t)
	if got := app.Scheme + "://" + app.Host + app.Path; got != redirect {
		t.Fatalf("redirected to %s, want %s", app, redirect)
	}
	if app.Query().Get("state") != "state-42" || app.Query().Get("code") == "" {
		t.Fatalf("redirect %s lacks code or state", app)
	}
	return app.Query().Get("code")
}

// login runs the whole authorization code flow with PKCE for the CLI client.
func (s *stack) login(t *testing.T, username, password string) *tokens {
	t.Helper()
	p := newPKCE()
	login := s.authorize(t, cliClient, loopback, p, "openid profile email groups offline_access")
	code := s.code(t, s.submitLogin(t, login, username, password), loopback)
	return s.mustToken(t, url.Values{
		"grant_type": {"authorization_code"}, "client_id": {cliClient}, "code": {code},
		"redirect_uri": {loopback}, "code_verifier": {p.verifier},
	})
}

// ---------------------------------------------------------------------------

func TestDiscoveryAndKeys(t *testing.T) {
	s := newStack(t, stackOptions{})
	d := s.get(t, "/idp/.well-known/openid-configuration").json(t)
	if d["issuer"] != s.issuer {
		t.Fatalf("issuer %v, want %s", d["issuer"], s.issuer)
	}
	for key, want := range map[string]string{
		"authorization_endpoint":        s.issuer + "/authorize",
		"token_endpoint":                s.issuer + "/oauth/token",
		"jwks_uri":                      s.issuer + "/keys",
		"userinfo_endpoint":             s.issuer + "/userinfo",
		"introspection_endpoint":        s.issuer + "/oauth/introspect",
		"device_authorization_endpoint": s.issuer + "/device_authorization",
	} {
		if d[key] != want {
			t.Errorf("%s = %v, want %s", key, d[key], want)
		}
	}
	grants := strs(d["grant_types_supported"])
	for _, g := range []string{"authorization_code", "refresh_token", "client_credentials",
		"urn:ietf:params:oauth:grant-type:device_code", "urn:ietf:params:oauth:grant-type:token-exchange"} {
		if !slices.Contains(grants, g) {
			t.Errorf("grant_types_supported %v lacks %s", grants, g)
		}
	}
	if m := strs(d["code_challenge_methods_supported"]); !slices.Equal(m, []string{"S256"}) {
		t.Errorf("code_challenge_methods_supported = %v, want [S256]", m)
	}
	jwks := s.get(t, "/idp/keys").json(t)
	keys, _ := jwks["keys"].([]any)
	if len(keys) != 1 {
		t.Fatalf("JWKS has %d keys, want 1", len(keys))
	}
	k := keys[0].(map[string]any)
	if k["alg"] != "ES256" || k["kty"] != "EC" || k["crv"] != "P-256" || k["kid"] == "" || k["use"] != "sig" {
		t.Fatalf("key %v, want an ES256 signing key with a kid", k)
	}
	if _, private := k["d"]; private {
		t.Fatal("the JWKS publishes a private key")
	}
	info, err := os.Stat(s.keyFile)
	if err != nil {
		t.Fatalf("no key file: %v", err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %04o, want 0600", info.Mode().Perm())
	}
}

func TestAuthorizationCodePKCE(t *testing.T) {
	s := newStack(t, stackOptions{})

	t.Run("login page", func(t *testing.T) {
		login := s.authorize(t, cliClient, loopback, newPKCE(), "openid")
		page := s.get(t, login.String())
		for _, want := range []string{
			`<html lang="en">`, `<label for="username">`, `<label for="password">`,
			`id="username" name="username"`, `id="password" name="password"`, `type="password"`,
			`autocomplete="username"`, `autocomplete="current-password"`, `autofocus`,
			`<button type="submit">Sign in</button>`, `clickgate login (command line)`,
		} {
			if !strings.Contains(page.body, want) {
				t.Errorf("login page lacks %s", want)
			}
		}
		if csp := page.header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "script-src") {
			t.Errorf("Content-Security-Policy %q", csp)
		}
		if page.header.Get("Cache-Control") != "no-store" {
			t.Error("login page may be cached")
		}
	})

	t.Run("person signs in, clickgate's oidc processor verifies the token", func(t *testing.T) {
		tok := s.login(t, "alice", "alice-pw")
		if tok.RefreshToken == "" || tok.IDToken == "" || tok.TokenType != "Bearer" {
			t.Fatalf("tokens %+v lack a refresh or ID token", tok)
		}
		if tok.ExpiresIn < 500 || tok.ExpiresIn > 600 {
			t.Errorf("expires_in %d, want about 600 (token_ttl 10m)", tok.ExpiresIn)
		}
		c := testkit.UnverifiedClaims(t, tok.AccessToken)
		aud := strs(c["aud"])
		for _, want := range []string{"clickhouse", s.base + "/mcp", cliClient} {
			if !slices.Contains(aud, want) {
				t.Errorf("aud %v lacks %s", aud, want)
			}
		}
		if c["iss"] != s.issuer || c["sub"] != "alice" || c["email"] != "alice@example.com" || c["email_verified"] != true ||
			!slices.Equal(strs(c["groups"]), []string{"ch-analysts", "staff"}) || c["client_id"] != cliClient {
			t.Errorf("access token claims %v", c)
		}
		if !strings.Contains(c["scope"].(string), "offline_access") {
			t.Errorf("scope %v", c["scope"])
		}
		if h := header(t, tok.AccessToken); h["alg"] != "ES256" || h["kid"] == "" {
			t.Errorf("header %v", h)
		}
		id := testkit.UnverifiedClaims(t, tok.IDToken)
		if !slices.Contains(strs(id["aud"]), cliClient) || id["email"] != "alice@example.com" || id["sub"] != "alice" {
			t.Errorf("ID token claims %v", id)
		}

		w := s.whoami(t, tok.AccessToken)
		if w.Identity.Username != "alice@example.com" || w.Principal.User != "alice@example.com" {
			t.Fatalf("whoami %+v", w)
		}
		if !slices.Equal(w.Principal.Roles, []string{"analysts", "reader"}) {
			t.Fatalf("roles %v, want [analysts reader] from groups ch-analysts, staff", w.Principal.Roles)
		}
	})

	t.Run("bcrypt password", func(t *testing.T) {
		w := s.whoami(t, s.login(t, "bob", "bob-pw").AccessToken)
		if w.Principal.User != "bob@example.com" || !slices.Equal(w.Principal.Roles, []string{"admin", "reader"}) {
			t.Fatalf("whoami %+v", w.Principal)
		}
	})

	t.Run("sign in by email", func(t *testing.T) {
		if w := s.whoami(t, s.login(t, "Alice@Example.com", "alice-pw").AccessToken); w.Identity.Subject != "alice" {
			t.Fatalf("subject %q", w.Identity.Subject)
		}
	})

	t.Run("unverified email is refused by the processor's required_claims", func(t *testing.T) {
		tok := s.login(t, "carol", "carol-pw")
		if r := s.bearer(t, "/whoami", tok.AccessToken); r.status != http.StatusUnauthorized {
			t.Fatalf("whoami: HTTP %d, want 401", r.status)
		}
	})

	t.Run("any loopback port; other hosts refused", func(t *testing.T) {
		for _, port := range []string{"40001", "65000"} {
			s.authorize(t, cliClient, "http://127.0.0.1:"+port+"/callback", newPKCE(), "openid")
		}
		for _, bad := range []string{"http://evil.example/callback", "http://127.0.0.1:40001/other", "https://127.0.0.1.evil.example/callback"} {
			q := url.Values{"client_id": {cliClient}, "redirect_uri": {bad}, "response_type": {"code"}, "scope": {"openid"},
				"code_challenge": {newPKCE().challenge}, "code_challenge_method": {"S256"}}
			r := s.get(t, "/idp/authorize?"+q.Encode())
			if loc := r.header.Get("Location"); r.status < 400 && !strings.Contains(loc, "/idp/") {
				t.Errorf("redirect_uri %s: HTTP %d to %s, want a refusal", bad, r.status, loc)
			}
		}
	})

	t.Run("PKCE is required and checked", func(t *testing.T) {
		// No code_challenge: the public client is sent back with an error.
		q := url.Values{"client_id": {cliClient}, "redirect_uri": {loopback}, "response_type": {"code"}, "scope": {"openid"}, "state": {"s"}}
		back := s.get(t, "/idp/authorize?"+q.Encode()).location(t)
		if back.Query().Get("error") != "invalid_request" || !strings.Contains(back.Query().Get("error_description"), "PKCE") {
			t.Fatalf("without PKCE: redirected to %s, want error=invalid_request about PKCE", back)
		}
		q.Set("code_challenge", "abc")
		q.Set("code_challenge_method", "plain")
		back = s.get(t, "/idp/authorize?"+q.Encode()).location(t)
		if back.Query().Get("error") != "invalid_request" {
			t.Fatalf("plain PKCE: redirected to %s, want error=invalid_request", back)
		}

		p := newPKCE()
		code := s.code(t, s.submitLogin(t, s.authorize(t, cliClient, loopback, p, "openid"), "alice", "alice-pw"), loopback)
		form := url.Values{"grant_type": {"authorization_code"}, "client_id": {cliClient}, "code": {code}, "redirect_uri": {loopback}, "code_verifier": {newPKCE().verifier}}
		if tok, status := s.token(t, form); status != http.StatusBadRequest || tok.Error != "invalid_grant" {
			t.Fatalf("wrong code_verifier: HTTP %d %s", status, tok.Error)
		}
		form.Set("code_verifier", p.verifier)
		s.mustToken(t, form)
		if tok, status := s.token(t, form); status != http.StatusBadRequest || tok.Error != "invalid_grant" {
			t.Fatalf("code used twice: HTTP %d %s", status, tok.Error)
		}
	})

	t.Run("confidential client", func(t *testing.T) {
		const redirect = "http://127.0.0.1:3000/login/generic_oauth"
		p := newPKCE()
		code := s.code(t, s.submitLogin(t, s.authorize(t, "grafana", redirect, p, "openid email"), "alice", "alice-pw"), redirect)
		form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirect}, "code_verifier": {p.verifier}}
		if _, status := s.token(t, form, "grafana", "wrong-secret"); status != http.StatusUnauthorized {
			t.Fatalf("wrong client secret: HTTP %d, want 401", status)
		}
		tok := s.mustToken(t, form, "grafana", "grafana-secret-0123456789")
		if w := s.whoami(t, tok.AccessToken); w.Principal.User != "alice@example.com" {
			t.Fatalf("whoami %+v", w.Principal)
		}
	})
}

func TestFailedSignInsAndRateLimit(t *testing.T) {
	s := newStack(t, stackOptions{})
	const generic = "Wrong user name or password."

	var pages []string
	for _, c := range []struct{ user, password string }{
		{"alice", "wrong"}, {"nobody", "alice-pw"}, {"bob", "alice-pw"}, {"", ""},
	} {
		r := s.submitLogin(t, s.authorize(t, cliClient, loopback, newPKCE(), "openid"), c.user, c.password)
		if r.status != http.StatusUnauthorized || !strings.Contains(r.body, generic) || !strings.Contains(r.body, `role="alert"`) {
			t.Fatalf("%q/%q: HTTP %d, want 401 with %q: %s", c.user, c.password, r.status, generic, clip(r.body))
		}
		if !strings.Contains(r.body, `aria-invalid="true"`) || strings.Contains(r.body, c.password+`"`) && c.password != "" {
			t.Fatalf("%q: the error is not tied to the fields, or the password is echoed", c.user)
		}
		// The page says the same whatever was wrong (only the echoed user
		// name and the request id differ).
		page := strings.ReplaceAll(r.body, `value="`+c.user+`"`, `value=""`)
		page = hiddenField.ReplaceAllString(page, "")
		page = strings.ReplaceAll(page, " autofocus", "")
		pages = append(pages, page)
	}
	for _, p := range pages[1:] {
		if p != pages[0] {
			t.Fatal("failed sign-ins of an unknown user and of a wrong password answer differently")
		}
	}

	// carol fails five times; the sixth attempt is refused even with the
	// right password, other people are not affected, and a minute later
	// carol may try again.
	for i := 1; i <= 5; i++ {
		r := s.submitLogin(t, s.authorize(t, cliClient, loopback, newPKCE(), "openid"), "carol", fmt.Sprintf("guess-%d", i))
		if r.status != http.StatusUnauthorized {
			t.Fatalf("failure %d: HTTP %d, want 401", i, r.status)
		}
	}
	r := s.submitLogin(t, s.authorize(t, cliClient, loopback, newPKCE(), "openid"), "carol", "carol-pw")
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") == "" || !strings.Contains(r.body, "Too many failed sign-in attempts") {
		t.Fatalf("sixth attempt: HTTP %d (Retry-After %q), want 429: %s", r.status, r.header.Get("Retry-After"), clip(r.body))
	}
	if strings.Contains(r.body, generic) {
		t.Fatal("the rate limit page also says the password was wrong")
	}
	// Also on the device verification page.
	dev := s.post(t, "/idp/device", url.Values{"user_code": {"BCDF-GHJK"}, "username": {"CAROL"}, "password": {"carol-pw"}})
	if dev.status != http.StatusTooManyRequests {
		t.Fatalf("device page while rate-limited: HTTP %d, want 429", dev.status)
	}
	s.login(t, "alice", "alice-pw")
	s.clock.Advance(61 * time.Second)
	s.login(t, "carol", "carol-pw")

	if logs := s.logs.String(); strings.Contains(logs, "carol-pw") || strings.Contains(logs, "alice-pw") || !strings.Contains(logs, "sign-in failed") {
		t.Fatalf("logs leak a password or miss the failures:\n%s", logs)
	}
}

func TestRefresh(t *testing.T) {
	s := newStack(t, stackOptions{})
	first := s.login(t, "alice", "alice-pw")
	form := url.Values{"grant_type": {"refresh_token"}, "client_id": {cliClient}, "refresh_token": {first.RefreshToken}}
	second := s.mustToken(t, form)
	if second.AccessToken == first.AccessToken || second.RefreshToken == "" || second.RefreshToken == first.RefreshToken {
		t.Fatal("refresh did not issue a new access token and a new refresh token")
	}
	if testkit.UnverifiedClaims(t, second.AccessToken)["jti"] == testkit.UnverifiedClaims(t, first.AccessToken)["jti"] {
		t.Fatal("the refreshed access token has the old jti")
	}
	if w := s.whoami(t, second.AccessToken); w.Principal.User != "alice@example.com" {
		t.Fatalf("whoami %+v", w.Principal)
	}
	// Rotation: the old refresh token is spent.
	if tok, status := s.token(t, form); status != http.StatusBadRequest || tok.Error != "invalid_grant" {
		t.Fatalf("reused refresh token: HTTP %d %s, want invalid_grant", status, tok.Error)
	}
	// Another client cannot use it.
	form.Set("refresh_token", second.RefreshToken)
	if _, status := s.token(t, form, "grafana", "grafana-secret-0123456789"); status == http.StatusOK {
		t.Fatal("grafana redeemed clickgate-cli's refresh token")
	}
	// Revocation (clickgate logout) ends it.
	if r := s.post(t, "/idp/revoke", url.Values{"token": {second.RefreshToken}, "token_type_hint": {"refresh_token"}, "client_id": {cliClient}}); r.status != http.StatusOK {
		t.Fatalf("revoke: HTTP %d %s", r.status, r.body)
	}
	form.Set("refresh_token", second.RefreshToken)
	if _, status := s.token(t, form); status != http.StatusBadRequest {
		t.Fatalf("revoked refresh token: HTTP %d, want 400", status)
	}
}

func TestClientCredentials(t *testing.T) {
	s := newStack(t, stackOptions{service: true})
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {"openid"}}
	tok := s.mustToken(t, form, botClient, botSecret)
	c := testkit.UnverifiedClaims(t, tok.AccessToken)
	if c["sub"] != botClient || !slices.Equal(strs(c["groups"]), []string{"ch-etl"}) || !slices.Contains(strs(c["aud"]), "clickhouse") {
		t.Fatalf("claims %v", c)
	}
	w := s.whoami(t, tok.AccessToken)
	if w.Principal.User != botClient || !slices.Equal(w.Principal.Roles, []string{"etl", "reader"}) {
		t.Fatalf("whoami %+v", w.Principal)
	}
	if tok, status := s.token(t, form, botClient, "wrong"); status != http.StatusUnauthorized || tok.Error != "invalid_client" {
		t.Fatalf("wrong secret: HTTP %d %s", status, tok.Error)
	}
	if _, status := s.token(t, form, exchClient, exchSecret); status == http.StatusOK {
		t.Fatal("a client without the client_credentials grant got a token")
	}
	if _, status := s.token(t, url.Values{"grant_type": {"client_credentials"}, "client_id": {cliClient}}); status == http.StatusOK {
		t.Fatal("the public client got a client credentials token")
	}
}

func TestDeviceFlow(t *testing.T) {
	s := newStack(t, stackOptions{})
	start := func(t *testing.T) map[string]any {
		t.Helper()
		r := s.post(t, "/idp/device_authorization", url.Values{"client_id": {cliClient}, "scope": {"openid email groups offline_access"}})
		if r.status != http.StatusOK {
			t.Fatalf("device authorization: HTTP %d %s", r.status, r.body)
		}
		return r.json(t)
	}
	poll := func(t *testing.T, deviceCode string) (*tokens, int) {
		return s.token(t, url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "client_id": {cliClient}, "device_code": {deviceCode}})
	}

	t.Run("approve", func(t *testing.T) {
		d := start(t)
		userCode, _ := d["user_code"].(string)
		deviceCode, _ := d["device_code"].(string)
		if d["verification_uri"] != s.issuer+"/device" || d["verification_uri_complete"] != s.issuer+"/device?user_code="+userCode || d["interval"] != 5.0 {
			t.Fatalf("device authorization answer %v", d)
		}
		if tok, _ := poll(t, deviceCode); tok.Error != "authorization_pending" {
			t.Fatalf("before approval: %s, want authorization_pending", tok.Error)
		}
		page := s.get(t, d["verification_uri_complete"].(string))
		if page.status != http.StatusOK || !strings.Contains(page.body, `value="`+userCode+`"`) || !strings.Contains(page.body, `<label for="user_code">`) {
			t.Fatalf("verification page: HTTP %d: %s", page.status, clip(page.body))
		}
		// Wrong password: the generic error, no confirmation.
		bad := s.post(t, "/idp/device", url.Values{"user_code": {userCode}, "username": {"alice"}, "password": {"nope"}})
		if bad.status != http.StatusUnauthorized || !strings.Contains(bad.body, "Wrong user name or password.") {
			t.Fatalf("wrong password: HTTP %d", bad.status)
		}
		// Typed in lower case without the dash, as people do.
		typed := strings.ToLower(strings.ReplaceAll(userCode, "-", " "))
		confirm := s.post(t, "/idp/device", url.Values{"user_code": {typed}, "username": {"alice"}, "password": {"alice-pw"}})
		if confirm.status != http.StatusOK || !strings.Contains(confirm.body, "Allow the device?") || !strings.Contains(confirm.body, "clickgate login (command line)") {
			t.Fatalf("confirmation page: HTTP %d: %s", confirm.status, clip(confirm.body))
		}
		done := s.post(t, "/idp/device/decide", url.Values{"approval": {hidden(t, confirm.body, "approval")}, "action": {"allow"}})
		if done.status != http.StatusOK || !strings.Contains(done.body, "Device signed in") {
			t.Fatalf("allow: HTTP %d: %s", done.status, clip(done.body))
		}
		tok, status := poll(t, deviceCode)
		if status != http.StatusOK || tok.RefreshToken == "" {
			t.Fatalf("after approval: HTTP %d %s", status, tok.Error)
		}
		if w := s.whoami(t, tok.AccessToken); w.Principal.User != "alice@example.com" || !slices.Equal(w.Principal.Roles, []string{"analysts", "reader"}) {
			t.Fatalf("whoami %+v", w.Principal)
		}
		if tok, status := poll(t, deviceCode); status == http.StatusOK {
			t.Fatalf("the device code was redeemed twice (%s)", tok.Error)
		}
	})

	t.Run("deny", func(t *testing.T) {
		d := start(t)
		confirm := s.post(t, "/idp/device", url.Values{"user_code": {d["user_code"].(string)}, "username": {"bob"}, "password": {"bob-pw"}})
		s.post(t, "/idp/device/decide", url.Values{"approval": {hidden(t, confirm.body, "approval")}, "action": {"deny"}})
		if tok, _ := poll(t, d["device_code"].(string)); tok.Error != "access_denied" {
			t.Fatalf("after deny: %q, want access_denied", tok.Error)
		}
	})

	t.Run("unknown code", func(t *testing.T) {
		r := s.post(t, "/idp/device", url.Values{"user_code": {"ZZZZ-ZZZZ"}, "username": {"alice"}, "password": {"alice-pw"}})
		if r.status != http.StatusBadRequest || !strings.Contains(r.body, "That code is unknown or has expired.") {
			t.Fatalf("HTTP %d: %s", r.status, clip(r.body))
		}
		if r := s.post(t, "/idp/device/decide", url.Values{"approval": {"forged"}, "action": {"allow"}}); r.status != http.StatusBadRequest {
			t.Fatalf("forged approval: HTTP %d", r.status)
		}
	})
}

func TestTokenExchange(t *testing.T) {
	s := newStack(t, stackOptions{})
	person := s.login(t, "alice", "alice-pw")
	exchange := func(aud string, basic ...string) (*tokens, int) {
		form := url.Values{
			"grant_type":           {"urn:ietf:params:oauth:grant-type:token-exchange"},
			"subject_token":        {person.AccessToken},
			"subject_token_type":   {"urn:ietf:params:oauth:token-type:access_token"},
			"requested_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
		}
		if aud != "" {
			form.Set("audience", aud)
		}
		if len(basic) == 0 {
			basic = []string{exchClient, exchSecret}
		}
		return s.token(t, form, basic...)
	}
	tok, status := exchange("clickhouse")
	if status != http.StatusOK {
		t.Fatalf("exchange: HTTP %d %s: %s", status, tok.Error, tok.Description)
	}
	c := testkit.UnverifiedClaims(t, tok.AccessToken)
	if !slices.Equal(strs(c["aud"]), []string{"clickhouse"}) || c["sub"] != "alice" || c["email"] != "alice@example.com" || c["client_id"] != exchClient {
		t.Fatalf("exchanged token claims %v", c)
	}
	if w := s.whoami(t, tok.AccessToken); w.Principal.User != "alice@example.com" || !slices.Equal(w.Principal.Roles, []string{"analysts", "reader"}) {
		t.Fatalf("whoami %+v", w.Principal)
	}
	for _, c := range []struct {
		name, aud string
		basic     []string
		want      string
	}{
		{"audience not served", "https://evil.example", nil, "invalid_target"},
		{"no audience", "", nil, "invalid_target"},
		{"client without the grant", "clickhouse", []string{botClient, botSecret}, "unauthorized_client"},
		{"wrong secret", "clickhouse", []string{exchClient, "wrong"}, "invalid_client"},
		{"public client", "clickhouse", []string{cliClient, ""}, "invalid_client"},
	} {
		if tok, status := exchange(c.aud, c.basic...); status == http.StatusOK || tok.Error != c.want {
			t.Errorf("%s: HTTP %d %q, want %s", c.name, status, tok.Error, c.want)
		}
	}
}

func TestUserinfoAndIntrospection(t *testing.T) {
	s := newStack(t, stackOptions{})
	tok := s.login(t, "alice", "alice-pw")

	ui := s.bearer(t, "/idp/userinfo", tok.AccessToken)
	if ui.status != http.StatusOK {
		t.Fatalf("userinfo: HTTP %d %s", ui.status, ui.body)
	}
	u := ui.json(t)
	if u["sub"] != "alice" || u["email"] != "alice@example.com" || u["email_verified"] != true || u["name"] != "Alice Liddell" ||
		!slices.Equal(strs(u["groups"]), []string{"ch-analysts", "staff"}) {
		t.Fatalf("userinfo %v", u)
	}
	if r := s.bearer(t, "/idp/userinfo", "garbage"); r.status == http.StatusOK {
		t.Fatal("userinfo answered for a garbage token")
	}

	introspect := func(token string, basic ...string) *response {
		return s.post(t, "/idp/oauth/introspect", url.Values{"token": {token}}, basic...)
	}
	in := introspect(tok.AccessToken, botClient, botSecret).json(t)
	if in["active"] != true || in["sub"] != "alice" || in["username"] != "alice" || in["client_id"] != cliClient ||
		in["email"] != "alice@example.com" || !slices.Equal(strs(in["groups"]), []string{"ch-analysts", "staff"}) ||
		in["iss"] != s.issuer || !slices.Contains(strs(in["aud"]), "clickhouse") || in["exp"] == nil {
		t.Fatalf("introspection %v", in)
	}
	if in := introspect("garbage", botClient, botSecret).json(t); in["active"] != false {
		t.Fatalf("garbage introspected as %v", in)
	}
	if r := introspect(tok.AccessToken); r.status != http.StatusUnauthorized {
		t.Fatalf("introspection without client credentials: HTTP %d", r.status)
	}
	if r := introspect(tok.AccessToken, botClient, "wrong"); r.status != http.StatusUnauthorized {
		t.Fatalf("introspection with a wrong secret: HTTP %d", r.status)
	}
}

func TestKeyPersistenceAndRotation(t *testing.T) {
	defer func(d time.Duration) { keyring.CheckInterval = d }(keyring.CheckInterval)
	keyring.CheckInterval = 0
	keyFile := filepath.Join(t.TempDir(), "keys", "dev-idp.json")
	first := newStack(t, stackOptions{keyFile: keyFile, service: true})
	addr := first.srv.Listener.Addr().String()
	botToken := func(s *stack) string {
		return s.mustToken(t, url.Values{"grant_type": {"client_credentials"}}, botClient, botSecret).AccessToken
	}
	kids := func(s *stack) []string {
		var out []string
		for _, k := range s.get(t, "/idp/keys").json(t)["keys"].([]any) {
			out = append(out, k.(map[string]any)["kid"].(string))
		}
		return out
	}
	oldToken := botToken(first)
	oldKids := kids(first)
	first.close()

	// A restart on the same address keeps the key: tokens from before
	// still verify.
	second := newStack(t, stackOptions{keyFile: keyFile, addr: addr, service: true})
	if got := kids(second); !slices.Equal(got, oldKids) {
		t.Fatalf("after restart the JWKS has %v, want the same key %v", got, oldKids)
	}
	second.whoami(t, oldToken)

	// Rotation through the file, as clickgate idp rotate-key does it.
	newKid, err := keyring.Rotate(keyFile, devidp.KeepOldKeys(10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if got := kids(second); !slices.Equal(got, []string{newKid, oldKids[0]}) {
		t.Fatalf("after rotation the JWKS has %v, want [%s %s]", got, newKid, oldKids[0])
	}
	newToken := botToken(second)
	if kid := header(t, newToken)["kid"]; kid != newKid {
		t.Fatalf("new token signed by %v, want %s", kid, newKid)
	}
	// clickgate refetches a JWKS for an unknown kid at most every 10 s.
	second.clock.Advance(11 * time.Second)
	second.whoami(t, newToken)
	second.whoami(t, oldToken)
	if info, err := os.Stat(keyFile); err != nil || info.Mode().Perm() != 0o600 {
		t.Fatalf("rotated key file: %v, mode %v", err, info.Mode())
	}

	// With no time to keep it, the replaced key leaves the JWKS at once.
	newest, err := keyring.Rotate(keyFile, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := kids(second); !slices.Equal(got, []string{newest, oldKids[0]}) {
		t.Fatalf("JWKS %v, want [%s %s] (the first key kept for 10m more, the second not at all)", got, newest, oldKids[0])
	}
	second.close()

	// A key file others can read is refused.
	if err := os.Chmod(keyFile, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse([]byte(fmt.Sprintf(`
token_processors: {dev: {type: oidc, issuer: http://127.0.0.1:1/idp, audiences: [clickhouse]}}
server: {public_url: "http://127.0.0.1:1"}
dev_idp: {enabled: true, key_file: %s, users: [{username: a, password: b}]}
`, keyFile)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := devidp.New(cfg, devidp.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("key file mode 0644: %v, want a refusal saying chmod 600", err)
	}
}

func TestConfig(t *testing.T) {
	base := `
server: {public_url: "http://127.0.0.1:8443"}
token_processors: {dev: {type: oidc, issuer: "http://127.0.0.1:8443/idp", audiences: [clickhouse]}}
`
	t.Run("defaults", func(t *testing.T) {
		t.Setenv("CLICKGATE_STATE_DIR", "/var/lib/cg")
		cfg, err := config.Parse([]byte(base + `
dev_idp:
  enabled: true
  users: [{username: alice, password: x}]
  clients: [{client_id: app, client_secret: s, redirect_uris: ["http://localhost:3000/cb"]}, {client_id: tv}]
`))
		if err != nil {
			t.Fatal(err)
		}
		d := cfg.DevIdP
		if d.KeyFile != "/var/lib/cg/dev-idp-keys.json" || d.TokenTTL != 10*time.Minute || d.RefreshTokenTTL != 24*time.Hour ||
			!slices.Equal(d.Audiences, []string{"clickhouse", "http://127.0.0.1:8443/mcp"}) {
			t.Fatalf("defaults %+v", d)
		}
		if g := d.Clients[0].GrantTypes; !slices.Equal(g, []string{"authorization_code", "refresh_token", "device_code", "client_credentials", "token_exchange"}) {
			t.Fatalf("confidential client grants %v", g)
		}
		if g := d.Clients[1].GrantTypes; !slices.Equal(g, []string{"device_code"}) {
			t.Fatalf("public client without redirect URIs: grants %v", g)
		}
		if len(cfg.Warnings) != 0 {
			t.Fatalf("warnings %v", cfg.Warnings)
		}
	})
	t.Run("warns when no processor trusts it", func(t *testing.T) {
		cfg, err := config.Parse([]byte(`
server: {public_url: "http://127.0.0.1:8443"}
token_processors: {other: {type: oidc, issuer: "https://idp.example.com", audiences: [clickhouse]}}
dev_idp: {enabled: true, users: [{username: alice, password: x}]}
`))
		if err != nil {
			t.Fatal(err)
		}
		if len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0], "issuer: http://127.0.0.1:8443/idp") {
			t.Fatalf("warnings %v", cfg.Warnings)
		}
	})
	for _, c := range []struct{ name, yaml, want string }{
		{"no password", `users: [{username: alice}]`, "dev_idp.users[0].password"},
		{"bad bcrypt", `users: [{username: alice, password: "$2a$10$tooshort"}]`, "dev_idp.users[0].password"},
		{"duplicate user", `users: [{username: alice, password: a}, {username: Alice, password: b}]`, "dev_idp.users[1].username"},
		{"user name with space", `users: [{username: "al ice", password: a}]`, "dev_idp.users[0].username"},
		{"bad email", `users: [{username: alice, password: a, email: alice}]`, "dev_idp.users[0].email"},
		{"reserved client", `clients: [{client_id: clickgate-cli}]`, "dev_idp.clients[0].client_id"},
		{"client named like a user", `{users: [{username: bot, password: a}], clients: [{client_id: bot, client_secret: s}]}`, "dev_idp.clients[0].client_id"},
		{"unknown grant", `clients: [{client_id: app, client_secret: s, grant_types: [implicit]}]`, "dev_idp.clients[0].grant_types[0]"},
		{"public client credentials", `clients: [{client_id: app, grant_types: [client_credentials]}]`, "dev_idp.clients[0].grant_types[0]"},
		{"code without redirect", `clients: [{client_id: app, client_secret: s, grant_types: [authorization_code]}]`, "dev_idp.clients[0].grant_types[0]"},
		{"bad redirect", `clients: [{client_id: app, redirect_uris: ["/cb"]}]`, "dev_idp.clients[0].redirect_uris[0]"},
		{"token ttl", `token_ttl: 5s`, "dev_idp.token_ttl"},
		{"refresh ttl", `{token_ttl: 1h, refresh_token_ttl: 30m}`, "dev_idp.refresh_token_ttl"},
		{"unknown key", `pasword_hash: x`, "dev_idp.pasword_hash"},
	} {
		t.Run(c.name, func(t *testing.T) {
			y := c.yaml
			if !strings.HasPrefix(y, "{") {
				y = "{" + y + "}"
			}
			y = strings.Replace(y, "{", "{enabled: true, ", 1)
			_, err := config.Parse([]byte(base + "dev_idp: " + y + "\n"))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one about %s", err, c.want)
			}
		})
	}
}
