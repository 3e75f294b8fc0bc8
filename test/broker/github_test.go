package broker

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/clickgate/clickgate/internal/testkit"
)

// fakeGitHub speaks the parts of GitHub's documented contract the broker
// uses (github.com cannot be reached from these machines): the OAuth web
// flow with PKCE (/login/oauth/authorize, /login/oauth/access_token) and
// the REST API under /api/v3 (check a token, /user, /user/emails,
// /user/orgs, /user/teams). Its authorize page signs "octocat" in at once.
type fakeGitHub struct {
	*httptest.Server
	mu         sync.Mutex
	challenges map[string]string // code → PKCE challenge
	redirects  map[string]string // code → redirect_uri
	tokens     map[string]bool
	// GitHub Apps' expiring user tokens come with refresh tokens (one use each).
	refreshTokens map[string]bool
	orgs          []string
	down          bool // the token endpoint answers 503
}

func (g *fakeGitHub) set(f func(g *fakeGitHub)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f(g)
}

const (
	ghClientID     = "Iv1.gh-client"
	ghClientSecret = "gh-secret-0123456789"
)

func newFakeGitHub(t *testing.T) *fakeGitHub {
	g := &fakeGitHub{challenges: map[string]string{}, redirects: map[string]string{}, tokens: map[string]bool{},
		refreshTokens: map[string]bool{}, orgs: []string{"ch-analysts"}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login/oauth/authorize", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("client_id") != ghClientID || q.Get("code_challenge_method") != "S256" || q.Get("state") == "" {
			http.Error(w, "bad authorize request", http.StatusBadRequest)
			return
		}
		code := "ghcode" + randomish()
		g.mu.Lock()
		g.challenges[code], g.redirects[code] = q.Get("code_challenge"), q.Get("redirect_uri")
		g.mu.Unlock()
		http.Redirect(w, r, q.Get("redirect_uri")+"?"+url.Values{"code": {code}, "state": {q.Get("state")}}.Encode(), http.StatusFound)
	})
	mux.HandleFunc("POST /login/oauth/access_token", func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		f := r.PostForm
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.down {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		ok := f.Get("client_id") == ghClientID && f.Get("client_secret") == ghClientSecret
		switch f.Get("grant_type") {
		case "refresh_token":
			ok = ok && g.refreshTokens[f.Get("refresh_token")]
			delete(g.refreshTokens, f.Get("refresh_token"))
		default:
			code := f.Get("code")
			sum := sha256.Sum256([]byte(f.Get("code_verifier")))
			ok = ok && g.challenges[code] != "" && g.challenges[code] == base64.RawURLEncoding.EncodeToString(sum[:]) &&
				g.redirects[code] == f.Get("redirect_uri")
			delete(g.challenges, code)
		}
		w.Header().Set("Content-Type", "application/json")
		if !ok {
			w.WriteHeader(http.StatusBadRequest)
			json.NewEncoder(w).Encode(map[string]string{"error": "bad_refresh_token"})
			return
		}
		tok, refresh := "ghu_"+strings.Repeat("a", 16)+randomish()[:20], "ghr_"+strings.Repeat("r", 16)+randomish()[:20]
		g.tokens[tok], g.refreshTokens[refresh] = true, true
		json.NewEncoder(w).Encode(map[string]any{"access_token": tok, "token_type": "bearer", "expires_in": 28800,
			"refresh_token": refresh, "refresh_token_expires_in": 15811200, "scope": ""})
	})
	known := func(r *http.Request, tok string) bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.tokens[tok]
	}
	user := map[string]any{"id": 583231, "login": "octocat", "name": "The Octocat"}
	mux.HandleFunc("POST /api/v3/applications/"+ghClientID+"/token", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			AccessToken string `json:"access_token"`
		}
		json.NewDecoder(r.Body).Decode(&body)
		if id, secret, _ := r.BasicAuth(); id != ghClientID || secret != ghClientSecret || !known(r, body.AccessToken) {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"user": user})
	})
	api := func(path string, v any) {
		mux.HandleFunc("GET /api/v3"+path, func(w http.ResponseWriter, r *http.Request) {
			if !known(r, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")) {
				http.Error(w, `{"message":"Bad credentials"}`, http.StatusUnauthorized)
				return
			}
			json.NewEncoder(w).Encode(v)
		})
	}
	api("/user", user)
	api("/user/emails", []map[string]any{{"email": "octocat@example.com", "primary": true, "verified": true}})
	mux.HandleFunc("GET /api/v3/user/orgs", func(w http.ResponseWriter, r *http.Request) {
		if !known(r, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")) {
			http.Error(w, `{"message":"Bad credentials"}`, http.StatusUnauthorized)
			return
		}
		g.mu.Lock()
		var orgs []map[string]any
		for _, o := range g.orgs {
			orgs = append(orgs, map[string]any{"login": o})
		}
		g.mu.Unlock()
		json.NewEncoder(w).Encode(orgs)
	})
	api("/user/teams", []map[string]any{})
	g.Server = httptest.NewServer(mux)
	t.Cleanup(g.Close)
	return g
}

// githubStack is a stack whose broker signs people in at gh.
func githubStack(t *testing.T, gh *fakeGitHub) *stack {
	template := strings.Replace(brokerConfig, `token_processors:
  dev:`, `token_processors:
  gh:
    type: github
    api_url: `+gh.URL+`/api/v3
    client_id: `+ghClientID+`
    client_secret: `+ghClientSecret+`
    username_claim: email
  dev:`, 1)
	template = strings.Replace(template, "  upstream: dev\n", "  upstream: gh\n", 1)
	return newStack(t, stackOptions{template: template})
}

// githubSignIn signs octocat in through gh and returns the broker's tokens.
func githubSignIn(t *testing.T, s *stack, gh *fakeGitHub, c *client) map[string]any {
	t.Helper()
	b := newBrowser(t)
	form := s.consentForm(t, b, s.authorizeURL(c, nil))
	r := b.do(t, "POST", s.base+"/oauth/authorize", form)
	if !strings.HasPrefix(r.location, gh.URL+"/login/oauth/authorize?") {
		t.Fatalf("consent went to %q, want GitHub's authorize page", r.location)
	}
	up, _ := url.Parse(r.location)
	if sc := up.Query().Get("scope"); sc != "read:user user:email read:org" {
		t.Errorf("scopes asked of GitHub: %q", sc)
	}
	r = b.do(t, "GET", r.location, nil) // GitHub signs octocat in
	r = s.follow(t, b, r)
	q := s.clientRedirect(t, c, r)
	if q.Get("code") == "" {
		t.Fatalf("no code: %v", q)
	}
	status, tok := s.redeem(t, c, q.Get("code"))
	if status != http.StatusOK {
		t.Fatalf("token: %d %v", status, tok)
	}
	return tok
}

func TestGitHubUpstream(t *testing.T) {
	gh := newFakeGitHub(t)
	s := githubStack(t, gh)
	tok := githubSignIn(t, s, gh, newClient("test-client", "http://127.0.0.1/callback"))
	claims := testkit.UnverifiedClaims(t, tok["access_token"].(string))
	if claims["username"] != "octocat@example.com" || claims["email_verified"] != true || strings.Join(toStrings(claims["roles"]), ",") != "analysts,mcp_reader" {
		t.Fatalf("claims %v", claims)
	}
	if status, body := s.mcpInitialize(t, tok["access_token"].(string)); status != http.StatusOK {
		t.Fatalf("/mcp: %d %s", status, body)
	}
}

// Every refresh asks the upstream again (when it gave a refresh token):
// new groups apply, an outage keeps the person signed in, a refusal ends
// the sign-in.
func TestRefreshAsksTheUpstream(t *testing.T) {
	gh := newFakeGitHub(t)
	s := githubStack(t, gh)
	c := newClient("test-client", "http://127.0.0.1/callback")
	tok := githubSignIn(t, s, gh, c)
	refresh := func() map[string]any {
		t.Helper()
		status, next := s.refresh(t, c, tok["refresh_token"].(string))
		if status != http.StatusOK {
			t.Fatalf("refresh: %d %v", status, next)
		}
		tok = next
		return testkit.UnverifiedClaims(t, next["access_token"].(string))
	}

	gh.set(func(g *fakeGitHub) { g.orgs = []string{"ch-admins"} })
	if roles := toStrings(refresh()["roles"]); strings.Join(roles, ",") != "admin,mcp_reader" {
		t.Fatalf("after moving to ch-admins at GitHub, roles %v", roles)
	}

	gh.set(func(g *fakeGitHub) { g.down = true })
	if roles := toStrings(refresh()["roles"]); strings.Join(roles, ",") != "admin,mcp_reader" {
		t.Fatalf("GitHub down: roles %v", roles)
	}
	gh.set(func(g *fakeGitHub) { g.down = false })
	refresh() // the upstream refresh token kept through the outage still works

	// GitHub no longer knows the sign-in (revoked, or the person removed).
	gh.set(func(g *fakeGitHub) { g.refreshTokens = map[string]bool{} })
	status, body := s.refresh(t, c, tok["refresh_token"].(string))
	if status != http.StatusBadRequest || body["error"] != "invalid_grant" || !strings.Contains(body["error_description"].(string), "no longer signs this person in") {
		t.Fatalf("after GitHub refused: %d %v", status, body)
	}
}

func toStrings(v any) []string {
	var out []string
	for _, e := range v.([]any) {
		out = append(out, e.(string))
	}
	return out
}
