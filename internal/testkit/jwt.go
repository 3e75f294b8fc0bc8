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
	return jwtPart(tb, token, 1)
}

// UnverifiedHeader returns the protected header of a JWT (alg, kid, typ)
// without verifying it.
func UnverifiedHeader(tb testing.TB, token string) map[string]any {
	tb.Helper()
	return jwtPart(tb, token, 0)
}

func jwtPart(tb testing.TB, token string, i int) map[string]any {
	tb.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		tb.Fatalf("not a JWT: %.40q", token)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		tb.Fatalf("JWT part %d: %v", i, err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		tb.Fatalf("JWT part %d: %v", i, err)
	}
	return m
}
