// Package live runs every upstream mode against a modern ClickHouse server
// (SQL RBAC, http_authentication, EXECUTE AS), which these machines cannot
// run. It runs whenever CLICKGATE_LIVE_CLICKHOUSE_URL is set:
//
//	CLICKGATE_LIVE_CLICKHOUSE_URL       http://host:8123
//	CLICKGATE_LIVE_CLICKHOUSE_USER      service account: CREATE USER, CREATE ROLE,
//	CLICKGATE_LIVE_CLICKHOUSE_PASSWORD  ROLE ADMIN, IMPERSONATE (25.11+)
//	CLICKGATE_LIVE_AUTH_LISTEN          optional, for http_auth: an address clickgate
//	                                    listens on that ClickHouse reaches, e.g. 0.0.0.0:18443,
//	CLICKGATE_LIVE_AUTH_SERVER          and the name of the <http_authentication_servers>
//	                                    entry whose <uri> is http://<that address>/clickhouse/auth
//
// Without them every test reports itself skipped and says why.
package live

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/server"
	"github.com/clickgate/clickgate/internal/testkit"
)

const issuer = "https://idp.test/live"

type live struct {
	url, user, password string
}

func setup(t *testing.T) *live {
	l := &live{os.Getenv("CLICKGATE_LIVE_CLICKHOUSE_URL"), os.Getenv("CLICKGATE_LIVE_CLICKHOUSE_USER"), os.Getenv("CLICKGATE_LIVE_CLICKHOUSE_PASSWORD")}
	if l.url == "" {
		t.Skip("CLICKGATE_LIVE_CLICKHOUSE_URL is not set: the live suite needs a modern ClickHouse server (see the package comment)")
	}
	return l
}

// exec runs sql as the service account.
func (l *live) exec(t *testing.T, sql string) string {
	t.Helper()
	req, _ := http.NewRequest("POST", l.url, strings.NewReader(sql))
	req.SetBasicAuth(l.user, l.password)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s: %s", sql, body)
	}
	return strings.TrimSpace(string(body))
}

// clickgate starts clickgate in front of the live server; listen, when
// set, is a real listener address (ClickHouse must reach the auth endpoint).
func (l *live) clickgate(t *testing.T, mode, listen string) (base string, token func(email string, groups ...string) string) {
	t.Helper()
	dir := t.TempDir()
	key := testkit.NewKey(t, jose.ES256, "live")
	yaml := fmt.Sprintf(`
token_processors:
  live: {type: jwt, issuer: %s, jwks_file: %s, audiences: [clickhouse], username_claim: email}
directory:
  roles: {filter: "^cg_live_.*$", common: [cg_live_common]}
clickhouse:
  url: %s
  user: %q
  password: %q
%s`, issuer, testkit.WriteJWKS(t, dir, key), l.url, l.user, l.password, mode)
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(cfg, server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	var ts *httptest.Server
	if listen != "" {
		ln, err := net.Listen("tcp", listen)
		if err != nil {
			t.Fatal(err)
		}
		ts = &httptest.Server{Listener: ln, Config: &http.Server{Handler: srv.Handler()}}
		ts.Start()
	} else {
		ts = httptest.NewServer(srv.Handler())
	}
	t.Cleanup(ts.Close)
	return ts.URL, func(email string, groups ...string) string {
		return key.Sign(t, testkit.Claims(issuer, "clickhouse", email, groups...))
	}
}

func query(t *testing.T, base, tok, sql string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", base, strings.NewReader(sql))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body))
}

func roles(t *testing.T, l *live) {
	for _, r := range []string{"cg_live_common", "cg_live_analysts"} {
		l.exec(t, "CREATE ROLE IF NOT EXISTS "+r)
	}
}

func TestLiveService(t *testing.T) {
	l := setup(t)
	base, token := l.clickgate(t, "  mode: service\n", "")
	status, body := query(t, base, token("alice@example.com"), "SELECT currentUser(), getSetting('log_comment')")
	if status != 200 || !strings.HasPrefix(body, l.user+"\t") || !strings.Contains(body, "alice@example.com") {
		t.Fatalf("%d %s", status, body)
	}
}

func TestLiveImpersonate(t *testing.T) {
	l := setup(t)
	roles(t, l)
	user := "cg_live_alice@example.com"
	t.Cleanup(func() { l.exec(t, "DROP USER IF EXISTS `"+user+"`") })
	base, token := l.clickgate(t, "  mode: impersonate\n  provisioning: {create_users: true, sync_roles: true}\n", "")
	l.exec(t, "CREATE USER IF NOT EXISTS `"+user+"` NOT IDENTIFIED")
	l.exec(t, "GRANT IMPERSONATE ON `"+user+"` TO "+l.user)
	status, body := query(t, base, token(user, "cg_live_analysts"), "SELECT currentUser(), authenticatedUser()")
	if status != 200 || body != user+"\t"+l.user {
		t.Fatalf("%d %s", status, body)
	}
	if got := l.exec(t, "SELECT granted_role_name FROM system.role_grants WHERE user_name = '"+user+"' ORDER BY 1 FORMAT TSV"); got != "cg_live_analysts\ncg_live_common" {
		t.Fatalf("roles granted: %q", got)
	}
}

func TestLiveHTTPAuth(t *testing.T) {
	l := setup(t)
	listen, name := os.Getenv("CLICKGATE_LIVE_AUTH_LISTEN"), os.Getenv("CLICKGATE_LIVE_AUTH_SERVER")
	if listen == "" || name == "" {
		t.Skip("CLICKGATE_LIVE_AUTH_LISTEN and CLICKGATE_LIVE_AUTH_SERVER are needed for http_auth: ClickHouse must reach clickgate's /clickhouse/auth")
	}
	roles(t, l)
	user := "cg_live_bob@example.com"
	t.Cleanup(func() { l.exec(t, "DROP USER IF EXISTS `"+user+"`") })
	base, token := l.clickgate(t, fmt.Sprintf("  mode: http_auth\n  auth_server: %s\n  provisioning: {create_users: true, sync_roles: true}\n", name), listen)
	status, body := query(t, base, token(user, "cg_live_analysts"), "SELECT currentUser()")
	if status != 200 || body != user {
		t.Fatalf("%d %s", status, body)
	}
	// Denying a person at once is plain SQL.
	l.exec(t, "DROP USER `"+user+"`")
	l.exec(t, "CREATE USER `"+user+"` IDENTIFIED WITH http SERVER '"+name+"' VALID UNTIL '2000-01-01'")
	if status, body := query(t, base, token(user, "cg_live_analysts"), "SELECT 1"); status == 200 {
		t.Fatalf("an expired user still got in: %s", body)
	}
}
