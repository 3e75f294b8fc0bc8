package oauth

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

func s256(v string) string {
	sum := sha256.Sum256([]byte(v))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func TestPKCE(t *testing.T) {
	verifier := "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk" // RFC 7636 appendix B
	challenge := "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
	if s256(verifier) != challenge {
		t.Fatal("test vector")
	}
	cases := []struct {
		name, method, challenge, verifier string
		want                              error
	}{
		{"ok", "S256", challenge, verifier, nil},
		{"missing challenge", "S256", "", verifier, ErrPKCEMissing},
		{"missing method", "", challenge, verifier, ErrPKCEMethod},
		{"plain", "plain", verifier, verifier, ErrPKCEMethod},
		{"lowercase s256", "s256", challenge, verifier, ErrPKCEMethod},
		{"wrong verifier", "S256", challenge, strings.Repeat("a", 43), ErrPKCEMismatch},
		{"missing verifier", "S256", challenge, "", ErrPKCEVerifier},
		{"short verifier", "S256", s256("abc"), "abc", ErrPKCEVerifier},
		{"long verifier", "S256", s256(strings.Repeat("a", 129)), strings.Repeat("a", 129), ErrPKCEVerifier},
		{"bad chars in verifier", "S256", s256(strings.Repeat("a", 42) + "+"), strings.Repeat("a", 42) + "+", ErrPKCEVerifier},
		{"challenge padded", "S256", challenge + "=", verifier, ErrPKCEChallenge},
		{"challenge std base64", "S256", strings.ReplaceAll(challenge, "-", "+"), verifier, ErrPKCEChallenge},
		{"challenge equals verifier", "S256", verifier, verifier, ErrPKCEMismatch},
		{"challenge too short", "S256", challenge[:42], verifier, ErrPKCEChallenge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := VerifyPKCE(c.method, c.challenge, c.verifier); !errors.Is(err, c.want) {
				t.Fatalf("got %v want %v", err, c.want)
			}
		})
	}
}

func TestRedirectURIMatches(t *testing.T) {
	cases := []struct {
		registered, requested string
		want                  bool
	}{
		{"https://app.example.com/cb", "https://app.example.com/cb", true},
		{"cursor://anysphere.cursor-retrieval/oauth/callback", "cursor://anysphere.cursor-retrieval/oauth/callback", true},
		{"http://127.0.0.1/cb", "http://127.0.0.1:54321/cb", true},
		{"http://127.0.0.1:3000/cb", "http://127.0.0.1:54321/cb", true},
		{"http://[::1]/cb", "http://[::1]:6274/cb", true},
		{"http://localhost:6274/oauth/callback", "http://localhost:9999/oauth/callback", true},
		{"http://127.0.0.1/cb?x=1", "http://127.0.0.1:80/cb?x=1", true},

		{"https://app.example.com/cb", "https://app.example.com/cb/", false},
		{"https://app.example.com/cb", "https://app.example.com/cb?x=1", false},
		{"https://app.example.com/cb", "https://app.example.com:8443/cb", false},
		{"https://app.example.com/cb", "https://APP.example.com/cb", false},
		{"https://app.example.com/cb", "https://app.example.com.evil.com/cb", false},
		{"https://app.example.com/cb", "https://evil.com/cb", false},
		{"https://app.example.com/cb", "https://app.example.com@evil.com/cb", false},
		{"https://app.example.com/cb", "https://app.example.com/cb#x", false},
		{"https://app.example.com/cb", "https://app.example.com/cb/../cb", false},
		{"https://app.example.com/cb", "http://app.example.com/cb", false},
		{"https://app.example.com/cb", "", false},
		{"", "", false},
		{"http://127.0.0.1/cb", "http://127.0.0.1.evil.com:5000/cb", false},
		{"http://127.0.0.1/cb", "http://127.0.0.1@evil.com:5000/cb", false},
		{"http://127.0.0.1/cb", "http://evil.com:5000/cb#@127.0.0.1", false},
		{"http://127.0.0.1/cb", "http://evil.com/cb", false},
		{"http://127.0.0.1/cb", "https://127.0.0.1:5000/cb", false},
		{"http://127.0.0.1/cb", "http://127.0.0.1:5000/cb2", false},
		{"http://127.0.0.1/cb", "http://127.0.0.1:5000/CB", false},
		{"http://127.0.0.1/cb", "http://127.0.0.1:5000/cb?next=https://evil.com", false},
		{"http://127.0.0.1/cb", "http://127.0.0.1:5000/cb#frag", false},
		{"http://127.0.0.1/cb", "http://user:pw@127.0.0.1:5000/cb", false},
		{"http://127.0.0.1/cb", "http://127.0.0.1:abc/cb", false},
		{"http://127.0.0.1/cb", "http://127.0.0.1:/cb", false},
		{"http://127.0.0.1/cb", "http://127.1:5000/cb", false},
		{"http://127.0.0.1/cb", "http://2130706433:5000/cb", false},
		{"http://127.0.0.1/cb", "http://[::1]:5000/cb", false},
		{"http://127.0.0.1/cb", "http://localhost:5000/cb", false},
		{"http://127.0.0.1/cb", "http://127.0.0.1:5000/cb/../cb", false},
		{"http://127.0.0.1/cb", "http://127.0.0.1:5000/%63b", false},
		{"http://127.0.0.1/cb", "http://127.0.0.1:5000\\@evil.com/cb", false},
		{"http://127.0.0.1/cb", "//127.0.0.1:5000/cb", false},
		{"http://127.0.0.1/cb", "http://127.0.0.1:5000/cb\n", false},
		{"http://localhost/cb", "http://localhost.evil.com:5000/cb", false},
		{"http://[::1]/cb", "http://[::ffff:127.0.0.1]:5000/cb", false},
		{"https://127.0.0.1/cb", "https://127.0.0.1:5000/cb", false},
		{"http://app.example.com/cb", "http://app.example.com:8080/cb", false},
		{"http://10.0.0.1/cb", "http://10.0.0.1:8080/cb", false},
	}
	for _, c := range cases {
		if got := RedirectURIMatches(c.registered, c.requested); got != c.want {
			t.Errorf("RedirectURIMatches(%q, %q) = %v, want %v", c.registered, c.requested, got, c.want)
		}
	}
}

func TestIsLoopbackRedirect(t *testing.T) {
	for uri, want := range map[string]bool{
		"http://127.0.0.1:5/cb": true, "http://[::1]/cb": true, "http://localhost/cb": true,
		"https://127.0.0.1/cb": false, "http://127.0.0.1.evil.com/cb": false, "http://u@127.0.0.1/cb": false,
	} {
		if got := IsLoopbackRedirect(uri); got != want {
			t.Errorf("IsLoopbackRedirect(%q) = %v", uri, got)
		}
	}
}
