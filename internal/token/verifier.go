package token

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"

	"github.com/clickgate/clickgate/internal/identity"
)

// Cache sizing and lifetimes.
const (
	DefaultCacheSize = 10000
	// NegativeTTL is how long a rejection is remembered, so a client that
	// retries a bad token does not reach the IdP each time.
	NegativeTTL = 5 * time.Second
	// verifyTimeout bounds one shared verification, independently of the
	// first caller's context, whose cancellation must not fail the others.
	verifyTimeout = 15 * time.Second
)

// Verifier tries processors in precedence order and caches the outcome by
// a hash of the token: identities until min(exp, cache_ttl), rejections
// for NegativeTTL, temporary failures not at all. Concurrent requests for
// one token share one verification.
type Verifier struct {
	processors []Processor
	cacheTTL   map[string]time.Duration
	cache      *lru.Cache[[sha256.Size]byte, cached]
	group      singleflight.Group
	metrics    *Metrics
	now        func() time.Time
}

type cached struct {
	id      *identity.Identity
	err     error
	expires time.Time
}

// NewVerifier returns a Verifier over processors (in precedence order);
// cacheTTL caps how long each processor's identities are cached.
func NewVerifier(processors []Processor, cacheTTL map[string]time.Duration, metrics *Metrics, now func() time.Time) *Verifier {
	if now == nil {
		now = time.Now
	}
	cache, _ := lru.New[[sha256.Size]byte, cached](DefaultCacheSize)
	return &Verifier{processors: processors, cacheTTL: cacheTTL, cache: cache, metrics: metrics, now: now}
}

// Verify returns the identity that raw proves. The returned Identity is
// shared with the cache and must not be modified.
func (v *Verifier) Verify(ctx context.Context, raw string) (*identity.Identity, error) {
	if len(raw) > MaxTokenBytes {
		return nil, errorf(ReasonTooLarge, "", "token is %d bytes; the limit is %d", len(raw), MaxTokenBytes)
	}
	key := sha256.Sum256([]byte(raw))
	if c, ok := v.lookup(key); ok {
		if c.err != nil {
			v.metrics.cacheLookup("negative_hit")
		} else {
			v.metrics.cacheLookup("hit")
		}
		return c.id, c.err
	}
	v.metrics.cacheLookup("miss")

	ch := v.group.DoChan(string(key[:]), func() (any, error) {
		// A flight that finished between our lookup and now has
		// already cached the answer.
		if c, ok := v.lookup(key); ok {
			return c.id, c.err
		}
		vctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), verifyTimeout)
		defer cancel()
		id, err := v.verify(vctx, raw)
		v.remember(key, id, err)
		return id, err
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*identity.Identity), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// lookup returns a cached, unexpired outcome.
func (v *Verifier) lookup(key [sha256.Size]byte) (cached, bool) {
	c, ok := v.cache.Get(key)
	if !ok || !v.now().Before(c.expires) {
		return cached{}, false
	}
	return c, true
}

func (v *Verifier) remember(key [sha256.Size]byte, id *identity.Identity, err error) {
	now := v.now()
	switch {
	case err == nil:
		expires := now.Add(v.cacheTTL[id.Processor])
		if !id.Expiry.IsZero() && id.Expiry.Before(expires) {
			expires = id.Expiry
		}
		v.cache.Add(key, cached{id: id, expires: expires})
	case IsTemporary(err) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		// An outage is not a verdict on the token.
	default:
		v.cache.Add(key, cached{err: err, expires: now.Add(NegativeTTL)})
	}
}

// verify asks each processor that accepts the token, in order. The first
// success wins; otherwise a definite refusal is preferred over an outage,
// so that a bad token is reported as bad even when another IdP is down.
func (v *Verifier) verify(ctx context.Context, raw string) (*identity.Identity, error) {
	t, err := Parse(raw)
	if err != nil {
		return nil, err
	}
	var refusal, outage error
	for _, p := range v.candidates(t) {
		id, err := p.Verify(ctx, t)
		if err == nil {
			return id, nil
		}
		switch {
		case IsTemporary(err) || ctx.Err() != nil:
			if outage == nil {
				outage = err
			}
		case refusal == nil:
			refusal = err
		}
	}
	if refusal != nil {
		return nil, refusal
	}
	if outage != nil {
		return nil, outage
	}
	switch {
	case t.JWT != nil && t.Issuer == "":
		return nil, errorf(ReasonIssuer, "", "the JWT has no iss, so no processor can vouch for it")
	case t.JWT != nil:
		return nil, errorf(ReasonIssuer, "", "no token processor trusts issuer %s", quote(t.Issuer))
	case t.ParseError != nil:
		return nil, errorf(ReasonMalformed, "", "not a valid signed JWT: %v", t.ParseError)
	default:
		return nil, errorf(ReasonNoProcessor, "", "not a JWT, and no configured processor checks tokens of this kind (opaque, github or google)")
	}
}

// A recognizer knows its own tokens by their shape, as GitHub's by their
// ghp_/gho_ prefixes and Google's by ya29.
type recognizer interface {
	Recognizes(t *Token) bool
}

// candidates returns the processors that may see t, in precedence order.
// A token that a processor recognizes goes to that processor only, so
// that a GitHub token never reaches, say, the company IdP's userinfo
// endpoint just because that processor comes first and takes opaque tokens.
func (v *Verifier) candidates(t *Token) []Processor {
	var recognized, accepting []Processor
	for _, p := range v.processors {
		if r, ok := p.(recognizer); ok && r.Recognizes(t) {
			recognized = append(recognized, p)
		}
		if p.Accepts(t) {
			accepting = append(accepting, p)
		}
	}
	if len(recognized) > 0 {
		return recognized
	}
	return accepting
}

// A readier can tell whether its IdP is reachable.
type readier interface {
	Ready(ctx context.Context) error
}

// Ready checks every processor that can be checked without a token, side
// by side, so that one hanging IdP does not use up the others' time. A
// check still running when ctx ends is reported as ctx's error.
func (v *Verifier) Ready(ctx context.Context) map[string]error {
	type result struct {
		name string
		err  error
	}
	results := make(chan result, len(v.processors))
	pending := map[string]bool{}
	for _, p := range v.processors {
		if r, ok := p.(readier); ok {
			pending[p.Name()] = true
			go func() { results <- result{p.Name(), r.Ready(ctx)} }()
		}
	}
	out := map[string]error{}
	for len(pending) > 0 {
		select {
		case r := <-results:
			out[r.name] = r.err
			delete(pending, r.name)
		case <-ctx.Done():
			for name := range pending {
				out[name] = fmt.Errorf("no answer before the readiness deadline: %w", ctx.Err())
			}
			return out
		}
	}
	return out
}
