package oauth

import (
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"
)

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
