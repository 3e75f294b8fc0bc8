package gateway_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/server"
	"github.com/clickgate/clickgate/internal/servertest"
)

// A service token listed in a static processor's file reaches ClickHouse
// as the account of its groups' role, beside people's IdP tokens.
func TestStaticServiceTokens(t *testing.T) {
	const etl = "etl-1b6f0c2d9e8a7f3b5c4d"
	sum := sha256.Sum256([]byte(etl))
	tokens := filepath.Join(t.TempDir(), "service-tokens")
	if err := os.WriteFile(tokens, []byte("sha256:"+hex.EncodeToString(sum[:])+" etl-bot ch-admin\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ch := chtest.Start(t, chtest.Options{})
	iss := servertest.NewIssuer(t)
	cg := servertest.Start(t, fmt.Sprintf(`
token_processors:
  corp: %s
  services: {type: static, tokens_file: %s}
directory:
  roles: {filter: "^ch-.*$", transform: "s/^ch-//", common: [mcp_reader]}
clickhouse:
  url: %s
%s`, iss.Processor(), tokens, ch.HTTPURL, mappedYAML), server.Options{})
	s := &stack{ch: ch, cg: cg, handler: cg.Config.Handler, iss: iss}

	if got := s.query(t, etl, chtest.CurrentUserSQL()); got != "ch_admin" {
		t.Fatalf("the service token runs as %q, want ch_admin", got)
	}
	if got := s.query(t, s.token(t, "alice@example.com", "ch-analysts"), chtest.CurrentUserSQL()); got != "ch_reader" {
		t.Fatalf("alice runs as %q beside the static processor, want ch_reader", got)
	}
	if status, body := s.do(t, etl+"0", "POST", "/", "SELECT 1", nil); status != 401 {
		t.Fatalf("an unlisted token: %d %s", status, body)
	}
}
