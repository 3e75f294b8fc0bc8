package token

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/clickgate/clickgate/internal/identity"
	"github.com/clickgate/clickgate/internal/testkit"
)

// scriptedProcessor answers from a function and counts calls. It tests the
// Verifier's cache and precedence; real processors are tested elsewhere.
type scriptedProcessor struct {
	name    string
	accepts func(*Token) bool
	// recognizes, when set, makes the processor a recognizer.
	recognizes func(*Token) bool
	answer     func(*Token) (*identity.Identity, error)
	calls      atomic.Int32
}

func (p *scriptedProcessor) Name() string { return p.name }
func (p *scriptedProcessor) Accepts(t *Token) bool {
	return p.accepts == nil || p.accepts(t)
}
func (p *scriptedProcessor) Verify(_ context.Context, t *Token) (*identity.Identity, error) {
	p.calls.Add(1)
	return p.answer(t)
}

type recognizingProcessor struct{ *scriptedProcessor }

func (p recognizingProcessor) Recognizes(t *Token) bool { return p.recognizes(t) }

func identityFor(name string, exp time.Time) *identity.Identity {
	return &identity.Identity{Processor: name, Username: "alice", Expiry: exp}
}

func TestVerifierCachesUntilExpiryOrTTL(t *testing.T) {
	clk := testkit.NewClock(testClock)
	exp := testClock.Add(2 * time.Minute)
	p := &scriptedProcessor{name: "corp", answer: func(*Token) (*identity.Identity, error) { return identityFor("corp", exp), nil }}
	v := NewVerifier([]Processor{p}, map[string]time.Duration{"corp": 5 * time.Minute}, nil, clk.Now)
	ctx := context.Background()

	for i := 0; i < 3; i++ {
		if _, err := v.Verify(ctx, "opaque-token"); err != nil {
			t.Fatal(err)
		}
	}
	if n := p.calls.Load(); n != 1 {
		t.Fatalf("three lookups made %d processor calls, want 1", n)
	}
	clk.Advance(2*time.Minute + time.Second) // past exp, before cache_ttl
	if _, err := v.Verify(ctx, "opaque-token"); err != nil {
		t.Fatal(err)
	}
	if n := p.calls.Load(); n != 2 {
		t.Fatalf("after exp: %d calls, want 2 (exp bounds the cache)", n)
	}

	noExp := &scriptedProcessor{name: "corp", answer: func(*Token) (*identity.Identity, error) { return identityFor("corp", time.Time{}), nil }}
	v = NewVerifier([]Processor{noExp}, map[string]time.Duration{"corp": time.Minute}, nil, clk.Now)
	v.Verify(ctx, "t")
	clk.Advance(59 * time.Second)
	v.Verify(ctx, "t")
	clk.Advance(2 * time.Second)
	v.Verify(ctx, "t")
	if n := noExp.calls.Load(); n != 2 {
		t.Fatalf("cache_ttl: %d calls, want 2", n)
	}
}

func TestVerifierNegativeCacheButNotOutages(t *testing.T) {
	clk := testkit.NewClock(testClock)
	var down atomic.Bool
	p := &scriptedProcessor{name: "corp", answer: func(*Token) (*identity.Identity, error) {
		if down.Load() {
			return nil, errorf(ReasonUnavailable, "corp", "IdP unreachable")
		}
		return nil, errorf(ReasonInactive, "corp", "revoked")
	}}
	v := NewVerifier([]Processor{p}, map[string]time.Duration{"corp": time.Minute}, nil, clk.Now)
	ctx := context.Background()

	for i := 0; i < 3; i++ {
		if _, err := v.Verify(ctx, "bad"); ReasonOf(err) != ReasonInactive {
			t.Fatalf("got %v", err)
		}
	}
	if n := p.calls.Load(); n != 1 {
		t.Fatalf("a rejection was re-verified: %d calls", n)
	}
	clk.Advance(NegativeTTL + time.Second)
	v.Verify(ctx, "bad")
	if n := p.calls.Load(); n != 2 {
		t.Fatalf("negative entry outlived NegativeTTL: %d calls", n)
	}

	down.Store(true)
	for i := 0; i < 3; i++ {
		if _, err := v.Verify(ctx, "other"); !IsTemporary(err) {
			t.Fatalf("got %v, want temporary", err)
		}
	}
	if n := p.calls.Load(); n != 5 {
		t.Fatalf("outage was cached: %d calls, want 5", n)
	}
}

func TestVerifierSingleflight(t *testing.T) {
	release := make(chan struct{})
	p := &scriptedProcessor{name: "corp", answer: func(*Token) (*identity.Identity, error) {
		<-release
		return identityFor("corp", testClock.Add(time.Hour)), nil
	}}
	v := NewVerifier([]Processor{p}, map[string]time.Duration{"corp": time.Minute}, nil, fixedClock(testClock))

	// The first caller gives up early; the others must still get an answer.
	impatient, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := 0; i < 64; i++ {
		ctx := context.Background()
		if i == 0 {
			ctx = impatient
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := v.Verify(ctx, "same-token")
			if ctx == impatient {
				if !errors.Is(err, context.Canceled) {
					errs <- errors.New("cancelled caller did not get context.Canceled")
				}
				return
			}
			if err != nil {
				errs <- err
			}
		}()
	}
	time.Sleep(50 * time.Millisecond) // let the goroutines pile up on the flight
	cancel()
	time.Sleep(10 * time.Millisecond)
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := p.calls.Load(); n != 1 {
		t.Fatalf("64 concurrent verifications made %d processor calls, want 1", n)
	}
}

func TestVerifierPrecedenceAndRouting(t *testing.T) {
	key := newSigningKey(t, jose.ES256, "k")
	jwtTok := key.sign(t, validClaims())
	refuse := func(r Reason) func(*Token) (*identity.Identity, error) {
		return func(*Token) (*identity.Identity, error) { return nil, errorf(r, "", "no") }
	}
	ok := func(*Token) (*identity.Identity, error) { return identityFor("x", testClock.Add(time.Hour)), nil }
	jwtOnly := func(iss string) func(*Token) bool {
		return func(t *Token) bool { return t.JWT != nil && t.Issuer == iss }
	}
	opaqueOnly := func(t *Token) bool { return !t.LooksLikeJWT() }

	tests := []struct {
		name       string
		processors []*scriptedProcessor
		token      string
		want       Reason // "" = success
		calls      []int32
	}{
		{"first success wins",
			[]*scriptedProcessor{{name: "a", answer: ok}, {name: "b", answer: ok}},
			"opaque", "", []int32{1, 0}},
		{"refusal preferred over an outage",
			[]*scriptedProcessor{{name: "a", answer: refuse(ReasonUnavailable)}, {name: "b", answer: refuse(ReasonInactive)}},
			"opaque", ReasonInactive, []int32{1, 1}},
		{"outage when nothing refused",
			[]*scriptedProcessor{{name: "a", answer: refuse(ReasonUnavailable)}},
			"opaque", ReasonUnavailable, []int32{1}},
		{"a JWT goes only to its issuer's processor",
			[]*scriptedProcessor{{name: "other", accepts: jwtOnly("https://other"), answer: ok}, {name: "corp", accepts: jwtOnly(testIssuer), answer: ok}, {name: "opaque", accepts: opaqueOnly, answer: ok}},
			jwtTok, "", []int32{0, 1, 0}},
		{"a JWT of an unknown issuer reaches no IdP",
			[]*scriptedProcessor{{name: "other", accepts: jwtOnly("https://other"), answer: ok}, {name: "opaque", accepts: opaqueOnly, answer: ok}},
			jwtTok, ReasonIssuer, []int32{0, 0}},
		{"a recognized token goes only to the processor that recognizes it",
			[]*scriptedProcessor{{name: "corp", accepts: opaqueOnly, answer: ok}, {name: "github", accepts: opaqueOnly, recognizes: func(t *Token) bool { return strings.HasPrefix(t.Raw, "ghp_") }, answer: refuse(ReasonInactive)}},
			"ghp_abc", ReasonInactive, []int32{0, 1}},
		{"an unrecognized opaque token goes to the generic processors",
			[]*scriptedProcessor{{name: "corp", accepts: opaqueOnly, answer: ok}, {name: "github", accepts: opaqueOnly, recognizes: func(t *Token) bool { return strings.HasPrefix(t.Raw, "ghp_") }, answer: ok}},
			"opaque", "", []int32{1, 0}},
		{"an opaque token never reaches a JWT-only processor",
			[]*scriptedProcessor{{name: "corp", accepts: jwtOnly(testIssuer), answer: ok}},
			"opaque", ReasonNoProcessor, []int32{0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var ps []Processor
			for _, p := range tc.processors {
				if p.recognizes != nil {
					ps = append(ps, recognizingProcessor{p})
					continue
				}
				ps = append(ps, p)
			}
			v := NewVerifier(ps, map[string]time.Duration{}, nil, fixedClock(testClock))
			_, err := v.Verify(context.Background(), tc.token)
			if got := ReasonOf(err); (tc.want == "" && err != nil) || (tc.want != "" && got != tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			for i, p := range tc.processors {
				if n := p.calls.Load(); n != tc.calls[i] {
					t.Errorf("processor %s: %d calls, want %d", p.name, n, tc.calls[i])
				}
			}
		})
	}
}
