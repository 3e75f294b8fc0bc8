package token

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"
)

// A KeySource supplies the public keys that may have signed a token.
type KeySource interface {
	// Keys returns candidate keys for kid ("" means any). A source backed
	// by an IdP may refresh when kid is unknown.
	Keys(ctx context.Context, kid string) ([]jose.JSONWebKey, error)
}

// MinRSABits refuses RSA keys too short to be trusted.
const MinRSABits = 2048

// keyFits reports whether key may verify alg: the key type must match the
// algorithm family, so that, say, an RSA public key can never be used as
// an HMAC secret (algorithm confusion).
func keyFits(alg jose.SignatureAlgorithm, k jose.JSONWebKey) bool {
	if k.Algorithm != "" && k.Algorithm != string(alg) {
		return false
	}
	if k.Use != "" && k.Use != "sig" {
		return false
	}
	switch key := k.Key.(type) {
	case *rsa.PublicKey:
		switch alg {
		case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512:
			return key.N.BitLen() >= MinRSABits
		}
	case *ecdsa.PublicKey:
		switch alg {
		case jose.ES256:
			return key.Curve == elliptic.P256()
		case jose.ES384:
			return key.Curve == elliptic.P384()
		case jose.ES512:
			return key.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == jose.EdDSA
	case []byte:
		switch alg {
		case jose.HS256, jose.HS384, jose.HS512:
			return len(key) >= 32
		}
	}
	return false
}

// staticKeys is a fixed key set: inline keys, a JWKS file, a shared secret.
type staticKeys []jose.JSONWebKey

func (s staticKeys) Keys(_ context.Context, kid string) ([]jose.JSONWebKey, error) {
	return matchKid(s, kid), nil
}

// matchKid returns the keys with this kid; keys without a kid match any
// token, and a token without a kid may be verified by any key.
func matchKid(keys []jose.JSONWebKey, kid string) []jose.JSONWebKey {
	if kid == "" {
		return keys
	}
	var out []jose.JSONWebKey
	for _, k := range keys {
		if k.KeyID == kid || k.KeyID == "" {
			out = append(out, k)
		}
	}
	return out
}

// ParseKeys reads PEM public keys or certificates, or a JWK set in JSON.
// Private keys are reduced to their public halves; symmetric JWKs are
// refused (use shared_secret, which is explicit).
func ParseKeys(data []byte) ([]jose.JSONWebKey, error) {
	trimmed := strings.TrimSpace(string(data))
	if strings.HasPrefix(trimmed, "{") {
		var set jose.JSONWebKeySet
		if err := json.Unmarshal([]byte(trimmed), &set); err != nil {
			return nil, fmt.Errorf("JWK set: %v", err)
		}
		return publicKeys(set.Keys)
	}
	var keys []jose.JSONWebKey
	rest := []byte(trimmed)
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		var key any
		var err error
		switch block.Type {
		case "PUBLIC KEY":
			key, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			key, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			cert, err = x509.ParseCertificate(block.Bytes)
			if err == nil {
				key = cert.PublicKey
			}
		default:
			return nil, fmt.Errorf("PEM block %q: only PUBLIC KEY, RSA PUBLIC KEY and CERTIFICATE are accepted", block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("PEM block %q: %v", block.Type, err)
		}
		keys = append(keys, jose.JSONWebKey{Key: key})
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM public key or JWK set found")
	}
	return publicKeys(keys)
}

func publicKeys(in []jose.JSONWebKey) ([]jose.JSONWebKey, error) {
	out := make([]jose.JSONWebKey, 0, len(in))
	for _, k := range in {
		if k.Use == "enc" {
			continue
		}
		if _, ok := k.Key.([]byte); ok {
			return nil, errors.New("symmetric keys are not accepted in a key set; use shared_secret")
		}
		if !k.IsPublic() {
			k = k.Public()
		}
		if !k.Valid() {
			return nil, fmt.Errorf("key %q is not a valid public key", k.KeyID)
		}
		out = append(out, k)
	}
	return out, nil
}

// remoteKeys is a JWKS endpoint with a cache. Unknown kids trigger at most
// one refresh per minRefresh; when the endpoint fails, keys fetched before
// stay in use for maxStale, after which verification fails closed.
type remoteKeys struct {
	url        string
	idp        *idpClient
	minRefresh time.Duration
	maxAge     time.Duration
	maxStale   time.Duration
	now        func() time.Time

	mu          sync.Mutex
	keys        []jose.JSONWebKey
	fetchedAt   time.Time
	lastAttempt time.Time
	lastErr     error
	group       singleflight.Group
}

const (
	// JWKSMinRefresh is the least time between two fetches of a key set
	// for an unknown kid: an IdP outage is not multiplied by traffic.
	JWKSMinRefresh = 10 * time.Second
	jwksMaxAge     = 1 * time.Hour
)

func newRemoteKeys(url string, idp *idpClient, maxStale time.Duration, now func() time.Time) *remoteKeys {
	return &remoteKeys{url: url, idp: idp, minRefresh: JWKSMinRefresh, maxAge: jwksMaxAge, maxStale: maxStale, now: now}
}

func (r *remoteKeys) Keys(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	r.mu.Lock()
	keys, fetchedAt := r.keys, r.fetchedAt
	r.mu.Unlock()

	stale := fetchedAt.IsZero() || r.now().Sub(fetchedAt) > r.maxAge
	if stale || (kid != "" && !hasKid(keys, kid)) {
		keys, fetchedAt = r.refresh(ctx)
	}
	if len(keys) == 0 || r.now().Sub(fetchedAt) > r.maxStale {
		r.mu.Lock()
		err := r.lastErr
		r.mu.Unlock()
		if err == nil {
			err = errors.New("no keys fetched yet")
		}
		return nil, errorf(ReasonUnavailable, r.idp.processor, "no usable signing keys from %s: %v", r.url, err)
	}
	return matchKid(keys, kid), nil
}

// refresh fetches the key set once for all concurrent callers, at most
// once per minRefresh, and returns the keys in use afterwards (the old
// ones if the fetch failed or was not due). Callers that arrive while a
// fetch runs wait for it rather than fail.
func (r *remoteKeys) refresh(ctx context.Context) ([]jose.JSONWebKey, time.Time) {
	type result struct {
		keys      []jose.JSONWebKey
		fetchedAt time.Time
	}
	v, _, _ := r.group.Do("", func() (any, error) {
		r.mu.Lock()
		if !r.lastAttempt.IsZero() && r.now().Sub(r.lastAttempt) < r.minRefresh {
			defer r.mu.Unlock()
			return result{r.keys, r.fetchedAt}, nil
		}
		r.lastAttempt = r.now()
		r.mu.Unlock()

		// The fetch is everyone's: one caller giving up must not fail it
		// for the others (it has IdPFetchTimeout of its own).
		var set jose.JSONWebKeySet
		err := r.idp.getJSON(context.WithoutCancel(ctx), "jwks", r.url, &set)
		var keys []jose.JSONWebKey
		if err == nil {
			keys, err = publicKeys(set.Keys)
		}
		if err == nil && len(keys) == 0 {
			err = errors.New("the key set is empty")
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.lastErr = err
		if err == nil {
			r.keys, r.fetchedAt = keys, r.now()
		}
		return result{r.keys, r.fetchedAt}, nil
	})
	res := v.(result)
	return res.keys, res.fetchedAt
}

// unknownKidOutage explains, as a temporary error, why kid may be unknown:
// it is not among the keys held and the last attempt to refresh them
// failed (the IdP was unreachable, hanging or answering 5xx), so the
// IdP may well have published it since. Nil when kid is known or the last
// refresh succeeded: then an unknown kid is a verdict.
func (r *remoteKeys) unknownKidOutage(kid string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if kid == "" || hasKid(r.keys, kid) || r.lastErr == nil {
		return nil
	}
	return errorf(ReasonUnavailable, r.idp.processor, "key %s is not among the keys held, and refreshing them from %s failed: %v", quote(kid), r.url, r.lastErr)
}

// ready fetches keys if none are held yet.
func (r *remoteKeys) ready(ctx context.Context) error {
	_, err := r.Keys(ctx, "")
	return err
}

func hasKid(keys []jose.JSONWebKey, kid string) bool {
	for _, k := range keys {
		if k.KeyID == kid {
			return true
		}
	}
	return false
}
