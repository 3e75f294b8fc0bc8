package token

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/clickgate/clickgate/internal/identity"
	"github.com/clickgate/clickgate/internal/problems"
)

// jwtVerifier checks a signed JWT: algorithm, then the claims (cheap),
// then the key lookup and signature (expensive), in that order.
type jwtVerifier struct {
	processor  string
	issuer     string
	audiences  []string
	algorithms []jose.SignatureAlgorithm
	keys       KeySource
	leeway     time.Duration
	now        func() time.Time
}

// verify returns the verified claims of t.
func (v *jwtVerifier) verify(ctx context.Context, t *Token) (map[string]any, error) {
	if t.JWT == nil {
		if t.ParseError != nil {
			return nil, v.errorf(ReasonMalformed, "not a valid signed JWT: %v", t.ParseError)
		}
		return nil, v.errorf(ReasonMalformed, "not a JWT")
	}
	if len(t.JWT.Headers) != 1 {
		return nil, v.errorf(ReasonMalformed, "expected one signature, found %d", len(t.JWT.Headers))
	}
	hdr := t.JWT.Headers[0]
	alg := jose.SignatureAlgorithm(hdr.Algorithm)
	if !slices.Contains(v.algorithms, alg) {
		return nil, v.errorf(ReasonAlgorithm, "algorithm %s is not allowed (allowed: %s)", quote(hdr.Algorithm), algNames(v.algorithms))
	}

	std, err := standardClaims(t.claims)
	if err != nil {
		return nil, v.errorf(ReasonMalformed, "claims: %v", err)
	}
	if err := v.checkClaims(std); err != nil {
		return nil, err
	}

	keys, err := v.keys.Keys(ctx, hdr.KeyID)
	if err != nil {
		return nil, err
	}
	var candidates []jose.JSONWebKey
	for _, k := range keys {
		if keyFits(alg, k) {
			candidates = append(candidates, k)
		}
	}
	if len(candidates) == 0 {
		if err := v.keyOutage(hdr.KeyID); err != nil {
			return nil, err
		}
		if hdr.KeyID != "" {
			return nil, v.errorf(ReasonUnknownKey, "no %s key with kid %s", alg, quote(hdr.KeyID))
		}
		return nil, v.errorf(ReasonUnknownKey, "no %s key to verify the token with", alg)
	}
	for _, k := range candidates {
		if err := t.JWT.Claims(k.Key); err == nil {
			return t.claims, nil
		}
	}
	if err := v.keyOutage(hdr.KeyID); err != nil {
		return nil, err
	}
	return nil, v.errorf(ReasonSignature, "signature does not verify")
}

// keyOutage is a temporary error when the token's kid is unknown only
// because the key source could not refresh its keys: an IdP outage is not
// a verdict on the token, and a refusal would be cached.
func (v *jwtVerifier) keyOutage(kid string) error {
	if r, ok := v.keys.(interface{ unknownKidOutage(string) error }); ok {
		return r.unknownKidOutage(kid)
	}
	return nil
}

// standardClaims reads the registered claims from a decoded payload with
// the types RFC 7519 gives them; a wrongly typed claim is malformed.
func standardClaims(m map[string]any) (*jwt.Claims, error) {
	c := &jwt.Claims{}
	var ok bool
	if v, present := m["iss"]; present {
		if c.Issuer, ok = v.(string); !ok {
			return nil, errors.New("iss is not a string")
		}
	}
	switch aud := m["aud"].(type) {
	case nil:
	case string:
		c.Audience = jwt.Audience{aud}
	case []any:
		for _, a := range aud {
			s, ok := a.(string)
			if !ok {
				return nil, errors.New("aud holds a non-string")
			}
			c.Audience = append(c.Audience, s)
		}
	default:
		return nil, errors.New("aud is neither a string nor a list")
	}
	for name, dst := range map[string]**jwt.NumericDate{"exp": &c.Expiry, "nbf": &c.NotBefore, "iat": &c.IssuedAt} {
		v, present := m[name]
		if !present {
			continue
		}
		f, ok := v.(float64)
		if !ok {
			return nil, errors.New(name + " is not a number")
		}
		*dst = numericDate(f)
	}
	return c, nil
}

// checkClaims validates iss, aud, exp, nbf and iat with leeway. exp is
// required: a token without one would be valid forever.
func (v *jwtVerifier) checkClaims(c *jwt.Claims) error {
	if c.Issuer != v.issuer {
		if c.Issuer == "" {
			return v.errorf(ReasonIssuer, "token has no iss; expected %s", quote(v.issuer))
		}
		return v.errorf(ReasonIssuer, "issuer %s is not the expected %s", quote(c.Issuer), quote(v.issuer))
	}
	if err := checkAudience(c.Audience, v.audiences); err != nil {
		return v.errorf(ReasonAudience, "%v", err)
	}
	if c.Expiry == nil {
		return v.errorf(ReasonExpired, "token has no exp claim")
	}
	return checkTimes(v.processor, c.Expiry, c.NotBefore, c.IssuedAt, v.now(), v.leeway)
}

func checkAudience(aud []string, accepted []string) error {
	if len(accepted) == 0 {
		return nil
	}
	for _, a := range aud {
		if slices.Contains(accepted, a) {
			return nil
		}
	}
	if len(aud) == 0 {
		return errors.New("token has no aud; expected one of " + strings.Join(accepted, ", "))
	}
	shown := make([]string, 0, 3)
	for i, a := range aud {
		if i == 3 {
			shown = append(shown, "…")
			break
		}
		shown = append(shown, quote(a))
	}
	return errors.New("audience " + strings.Join(shown, ", ") + " is not one of " + strings.Join(accepted, ", "))
}

func checkTimes(processor string, exp, nbf, iat *jwt.NumericDate, now time.Time, leeway time.Duration) error {
	if exp != nil && now.After(exp.Time().Add(leeway)) {
		return errorf(ReasonExpired, processor, "token expired at %s (now %s, leeway %s)", exp.Time().UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), leeway)
	}
	if nbf != nil && now.Add(leeway).Before(nbf.Time()) {
		return errorf(ReasonNotYetValid, processor, "token is not valid before %s (now %s, leeway %s)", nbf.Time().UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339), leeway)
	}
	if iat != nil && now.Add(leeway).Before(iat.Time()) {
		return errorf(ReasonIssuedAt, processor, "token claims to be issued in the future, at %s; check the clocks", iat.Time().UTC().Format(time.RFC3339))
	}
	return nil
}

func (v *jwtVerifier) errorf(r Reason, format string, args ...any) *Error {
	return errorf(r, v.processor, format, args...)
}

func algNames(algs []jose.SignatureAlgorithm) string {
	names := make([]string, len(algs))
	for i, a := range algs {
		names[i] = string(a)
	}
	return strings.Join(names, ", ")
}

// claimPolicy turns verified claims into an identity: required claims,
// then user name and groups.
type claimPolicy struct {
	processor     string
	required      map[string]any
	usernameClaim string
	groupsClaim   string
}

func (p *claimPolicy) identity(claims map[string]any) (*identity.Identity, error) {
	for _, name := range sortedClaimNames(p.required) {
		if err := requireClaim(claims, name, p.required[name]); err != nil {
			return nil, errorf(ReasonClaims, p.processor, "%v", err)
		}
	}
	id, err := identity.FromClaims(p.processor, claims, p.usernameClaim, p.groupsClaim)
	if err != nil {
		return nil, errorf(ReasonClaims, p.processor, "%v", err)
	}
	return id, nil
}

// jwtProcessor verifies JWTs from one issuer against a key source.
type jwtProcessor struct {
	verifier *jwtVerifier
	policy   *claimPolicy
	exchange Endpoint
}

func (p *jwtProcessor) Name() string { return p.verifier.processor }

func (p *jwtProcessor) Accepts(t *Token) bool {
	return t.LooksLikeJWT() && (t.JWT == nil || t.Issuer == p.verifier.issuer)
}

func (p *jwtProcessor) Verify(ctx context.Context, t *Token) (*identity.Identity, error) {
	claims, err := p.verifier.verify(ctx, t)
	if err != nil {
		return nil, err
	}
	return p.policy.identity(claims)
}

// Ready fetches the signing keys when they come from a JWKS URL.
func (p *jwtProcessor) Ready(ctx context.Context) error {
	if r, ok := p.verifier.keys.(*remoteKeys); ok {
		return r.ready(ctx)
	}
	return nil
}

var jwtType = Type{New: newJWTProcessor, Validate: validateJWT, ChecksAudience: hasAudiences, Describe: func(tp *Config) []string {
	var out []string
	switch {
	case tp.JWKSURI != "":
		out = append(out, fmt.Sprintf("JWTs verified locally with keys from %s (refreshed at most every %s for an unknown kid; kept for %s if it goes down)", tp.JWKSURI, JWKSMinRefresh, tp.MaxKeyStaleness))
	case tp.JWKSFile != "":
		out = append(out, "JWTs verified locally with keys from the file "+tp.JWKSFile)
	case tp.Keys != "":
		out = append(out, "JWTs verified locally with the inline keys")
	}
	return append(out, fmt.Sprintf("iss must be %q", tp.Issuer), algorithmsLine(tp))
}}

func newJWTProcessor(name string, cfg *Config, opt Options) (Processor, error) {
	keys, err := keySourceFor(name, cfg, opt)
	if err != nil {
		return nil, err
	}
	return NewJWTProcessor(name, cfg, keys, opt), nil
}

// NewJWTProcessor returns a jwt processor for cfg that verifies with keys
// rather than cfg's jwks_uri, jwks_file or keys: for an issuer that holds
// its keys in this process.
func NewJWTProcessor(name string, cfg *Config, keys KeySource, opt Options) Processor {
	v := jwtVerifierFor(name, cfg, opt.withDefaults())
	v.keys = keys
	return &jwtProcessor{verifier: v, policy: policyFor(name, cfg), exchange: exchangeEndpoint(cfg)}
}

// keySourceFor returns the jwt processor's keys: a JWKS URL, a file or
// inline keys, plus the shared secret when HMAC is configured.
func keySourceFor(name string, cfg *Config, opt Options) (KeySource, error) {
	if cfg.JWKSURI != "" {
		return newRemoteKeys(cfg.JWKSURI, opt.idp(name), cfg.MaxKeyStaleness, opt.Now), nil
	}
	var keys []jose.JSONWebKey
	var err error
	switch {
	case cfg.JWKSFile != "":
		var data []byte
		// Validate read it too; it may have changed since.
		data, err = os.ReadFile(cfg.JWKSFile)
		if err == nil {
			keys, err = ParseKeys(data)
		}
		if err != nil {
			return nil, fmt.Errorf("token_processors.%s.jwks_file: %v", name, err)
		}
	case cfg.Keys != "":
		keys, _ = ParseKeys([]byte(cfg.Keys)) // Validate parsed them
	}
	if cfg.SharedSecret != "" {
		keys = append(keys, jose.JSONWebKey{Key: []byte(cfg.SharedSecret)})
	}
	return staticKeys(keys), nil
}

func validateJWT(c *Config, path string, p *problems.List) {
	sources := 0
	for _, s := range []string{c.JWKSURI, c.JWKSFile, c.Keys} {
		if s != "" {
			sources++
		}
	}
	switch {
	case sources > 1:
		p.Add(path, "set only one of jwks_uri, jwks_file and keys")
	case sources == 0 && c.SharedSecret == "":
		p.Add(path, "a jwt processor needs its keys: set jwks_uri, jwks_file or keys (or shared_secret for HS256)")
	case c.JWKSURI != "":
		p.URL(path+".jwks_uri", c.JWKSURI)
	case c.JWKSFile != "":
		if data := readable(path+".jwks_file", c.JWKSFile, p); data != nil {
			if _, err := ParseKeys(data); err != nil {
				p.Add(path+".jwks_file", "%v", err)
			}
		}
	case c.Keys != "":
		if _, err := ParseKeys([]byte(c.Keys)); err != nil {
			p.Add(path+".keys", "%v", err)
		}
	}
	p.Required(path+".issuer", c.Issuer, "the expected iss claim")
	validateAudiences(path, c.Audiences, p)
}
