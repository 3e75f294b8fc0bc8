package oauth

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/url"
	"strings"
)

// PKCE errors. ValidateChallenge runs at /authorize, VerifyPKCE at /token.
var (
	ErrPKCEMissing   = errors.New("oauth: code_challenge is required")
	ErrPKCEMethod    = errors.New("oauth: code_challenge_method must be S256")
	ErrPKCEChallenge = errors.New("oauth: code_challenge is malformed")
	ErrPKCEVerifier  = errors.New("oauth: code_verifier is malformed")
	ErrPKCEMismatch  = errors.New("oauth: code_verifier does not match code_challenge")
)

// ValidateChallenge checks the PKCE parameters of an authorization
// request: a challenge is required, the method must be S256 (plain and a
// missing method are refused), and the challenge must be 43 base64url
// characters (a SHA-256 digest).
func ValidateChallenge(method, challenge string) error {
	if challenge == "" {
		return ErrPKCEMissing
	}
	if method != "S256" {
		return ErrPKCEMethod
	}
	if len(challenge) != 43 {
		return ErrPKCEChallenge
	}
	if b, err := base64.RawURLEncoding.DecodeString(challenge); err != nil || len(b) != sha256.Size {
		return ErrPKCEChallenge
	}
	return nil
}

// VerifyPKCE checks a token request's code_verifier against the challenge
// stored with the code (RFC 7636, S256 only).
func VerifyPKCE(method, challenge, verifier string) error {
	if err := ValidateChallenge(method, challenge); err != nil {
		return err
	}
	if !validVerifier(verifier) {
		return ErrPKCEVerifier
	}
	sum := sha256.Sum256([]byte(verifier))
	got := base64.RawURLEncoding.EncodeToString(sum[:])
	if subtle.ConstantTimeCompare([]byte(got), []byte(challenge)) != 1 {
		return ErrPKCEMismatch
	}
	return nil
}

// validVerifier: 43–128 characters of [A-Za-z0-9-._~] (RFC 7636 §4.1).
func validVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9',
			c == '-', c == '.', c == '_', c == '~':
		default:
			return false
		}
	}
	return true
}

// RedirectURIMatches reports whether the redirect_uri of a request may be
// used with a registered one. The comparison is exact (byte for byte),
// except that for a registered http loopback redirect (127.0.0.1, [::1]
// or localhost) the port may differ (RFC 8252 §7.3): scheme, host, path
// and query must still be identical. Requests with userinfo or a fragment
// never match.
func RedirectURIMatches(registered, requested string) bool {
	if registered == "" || requested == "" {
		return false
	}
	req, err := url.Parse(requested)
	if err != nil || req.User != nil || req.Fragment != "" || req.RawFragment != "" ||
		strings.Contains(requested, "#") || strings.ContainsAny(requested, " \t\r\n\\") {
		return false
	}
	if registered == requested {
		return true
	}
	reg, err := url.Parse(registered)
	if err != nil || reg.User != nil || reg.Fragment != "" {
		return false
	}
	if reg.Scheme != "http" || req.Scheme != "http" || reg.Opaque != "" || req.Opaque != "" {
		return false
	}
	if !isLoopbackHost(reg.Hostname()) || reg.Hostname() != req.Hostname() {
		return false
	}
	// Rebuild host from hostname and port to refuse odd forms like "127.0.0.1:".
	if req.Port() == "" && strings.HasSuffix(req.Host, ":") {
		return false
	}
	return reg.EscapedPath() == req.EscapedPath() && reg.RawQuery == req.RawQuery &&
		reg.ForceQuery == req.ForceQuery
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	if h == "127.0.0.1" || h == "::1" {
		return true
	}
	return false
}

// IsLoopbackRedirect reports whether uri is an http redirect to a loopback
// host (which may vary its port).
func IsLoopbackRedirect(uri string) bool {
	u, err := url.Parse(uri)
	return err == nil && u.Scheme == "http" && u.User == nil && isLoopbackHost(u.Hostname())
}
