// GitHub is a SaaS that cannot run here. These tests run a local server
// that speaks the documented shape of the GitHub REST API endpoints the
// github processor uses: POST /applications/{client_id}/token ("Check a
// token"), GET /user, GET /user/emails, GET /user/orgs and GET /user/teams
// (with Link pagination), and the GitHub-Authentication-Token-Expiration
// header. It is served under /api/v3, as GitHub Enterprise Server is.
package token_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clickgate/clickgate/internal/token"
)

var githubNow = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

const (
	githubToken        = "gho_16C7e42F292c6912E7710c838347Ae178B4a"
	githubClientID     = "Iv1.8a61f9b3a7aba766"
	githubClientSecret = "s3cret-of-the-app"
)

// fakeGitHub is the local GitHub API. Its zero value plus a token knows
// one user; fields change its answers.
type fakeGitHub struct {
	t     *testing.T
	token string
	// appClientID is the OAuth app the token belongs to.
	appClientID string
	appExpires  any // expires_at in the check-token answer
	user        map[string]any
	emails      []map[string]any
	orgs        []string
	teams       [][2]string // org, slug
	pageSize    int         // items per page the server returns
	expiration  string      // GitHub-Authentication-Token-Expiration
	status      map[string]int
	rateLimited map[string]bool
	nextHost    string // if set, Link next points at this host

	mu    sync.Mutex
	calls map[string]int
}

func newFakeGitHub(t *testing.T) *fakeGitHub {
	return &fakeGitHub{
		t: t, token: githubToken, appClientID: githubClientID,
		user:     map[string]any{"login": "octocat", "id": 583231, "name": "The Octocat", "email": "octocat@github.com", "type": "User"},
		emails:   []map[string]any{{"email": "octo@example.com", "primary": true, "verified": true, "visibility": "private"}},
		orgs:     []string{"octo-org", "acme", "ch-admins"},
		teams:    [][2]string{{"octo-org", "ch-analysts"}, {"acme", "ops"}, {"acme", "ch-admins"}},
		pageSize: 2,
		status:   map[string]int{}, rateLimited: map[string]bool{},
		calls: map[string]int{},
	}
}

func (f *fakeGitHub) called(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[path]
}

// refuse answers with a GitHub-style error whose body echoes the token,
// as a careless server might, to prove clickgate does not repeat it.
func (f *fakeGitHub) refuse(w http.ResponseWriter, status int) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"message":"refused %s","documentation_url":"https://docs.github.com/rest"}`, f.token)
}

func (f *fakeGitHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path, ok := strings.CutPrefix(r.URL.Path, "/api/v3")
	if !ok {
		http.NotFound(w, r)
		return
	}
	f.mu.Lock()
	f.calls[path]++
	f.mu.Unlock()
	if got := r.Header.Get("Accept"); got != "application/vnd.github+json" {
		f.t.Errorf("%s: Accept %q", path, got)
	}
	if got := r.Header.Get("X-GitHub-Api-Version"); got != "2022-11-28" {
		f.t.Errorf("%s: X-GitHub-Api-Version %q", path, got)
	}
	if f.rateLimited[path] {
		w.Header().Set("X-RateLimit-Remaining", "0")
		f.refuse(w, http.StatusForbidden)
		return
	}
	if s := f.status[path]; s != 0 {
		f.refuse(w, s)
		return
	}

	if app, ok := strings.CutPrefix(path, "/applications/"); ok {
		f.checkToken(w, r, strings.TrimSuffix(app, "/token"))
		return
	}
	if r.Method != http.MethodGet {
		f.t.Errorf("%s: method %s", path, r.Method)
	}
	if r.Header.Get("Authorization") != "Bearer "+f.token {
		f.refuse(w, http.StatusUnauthorized)
		return
	}
	if f.expiration != "" {
		w.Header().Set("GitHub-Authentication-Token-Expiration", f.expiration)
	}
	switch path {
	case "/user":
		writeJSON(w, f.user)
	case "/user/emails":
		writeJSON(w, f.emails)
	case "/user/orgs":
		var items []any
		for _, o := range f.orgs {
			items = append(items, map[string]any{"login": o, "id": len(items) + 1})
		}
		f.page(w, r, items)
	case "/user/teams":
		var items []any
		for _, t := range f.teams {
			items = append(items, map[string]any{"slug": t[1], "name": t[1], "organization": map[string]any{"login": t[0]}})
		}
		f.page(w, r, items)
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeGitHub) checkToken(w http.ResponseWriter, r *http.Request, clientID string) {
	if r.Method != http.MethodPost {
		f.t.Errorf("check-token: method %s", r.Method)
	}
	if id, secret, ok := r.BasicAuth(); !ok || id != clientID || secret != githubClientSecret {
		f.refuse(w, http.StatusNotFound)
		return
	}
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		f.refuse(w, http.StatusUnprocessableEntity)
		return
	}
	// GitHub answers 404 for a token it does not know for this app.
	if body.AccessToken != f.token || clientID != f.appClientID {
		f.refuse(w, http.StatusNotFound)
		return
	}
	writeJSON(w, map[string]any{
		"id": 1, "token": f.token, "expires_at": f.appExpires, "scopes": []string{"read:org"},
		"app":  map[string]any{"client_id": clientID, "name": "clickgate"},
		"user": f.user,
	})
}

// page serves GitHub-style pages of f.pageSize items, whatever per_page
// asks, with a Link header to the next page.
func (f *fakeGitHub) page(w http.ResponseWriter, r *http.Request, items []any) {
	if r.URL.Query().Get("per_page") != "100" {
		f.t.Errorf("%s: per_page %q", r.URL.Path, r.URL.Query().Get("per_page"))
	}
	n, _ := strconv.Atoi(r.URL.Query().Get("page"))
	n = max(n, 1)
	start := min((n-1)*f.pageSize, len(items))
	end := min(start+f.pageSize, len(items))
	if end < len(items) {
		host := r.Host
		if f.nextHost != "" {
			host = f.nextHost
		}
		next := fmt.Sprintf("http://%s%s?per_page=100&page=%d", host, r.URL.Path, n+1)
		last := fmt.Sprintf("http://%s%s?per_page=100&page=%d", host, r.URL.Path, (len(items)+f.pageSize-1)/f.pageSize)
		w.Header().Set("Link", fmt.Sprintf(`<%s>; rel="next", <%s>; rel="last"`, next, last))
	}
	page := items[start:end]
	if page == nil {
		page = []any{}
	}
	writeJSON(w, page)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	json.NewEncoder(w).Encode(v)
}

func githubProcessor(t *testing.T, apiURL string, change func(*token.Config)) token.Processor {
	t.Helper()
	cfg := &token.Config{Type: token.TypeGitHub, APIURL: apiURL, ClientID: githubClientID, ClientSecret: githubClientSecret}
	if change != nil {
		change(cfg)
	}
	cfg.ApplyDefaults()
	p, err := token.New("gh", cfg, token.Options{Now: func() time.Time { return githubNow }})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

func parseToken(t *testing.T, raw string) *token.Token {
	t.Helper()
	tok, err := token.Parse(raw)
	if err != nil {
		t.Fatalf("Parse(%q): %v", raw, err)
	}
	return tok
}

func TestGitHubAccepts(t *testing.T) {
	p := githubProcessor(t, "https://api.github.com", nil)
	for _, tc := range []struct {
		raw  string
		want bool
	}{
		{"ghp_16C7e42F292c6912E7710c838347Ae178B4a", true},
		{"gho_16C7e42F292c6912E7710c838347Ae178B4a", true},
		{"ghu_16C7e42F292c6912E7710c838347Ae178B4a", true},
		{"ghs_16C7e42F292c6912E7710c838347Ae178B4a", true},
		{"ghr_1B4a2e77838347a7E420ce178F2E7c6912E169246c34E1ccbF66C46812d16D5B1A9Dc86A1498", true},
		{"github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUV", true},
		{"ya29.a0AfH6SMBx-google-access-token", false},
		{"ya29.c.b0Aaekm1K-service-account", false},
		{"2YotnFZFEjr1zKahJ2hTKDX", false},                  // another IdP's opaque token
		{"GHP_16C7e42F292c6912E7710c838347Ae178B4a", false}, // prefixes are lower case
		{"ghp_", false}, // a prefix alone
		{"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl", false}, // a JWT
		{"ghp_x.eyJzdWIiOiJ4In0.c2ln", false},                        // JWT-shaped, unparseable: not GitHub's
	} {
		tok, err := token.Parse(tc.raw)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tc.raw, err)
		}
		if got := p.Accepts(tok); got != tc.want {
			t.Errorf("Accepts(%q) = %v, want %v", tc.raw, got, tc.want)
		}
	}
}

func TestGitHubVerify(t *testing.T) {
	in8h := githubNow.Add(8 * time.Hour)
	allGroups := []string{"octo-org", "acme", "ch-admins", "octo-org/ch-analysts", "acme/ops", "acme/ch-admins"}
	for _, tc := range []struct {
		name   string
		fake   func(*fakeGitHub)
		cfg    func(*token.Config)
		reason token.Reason // "" means success
		// on success
		username   string
		groups     []string
		expiry     time.Time
		checkCalls int
		check      func(*testing.T, *fakeGitHub, *token.Error)
	}{
		{
			name:     "success with app check, groups over several pages, expiry from header",
			fake:     func(f *fakeGitHub) { f.expiration = in8h.Format("2006-01-02 15:04:05 UTC") },
			username: "octocat", groups: allGroups, expiry: in8h, checkCalls: 1,
			check: func(t *testing.T, f *fakeGitHub, _ *token.Error) {
				if n := f.called("/user/orgs"); n != 2 {
					t.Errorf("/user/orgs called %d times, want 2 pages", n)
				}
				if n := f.called("/user/teams"); n != 2 {
					t.Errorf("/user/teams called %d times, want 2 pages", n)
				}
				if n := f.called("/user/emails"); n != 0 {
					t.Errorf("/user/emails called %d times in login mode", n)
				}
			},
		},
		{
			name:     "without client_id any GitHub token of the person is accepted",
			cfg:      func(c *token.Config) { c.ClientID, c.ClientSecret = "", "" },
			fake:     func(f *fakeGitHub) { f.appClientID = "some-other-app" },
			username: "octocat", groups: allGroups, checkCalls: 0,
		},
		{
			name: "expires_at from the check-token API when earlier than the header",
			fake: func(f *fakeGitHub) {
				f.expiration = in8h.Format("2006-01-02 15:04:05 UTC")
				f.appExpires = githubNow.Add(time.Hour).Format(time.RFC3339)
			},
			username: "octocat", groups: allGroups, expiry: githubNow.Add(time.Hour), checkCalls: 1,
		},
		{
			name: "expiry header with a numeric offset",
			fake: func(f *fakeGitHub) {
				f.expiration = in8h.In(time.FixedZone("PDT", -7*3600)).Format("2006-01-02 15:04:05 -0700")
			},
			username: "octocat", groups: allGroups, expiry: in8h, checkCalls: 1,
		},
		{
			name: "pagination is bounded to 10 pages",
			fake: func(f *fakeGitHub) {
				f.pageSize = 1
				f.orgs = strings.Fields("o1 o2 o3 o4 o5 o6 o7 o8 o9 o10 o11 o12")
				f.teams = nil
			},
			username: "octocat", groups: strings.Fields("o1 o2 o3 o4 o5 o6 o7 o8 o9 o10"), checkCalls: 1,
		},
		{
			name:     "403 on orgs and teams (no read:org) means no groups",
			fake:     func(f *fakeGitHub) { f.status["/user/orgs"] = 403; f.status["/user/teams"] = 403 },
			username: "octocat", groups: []string{}, checkCalls: 1,
		},
		{
			name:     "email mode takes the primary verified address",
			cfg:      func(c *token.Config) { c.UsernameClaim = "email" },
			username: "octo@example.com", groups: allGroups, checkCalls: 1,
		},
		{
			name:   "token of another OAuth app is refused by the check-token API",
			fake:   func(f *fakeGitHub) { f.appClientID = "Iv1.another-app" },
			reason: token.ReasonAudience,
			check: func(t *testing.T, f *fakeGitHub, e *token.Error) {
				if !strings.Contains(e.Error(), githubClientID) {
					t.Errorf("message does not name client_id: %v", e)
				}
				if n := f.called("/user"); n != 0 {
					t.Errorf("/user called %d times after the app check failed", n)
				}
			},
		},
		{
			name:   "401 from /user",
			fake:   func(f *fakeGitHub) { f.status["/user"] = 401 },
			reason: token.ReasonInactive,
		},
		{
			name: "email mode with an unverified primary address",
			cfg:  func(c *token.Config) { c.UsernameClaim = "email" },
			fake: func(f *fakeGitHub) {
				f.emails = []map[string]any{
					{"email": "octo@example.com", "primary": true, "verified": false},
					{"email": "other@example.com", "primary": false, "verified": true},
				}
			},
			reason: token.ReasonClaims,
			check: func(t *testing.T, _ *fakeGitHub, e *token.Error) {
				if !strings.Contains(e.Error(), "verified primary e-mail") {
					t.Errorf("message does not explain: %v", e)
				}
			},
		},
		{
			name:   "expired according to the expiration header",
			fake:   func(f *fakeGitHub) { f.expiration = githubNow.Add(-time.Hour).Format("2006-01-02 15:04:05 UTC") },
			reason: token.ReasonExpired,
		},
		{
			name:   "required_claims apply",
			cfg:    func(c *token.Config) { c.RequiredClaims = map[string]any{"login": "someone-else"} },
			reason: token.ReasonClaims,
		},
		{
			name:   "500 from /user",
			fake:   func(f *fakeGitHub) { f.status["/user"] = 500 },
			reason: token.ReasonUnavailable,
		},
		{
			name:   "500 from the check-token API",
			fake:   func(f *fakeGitHub) { f.status["/applications/"+githubClientID+"/token"] = 502 },
			reason: token.ReasonUnavailable,
		},
		{
			name:   "rate limit (403, X-RateLimit-Remaining: 0) on orgs is an outage, not no groups",
			fake:   func(f *fakeGitHub) { f.rateLimited["/user/orgs"] = true },
			reason: token.ReasonUnavailable,
		},
		{
			name: "pagination pointing at another host is not followed",
			fake: func(f *fakeGitHub) {
				stranger := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					f.t.Errorf("token sent to another host: %s %s", r.Method, r.URL)
					writeJSON(w, []any{})
				}))
				f.t.Cleanup(stranger.Close)
				f.nextHost = strings.TrimPrefix(stranger.URL, "http://")
			},
			reason: token.ReasonUnavailable,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeGitHub(t)
			if tc.fake != nil {
				tc.fake(f)
			}
			srv := httptest.NewServer(f)
			t.Cleanup(srv.Close)
			p := githubProcessor(t, srv.URL+"/api/v3/", tc.cfg)

			id, err := p.Verify(context.Background(), parseToken(t, githubToken))
			if tc.reason != "" {
				terr := wantRefusal(t, id, err, tc.reason, githubToken)
				if tc.check != nil {
					tc.check(t, f, terr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if id.Username != tc.username || id.Subject != "583231" || id.Processor != "gh" {
				t.Errorf("identity %q sub %q processor %q; want %q, 583231, gh", id.Username, id.Subject, id.Processor, tc.username)
			}
			if !slices.Equal(id.Groups, tc.groups) {
				t.Errorf("groups %q, want %q", id.Groups, tc.groups)
			}
			if !id.Expiry.Equal(tc.expiry) {
				t.Errorf("expiry %v, want %v", id.Expiry, tc.expiry)
			}
			if n := f.called("/applications/" + githubClientID + "/token"); n != tc.checkCalls {
				t.Errorf("check-token API called %d times, want %d", n, tc.checkCalls)
			}
			if _, ok := id.Claims["email"]; ok && id.Claims["email_verified"] != true {
				t.Errorf("email claim %v without email_verified", id.Claims["email"])
			}
			if tc.check != nil {
				tc.check(t, f, nil)
			}
		})
	}
}

// TestGitHubTokenReachesOnlyGitHub builds a Verifier whose first processor
// takes any opaque token: a GitHub token must still go to GitHub alone.
func TestGitHubTokenReachesOnlyGitHub(t *testing.T) {
	var corpCalls atomic.Int32
	corp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		corpCalls.Add(1)
		writeJSON(w, map[string]any{"sub": "someone"})
	}))
	t.Cleanup(corp.Close)
	f := newFakeGitHub(t)
	gh := httptest.NewServer(f)
	t.Cleanup(gh.Close)

	corpCfg := &token.Config{Type: token.TypeOpaque, UserinfoURL: corp.URL}
	corpCfg.ApplyDefaults()
	opaque, err := token.New("corp", corpCfg, token.Options{})
	if err != nil {
		t.Fatal(err)
	}
	clock := func() time.Time { return githubNow }
	v := token.NewVerifier([]token.Processor{opaque, githubProcessor(t, gh.URL+"/api/v3", nil)}, map[string]time.Duration{"corp": time.Minute, "gh": time.Minute}, nil, clock)

	id, err := v.Verify(context.Background(), githubToken)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if id.Processor != "gh" || id.Username != "octocat" {
		t.Errorf("verified by %s as %q, want gh as octocat", id.Processor, id.Username)
	}
	if n := corpCalls.Load(); n != 0 {
		t.Errorf("the GitHub token reached the other processor's IdP %d times", n)
	}
}
