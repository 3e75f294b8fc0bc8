package broker

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/clickhouse"
	"github.com/clickgate/clickgate/internal/testkit"
)

// With broker.store: clickhouse, two clickgate servers on different state
// directories (as on two hosts) share used codes and refresh families
// through a ClickHouse table.
func TestClickHouseStoreAcrossServers(t *testing.T) {
	ch := chtest.Start(t, chtest.Options{})
	mode := testkit.MappedMode + "\n  user: " + chtest.AdminUser + "\n  password: " + chtest.AdminPassword
	// Each server here has a dev IdP of its own, which would not know the
	// other's refresh tokens: no upstream refresh tokens (replicas share
	// one upstream).
	extra := "  store: clickhouse\n  store_table: default.broker_state\n  seal_key: MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=\n" +
		"  upstream_scopes: [openid, email, profile]\n"
	a := newStack(t, stackOptions{clickhouseURL: ch.HTTPURL, clickhouseMode: mode, extra: extra})
	// b has its own state directory: only the seal key and the table are shared.
	b := newStack(t, stackOptions{clickhouseURL: ch.HTTPURL, clickhouseMode: mode, extra: extra, stateDir: t.TempDir()})

	// A code from a, redeemed at b, is spent for a too (and its replay
	// revokes what it gave).
	c := newClient("test-client", "http://127.0.0.1/callback")
	q := a.signIn(t, newBrowser(t), c, "alice", "alice-pw")
	// (Replicas share one public URL; these two differ, so b is asked
	// for a's resource.)
	if status, tok := b.tokenRequest(t, url.Values{"grant_type": {"authorization_code"}, "code": {q.Get("code")}, "client_id": {c.id},
		"redirect_uri": {c.redirect}, "code_verifier": {c.verifier}}); status != http.StatusOK {
		t.Fatalf("redeem at b: %d %v", status, tok)
	}
	if status, body := a.redeem(t, c, q.Get("code")); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Fatalf("code replay at a: %d %v", status, body)
	}
	// A refresh at b, then the old refresh token at a: a replay, and the
	// sign-in is revoked on both.
	q = a.signIn(t, newBrowser(t), c, "bob", "bob-pw")
	status, tok := a.redeem(t, c, q.Get("code"))
	if status != http.StatusOK {
		t.Fatalf("redeem: %d %v", status, tok)
	}
	status, tok1 := b.refresh(t, c, tok["refresh_token"].(string))
	if status != http.StatusOK {
		t.Fatalf("refresh at b: %d %v", status, tok1)
	}
	if status, body := a.refresh(t, c, tok["refresh_token"].(string)); status != http.StatusBadRequest || !strings.Contains(body["error_description"].(string), "revoked") {
		t.Fatalf("refresh replay at a: %d %v", status, body)
	}
	if status, body := b.refresh(t, c, tok1["refresh_token"].(string)); status != http.StatusBadRequest {
		t.Fatalf("newest refresh token at b after the replay: %d %v", status, body)
	}

	u, _ := url.Parse(ch.HTTPURL)
	db := &clickhouse.Client{URL: u, User: chtest.AdminUser, Password: chtest.AdminPassword, HTTP: &http.Client{Timeout: 10 * time.Second}}
	rows, err := db.Exec(context.Background(), "SELECT count() FROM default.broker_state")
	if err != nil || strings.TrimSpace(rows) == "0" {
		t.Fatalf("rows in the store table: %q %v", rows, err)
	}
}
