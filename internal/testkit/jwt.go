package testkit

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
)

// UnverifiedClaims returns the claims of a JWT (a compact JWS) without
// verifying its signature, for checking what a server issued; the server
// under test does the verifying. It fails the test when token is not a JWT
// or its payload is not a JSON object.
func UnverifiedClaims(tb testing.TB, token string) map[string]any {
	tb.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		tb.Fatalf("not a JWT: %.40q", token)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		tb.Fatalf("JWT payload: %v", err)
	}
	var claims map[string]any
	if err := json.Unmarshal(b, &claims); err != nil {
		tb.Fatalf("JWT payload: %v", err)
	}
	return claims
}
