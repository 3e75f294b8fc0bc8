package token

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/clickgate/clickgate/internal/testkit"
)

// Shared by the token package's tests and benchmarks.

const (
	testIssuer   = "https://idp.test/realms/corp"
	testAudience = "clickhouse"
)

// testClock is a fixed point in time for deterministic checks.
var testClock = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// signingKey is a testkit key with the token tests' short names.
type signingKey struct{ *testkit.Key }

func newSigningKey(tb testing.TB, alg jose.SignatureAlgorithm, kid string) *signingKey {
	tb.Helper()
	return &signingKey{testkit.NewKey(tb, alg, kid)}
}

// sign returns a compact JWS of claims signed by k.
func (k *signingKey) sign(tb testing.TB, claims map[string]any) string {
	tb.Helper()
	return k.Sign(tb, claims)
}

func signWith(tb testing.TB, alg jose.SignatureAlgorithm, key any, claims map[string]any) string {
	tb.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		tb.Fatal(err)
	}
	raw, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

// jwks is the JSON key set of keys' public halves.
func jwks(tb testing.TB, keys ...*signingKey) string {
	tb.Helper()
	set := jose.JSONWebKeySet{}
	for _, k := range keys {
		set.Keys = append(set.Keys, k.Public)
	}
	b, err := json.Marshal(set)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// validClaims are claims every test processor accepts at testClock.
func validClaims() map[string]any {
	return map[string]any{
		"iss":            testIssuer,
		"sub":            "u-123",
		"aud":            []string{testAudience},
		"email":          "alice@example.com",
		"email_verified": true,
		"groups":         []string{"ch-analysts", "staff"},
		"iat":            testClock.Add(-time.Minute).Unix(),
		"nbf":            testClock.Add(-time.Minute).Unix(),
		"exp":            testClock.Add(time.Hour).Unix(),
	}
}

// with returns a copy of claims with changes applied; a nil value deletes.
func with(claims map[string]any, changes map[string]any) map[string]any {
	out := make(map[string]any, len(claims))
	for k, v := range claims {
		out[k] = v
	}
	for k, v := range changes {
		if v == nil {
			delete(out, k)
			continue
		}
		out[k] = v
	}
	return out
}

// jwtConfig is a jwt processor configuration trusting keys inline.
func jwtConfig(tb testing.TB, keys ...*signingKey) *Config {
	tb.Helper()
	cfg := &Config{
		Type: TypeJWT, Issuer: testIssuer, Keys: jwks(tb, keys...),
		Audiences: []string{testAudience}, UsernameClaim: "email",
	}
	cfg.ApplyDefaults()
	return cfg
}

// newTestVerifier builds a caching Verifier over one processor built from cfg.
func newTestVerifier(tb testing.TB, cfg *Config, now func() time.Time) *Verifier {
	tb.Helper()
	p, err := New("corp", cfg, Options{Now: now})
	if err != nil {
		tb.Fatal(err)
	}
	return NewVerifier([]Processor{p}, map[string]time.Duration{"corp": cfg.CacheTTL}, nil, now)
}

func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }
