package native_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/clickgate/clickgate/internal/chtest"
)

// hashClient runs clickhouse-client with its output to a file and returns
// the output's SHA-256 and size.
func hashClient(t *testing.T, host, port string, args ...string) (string, int64) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "out")
	out, err := os.Create(f)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command("clickhouse-client", append([]string{"--host", host, "--port", port}, args...)...)
	var errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("clickhouse-client %v: %v: %s", args, err, errb.String())
	}
	if _, err := out.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, out)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil)), n
}

// A 20M-row result reaches clickhouse-client through clickgate byte for
// byte as it does directly, compressed or not.
func TestLargeSelectIdenticalToDirect(t *testing.T) {
	if testing.Short() {
		t.Skip("20M rows")
	}
	s := newStack(t, chtest.Options{}, mappedYAML)
	bob := s.token(t, "bob@example.com", "ch-admin")
	const sql = "SELECT number, toString(number * 7) FROM system.numbers LIMIT 20000000 FORMAT TSV"
	chHost, chPort := splitHostPort(t, s.ch.TCPAddr)
	want, n := hashClient(t, chHost, chPort, "--user", "ch_admin", "--password", "admin-pw", "--query", sql)
	if n < 20_000_000*4 {
		t.Fatalf("the direct result is %d bytes", n)
	}
	for _, compression := range []string{"1", "0"} {
		got, m := hashClient(t, s.host, s.port, "--password", bob, "--compression", compression, "--query", sql)
		if got != want || m != n {
			t.Fatalf("--compression %s: %d bytes %s through clickgate, %d bytes %s direct", compression, m, got, n, want)
		}
	}
}

// A 1M-row INSERT … FORMAT TSV from stdin arrives whole, compressed or
// not.
func TestLargeInsert(t *testing.T) {
	s := newStack(t, chtest.Options{}, mappedYAML)
	bob := s.token(t, "bob@example.com", "ch-admin")
	s.ch.Query(t, chtest.AdminUser, chtest.AdminPassword, "CREATE TABLE default.ins (n UInt64, s String, a Array(Nullable(String)), c UInt8) ENGINE = MergeTree ORDER BY n")
	var data bytes.Buffer
	const rows = 1_000_000
	for i := range rows {
		fmt.Fprintf(&data, "%d\tname %d \\t tab\t['x%d',NULL]\t%d\n", i, i, i%13, i%2)
	}
	for _, compression := range []string{"1", "0"} {
		if _, err := s.client(t, bytes.NewReader(data.Bytes()), "--password", bob, "--compression", compression,
			"--query", "INSERT INTO default.ins FORMAT TSV"); err != nil {
			t.Fatal(err)
		}
	}
	got := s.ch.Query(t, chtest.AdminUser, chtest.AdminPassword, "SELECT count(), sum(n), sum(length(s)), sum(length(a)), countIf(a[2] IS NULL), sum(c) FROM default.ins")
	var wantLen uint64
	for i := range rows {
		wantLen += uint64(len(fmt.Sprintf("name %d \t tab", i)))
	}
	want := fmt.Sprintf("%d\t%d\t%d\t%d\t%d\t%d", 2*rows, 2*(rows*(rows-1)/2), 2*wantLen, 2*2*rows, 2*rows, rows)
	if got != want {
		t.Fatalf("ClickHouse holds %q, want %q", got, want)
	}
}

// A wrong token is refused with 516 before any connection to ClickHouse.
func TestWrongTokenRefusedBeforeUpstream(t *testing.T) {
	s := newStack(t, chtest.Options{}, mappedYAML)
	for _, args := range [][]string{
		{"--password", "garbage"},
		{"--password", s.iss.Token(t, "other-audience", "alice@example.com", "ch-analysts")},
		{"--user", "ch_admin", "--password", "admin-pw"}, // a ClickHouse password is no token
		{}, // no password at all
	} {
		_, err := s.client(t, nil, append(args, "--query", "SELECT 1")...)
		if err == nil || !strings.Contains(err.Error(), "Code: 516") {
			t.Fatalf("%v: %v, want exception 516", args, err)
		}
		if n := s.srv.Native().Dials(); n != 0 {
			t.Fatalf("%v: clickgate opened %d upstream connections for a refused sign-in", args, n)
		}
	}
	// The refusal says what to do.
	_, err := s.client(t, nil, "--password", "garbage", "--query", "SELECT 1")
	if !strings.Contains(err.Error(), "clickgate token") {
		t.Fatalf("the refusal does not say how to sign in: %v", err)
	}
}

// Another user name than the token's is refused; a client's quota key,
// readonly and other fixed settings have no effect on what ClickHouse
// sees.
func TestIdentityAndFixedSettingsCannotBeChanged(t *testing.T) {
	s := newStack(t, chtest.Options{ExtraUsers: []chtest.User{{Name: "ch_keyed", Password: "keyed-pw", Quota: chtest.KeyedQuota}}, ExtraConfig: chtest.QueryLogConfig}, `  mode: mapped
  quota_key: true
  accounts:
    - {role: keyed, user: ch_keyed, password: keyed-pw}
  settings: {readonly: "1", max_execution_time: "30", log_queries: "1"}
`)
	carol := s.token(t, "carol@example.com", "ch-keyed")
	if _, err := s.client(t, nil, "--user", "ch_admin", "--password", carol, "--query", "SELECT 1"); err == nil || !strings.Contains(err.Error(), "Code: 516") {
		t.Fatalf("--user ch_admin with carol's token: %v, want 516", err)
	}
	if _, err := s.client(t, nil, "--user", "carol@example.com", "--password", carol, "--query", "SELECT 1"); err != nil {
		t.Fatalf("--user with the token's own user: %v", err)
	}
	out, err := s.client(t, nil, "--password", carol, "--query", chtest.SelfSQL("user, quota_key"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(out); got != "ch_keyed\tcarol@example.com" {
		t.Fatalf("ClickHouse saw %q, want ch_keyed with carol's quota key", got)
	}
	// Fixed settings: sent by clickgate, and no client may loosen them.
	out, err = s.client(t, nil, "--password", carol, "--query", "SELECT name, value FROM system.settings WHERE name IN ('readonly', 'max_execution_time') ORDER BY name")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(out); got != "max_execution_time\t30\nreadonly\t1" {
		t.Fatalf("ClickHouse ran with %q", got)
	}
	for _, args := range [][]string{
		{"--readonly", "0", "--query", "SELECT 'refused-marker-1'"},
		{"--max_execution_time", "0", "--query", "SELECT 'refused-marker-2'"},
		{"--log_queries", "0", "--query", "SELECT 'refused-marker-3'"},
		{"--query", "SELECT 'refused-marker-4' SETTINGS readonly = 0"},
		{"--query", "SET readonly = 0 /* refused-marker-5 */"},
		{"--query", "KILL QUERY WHERE query LIKE 'refused-marker-6'"},
		{"--replace_running_query", "1", "--query", "SELECT 'refused-marker-7'"},
	} {
		if out, err := s.client(t, nil, append([]string{"--password", carol}, args...)...); err == nil {
			t.Fatalf("%v was not refused: %q", args, out)
		}
	}
	// ClickHouse saw none of them (query_log), and saw an allowed one.
	if _, err := s.client(t, nil, "--password", carol, "--query", "SELECT 'allowed-marker'"); err != nil {
		t.Fatal(err)
	}
	s.ch.Query(t, chtest.AdminUser, chtest.AdminPassword, "SYSTEM FLUSH LOGS")
	seen := s.ch.Query(t, chtest.AdminUser, chtest.AdminPassword, "SELECT countIf(query LIKE '%refused-marker%'), countIf(query LIKE '%allowed-marker%' AND user = 'ch_keyed') FROM system.query_log WHERE query NOT LIKE '%query_log%'")
	if seen == "" || !strings.HasPrefix(seen, "0\t") || strings.HasSuffix(seen, "\t0") {
		t.Fatalf("query_log: %q refused and allowed queries, want none refused and the allowed one", seen)
	}
	// The same value as the fixed one passes; so do other settings.
	if _, err := s.client(t, nil, "--password", carol, "--readonly", "1", "--max_threads", "2", "--query", "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	// The query id is the person's, in their namespace.
	out, err = s.client(t, nil, "--password", carol, "--query_id", "mine", "--query", chtest.SelfSQL("query_id"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(out); !strings.HasPrefix(got, "cg") || !strings.HasSuffix(got, "_mine") {
		t.Fatalf("the query id is %q, want it in carol's namespace", got)
	}
}

func splitHostPort(t *testing.T, addr string) (string, string) {
	i := strings.LastIndexByte(addr, ':')
	return addr[:i], addr[i+1:]
}

// People who share a ClickHouse account cannot reach each other's
// queries: the same query id from two of them names two queries.
func TestSharedAccountQueryIDs(t *testing.T) {
	s := newStack(t, chtest.Options{}, mappedYAML)
	alice := s.token(t, "alice@example.com", "ch-analysts")
	carol := s.token(t, "carol@example.com", "ch-analysts")
	chHost, chPort := splitHostPort(t, s.ch.TCPAddr)
	run := func(host, port string, args ...string) <-chan error {
		done := make(chan error, 1)
		go func() {
			_, err := runClient(t, host, port, nil, append(args, "--query_id", "shared-id", "--query", "SELECT sleep(2)")...)
			done <- err
		}()
		return done
	}
	// Directly, the second query with the id is refused (the id is the
	// account's): what clickgate keeps people from.
	first := run(chHost, chPort, "--user", "ch_reader", "--password", "reader-pw")
	time.Sleep(700 * time.Millisecond)
	if err := <-run(chHost, chPort, "--user", "ch_reader", "--password", "reader-pw"); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("directly, the same id twice: %v", err)
	}
	<-first
	first = run(s.host, s.port, "--password", alice)
	time.Sleep(700 * time.Millisecond)
	if err := <-run(s.host, s.port, "--password", carol); err != nil {
		t.Fatalf("carol's query with alice's id: %v", err)
	}
	if err := <-first; err != nil {
		t.Fatalf("alice's query: %v", err)
	}
}

// Totals, extremes and profile info (rows before LIMIT) pass through:
// the output is the same as directly.
func TestTotalsExtremesProfile(t *testing.T) {
	s := newStack(t, chtest.Options{}, mappedYAML)
	bob := s.token(t, "bob@example.com", "ch-admin")
	chHost, chPort := splitHostPort(t, s.ch.TCPAddr)
	for _, tc := range [][]string{
		{"--extremes", "1", "--query", "SELECT number % 3 AS k, count() AS c FROM numbers(100) GROUP BY k WITH TOTALS ORDER BY k FORMAT TSV"},
		{"--query", "SELECT number FROM numbers(1000) ORDER BY number LIMIT 3 FORMAT JSONCompact"},
	} {
		want, err := runClient(t, chHost, chPort, nil, append([]string{"--user", "ch_admin", "--password", "admin-pw"}, tc...)...)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.client(t, nil, append([]string{"--password", bob}, tc...)...)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(tc[len(tc)-1], "JSON") { // statistics (elapsed) differ between runs
			cut := func(s string) string { return s[:strings.Index(s, "\"statistics\"")] }
			want, got = cut(want), cut(got)
		}
		if got != want || !strings.Contains(want, "\n\n") && !strings.Contains(want, "rows_before_limit_at_least") {
			t.Fatalf("%v: through clickgate\n%s\ndirectly\n%s", tc, got, want)
		}
	}
}

// A client that goes away in the middle of a query has it cancelled.
func TestClientDisconnectCancels(t *testing.T) {
	s := newStack(t, chtest.Options{}, mappedYAML)
	bob := s.token(t, "bob@example.com", "ch-admin")
	const marker = "disconnect-me-51c2"
	cmd := exec.Command("clickhouse-client", "--host", s.host, "--port", s.port, "--password", bob,
		"--query", "SELECT count() FROM system.numbers WHERE number % 1000000 = 1 AND '"+marker+"' != ''")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	running := func() string {
		return s.ch.Query(t, chtest.AdminUser, chtest.AdminPassword, "SELECT count() FROM system.processes WHERE query LIKE '%"+marker+"%' AND query NOT LIKE '%system.processes%'")
	}
	deadline := time.Now().Add(10 * time.Second)
	for running() != "1" {
		if time.Now().After(deadline) {
			t.Fatal("the query never ran")
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	deadline = time.Now().Add(10 * time.Second)
	for running() != "0" {
		if time.Now().After(deadline) {
			t.Fatal("the query runs on after its client went away")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A connection is a session: SET holds for the queries after it on the
// same connection, as directly.
func TestSetHoldsOnTheConnection(t *testing.T) {
	s := newStack(t, chtest.Options{}, mappedYAML)
	bob := s.token(t, "bob@example.com", "ch-admin")
	out, err := s.client(t, nil, "--password", bob, "--multiquery", "--query",
		"SET max_threads = 1; SELECT value FROM system.settings WHERE name = 'max_threads'; SET max_threads = 3; SELECT value FROM system.settings WHERE name = 'max_threads'")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(out); len(got) != 2 || got[0] != "1" || got[1] != "3" {
		t.Fatalf("after SET: %q", out)
	}
}

// Columns of every type 18.16 has come through as directly, compressed
// or not: the relay finds where each one ends.
func TestTypesIdenticalToDirect(t *testing.T) {
	s := newStack(t, chtest.Options{}, mappedYAML)
	bob := s.token(t, "bob@example.com", "ch-admin")
	chHost, chPort := splitHostPort(t, s.ch.TCPAddr)
	const sql = `SELECT number, toInt8(number), toUInt16(number), toInt32(number), toFloat32(number / 3), toFloat64(number / 7),
		toString(number), toFixedString(toString(number % 10), 3), toDate(number), toDateTime(number), toDateTime(number, 'Asia/Tokyo'),
		CAST(number % 2 AS Enum8('a' = 0, 'b' = 1)), CAST((number % 2) * 1000 AS Enum16('x, y' = 0, 'z' = 1000)), toDecimal32(number, 2), toDecimal64(number, 4), toDecimal128(number, 10),
		toUUID('00000000-0000-0000-0000-000000000001') AS u, if(number % 3 = 0, NULL, number) AS n, NULL AS nothing, [number, number + 1] AS arr, [[toString(number)], []] AS nested,
		(number, toString(number)) AS tup, [(number, NULL)] AS tuparr, toLowCardinality(toString(number % 5)) AS lc, [toNullable(number)] AS arrnull
		FROM numbers(300000) FORMAT TSV`
	want, err := runClient(t, chHost, chPort, nil, "--user", "ch_admin", "--password", "admin-pw", "--query", sql)
	if err != nil {
		t.Fatal(err)
	}
	for _, compression := range []string{"1", "0"} {
		got, err := s.client(t, nil, "--password", bob, "--compression", compression, "--query", sql)
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("--compression %s: %d bytes through clickgate, %d directly", compression, len(got), len(want))
		}
	}
}
