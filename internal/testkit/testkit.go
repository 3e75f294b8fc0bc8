// Package testkit holds what tests share across packages (servers,
// commands, end-to-end tests above all): signing keys and tokens, the
// clickgate binary, a headless Chromium to sign in with, Node and the npm
// packages, and small helpers such as a goroutine-safe buffer for logs and
// the settable clock every test that moves time uses.
// Only tests, benchmarks and test-support packages (storetest) import it.
package testkit

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Key is a signing key and the JWK of its public half.
type Key struct {
	Alg     jose.SignatureAlgorithm
	Private crypto.Signer
	Public  jose.JSONWebKey
}

// NewKey generates a key for alg (RS*, PS*, ES256, ES384 or EdDSA) with key id kid.
func NewKey(tb testing.TB, alg jose.SignatureAlgorithm, kid string) *Key {
	tb.Helper()
	var priv crypto.Signer
	var err error
	switch alg {
	case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.ES384:
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case jose.EdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		tb.Fatalf("testkit: no key for %s", alg)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return &Key{Alg: alg, Private: priv, Public: jose.JSONWebKey{Key: priv.Public(), KeyID: kid, Algorithm: string(alg), Use: "sig"}}
}

// Sign returns claims as a compact JWS signed by k.
func (k *Key) Sign(tb testing.TB, claims map[string]any) string {
	tb.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: k.Alg, Key: jose.JSONWebKey{Key: k.Private, KeyID: k.Public.KeyID}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		tb.Fatal(err)
	}
	raw, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}

// WriteJWKS writes the public keys as a JWK set file in dir and returns its path.
func WriteJWKS(tb testing.TB, dir string, keys ...*Key) string {
	tb.Helper()
	set := jose.JSONWebKeySet{}
	for _, k := range keys {
		set.Keys = append(set.Keys, k.Public)
	}
	b, err := json.Marshal(set)
	if err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

// Claims returns a person's token claims valid for an hour from now.
func Claims(issuer, audience, email string, groups ...string) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": issuer, "aud": []string{audience}, "sub": "sub-" + email,
		"email": email, "email_verified": true, "groups": groups,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
}
