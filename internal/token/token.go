// Package token verifies tokens. A Processor knows one identity provider
// and turns a raw token into an identity.Identity or a specific *Error; a
// Verifier tries its processors in precedence order and caches results.
package token

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/clickgate/clickgate/internal/identity"
)

// MaxTokenBytes caps a token before any parsing or hashing.
const MaxTokenBytes = 16 << 10

// A Processor knows one identity provider.
type Processor interface {
	// Name is the processor's key in token_processors.
	Name() string
	// Accepts reports, without network or crypto, whether t may be this
	// processor's token. A token is never sent to an IdP that does not
	// accept it, so one provider's tokens do not leak to another.
	Accepts(t *Token) bool
	// Verify checks t and returns the identity it proves.
	Verify(ctx context.Context, t *Token) (*identity.Identity, error)
}

// Token is a raw token with its unverified JWS structure, parsed once.
type Token struct {
	Raw string
	// JWT is nil for opaque tokens.
	JWT *jwt.JSONWebToken
	// Issuer is the unverified iss of a JWT; used only for routing.
	Issuer string
	// ParseError says why a token that looks like a JWT (three dot-separated
	// parts) did not parse; such a token is never treated as opaque.
	ParseError error
	// claims is the JWT's payload, unverified until a processor checked
	// the signature.
	claims map[string]any
}

// supportedAlgorithms is every algorithm go-jose may parse; each processor
// narrows it to its configured allowlist. "none" is not among them.
var supportedAlgorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
	jose.HS256, jose.HS384, jose.HS512,
}

// Parse checks size and shape and parses a JWS compact token's structure
// without verifying it.
func Parse(raw string) (*Token, error) {
	if len(raw) > MaxTokenBytes {
		return nil, errorf(ReasonTooLarge, "", "token is %d bytes; the limit is %d", len(raw), MaxTokenBytes)
	}
	if raw == "" {
		return nil, errorf(ReasonMalformed, "", "token is empty")
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c <= ' ' || c >= 0x7f {
			return nil, errorf(ReasonMalformed, "", "token contains a space, control or non-ASCII character")
		}
	}
	t := &Token{Raw: raw}
	if strings.Count(raw, ".") != 2 {
		return t, nil
	}
	// go-jose decodes base64url leniently, so a token could be spelled
	// several ways (spare bits in the last character) and still verify.
	// Only the canonical spelling is accepted: one token, one cache entry.
	for _, seg := range strings.Split(raw, ".") {
		if _, err := strictBase64.DecodeString(seg); err != nil {
			t.ParseError = errors.New("a segment is not canonical unpadded base64url")
			return t, nil
		}
	}
	tok, err := jwt.ParseSigned(raw, supportedAlgorithms)
	var algErr *jose.ErrUnexpectedSignatureAlgorithm
	if errors.As(err, &algErr) {
		return nil, errorf(ReasonAlgorithm, "", "algorithm %s is never accepted", quote(string(algErr.Got)))
	}
	if err != nil {
		t.ParseError = clipError(err)
		return t, nil
	}
	// The payload is decoded once, here; the processor trusts these
	// claims only after the signature over the same bytes verified.
	var payload json.RawMessage
	if err := tok.UnsafeClaimsWithoutVerification(&payload); err != nil {
		t.ParseError = clipError(err)
		return t, nil
	}
	if err := json.Unmarshal(payload, &t.claims); err != nil || t.claims == nil {
		t.ParseError = errors.New("the payload is not a JSON object")
		return t, nil
	}
	t.JWT = tok
	t.Issuer, _ = t.claims["iss"].(string)
	return t, nil
}

var strictBase64 = base64.RawURLEncoding.Strict()

// clipError keeps a library's parse error short: go-jose quotes the
// offending header, which an attacker may make kilobytes long.
func clipError(err error) error {
	const max = 200
	if msg := err.Error(); len(msg) > max {
		return errors.New(msg[:max] + "…")
	}
	return err
}

// LooksLikeJWT reports whether t has JWS compact shape, parsed or not.
func (t *Token) LooksLikeJWT() bool { return t.JWT != nil || t.ParseError != nil }

// Reason classifies a refusal, for metrics, the session log and messages.
type Reason string

// Reasons, from cheapest to most expensive to detect.
const (
	ReasonTooLarge     Reason = "too_large"
	ReasonMalformed    Reason = "malformed"
	ReasonAlgorithm    Reason = "algorithm"
	ReasonIssuer       Reason = "wrong_issuer"
	ReasonAudience     Reason = "wrong_audience"
	ReasonExpired      Reason = "expired"
	ReasonNotYetValid  Reason = "not_yet_valid"
	ReasonIssuedAt     Reason = "issued_in_future"
	ReasonUnknownKey   Reason = "unknown_key"
	ReasonSignature    Reason = "bad_signature"
	ReasonClaims       Reason = "claims"
	ReasonInactive     Reason = "inactive"
	ReasonNoProcessor  Reason = "no_processor"
	ReasonUnavailable  Reason = "idp_unavailable"
	ReasonInternal     Reason = "internal"
	reasonUnclassified Reason = "rejected"
)

// Error is a refusal with a specific reason. Its message never contains
// the token.
type Error struct {
	Reason    Reason
	Processor string
	msg       string
}

func (e *Error) Error() string {
	if e.Processor != "" {
		return "token: " + e.Processor + ": " + e.msg
	}
	return "token: " + e.msg
}

// Temporary reports whether the refusal may go away on retry (the IdP was
// unreachable); such results are never cached.
func (e *Error) Temporary() bool { return e.Reason == ReasonUnavailable }

func errorf(r Reason, processor, format string, args ...any) *Error {
	return &Error{Reason: r, Processor: processor, msg: fmt.Sprintf(format, args...)}
}

// ReasonOf returns err's Reason, or "rejected" for other errors.
func ReasonOf(err error) Reason {
	var e *Error
	if errors.As(err, &e) {
		return e.Reason
	}
	return reasonUnclassified
}

// IsTemporary reports whether err is a temporary refusal.
func IsTemporary(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Temporary()
}

// quote shows an untrusted claim value in a message: quoted and clipped.
func quote(s string) string {
	const max = 80
	if len(s) > max {
		s = s[:max] + "…"
	}
	return fmt.Sprintf("%q", s)
}
