package token

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// unsigned builds an "alg":"none" token by hand: no library will make one.
func unsigned(t *testing.T, claims map[string]any) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return enc(map[string]string{"alg": "none", "typ": "JWT"}) + "." + enc(claims) + "."
}

// tamper replaces a signed token's payload, keeping header and signature.
func tamper(t *testing.T, raw string, claims map[string]any) string {
	t.Helper()
	parts := strings.Split(raw, ".")
	b, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	parts[1] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}

func TestJWTChecks(t *testing.T) {
	rsaKey := newSigningKey(t, jose.RS256, "rsa-1")
	ecKey := newSigningKey(t, jose.ES256, "ec-1")
	edKey := newSigningKey(t, jose.EdDSA, "ed-1")
	foreign := newSigningKey(t, jose.RS256, "rsa-1") // reuses a trusted kid
	stranger := newSigningKey(t, jose.ES256, "nobody-knows")
	cfg := jwtConfig(t, rsaKey, ecKey, edKey)

	rsaPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(rsaKey.Private.Public()))})
	good := validClaims()
	hour := time.Hour

	tests := []struct {
		name  string
		token string
		want  Reason // "" means accepted
	}{
		{"RS256", rsaKey.sign(t, good), ""},
		{"ES256", ecKey.sign(t, good), ""},
		{"EdDSA", edKey.sign(t, good), ""},
		{"aud as a plain string", rsaKey.sign(t, with(good, map[string]any{"aud": testAudience})), ""},
		{"expired within leeway", rsaKey.sign(t, with(good, map[string]any{"exp": testClock.Add(-10 * time.Second).Unix()})), ""},

		{"alg none", unsigned(t, good), ReasonAlgorithm},
		{"HS256 with the RSA public key as secret", signWith(t, jose.HS256, rsaPEM, good), ReasonAlgorithm},
		{"wrong audience", rsaKey.sign(t, with(good, map[string]any{"aud": []string{"grafana"}})), ReasonAudience},
		{"missing audience", rsaKey.sign(t, with(good, map[string]any{"aud": nil})), ReasonAudience},
		{"wrong issuer", rsaKey.sign(t, with(good, map[string]any{"iss": "https://evil.test"})), ReasonIssuer},
		{"missing issuer", rsaKey.sign(t, with(good, map[string]any{"iss": nil})), ReasonIssuer},
		{"expired", rsaKey.sign(t, with(good, map[string]any{"exp": testClock.Add(-hour).Unix()})), ReasonExpired},
		{"no exp", rsaKey.sign(t, with(good, map[string]any{"exp": nil})), ReasonExpired},
		{"not yet valid", rsaKey.sign(t, with(good, map[string]any{"nbf": testClock.Add(hour).Unix()})), ReasonNotYetValid},
		{"issued in the future", rsaKey.sign(t, with(good, map[string]any{"iat": testClock.Add(hour).Unix()})), ReasonIssuedAt},
		{"unknown kid", stranger.sign(t, good), ReasonUnknownKey},
		{"foreign key reusing a known kid", foreign.sign(t, good), ReasonSignature},
		{"tampered payload", tamper(t, rsaKey.sign(t, good), with(good, map[string]any{"email": "admin@example.com"})), ReasonSignature},
		{"signature of another token", func() string {
			a := strings.Split(rsaKey.sign(t, good), ".")
			b := strings.Split(rsaKey.sign(t, with(good, map[string]any{"sub": "other"})), ".")
			return a[0] + "." + a[1] + "." + b[2]
		}(), ReasonSignature},
		{"username claim not a string", rsaKey.sign(t, with(good, map[string]any{"email": 42})), ReasonClaims},
		{"username claim missing", rsaKey.sign(t, with(good, map[string]any{"email": nil})), ReasonClaims},
		{"groups not a list of strings", rsaKey.sign(t, with(good, map[string]any{"groups": []any{1, 2}})), ReasonClaims},
		{"oversized", rsaKey.sign(t, with(good, map[string]any{"pad": strings.Repeat("x", MaxTokenBytes)})), ReasonTooLarge},
		{"garbage", "not-a-token", ReasonNoProcessor},
		{"three garbage parts", "a.b.c", ReasonMalformed},
		{"truncated", rsaKey.sign(t, good)[:40], ReasonNoProcessor},
		{"truncated signature", func() string { s := rsaKey.sign(t, good); return s[:len(s)-10] }(), ReasonSignature},
		{"control characters", "eyJ\x00.eyJ.sig", ReasonMalformed},
		{"empty", "", ReasonMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := newTestVerifier(t, cfg, fixedClock(testClock))
			id, err := v.Verify(context.Background(), tc.token)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("want accepted, got %v", err)
				}
				if id.Username != "alice@example.com" || id.Subject != "u-123" {
					t.Fatalf("identity = %+v", id)
				}
				return
			}
			if err == nil {
				t.Fatalf("want %s, got accepted as %q", tc.want, id.Username)
			}
			if got := ReasonOf(err); got != tc.want {
				t.Fatalf("reason = %s, want %s (%v)", got, tc.want, err)
			}
			if len(tc.token) > 20 && strings.Contains(err.Error(), tc.token[len(tc.token)-20:]) {
				t.Fatalf("error echoes the token: %v", err)
			}
		})
	}
}

// HS256 is usable only with an explicit shared secret, and even then an
// HS256 token whose "secret" is a trusted RSA public key is refused: the
// key type must match the algorithm.
func TestHMACNeedsSharedSecret(t *testing.T) {
	rsaKey := newSigningKey(t, jose.RS256, "rsa-1")
	secret := strings.Repeat("s", 40)
	cfg := jwtConfig(t, rsaKey)
	cfg.SharedSecret = secret
	cfg.Algorithms = nil
	cfg.ApplyDefaults()
	v := newTestVerifier(t, cfg, fixedClock(testClock))

	hs := signWith(t, jose.HS256, []byte(secret), validClaims())
	if _, err := v.Verify(context.Background(), hs); err != nil {
		t.Fatalf("HS256 with the shared secret: %v", err)
	}
	pubDER := must(x509.MarshalPKIXPublicKey(rsaKey.Private.Public()))
	for name, secret := range map[string][]byte{
		"PEM": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}),
		"DER": pubDER,
	} {
		confused := signWith(t, jose.HS256, secret, validClaims())
		_, err := v.Verify(context.Background(), confused)
		if ReasonOf(err) != ReasonSignature {
			t.Errorf("HS256 signed with the RSA public key (%s): got %v, want bad_signature", name, err)
		}
	}
}

func TestAlgorithmAllowlist(t *testing.T) {
	rsaKey := newSigningKey(t, jose.RS256, "rsa-1")
	cfg := jwtConfig(t, rsaKey)
	cfg.Algorithms = []string{"ES256"}
	v := newTestVerifier(t, cfg, fixedClock(testClock))
	_, err := v.Verify(context.Background(), rsaKey.sign(t, validClaims()))
	if ReasonOf(err) != ReasonAlgorithm {
		t.Fatalf("RS256 outside the allowlist: got %v, want algorithm", err)
	}
}

// A key's alg and use, when a JWKS states them, bind it.
func TestKeyFits(t *testing.T) {
	rsaKey := newSigningKey(t, jose.RS256, "r")
	ecKey := newSigningKey(t, jose.ES256, "e")
	edKey := newSigningKey(t, jose.EdDSA, "d")
	p384 := newSigningKey(t, jose.ES384, "p")
	tests := []struct {
		alg  jose.SignatureAlgorithm
		key  jose.JSONWebKey
		fits bool
	}{
		{jose.RS256, rsaKey.Public, true},
		{jose.PS256, jose.JSONWebKey{Key: rsaKey.Public.Key}, true},
		{jose.PS256, rsaKey.Public, false}, // JWK says RS256
		{jose.ES256, ecKey.Public, true},
		{jose.ES256, jose.JSONWebKey{Key: p384.Public.Key}, false},
		{jose.EdDSA, edKey.Public, true},
		{jose.HS256, jose.JSONWebKey{Key: rsaKey.Public.Key}, false},
		{jose.HS256, jose.JSONWebKey{Key: []byte("short")}, false},
		{jose.RS256, jose.JSONWebKey{Key: rsaKey.Public.Key, Use: "enc"}, false},
		{jose.EdDSA, jose.JSONWebKey{Key: ecKey.Public.Key}, false},
	}
	for _, tc := range tests {
		if got := keyFits(tc.alg, tc.key); got != tc.fits {
			t.Errorf("keyFits(%s, %T kid=%q alg=%q use=%q) = %v, want %v", tc.alg, tc.key.Key, tc.key.KeyID, tc.key.Algorithm, tc.key.Use, got, tc.fits)
		}
	}
}

func TestRequiredClaims(t *testing.T) {
	key := newSigningKey(t, jose.ES256, "k")
	cfg := jwtConfig(t, key)
	cfg.RequiredClaims = map[string]any{"email_verified": true, "groups": "staff", "tier": 2}
	v := newTestVerifier(t, cfg, fixedClock(testClock))
	good := with(validClaims(), map[string]any{"tier": 2})
	tests := []struct {
		name   string
		claims map[string]any
		ok     bool
	}{
		{"all present", good, true},
		{"bool mismatch", with(good, map[string]any{"email_verified": false}), false},
		{"missing", with(good, map[string]any{"email_verified": nil}), false},
		{"list lacks value", with(good, map[string]any{"groups": []string{"ch-analysts"}}), false},
		{"number mismatch", with(good, map[string]any{"tier": 3}), false},
		{"string where bool wanted", with(good, map[string]any{"email_verified": "true"}), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), key.sign(t, tc.claims))
			if tc.ok != (err == nil) {
				t.Fatalf("ok=%v, err=%v", tc.ok, err)
			}
			if !tc.ok && ReasonOf(err) != ReasonClaims {
				t.Fatalf("reason %s, want claims", ReasonOf(err))
			}
		})
	}
}

func TestParseKeys(t *testing.T) {
	rsaKey := newSigningKey(t, jose.RS256, "r")
	edKey := newSigningKey(t, jose.EdDSA, "d")
	pkix := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(rsaKey.Private.Public()))})
	pkix2 := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: must(x509.MarshalPKIXPublicKey(edKey.Private.Public()))})
	privJWK, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: edKey.Private, KeyID: "d"}}})
	tests := []struct {
		name  string
		input string
		keys  int
		err   string
	}{
		{"two PEM keys", string(pkix) + string(pkix2), 2, ""},
		{"JWK set", jwks(t, rsaKey, edKey), 2, ""},
		{"private JWK reduced to public", string(privJWK), 1, ""},
		{"symmetric JWK", `{"keys":[{"kty":"oct","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}]}`, 0, "symmetric"},
		{"private PEM", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", 0, "only PUBLIC KEY"},
		{"nothing", "hello", 0, "no PEM public key"},
		{"bad JSON", "{", 0, "JWK set"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			keys, err := ParseKeys([]byte(tc.input))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want it to mention %q", err, tc.err)
				}
				return
			}
			if err != nil || len(keys) != tc.keys {
				t.Fatalf("got %d keys, err %v; want %d", len(keys), err, tc.keys)
			}
			for _, k := range keys {
				if !k.IsPublic() {
					t.Fatal("a private key survived")
				}
			}
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
