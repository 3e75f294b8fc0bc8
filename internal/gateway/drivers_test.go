package gateway_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/clickgate/clickgate/internal/chtest"
)

// clickhouse-go sends a token (GetJWT) only over TLS, as Grafana's
// ClickHouse plugin does when it forwards the viewer's identity.
//
// clickhouse-go v2 opens every HTTP connection with a server hello that
// ClickHouse 18.16 (the server these machines run) cannot answer: it uses
// the setting client_protocol_version and the function displayName(). So
// this test proves the part clickgate owns: the driver's token is accepted
// over TLS and its request reaches ClickHouse signed in as the mapped
// account, where 18.16 itself answers "Unknown setting" (code 115) rather
// than any authentication error. A bad token stops at clickgate (516).
func TestClickHouseGoGetJWTOverTLS(t *testing.T) {
	s := newStack(t, chtest.Start(t, chtest.Options{}), mappedYAML)
	tlsServer := httptest.NewTLSServer(s.handler)
	defer tlsServer.Close()
	open := func(tok string, calls *int) error {
		db := clickhouse.OpenDB(&clickhouse.Options{
			Protocol: clickhouse.HTTP,
			Addr:     []string{tlsServer.Listener.Addr().String()},
			TLS:      tlsServer.Client().Transport.(*http.Transport).TLSClientConfig,
			GetJWT: func(context.Context) (string, error) {
				*calls++
				return tok, nil
			},
		})
		defer db.Close()
		var one uint8
		return db.QueryRow("SELECT 1").Scan(&one)
	}

	var calls int
	err := open(s.token(t, "bob@example.com", "ch-admin"), &calls)
	if calls == 0 || err == nil || !strings.Contains(err.Error(), "Code: 115") || !strings.Contains(err.Error(), "client_protocol_version") {
		t.Fatalf("a valid token: GetJWT called %d times; err = %v; want ClickHouse 18.16's own code 115", calls, err)
	}
	err = open("not-a-token", &calls)
	if err == nil || !strings.Contains(err.Error(), "code: 516") {
		t.Fatalf("a bad token: err = %v, want clickgate's 516", err)
	}
}

// The official Node driver, @clickhouse/client, with access_token.
func TestNodeClientAccessToken(t *testing.T) {
	s := newStack(t, chtest.Start(t, chtest.Options{}), mappedYAML)
	run := func(tok, sql string) (string, error) {
		out, err := exec.Command("node", "../../test/drivers/clickhouse-client.mjs", s.cg.URL, tok, sql).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	out, err := run(s.token(t, "alice@example.com", "ch-analysts"), chtest.CurrentUserSQL())
	if err != nil || out != `[{"user":"ch_reader"}]` {
		t.Fatalf("alice through @clickhouse/client: %v\n%s", err, out)
	}
	out, err = run("not-a-token", "SELECT 1")
	if err == nil || !strings.Contains(out, "AUTHENTICATION_FAILED") {
		t.Fatalf("a bad token: %v\n%s", err, out)
	}
}
