package oauth

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
)

// FuzzOpen: no input opens unless it is a sealed value exactly as Seal
// produced it, and nothing panics.
func FuzzOpen(f *testing.F) {
	// A key of this process: seeds sealed by another fuzzing process
	// must not open here either.
	key := make([]byte, SealKeySize)
	rand.Read(key)
	s, err := NewSealer(key)
	if err != nil {
		f.Fatal(err)
	}
	valid, err := s.Seal(PurposeCode, map[string]string{"id": "x"}, time.Minute)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid, 0, byte(0))
	f.Add(valid, len(valid)/2, byte(1))
	f.Add("", 0, byte(0))
	f.Add("AQ", 0, byte(0))
	f.Fuzz(func(t *testing.T, blob string, at int, flip byte) {
		if blob == valid && flip != 0 && at >= 0 && at < len(blob) {
			b := []byte(blob)
			b[at] ^= flip
			blob = string(b)
		}
		var v map[string]string
		err := s.Open(PurposeCode, blob, &v)
		if blob != valid && err == nil {
			t.Fatalf("a blob that Seal did not produce opened: %q", blob)
		}
		if err != nil && !errors.Is(err, ErrSealed) && !errors.Is(err, ErrExpired) {
			t.Fatalf("unexpected error kind: %v", err)
		}
		// Another purpose never opens it.
		if s.Open(PurposeRefresh, blob, &v) == nil {
			t.Fatalf("opened under another purpose: %q", blob)
		}
	})
}

// FuzzRegistration: whatever is registered has only redirect URIs a
// browser may safely be sent to.
func FuzzRegistration(f *testing.F) {
	for _, seed := range []string{
		`{"redirect_uris":["http://127.0.0.1/callback"]}`,
		`{"redirect_uris":["https://app.example/cb"],"token_endpoint_auth_method":"client_secret_post","client_name":"x"}`,
		`{"redirect_uris":["javascript:alert(1)"]}`,
		`{"redirect_uris":["cursor://x/y"],"grant_types":["authorization_code"]}`,
		`{"redirect_uris":["HTTP://127.0.0.1:80/cb"]}`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		var req registrationRequest
		if json.Unmarshal([]byte(body), &req) != nil {
			return
		}
		rc, method, err := validateRegistration(&req)
		if err != nil {
			if errorCode(err, "") == "" {
				t.Fatalf("refusal without an OAuth error code: %v", err)
			}
			return
		}
		if method != "none" && !rc.Confidential {
			t.Fatalf("method %s but public", method)
		}
		for _, r := range rc.RedirectURIs {
			u, err := url.Parse(r)
			if err != nil || u.Fragment != "" || u.User != nil || strings.ContainsAny(r, "# \t\r\n\\") {
				t.Fatalf("accepted redirect %q", r)
			}
			scheme := strings.ToLower(u.Scheme)
			if slices.Contains(dangerousSchemes, scheme) || scheme == "" {
				t.Fatalf("accepted scheme of %q", r)
			}
			if scheme == "http" && !IsLoopbackRedirect(r) {
				t.Fatalf("accepted plain http off loopback: %q", r)
			}
		}
	})
}

// FuzzRedirectURIMatches: a match never changes where the browser goes,
// except for the port of a loopback redirect.
func FuzzRedirectURIMatches(f *testing.F) {
	f.Add("http://127.0.0.1/callback", "http://127.0.0.1:1234/callback")
	f.Add("https://app.example/cb", "https://app.example/cb")
	f.Add("https://app.example/cb", "https://app.example/cb/../x")
	f.Add("http://localhost/cb", "http://localhost:80@evil/cb")
	f.Fuzz(func(t *testing.T, registered, requested string) {
		if !RedirectURIMatches(registered, requested) || registered == requested {
			return
		}
		reg, err1 := url.Parse(registered)
		req, err2 := url.Parse(requested)
		if err1 != nil || err2 != nil {
			t.Fatalf("matched unparsable URIs %q %q", registered, requested)
		}
		if reg.Scheme != "http" || !isLoopbackHost(reg.Hostname()) || reg.Hostname() != req.Hostname() ||
			reg.Path != req.Path || reg.RawQuery != req.RawQuery || req.User != nil || req.Fragment != "" {
			t.Fatalf("%q matched %q", requested, registered)
		}
	})
}

// A sealed value has one spelling: the spare bits of its last base64
// character are not ignored (a code or refresh token could otherwise be
// presented in two forms).
func TestSealedBlobHasOneSpelling(t *testing.T) {
	s, _ := NewSealer(make([]byte, SealKeySize))
	for i := 0; i < 20; i++ {
		blob, err := s.Seal(PurposeCode, strings.Repeat("x", i), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		last := strings.IndexByte("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", blob[len(blob)-1])
		if len(blob)%4 == 0 { // no spare bits
			continue
		}
		alt := blob[:len(blob)-1] + string("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last^1])
		var v string
		if err := s.Open(PurposeCode, alt, &v); err == nil {
			t.Fatalf("%q opened as well as %q", alt, blob)
		}
	}
}
