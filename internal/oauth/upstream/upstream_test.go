package upstream

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/clickgate/clickgate/internal/token"
)

func TestEndpoints(t *testing.T) {
	for _, tc := range []struct {
		name      string
		cfg       token.Config
		authorize string
		issuer    string
	}{
		{"github.com", token.Config{Type: token.TypeGitHub}, "https://github.com/login/oauth/authorize", ""},
		{"github.com with its API URL", token.Config{Type: token.TypeGitHub, APIURL: "https://api.github.com"}, "https://github.com/login/oauth/authorize", ""},
		{"GitHub Enterprise", token.Config{Type: token.TypeGitHub, APIURL: "https://ghe.example.com/api/v3"}, "https://ghe.example.com/login/oauth/authorize", ""},
		{"Google", token.Config{Type: token.TypeGoogle}, "https://accounts.google.com/o/oauth2/v2/auth", "https://accounts.google.com"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := New("p", &tc.cfg, "cid", "secret", "https://cg.example/oauth/callback", []string{"a", "b"}, nil)
			if err != nil {
				t.Fatal(err)
			}
			target, err := u.AuthCodeURL(context.Background(), "state-1", strings.Repeat("v", 43))
			if err != nil {
				t.Fatal(err)
			}
			got, _ := url.Parse(target)
			q := got.Query()
			if !strings.HasPrefix(target, tc.authorize+"?") || q.Get("client_id") != "cid" || q.Get("state") != "state-1" ||
				q.Get("redirect_uri") != "https://cg.example/oauth/callback" || q.Get("code_challenge_method") != "S256" ||
				q.Get("code_challenge") == "" || q.Get("scope") != "a b" || u.Issuer != tc.issuer {
				t.Fatalf("authorization URL %s (issuer %q)", target, u.Issuer)
			}
		})
	}
	if _, err := New("p", &token.Config{Type: token.TypeJWT}, "c", "", "https://x/cb", nil, nil); err == nil {
		t.Fatal("a jwt processor cannot sign people in")
	}
}

func TestDiscovery(t *testing.T) {
	var issuer string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"issuer": issuer, "authorization_endpoint": "https://idp.example/auth", "token_endpoint": "https://idp.example/token"})
	}))
	defer srv.Close()
	cfg := &token.Config{Type: token.TypeOIDC, Issuer: srv.URL}
	issuer = "https://impostor.example"
	u, _ := New("p", cfg, "cid", "", "https://cg.example/oauth/callback", nil, srv.Client())
	if _, err := u.AuthCodeURL(context.Background(), "s", strings.Repeat("v", 43)); err == nil || !strings.Contains(err.Error(), "names issuer") {
		t.Fatalf("an impostor issuer: %v", err)
	}
	issuer = srv.URL // discovery is tried again after a failure
	target, err := u.AuthCodeURL(context.Background(), "s", strings.Repeat("v", 43))
	if err != nil || !strings.HasPrefix(target, "https://idp.example/auth?") {
		t.Fatalf("got %s, %v", target, err)
	}
}
