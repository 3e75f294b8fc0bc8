// Google is a SaaS that cannot run here. These tests run a local server
// that speaks the documented shape of the two Google endpoints the google
// processor uses: GET https://oauth2.googleapis.com/tokeninfo?access_token=…
// (numbers and booleans as strings; HTTP 400 for a bad token) and GET
// https://openidconnect.googleapis.com/v1/userinfo with a Bearer token.
package token_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clickgate/clickgate/internal/token"
)

var googleNow = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

const (
	googleToken    = "ya29.a0AfB_byC-1Qm3xkZ8tWq9vR7uYp2sLd0Nn4HhJgFfEeDdCcBbAa"
	googleClientID = "1234567890-abc.apps.googleusercontent.com"
)

// fakeGoogle is the local tokeninfo and userinfo endpoints.
type fakeGoogle struct {
	t         *testing.T
	token     string
	tokeninfo map[string]any
	userinfo  map[string]any
	status    map[string]int // path → forced status

	mu    sync.Mutex
	calls map[string]int
}

func newFakeGoogle(t *testing.T) *fakeGoogle {
	exp := googleNow.Add(45 * time.Minute).Unix()
	return &fakeGoogle{
		t: t, token: googleToken,
		tokeninfo: map[string]any{
			"azp": googleClientID, "aud": googleClientID, "sub": "110169484474386276334",
			"scope":      "openid https://www.googleapis.com/auth/userinfo.email https://www.googleapis.com/auth/userinfo.profile",
			"exp":        strconv.FormatInt(exp, 10),
			"expires_in": "2700",
			"email":      "alice@example.com", "email_verified": "true", "access_type": "online",
		},
		userinfo: map[string]any{
			"sub": "110169484474386276334", "name": "Alice Example", "given_name": "Alice",
			"picture": "https://lh3.googleusercontent.com/a/alice", "email": "alice@example.com",
			"email_verified": true, "hd": "example.com",
		},
		status: map[string]int{},
		calls:  map[string]int{},
	}
}

func (f *fakeGoogle) called(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[path]
}

func (f *fakeGoogle) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.calls[r.URL.Path]++
	f.mu.Unlock()
	if r.Method != http.MethodGet {
		f.t.Errorf("%s: method %s", r.URL.Path, r.Method)
	}
	// Google's error bodies do not echo the token, but a careless server
	// might: clickgate must not repeat it.
	refuse := func(status int, code string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		fmt.Fprintf(w, `{"error":%q,"error_description":"Invalid Value %s"}`, code, f.token)
	}
	if s := f.status[r.URL.Path]; s != 0 {
		refuse(s, "invalid_token")
		return
	}
	switch r.URL.Path {
	case "/tokeninfo":
		if r.URL.Query().Get("access_token") != f.token {
			refuse(http.StatusBadRequest, "invalid_token")
			return
		}
		writeJSON(w, f.tokeninfo)
	case "/v1/userinfo":
		if r.Header.Get("Authorization") != "Bearer "+f.token {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			refuse(http.StatusUnauthorized, "invalid_request")
			return
		}
		writeJSON(w, f.userinfo)
	default:
		http.NotFound(w, r)
	}
}

func googleProcessor(t *testing.T, base string, change func(*token.Config)) token.Processor {
	t.Helper()
	cfg := &token.Config{
		Type: token.TypeGoogle, ClientID: googleClientID,
		TokeninfoURL: base + "/tokeninfo", UserinfoURL: base + "/v1/userinfo",
	}
	if change != nil {
		change(cfg)
	}
	cfg.ApplyDefaults()
	p, err := token.New("google", cfg, token.Options{Now: func() time.Time { return googleNow }})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return p
}

func TestGoogleAccepts(t *testing.T) {
	p := googleProcessor(t, "https://oauth2.googleapis.com", nil)
	for _, tc := range []struct {
		raw  string
		want bool
	}{
		{googleToken, true},
		{"ya29.c.b0Aaekm1K-service-account-token_with.two-dots", true}, // JWT-shaped but not a JWT
		{"ya29.", false},
		{"ya29a0AfB_byC", false},
		{"gho_16C7e42F292c6912E7710c838347Ae178B4a", false},
		{"2YotnFZFEjr1zKahJ2hTKDX", false},
		{"eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl", false}, // an ID token is a JWT: not for this processor
	} {
		if got := p.Accepts(parseToken(t, tc.raw)); got != tc.want {
			t.Errorf("Accepts(%q) = %v, want %v", tc.raw, got, tc.want)
		}
	}
}

func TestGoogleVerify(t *testing.T) {
	exp := googleNow.Add(45 * time.Minute)
	for _, tc := range []struct {
		name     string
		fake     func(*fakeGoogle)
		cfg      func(*token.Config)
		reason   token.Reason // "" means success
		username string
		noEmail  bool // on success: the email claim must be absent
		check    func(*testing.T, *fakeGoogle, *token.Error)
	}{
		{
			name:     "success",
			cfg:      func(c *token.Config) { c.HostedDomain = "example.com" },
			username: "alice@example.com",
		},
		{
			name:     "username from sub",
			cfg:      func(c *token.Config) { c.UsernameClaim = "sub" },
			username: "110169484474386276334",
		},
		{
			name:     "azp names the client when aud does not",
			fake:     func(f *fakeGoogle) { f.tokeninfo["aud"] = "32555940559.apps.googleusercontent.com" },
			username: "alice@example.com",
		},
		{
			name:     "expiry from expires_in when exp is absent",
			fake:     func(f *fakeGoogle) { delete(f.tokeninfo, "exp") },
			username: "alice@example.com",
		},
		{
			name: "unverified e-mail is dropped when the user name is sub",
			cfg:  func(c *token.Config) { c.UsernameClaim = "sub" },
			fake: func(f *fakeGoogle) {
				f.tokeninfo["email_verified"] = "false"
				f.userinfo["email_verified"] = false
			},
			username: "110169484474386276334", noEmail: true,
		},
		{
			name: "token issued to another client",
			fake: func(f *fakeGoogle) {
				f.tokeninfo["aud"] = "32555940559.apps.googleusercontent.com"
				f.tokeninfo["azp"] = "32555940559.apps.googleusercontent.com"
			},
			reason: token.ReasonAudience,
			check: func(t *testing.T, f *fakeGoogle, _ *token.Error) {
				if n := f.called("/v1/userinfo"); n != 0 {
					t.Errorf("userinfo called %d times for another client's token", n)
				}
			},
		},
		{
			name:   "expired",
			fake:   func(f *fakeGoogle) { f.tokeninfo["exp"] = strconv.FormatInt(googleNow.Add(-time.Minute).Unix(), 10) },
			reason: token.ReasonExpired,
		},
		{
			name:   "hosted domain mismatch",
			cfg:    func(c *token.Config) { c.HostedDomain = "corp.example" },
			reason: token.ReasonClaims,
			check: func(t *testing.T, _ *fakeGoogle, err *token.Error) {
				if !strings.Contains(err.Error(), "corp.example") {
					t.Errorf("message does not name the expected domain: %v", err)
				}
			},
		},
		{
			name:   "consumer account without hd when hosted_domain is set",
			cfg:    func(c *token.Config) { c.HostedDomain = "example.com" },
			fake:   func(f *fakeGoogle) { delete(f.userinfo, "hd") },
			reason: token.ReasonClaims,
		},
		{
			name:   "userinfo sub differs from tokeninfo sub",
			fake:   func(f *fakeGoogle) { f.userinfo["sub"] = "999" },
			reason: token.ReasonClaims,
		},
		{
			name:   "400 from tokeninfo",
			fake:   func(f *fakeGoogle) { f.status["/tokeninfo"] = http.StatusBadRequest },
			reason: token.ReasonInactive,
		},
		{
			name:   "401 from userinfo",
			fake:   func(f *fakeGoogle) { f.status["/v1/userinfo"] = http.StatusUnauthorized },
			reason: token.ReasonInactive,
		},
		{
			name: "unverified e-mail as user name",
			fake: func(f *fakeGoogle) {
				f.tokeninfo["email_verified"] = "false"
				f.userinfo["email_verified"] = false
			},
			reason: token.ReasonClaims,
		},
		{
			name:   "500 from tokeninfo",
			fake:   func(f *fakeGoogle) { f.status["/tokeninfo"] = http.StatusInternalServerError },
			reason: token.ReasonUnavailable,
		},
		{
			name:   "503 from userinfo",
			fake:   func(f *fakeGoogle) { f.status["/v1/userinfo"] = http.StatusServiceUnavailable },
			reason: token.ReasonUnavailable,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeGoogle(t)
			if tc.fake != nil {
				tc.fake(f)
			}
			srv := httptest.NewServer(f)
			t.Cleanup(srv.Close)
			p := googleProcessor(t, srv.URL, tc.cfg)

			id, err := p.Verify(context.Background(), parseToken(t, googleToken))
			if tc.reason != "" {
				terr := wantRefusal(t, id, err, tc.reason, googleToken)
				if tc.check != nil {
					tc.check(t, f, terr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if id.Username != tc.username || id.Subject != "110169484474386276334" || id.Processor != "google" {
				t.Errorf("identity %q sub %q processor %q; want %q", id.Username, id.Subject, id.Processor, tc.username)
			}
			if len(id.Groups) != 0 {
				t.Errorf("groups %q; Google tokens carry none", id.Groups)
			}
			if !id.Expiry.Equal(exp) {
				t.Errorf("expiry %v, want %v", id.Expiry, exp)
			}
			if email, ok := id.Claims["email"]; ok && (tc.noEmail || id.Claims["email_verified"] != true) {
				t.Errorf("email claim %v kept though not verified", email)
			}
			if tc.check != nil {
				tc.check(t, f, nil)
			}
		})
	}
}

// An unreachable GitHub or Google API is a temporary refusal whose
// message never carries the token (Google's tokeninfo URL holds it).
func TestSaaSUnreachable(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	for name, tc := range map[string]struct {
		p   token.Processor
		raw string
	}{
		"github": {githubProcessor(t, srv.URL, nil), githubToken},
		"google": {googleProcessor(t, srv.URL, nil), googleToken},
	} {
		_, err := tc.p.Verify(context.Background(), parseToken(t, tc.raw))
		if token.ReasonOf(err) != token.ReasonUnavailable || !token.IsTemporary(err) {
			t.Fatalf("%s: got %v (%s), want a temporary %s", name, err, token.ReasonOf(err), token.ReasonUnavailable)
		}
		if strings.Contains(err.Error(), tc.raw) {
			t.Errorf("%s: error message contains the token: %v", name, err)
		}
	}
}

// TestGoogleTokenReachesOnlyGoogle builds a Verifier whose first processor
// takes any opaque token: a Google token must still go to Google alone.
func TestGoogleTokenReachesOnlyGoogle(t *testing.T) {
	var corpCalls atomic.Int32
	corp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		corpCalls.Add(1)
		writeJSON(w, map[string]any{"sub": "someone"})
	}))
	t.Cleanup(corp.Close)
	g := httptest.NewServer(newFakeGoogle(t))
	t.Cleanup(g.Close)

	corpCfg := &token.Config{Type: token.TypeOpaque, UserinfoURL: corp.URL}
	corpCfg.ApplyDefaults()
	opaque, err := token.New("corp", corpCfg, token.Options{})
	if err != nil {
		t.Fatal(err)
	}
	clock := func() time.Time { return googleNow }
	v := token.NewVerifier([]token.Processor{opaque, googleProcessor(t, g.URL, nil)}, map[string]time.Duration{"corp": time.Minute, "google": time.Minute}, nil, clock)

	id, err := v.Verify(context.Background(), googleToken)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if id.Processor != "google" || id.Username != "alice@example.com" {
		t.Errorf("verified by %s as %q, want google as alice@example.com", id.Processor, id.Username)
	}
	if n := corpCalls.Load(); n != 0 {
		t.Errorf("the Google token reached the other processor's IdP %d times", n)
	}
}
