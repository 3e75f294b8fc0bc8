package token

import (
	"fmt"
	"sync"
	"time"
)

// How clickgate treats an IdP that does not answer.
const (
	// IdPFetchTimeout bounds one call to an IdP (discovery, JWKS,
	// userinfo, introspection, the GitHub and Google APIs), answer body
	// included, whatever the HTTP client's own timeout: an IdP that
	// accepts connections and never answers costs a request this long,
	// not the client's timeout.
	IdPFetchTimeout = 3 * time.Second
	// IdPBreakerFailures consecutive failed calls to one processor's IdP
	// (unreachable, no answer within IdPFetchTimeout, HTTP 5xx, an answer
	// that is not JSON) open its circuit breaker.
	IdPBreakerFailures = 3
	// IdPBreakerCooldown is how long an open breaker fails calls at once,
	// as idp_unavailable, without asking the IdP. After it one call probes
	// the IdP (the others keep failing fast meanwhile): an answer closes
	// the breaker, a failure opens it for another cool-down.
	IdPBreakerCooldown = 15 * time.Second
)

// breaker is one processor's circuit breaker over its IdP calls. Its clock
// is the processor's.
type breaker struct {
	now       func() time.Time
	threshold int
	cooldown  time.Duration

	mu        sync.Mutex
	failures  int       // consecutive
	openUntil time.Time // while failures >= threshold
	probing   bool      // a half-open probe is in flight
	lastErr   error     // the failure that counted last
}

func newBreaker(now func() time.Time) *breaker {
	if now == nil {
		now = time.Now
	}
	return &breaker{now: now, threshold: IdPBreakerFailures, cooldown: IdPBreakerCooldown}
}

// breakerOpenError says why a call was not made.
type breakerOpenError struct {
	failures int
	until    time.Time
	last     error
}

func (e *breakerOpenError) Error() string {
	return fmt.Sprintf("IdP unavailable: %d calls in a row failed (last: %v); not asked again before %s",
		e.failures, e.last, e.until.UTC().Format(time.RFC3339))
}

// allow reports whether a call may go to the IdP now, and whether that
// call is the probe of a half-open breaker; a nil error means go ahead,
// and the caller must report the outcome with done.
func (b *breaker) allow() (probe bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failures < b.threshold {
		return false, nil
	}
	if b.probing || b.now().Before(b.openUntil) {
		return false, &breakerOpenError{failures: b.failures, until: b.openUntil, last: b.lastErr}
	}
	b.probing = true
	return true, nil
}

// callOutcome is what a call tells the breaker.
type callOutcome int

const (
	// callAnswered: the IdP answered (any verdict, a 4xx, a rate limit).
	callAnswered callOutcome = iota
	// callFailed: unreachable, no answer in time, 5xx, garbage.
	callFailed
	// callAbandoned: the caller gave up first; says nothing of the IdP.
	callAbandoned
)

// done records a call's outcome; it reports whether the breaker opened
// (opened) or closed (closed) because of it.
func (b *breaker) done(probe bool, outcome callOutcome, err error) (opened, closed bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if probe {
		b.probing = false
	}
	wasOpen := b.failures >= b.threshold
	switch outcome {
	case callAnswered:
		b.failures, b.lastErr, b.openUntil = 0, nil, time.Time{}
		return false, wasOpen
	case callFailed:
		b.failures++
		b.lastErr = err
		if b.failures >= b.threshold {
			// A failed probe, or the call that reached the threshold,
			// (re)opens it; a straggler started before it opened does
			// not prolong the cool-down.
			if probe || !wasOpen {
				b.openUntil = b.now().Add(b.cooldown)
			}
			return !wasOpen, false
		}
	}
	return false, false
}
