package broker

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/clickgate/clickgate/internal/keyring"
	"github.com/clickgate/clickgate/internal/testkit"
	"github.com/clickgate/clickgate/internal/token"
)

// A party that trusts clickgate through /oauth/jwks (as a ClickHouse build
// with token processors would: username_claim username, groups_claim
// roles) verifies broker tokens, across a key rotation.
func TestJWKSRotationForOtherVerifiers(t *testing.T) {
	dir := t.TempDir()
	s := newStack(t, stackOptions{stateDir: dir})
	c := newClient("test-client", "http://127.0.0.1/callback")
	before := s.tokens(t, c)["access_token"].(string)

	kid, err := keyring.Rotate(filepath.Join(dir, "broker-keys.json"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s.clock.Advance(2 * time.Second) // the key file is looked at once a second
	after := s.tokens(t, c)["access_token"].(string)
	if got := headerKid(t, after); got != kid {
		t.Fatalf("token after rotation signed with %q, want the new key %q", got, kid)
	}
	if headerKid(t, before) == kid {
		t.Fatal("the first token already had the new kid")
	}

	tp := &token.Config{
		Type: token.TypeJWT, Issuer: s.base, JWKSURI: s.base + "/oauth/jwks", Audiences: []string{s.base + "/mcp"},
		Algorithms: []string{"ES256"}, UsernameClaim: "username", GroupsClaim: "roles",
	}
	tp.ApplyDefaults()
	p, err := token.New("clickhouse-like", tp, token.Options{Now: s.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	for name, raw := range map[string]string{"old key": before, "new key": after} {
		tok, err := token.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		id, err := p.Verify(context.Background(), tok)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if id.Username != "alice@example.com" || !slices.Equal(id.Groups, []string{"analysts", "mcp_reader"}) {
			t.Fatalf("%s: identity %+v", name, id)
		}
	}
	resp, err := http.Get(s.base + "/oauth/jwks")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set struct {
		Keys []struct {
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	json.NewDecoder(resp.Body).Decode(&set)
	if len(set.Keys) != 2 {
		t.Fatalf("JWKS has %d keys, want the new and the retired one", len(set.Keys))
	}
}

func headerKid(t testing.TB, raw string) string {
	t.Helper()
	h := testkit.UnverifiedHeader(t, raw)
	kid, _ := h["kid"].(string)
	return kid
}
