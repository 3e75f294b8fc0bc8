package httpauth

import (
	"context"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// clickhouseClient is Debian's clickhouse-client (18.16), which speaks the
// native protocol to the 26.7 server.
const clickhouseClient = "/usr/bin/clickhouse-client"

// nativeQuery runs sql with clickhouse-client straight on ClickHouse's
// native port and returns its output and whether it succeeded.
func nativeQuery(t *testing.T, addr, user, password, sql string) (string, bool) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, clickhouseClient, "--host", host, "--port", port,
		"--user", user, "--password", password, "--query", sql).CombinedOutput()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("clickhouse-client: %v", err)
	}
	return strings.TrimSpace(string(out)), err == nil
}

// A person's raw token works as the password of their own ClickHouse user
// over the native protocol, straight to ClickHouse (no clickgate in the
// path): ClickHouse asks /clickhouse/auth, which answers 200 only when the
// token proves that very user and carries a ClickHouse audience.
//
// Each case has a ClickHouse of its own: chDB's 26.7 server aborts the
// whole process after it has refused a native login (the refusal reaches
// the client first; "Terminate called for uncaught exception" from the
// TCPHandler thread, also for a plain wrong password), so nothing can
// follow a refusal on the same server.
func TestNativeProtocolWithRawToken(t *testing.T) {
	if _, err := exec.LookPath(clickhouseClient); err != nil {
		t.Fatalf("%s is not installed (scripts/install-clickhouse.sh installs it; make test runs it): %v", clickhouseClient, err)
	}
	f := newFront(t)
	key := newKey(t)
	// The gate's own ClickHouse URL does not matter here: nothing goes
	// through its gateway.
	g := newGate(t, f, key, "http://127.0.0.1:1", gateOptions{})

	expired := testClaims("dave", "clickhouse")
	expired["iat"], expired["nbf"], expired["exp"] = time.Now().Add(-2*time.Hour).Unix(), time.Now().Add(-2*time.Hour).Unix(), time.Now().Add(-time.Hour).Unix()
	cases := []struct {
		name, user, password string
		want                 string // the answer; else Code: 516
		authStatus           int    // clickgate's answer to ClickHouse; 0: ClickHouse did not ask
	}{
		{"dave's token as dave", "dave", token(t, key, "clickhouse", "dave"), "dave\t0", 200},
		{"carol's token as carol", "carol", token(t, key, "clickhouse", "carol"), "carol\t1", 200},
		{"dave's ticket as dave", "dave", ticketFor(t, "dave"), "dave\t0", 200},
		{"dave's token as carol", "carol", token(t, key, "clickhouse", "dave"), "", 403},
		{"dave's MCP-only token as dave", "dave", token(t, key, g.URL+"/mcp", "dave"), "", 401},
		{"dave's expired token", "dave", key.Sign(t, expired), "", 401},
		{"dave's token signed by an unknown key", "dave", token(t, newKey(t), "clickhouse", "dave"), "", 401},
		{"erin's token as erin", "erin", token(t, key, "clickhouse", "erin"), "", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ch := startClickHouse(t, []authServer{{name: "clickgate", uri: authURI(f)}}, carol, dave)
			out, ok := nativeQuery(t, ch.TCPAddr, c.user, c.password, "SELECT currentUser(), getSetting('readonly')")
			calls := f.take()
			switch {
			case c.authStatus == 0 && len(calls) != 0:
				t.Errorf("ClickHouse asked /clickhouse/auth: %+v", calls)
			case c.authStatus != 0 && (len(calls) != 1 || calls[0].user != c.user || calls[0].password != c.password || calls[0].status != c.authStatus):
				t.Errorf("calls to /clickhouse/auth: %+v, want one for %s with the password sent, answered %d", calls, c.user, c.authStatus)
			}
			if c.want == "" {
				if ok || code(out) != 516 {
					t.Errorf("clickhouse-client: %q, want Code: 516", out)
				}
				return
			}
			if !ok || out != c.want {
				t.Fatalf("clickhouse-client: %q, want %q", out, c.want)
			}
			flushLogs(t, ch)
			if got := adminQuery(t, ch, "SELECT user, auth_type FROM system.session_log WHERE interface = 'TCP' AND type = 'LoginSuccess'"); got != c.user+"\tHTTP" {
				t.Errorf("session_log: %q", got)
			}
		})
	}
}
