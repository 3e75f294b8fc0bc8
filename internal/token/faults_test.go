package token_test

// An identity provider that misbehaves: it hangs (accepts connections and
// never answers), answers 503, or drops connections. Each call to it is
// bounded by token.IdPFetchTimeout, a processor's circuit breaker then
// fails calls fast without piling connections up on the IdP, and neither
// a hang nor an outage is ever answered (or cached) as a refusal.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/clickgate/clickgate/internal/testkit"
	"github.com/clickgate/clickgate/internal/token"
)

const faultIssuer = "https://idp.test/realms/faults"

type faultMode int32

const (
	faultUp   faultMode = iota
	fault503            // answer 503
	faultHang           // accept the connection, never answer
)

// faultyIdP serves a JWK set, a userinfo endpoint (/userinfo, any bearer
// token is alice) and can be made to fail. Keep-alives are off, so every
// call is a new connection and connections count calls.
type faultyIdP struct {
	URL  string
	srv  *httptest.Server
	mode atomic.Int32
	jwks atomic.Value // string

	conns atomic.Int32 // connections accepted in all
	held  atomic.Int32 // hanging connections still open

	mu   sync.Mutex
	hung []net.Conn
}

func newFaultyIdP(t *testing.T, keys ...*testkit.Key) *faultyIdP {
	t.Helper()
	f := &faultyIdP{}
	f.setKeys(t, keys...)
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if faultMode(f.mode.Load()) == fault503 {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/userinfo" {
			io.WriteString(w, `{"sub": "u-alice", "email": "alice@example.com"}`)
			return
		}
		io.WriteString(w, f.jwks.Load().(string))
	}))
	f.srv.Listener = &holdingListener{Listener: f.srv.Listener, f: f}
	f.srv.Config.SetKeepAlivesEnabled(false)
	f.srv.Start()
	f.URL = f.srv.URL
	t.Cleanup(func() {
		f.srv.Close()
		f.mu.Lock()
		defer f.mu.Unlock()
		for _, c := range f.hung {
			c.Close()
		}
	})
	return f
}

func (f *faultyIdP) setKeys(t *testing.T, keys ...*testkit.Key) {
	t.Helper()
	set := jose.JSONWebKeySet{}
	for _, k := range keys {
		set.Keys = append(set.Keys, k.Public)
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	f.jwks.Store(string(b))
}

func (f *faultyIdP) set(m faultMode) { f.mode.Store(int32(m)) }

// hold keeps a connection open without a word until the client hangs up.
func (f *faultyIdP) hold(c net.Conn) {
	f.mu.Lock()
	f.hung = append(f.hung, c)
	f.mu.Unlock()
	f.held.Add(1)
	go func() {
		io.Copy(io.Discard, c) // until the client closes its side
		c.Close()
		f.held.Add(-1)
	}()
}

// holdingListener hands connections to the HTTP server, or, while the IdP
// hangs, keeps them itself.
type holdingListener struct {
	net.Listener
	f *faultyIdP
}

func (l *holdingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.f.conns.Add(1)
		if faultMode(l.f.mode.Load()) != faultHang {
			return c, nil
		}
		l.f.hold(c)
	}
}

// faultProcessor builds processor "corp" of cfg with the default HTTP
// client (its timeout is what is tested) and clock clk.
func faultProcessor(t *testing.T, cfg *token.Config, clk *testkit.Clock) token.Processor {
	t.Helper()
	cfg.ApplyDefaults()
	p, err := token.New("corp", cfg, token.Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// frozenVerifier caches with a clock that never moves: a refusal it
// cached would be served until the test ends.
func frozenVerifier(p token.Processor) *token.Verifier {
	frozen := time.Now()
	return token.NewVerifier([]token.Processor{p}, map[string]time.Duration{"corp": time.Minute}, nil, func() time.Time { return frozen })
}

func faultToken(t *testing.T, k *testkit.Key, n int) string {
	t.Helper()
	return k.Sign(t, testkit.Claims(faultIssuer, "clickhouse", fmt.Sprintf("user%d@example.com", n)))
}

// wantTemporary checks that err is idp_unavailable (a 503, never cached)
// and came within limit.
func wantTemporary(t *testing.T, what string, err error, took, limit time.Duration) {
	t.Helper()
	if err == nil || token.ReasonOf(err) != token.ReasonUnavailable || !token.IsTemporary(err) {
		t.Fatalf("%s: %v (reason %s), want a temporary %s", what, err, token.ReasonOf(err), token.ReasonUnavailable)
	}
	if took > limit {
		t.Fatalf("%s: took %s, want at most %s", what, took.Round(time.Millisecond), limit)
	}
}

func timed(f func() error) (time.Duration, error) {
	start := time.Now()
	err := f()
	return time.Since(start), err
}

// A jwt processor with jwks_uri whose JWKS endpoint hangs: the fetch
// gives up after IdPFetchTimeout, not the HTTP client's old 10 s; after
// IdPBreakerFailures failures the breaker answers at once without a
// connection (although the JWKS refresh is due); after the cool-down one
// probe goes out; when the IdP is back, tokens verify.
func TestFaultsHangingJWKS(t *testing.T) {
	key := testkit.NewKey(t, jose.ES256, "k1")
	idp := newFaultyIdP(t, key)
	idp.set(faultHang)
	clk := testkit.NewClock(time.Now())
	p := faultProcessor(t, &token.Config{Type: token.TypeJWT, Issuer: faultIssuer, JWKSURI: idp.URL, Audiences: []string{"clickhouse"}}, clk)
	v := frozenVerifier(p)
	ctx := context.Background()
	tokens := 0
	next := func() string { tokens++; return faultToken(t, key, tokens) }
	// A hanging fetch ends after IdPFetchTimeout; give it 2 s of slack
	// but stay well below the 10 s of before.
	slow := token.IdPFetchTimeout + 2*time.Second
	const fast = 500 * time.Millisecond

	took, err := timed(func() error { _, err := v.Verify(ctx, next()); return err })
	wantTemporary(t, "first token, JWKS hangs", err, took, slow)
	if took < token.IdPFetchTimeout-100*time.Millisecond {
		t.Fatalf("first token failed after %s: the JWKS endpoint was not waited for", took)
	}
	t.Logf("a token needing a JWKS fetch from a hanging IdP failed after %s", took.Round(time.Millisecond))
	if n := idp.conns.Load(); n != 1 {
		t.Fatalf("%d connections, want 1", n)
	}
	idp.drained(t)

	// 100 different tokens at once, the refresh due again: they share one
	// fetch, one connection.
	clk.Advance(token.JWKSMinRefresh + time.Second)
	var slowest atomic.Int64
	errs := make([]error, 100)
	raws := make([]string, len(errs))
	for i := range raws {
		raws[i] = next()
	}
	var wg sync.WaitGroup
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d, err := timed(func() error { _, err := v.Verify(ctx, raws[i]); return err })
			errs[i] = err
			for {
				s := slowest.Load()
				if int64(d) <= s || slowest.CompareAndSwap(s, int64(d)) {
					break
				}
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		wantTemporary(t, fmt.Sprintf("concurrent token %d", i), err, 0, time.Hour)
	}
	if d := time.Duration(slowest.Load()); d > slow {
		t.Fatalf("the slowest of 100 concurrent tokens took %s", d)
	}
	if n := idp.conns.Load(); n != 2 {
		t.Fatalf("100 concurrent tokens: %d connections in all, want 2", n)
	}
	idp.drained(t)

	// The third failure in a row opens the breaker.
	clk.Advance(token.JWKSMinRefresh + time.Second)
	took, err = timed(func() error { _, err := v.Verify(ctx, next()); return err })
	wantTemporary(t, "third failure", err, took, slow)
	if n := idp.conns.Load(); n != token.IdPBreakerFailures {
		t.Fatalf("%d connections, want %d", n, token.IdPBreakerFailures)
	}

	// Open: a refresh is due (10 s passed) but the IdP is not asked.
	clk.Advance(token.JWKSMinRefresh + time.Second)
	for i := 0; i < 20; i++ {
		took, err = timed(func() error { _, err := v.Verify(ctx, next()); return err })
		wantTemporary(t, "breaker open", err, took, fast)
	}
	if n := idp.conns.Load(); n != token.IdPBreakerFailures {
		t.Fatalf("breaker open: %d connections in all, want still %d", n, token.IdPBreakerFailures)
	}
	if err := p.(itReadier).Ready(ctx); token.ReasonOf(err) != token.ReasonUnavailable {
		t.Fatalf("Ready with the breaker open: %v", err)
	}

	// After the cool-down one probe; it hangs, and the breaker opens again.
	clk.Advance(token.IdPBreakerCooldown)
	took, err = timed(func() error { _, err := v.Verify(ctx, next()); return err })
	wantTemporary(t, "probe into a hanging IdP", err, took, slow)
	if n := idp.conns.Load(); n != token.IdPBreakerFailures+1 {
		t.Fatalf("after the probe: %d connections, want %d", n, token.IdPBreakerFailures+1)
	}
	idp.drained(t)

	// The IdP recovers; within the cool-down nothing changes yet.
	idp.set(faultUp)
	clk.Advance(token.JWKSMinRefresh + time.Second)
	took, err = timed(func() error { _, err := v.Verify(ctx, next()); return err })
	wantTemporary(t, "IdP back, breaker still open", err, took, fast)
	clk.Advance(token.IdPBreakerCooldown)
	for i := 0; i < 5; i++ {
		if _, err := v.Verify(ctx, next()); err != nil {
			t.Fatalf("IdP back, cool-down over: %v", err)
		}
	}
	if n := idp.conns.Load(); n != token.IdPBreakerFailures+2 {
		t.Fatalf("after recovery: %d connections in all, want %d", n, token.IdPBreakerFailures+2)
	}
}

// drained waits until clickgate has hung up every hanging connection: a
// call that gave up leaves nothing open at the IdP.
func (f *faultyIdP) drained(t *testing.T) {
	t.Helper()
	waitFor(t, "clickgate to close its hanging connections", func() bool { return f.held.Load() == 0 })
}

// An opaque processor asks the IdP for every token: there the breaker
// alone keeps a hanging IdP from taking a connection and IdPFetchTimeout
// per request.
func TestFaultsHangingUserinfo(t *testing.T) {
	idp := newFaultyIdP(t)
	idp.set(faultHang)
	clk := testkit.NewClock(time.Now())
	p := faultProcessor(t, &token.Config{Type: token.TypeOpaque, UserinfoURL: idp.URL + "/userinfo", UsernameClaim: "email"}, clk)
	v := frozenVerifier(p)
	ctx := context.Background()
	slow := token.IdPFetchTimeout + 2*time.Second
	const fast = 500 * time.Millisecond

	wave := func(what string, n, from int, limit time.Duration) {
		t.Helper()
		errs := make([]error, n)
		took := make([]time.Duration, n)
		var wg sync.WaitGroup
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				took[i], errs[i] = timed(func() error { _, err := v.Verify(ctx, fmt.Sprintf("opaque-token-%d", from+i)); return err })
			}()
		}
		wg.Wait()
		for i := range errs {
			wantTemporary(t, fmt.Sprintf("%s, token %d", what, i), errs[i], took[i], limit)
		}
	}

	// IdPBreakerFailures tokens at once: each waits for its own call.
	wave("first tokens, IdP hangs", token.IdPBreakerFailures, 0, slow)
	if n := idp.conns.Load(); n != token.IdPBreakerFailures {
		t.Fatalf("%d connections, want %d", n, token.IdPBreakerFailures)
	}
	// Open: 200 more tokens at once fail at once, without a connection.
	wave("breaker open", 200, 100, fast)
	if n := idp.conns.Load(); n != token.IdPBreakerFailures {
		t.Fatalf("200 tokens with the breaker open made %d connections, want none", n-token.IdPBreakerFailures)
	}
	// Half open: of 50 tokens at once one probes; the others do not wait.
	clk.Advance(token.IdPBreakerCooldown)
	start := time.Now()
	probe := make(chan error, 1)
	go func() { _, err := v.Verify(ctx, "opaque-token-probe"); probe <- err }()
	waitFor(t, "the probe's connection", func() bool { return idp.conns.Load() == token.IdPBreakerFailures+1 })
	wave("while the probe hangs", 50, 1000, fast)
	err := <-probe
	wantTemporary(t, "the probe", err, time.Since(start), slow)
	if n := idp.conns.Load(); n != token.IdPBreakerFailures+1 {
		t.Fatalf("half open: %d connections, want %d (one probe)", n, token.IdPBreakerFailures+1)
	}
	idp.drained(t)

	idp.set(faultUp)
	clk.Advance(token.IdPBreakerCooldown)
	id, err := v.Verify(ctx, "opaque-token-after")
	if err != nil || id.Username != "alice@example.com" {
		t.Fatalf("IdP back: %v %v", id, err)
	}
	// Nothing was cached as a refusal: a token that failed verifies now.
	if _, err := v.Verify(ctx, "opaque-token-0"); err != nil {
		t.Fatalf("a token that met the outage, IdP back: %v", err)
	}
}

// A 503 or an unreachable IdP opens the breaker too; a 4xx verdict does not.
func TestFaultsBreakerCountsOutagesOnly(t *testing.T) {
	idp := newFaultyIdP(t)
	clk := testkit.NewClock(time.Now())
	p := faultProcessor(t, &token.Config{Type: token.TypeOpaque, UserinfoURL: idp.URL + "/userinfo", UsernameClaim: "email"}, clk)
	ctx := context.Background()
	verify := func(raw string) error {
		tok, err := token.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.Verify(ctx, tok)
		return err
	}
	idp.set(fault503)
	for i := 0; i < token.IdPBreakerFailures; i++ {
		wantTemporary(t, "503", verify("t503"), 0, time.Hour)
	}
	before := idp.conns.Load()
	idp.set(faultUp)
	wantTemporary(t, "breaker open after 503s", verify("tok"), 0, time.Hour)
	if n := idp.conns.Load(); n != before {
		t.Fatal("the breaker let a call through")
	}
	clk.Advance(token.IdPBreakerCooldown)
	if err := verify("tok"); err != nil {
		t.Fatalf("after the cool-down, IdP up: %v", err)
	}

	// Userinfo refusals (401) are verdicts: any number of them keeps the
	// breaker closed.
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":"invalid_token"}`, http.StatusUnauthorized)
	}))
	defer refusing.Close()
	q := faultProcessor(t, &token.Config{Type: token.TypeOpaque, UserinfoURL: refusing.URL}, clk)
	tok, _ := token.Parse("bad-token")
	for i := 0; i < 3*token.IdPBreakerFailures; i++ {
		if _, err := q.Verify(ctx, tok); token.ReasonOf(err) != token.ReasonInactive {
			t.Fatalf("refusal %d: %v, want %s", i, err, token.ReasonInactive)
		}
	}
}

// A token whose kid clickgate does not know, while the JWKS cannot be
// refreshed, may be signed by a key the IdP published meanwhile: that is
// idp_unavailable, never unknown_key, and nothing is cached, so the token
// verifies as soon as the IdP is back. A known kid keeps verifying with
// the keys held.
func TestFaultsUnknownKidDuringOutage(t *testing.T) {
	for _, mode := range []faultMode{fault503, faultHang} {
		t.Run(map[faultMode]string{fault503: "503", faultHang: "hang"}[mode], func(t *testing.T) {
			oldKey := testkit.NewKey(t, jose.ES256, "old")
			newKey := testkit.NewKey(t, jose.ES256, "new")
			idp := newFaultyIdP(t, oldKey)
			clk := testkit.NewClock(time.Now())
			p := faultProcessor(t, &token.Config{Type: token.TypeJWT, Issuer: faultIssuer, JWKSURI: idp.URL, Audiences: []string{"clickhouse"}}, clk)
			v := frozenVerifier(p)
			ctx := context.Background()
			if _, err := v.Verify(ctx, faultToken(t, oldKey, 1)); err != nil {
				t.Fatal(err)
			}

			// The IdP rotates to a new key and goes down.
			idp.setKeys(t, oldKey, newKey)
			idp.set(mode)
			clk.Advance(token.JWKSMinRefresh + time.Second)
			rotated := faultToken(t, newKey, 2)
			_, err := v.Verify(ctx, rotated)
			wantTemporary(t, "new kid, refresh fails", err, 0, token.IdPFetchTimeout+2*time.Second)
			// Within JWKSMinRefresh no new attempt: still temporary.
			_, err = v.Verify(ctx, rotated)
			wantTemporary(t, "new kid again, no refresh due", err, 0, 500*time.Millisecond)
			if _, err := v.Verify(ctx, faultToken(t, oldKey, 3)); err != nil {
				t.Fatalf("known kid during the outage: %v", err)
			}

			idp.set(faultUp)
			clk.Advance(token.JWKSMinRefresh + time.Second)
			if _, err := v.Verify(ctx, rotated); err != nil {
				t.Fatalf("new kid, IdP back: %v (a refusal was cached?)", err)
			}
			// With the IdP up, an unknown kid is a verdict again.
			clk.Advance(token.JWKSMinRefresh + time.Second)
			_, err = v.Verify(ctx, faultToken(t, testkit.NewKey(t, jose.ES256, "ghost"), 4))
			if token.ReasonOf(err) != token.ReasonUnknownKey {
				t.Fatalf("unknown kid, IdP up: %v, want %s", err, token.ReasonUnknownKey)
			}
		})
	}
}

// The same with an oidc processor (discovery, then the provider's JWKS)
// against the zitadel OpenID provider.
func TestFaultsOIDCUnknownKidDuringOutage(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode itOutage
	}{{"503", it503}, {"dropped", itDrop}, {"hang", itHang}} {
		t.Run(tc.name, func(t *testing.T) {
			idp := newITIdP(t)
			clk := testkit.NewClock(time.Now())
			p := itProcessor(t, &token.Config{Type: token.TypeOIDC, Issuer: idp.issuer, Audiences: []string{"clickhouse"}}, clk)
			v := frozenVerifier(p)
			ctx := context.Background()
			oldKey := idp.signingKey()
			known := idp.clientCredentials(itClientBot).AccessToken
			id, err := v.Verify(ctx, idp.clientCredentials(itClientBot).AccessToken)
			itWantOK(t, "before the outage", id, err)

			newKey := itNewKey(t, "key-2")
			idp.rotate(newKey, oldKey, newKey)
			rotated := idp.clientCredentials(itClientBot).AccessToken
			idp.setOutage(tc.mode, itPathKeys)
			clk.Advance(token.JWKSMinRefresh + time.Second)
			took, err := timed(func() error { _, err := v.Verify(ctx, rotated); return err })
			wantTemporary(t, "new kid, JWKS down", err, took, token.IdPFetchTimeout+2*time.Second)
			id, err = v.Verify(ctx, known)
			itWantOK(t, "known kid during the outage", id, err)

			idp.setOutage(itUp)
			clk.Advance(token.JWKSMinRefresh + time.Second)
			id, err = v.Verify(ctx, rotated)
			itWantOK(t, "new kid, IdP back", id, err)
		})
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: gave up after 10 s", what)
		}
	}
}
