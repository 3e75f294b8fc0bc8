package token

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/clickgate/clickgate/internal/testkit"
)

// jwksServer serves a JWK set that the test can change or take down, and
// counts fetches.
type jwksServer struct {
	*httptest.Server
	body    atomic.Value // string
	down    atomic.Bool
	fetches atomic.Int32
}

func newJWKSServer(t *testing.T, initial string) *jwksServer {
	s := &jwksServer{}
	s.body.Store(initial)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.fetches.Add(1)
		if s.down.Load() {
			http.Error(w, "maintenance", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(s.body.Load().(string)))
	}))
	t.Cleanup(s.Close)
	return s
}

func TestRemoteKeys(t *testing.T) {
	old := newSigningKey(t, jose.ES256, "old")
	rotated := newSigningKey(t, jose.ES256, "new")
	srv := newJWKSServer(t, jwks(t, old))
	clk := testkit.NewClock(testClock)
	cfg := jwtConfig(t)
	cfg.Keys, cfg.JWKSURI = "", srv.URL
	cfg.MaxKeyStaleness = 3 * time.Hour
	p, err := New("corp", cfg, Options{Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	verify := func(k *signingKey) error {
		claims := with(validClaims(), map[string]any{"exp": clk.Now().Add(time.Hour).Unix(), "iat": nil, "nbf": nil})
		tok, err := Parse(k.sign(t, claims))
		if err != nil {
			t.Fatal(err)
		}
		_, err = p.Verify(ctx, tok)
		return err
	}
	step := func(name string, k *signingKey, want Reason, fetches int32) {
		t.Helper()
		err := verify(k)
		if got := ReasonOf(err); (want == "" && err != nil) || (want != "" && got != want) {
			t.Fatalf("%s: got %v, want %q", name, err, want)
		}
		if n := srv.fetches.Load(); n != fetches {
			t.Fatalf("%s: %d JWKS fetches so far, want %d", name, n, fetches)
		}
	}

	step("first token fetches the keys", old, "", 1)
	step("second token uses the cached keys", old, "", 1)
	srv.body.Store(jwks(t, old, rotated))
	step("a new kid within 10s of the last fetch is unknown", rotated, ReasonUnknownKey, 1)
	clk.Advance(11 * time.Second)
	step("after 10s the unknown kid triggers one refresh", rotated, "", 2)
	step("and the old key still verifies", old, "", 2)
	step("an unknown kid right after a refresh does not refetch", newSigningKey(t, jose.ES256, "x"), ReasonUnknownKey, 2)

	srv.down.Store(true)
	clk.Advance(jwksMaxAge + time.Minute) // keys are due for a refresh, which fails
	step("IdP down: keys fetched before stay in use", old, "", 3)
	clk.Advance(2 * time.Hour) // past max_key_staleness since the last good fetch
	step("IdP down beyond max_key_staleness: fail closed", old, ReasonUnavailable, 4)
	srv.down.Store(false)
	clk.Advance(11 * time.Second)
	step("IdP back", old, "", 5)
}

func TestRemoteKeysNeverFetched(t *testing.T) {
	srv := newJWKSServer(t, "")
	srv.down.Store(true)
	cfg := jwtConfig(t)
	cfg.Keys, cfg.JWKSURI = "", srv.URL
	v := newTestVerifier(t, cfg, fixedClock(testClock))
	key := newSigningKey(t, jose.ES256, "k")
	_, err := v.Verify(context.Background(), key.sign(t, validClaims()))
	if !IsTemporary(err) {
		t.Fatalf("no keys and IdP down: got %v, want a temporary failure", err)
	}
	if v.Ready(context.Background())["corp"] == nil {
		t.Fatal("Ready reported ok without keys")
	}
}
