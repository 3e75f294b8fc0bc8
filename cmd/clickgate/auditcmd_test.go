package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/clickgate/clickgate/internal/audit"
	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/testkit"
)

// longQuery is a query on several lines, longer than the table's column.
const longQuery = "SELECT user, count()\nFROM   system.query_log\nWHERE  event_date = today() AND type = 'QueryFinish' AND user != 'default'\nGROUP BY user"

// trailEvents are written through a Log, in this order.
var trailEvents = []audit.Record{
	{Type: audit.LoginSuccess, User: "alice@example.com", Interface: audit.InterfaceGateway, Processor: "corp"},
	{Type: audit.Query, User: "alice@example.com", Account: "svc", Interface: audit.InterfaceGateway, QueryKind: "SELECT",
		Query: "SELECT\n  count()\nFROM t", Outcome: "ok", DurationMicroseconds: 12345, ResultRows: 1, ReadRows: 1000},
	{Type: audit.ToolCall, User: "bob@example.com", Account: "svc", Interface: audit.InterfaceMCP, Tool: "run_query",
		Query: "SELECT * FROM x", Outcome: "failed", FailureReason: "Code: 60. DB::Exception: Table default.x doesn't exist.", DurationMicroseconds: 800},
	{Type: audit.QueryRefused, User: "alice@example.com", Account: "svc", Interface: audit.InterfaceGateway, QueryKind: "SELECT",
		Query: longQuery, Outcome: "refused", FailureReason: "the audit trail cannot record it"},
	{Type: audit.LoginFailure, Interface: audit.InterfaceMCP, FailureReason: "token expired"},
}

// writeTrail writes recs to the trail file at path through a Log.
func writeTrail(t *testing.T, path string, recs ...audit.Record) {
	t.Helper()
	log, err := audit.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		log.Write(r)
	}
	if err := log.Close(); err != nil {
		t.Fatal(err)
	}
}

// fileTrail is a configuration whose audit.file holds, in a rotated file,
// a Query of alice 3 h ago and a LoginSuccess of bob 2 h ago, and then
// trailEvents written now.
func fileTrail(t *testing.T) (cfg, path string) {
	t.Helper()
	dir := t.TempDir()
	cfg = validConfig(t, dir, testkit.NewKey(t, jose.ES256, "k1"), "")
	path = filepath.Join(dir, "session.log")
	var old []byte
	for _, r := range []audit.Record{
		{Type: audit.Query, User: "alice@example.com", Interface: audit.InterfaceMCP, QueryKind: "SELECT", Query: "SELECT 'old'", Outcome: "ok",
			EventTimeMicroseconds: time.Now().Add(-3 * time.Hour).UTC().Format(time.RFC3339Nano)},
		{Type: audit.LoginSuccess, User: "bob@example.com", Interface: audit.InterfaceWhoami,
			EventTimeMicroseconds: time.Now().Add(-2 * time.Hour).UTC().Format(time.RFC3339Nano)},
	} {
		r.EventID = audit.NewEventID()
		line, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		old = append(append(old, line...), '\n')
	}
	old = append(old, "{not an event\n"...) // a write cut short: skipped
	if err := os.WriteFile(path+".1", old, 0o600); err != nil {
		t.Fatal(err)
	}
	writeTrail(t, path, trailEvents...)
	return cfg, path
}

// jsonRecords parses --format json output.
func jsonRecords(t *testing.T, stdout string) []audit.Record {
	t.Helper()
	var recs []audit.Record
	for _, line := range strings.Split(strings.TrimSuffix(stdout, "\n"), "\n") {
		if line == "" {
			continue
		}
		var r audit.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("not a JSON record: %q (%v)", line, err)
		}
		recs = append(recs, r)
	}
	return recs
}

// summary is type:user of each record, for comparisons.
func summary(recs []audit.Record) string {
	s := make([]string, len(recs))
	for i, r := range recs {
		s[i] = r.Type + ":" + strings.TrimSuffix(r.User, "@example.com")
	}
	return strings.Join(s, " ")
}

// tableLine is a table row: the time, then the type at the TYPE column.
var tableLine = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z  `)

// checkTable checks a table's header and that each row has its type
// under TYPE and its user under USER; it returns the rows.
func checkTable(t *testing.T, stdout string, want []audit.Record) []string {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(lines) != len(want)+1 || !strings.HasPrefix(lines[0], "TIME (UTC)") {
		t.Fatalf("want a header and %d rows:\n%s", len(want), stdout)
	}
	header := lines[0]
	for _, col := range tableHeader[1:] {
		if !strings.Contains(header, "  "+col) {
			t.Errorf("header lacks %s: %q", col, header)
		}
	}
	typeAt, userAt := strings.Index(header, "TYPE"), strings.Index(header, "USER")
	for i, line := range lines[1:] {
		if !tableLine.MatchString(line) || !strings.HasPrefix(line[typeAt:], want[i].Type+" ") || !strings.HasPrefix(line[userAt:], want[i].User+" ") {
			t.Errorf("row %d is not %s of %q under the header:\n%s\n%s", i+1, want[i].Type, want[i].User, header, line)
		}
	}
	return lines[1:]
}

func TestAuditFile(t *testing.T) {
	isolate(t)
	cfg, _ := fileTrail(t)
	old := []audit.Record{{Type: audit.Query, User: "alice@example.com"}, {Type: audit.LoginSuccess, User: "bob@example.com"}}
	all := append(slices.Clone(old), trailEvents...)

	// The table: every event, oldest first, the rotated file's first.
	code, stdout, stderr := cli(t, "audit", "--config", cfg)
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	rows := checkTable(t, stdout, all)
	for i, want := range []string{
		`  SELECT +ok +SELECT 'old'$`,
		`  whoami$`,
		`  gateway$`,
		`  svc +gateway +SELECT +ok +12\.3 +1/1000  SELECT count\(\) FROM t$`,
		`  bob@example\.com +svc +mcp +run_query +failed +0\.8 +Code: 60\. DB::Exception: Table default\.x doesn't exist\. \| SELECT \* FROM x$`,
		`  refused +the audit trail cannot record it \| SELECT user, count\(\) FROM system\.query_log WHERE event_date = today\(\) AND type …$`,
		`  LoginFailure  +mcp +failed +token expired$`,
	} {
		if !regexp.MustCompile(want).MatchString(rows[i]) {
			t.Errorf("row %d does not match %s:\n%s", i+1, want, rows[i])
		}
	}

	// JSON lines: the fields of the file.
	code, stdout, stderr = cli(t, "audit", "--config", cfg, "--format", "json")
	recs := jsonRecords(t, stdout)
	if code != 0 || stderr != "" || summary(recs) != summary(all) {
		t.Fatalf("json: exit %d, %s\n%s%s", code, summary(recs), stdout, stderr)
	}
	if q := recs[3]; q.Query != trailEvents[1].Query || q.DurationMicroseconds != 12345 || q.ReadRows != 1000 || q.EventID == "" || q.Time().IsZero() {
		t.Errorf("json record: %+v", q)
	}
	if !strings.Contains(stdout, `"query_duration_us":12345`) || !strings.Contains(stdout, `"event_time_microseconds":"`) {
		t.Errorf("json lines do not use the file's field names:\n%s", stdout)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"user", []string{"--user", "alice@example.com"}, "Query:alice LoginSuccess:alice Query:alice QueryRefused:alice"},
		{"types", []string{"--type", "Query, ToolCall,Query"}, "Query:alice Query:alice ToolCall:bob"},
		{"user and type", []string{"--user", "bob@example.com", "--type", "LoginSuccess"}, "LoginSuccess:bob"},
		{"since a duration", []string{"--since", "90m"}, summary(trailEvents)},
		{"since a time", []string{"--since", time.Now().Add(-150 * time.Minute).UTC().Format(time.RFC3339)}, "LoginSuccess:bob " + summary(trailEvents)},
		{"limit: the newest", []string{"--limit", "2"}, "QueryRefused:alice LoginFailure:"},
		{"limit 0: all", []string{"--limit", "0"}, summary(all)},
		{"limit after the filters", []string{"--user", "alice@example.com", "--limit", "3"}, "LoginSuccess:alice Query:alice QueryRefused:alice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := cli(t, append([]string{"audit", "--config", cfg, "--format", "json"}, tc.args...)...)
			if got := summary(jsonRecords(t, stdout)); code != 0 || stderr != "" || got != tc.want {
				t.Errorf("exit %d, got %s\nwant %s\n%s", code, got, tc.want, stderr)
			}
		})
	}

	// Nothing matches: nothing on stdout, a note on stderr, success.
	code, stdout, stderr = cli(t, "audit", "--config", cfg, "--user", "nobody")
	if code != 0 || stdout != "" || stderr != "no events match (in "+filepath.Join(filepath.Dir(cfg), "session.log")+")\n" {
		t.Errorf("no match: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
}

func TestAuditUsageErrors(t *testing.T) {
	isolate(t)
	cfg, _ := fileTrail(t)
	types := "LoginSuccess, LoginFailure, Query, QueryRefused, ToolCall, SignIn, TokenIssued, TokenRefreshed, RefreshReplay, ClientRegistered"
	for _, tc := range []struct {
		name   string
		args   []string
		stderr []string
	}{
		{"unknown type", []string{"--type", "Query,Login"}, []string{`invalid value "Query,Login" for flag -type: unknown event type "Login"; the types are ` + types, "Usage: clickgate audit"}},
		{"empty type", []string{"--type", ","}, []string{"no event type given; the types are " + types, "Usage: clickgate audit"}},
		{"since neither", []string{"--since", "yesterday"}, []string{`invalid value "yesterday" for flag -since: neither a duration ago (1h, 30m, 72h) nor an RFC 3339 time`, "Usage: clickgate audit"}},
		{"since negative", []string{"--since", "-1h"}, []string{"a duration ago must not be negative", "Usage: clickgate audit"}},
		{"negative limit", []string{"--limit", "-1"}, []string{"--limit -1: must be 0 (all) or more", "Usage: clickgate audit"}},
		{"unknown format", []string{"--format", "xml"}, []string{`--format "xml": use table or json`, "Usage: clickgate audit"}},
		{"stray argument", []string{"alice"}, []string{`unexpected argument "alice"`, "Usage: clickgate audit"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := cli(t, append([]string{"audit", "--config", cfg}, tc.args...)...)
			wantFailure(t, code, stdout, stderr, 2, tc.stderr)
		})
	}
}

func TestAuditHelp(t *testing.T) {
	isolate(t)
	code, stdout, stderr := cli(t, "audit", "--help")
	if code != 0 || stdout != "" {
		t.Fatalf("exit %d, stdout %q", code, stdout)
	}
	for _, want := range []string{"Usage: clickgate audit --config clickgate.yaml [--user U] [--since 1h|2026-12-06T10:00:00Z]", commands["audit"].summary,
		"-follow", "-format string", "-limit n", "-since when", "-type types", "ClientRegistered", "-user string"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("--help lacks %q:\n%s", want, stderr)
		}
	}
}

func TestAuditRuntimeErrors(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	valid := validConfig(t, dir, testkit.NewKey(t, jose.ES256, "k1"), "")
	trailLine := "  file: " + filepath.Join(dir, "session.log") + "\n"
	for _, tc := range []struct {
		name   string
		config string
		stderr string
	}{
		{"no trail", strings.Replace(readFile(t, valid), trailLine, "  query_text: redacted\n", 1),
			" has no audit trail to read: set audit.file (a JSON-lines file) or audit.clickhouse (a ClickHouse table)\n"},
		{"standard error", strings.Replace(readFile(t, valid), trailLine, "  file: \"-\"\n", 1),
			` sends the audit trail to standard error (audit.file: "-"), which cannot be read back: set audit.file to a path or audit.clickhouse` + "\n"},
		{"no file yet", readFile(t, valid), "audit: open " + filepath.Join(dir, "session.log") + ": no such file or directory\n"},
		{"invalid config", "server: [\n", "(run 'clickgate check-config --config "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeFile(t, t.TempDir(), "clickgate.yaml", tc.config)
			code, stdout, stderr := cli(t, "audit", "--config", path)
			wantFailure(t, code, stdout, stderr, 1, []string{"clickgate audit: ", tc.stderr})
		})
	}
}

// fastFollow makes --follow poll every few milliseconds.
func fastFollow(t *testing.T) {
	saved := followEvery
	followEvery = 20 * time.Millisecond
	t.Cleanup(func() { followEvery = saved })
}

// following runs clickgate audit --follow with args until the test calls
// the returned stop, which returns the exit code.
func following(t *testing.T, args ...string) (stdout, stderr *testkit.SyncBuffer, stop func() int) {
	t.Helper()
	stdout, stderr = new(testkit.SyncBuffer), new(testkit.SyncBuffer)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- run(ctx, append([]string{"audit", "--follow"}, args...), stdout, stderr) }()
	stopped := false
	stop = func() int {
		t.Helper()
		if stopped {
			return -1
		}
		stopped = true
		cancel()
		select {
		case code := <-done:
			return code
		case <-time.After(20 * time.Second):
			t.Fatal("audit --follow did not stop when its context ended")
			return -1
		}
	}
	t.Cleanup(func() { stop() })
	return stdout, stderr, stop
}

// waitForOutput waits until out has n lines, failing after a while.
func waitForOutput(t *testing.T, out, errw *testkit.SyncBuffer, n int) string {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if s := out.String(); strings.Count(s, "\n") >= n {
			return s
		}
	}
	t.Fatalf("want %d lines, got:\n%s\nstderr:\n%s", n, out.String(), errw.String())
	return ""
}

func TestAuditFollowFile(t *testing.T) {
	isolate(t)
	fastFollow(t)
	cfg, path := fileTrail(t)
	stdout, stderr, stop := following(t, "--config", cfg, "--format", "json", "--user", "alice@example.com", "--limit", "2")
	if got := summary(jsonRecords(t, waitForOutput(t, stdout, stderr, 2))); got != "Query:alice QueryRefused:alice" {
		t.Errorf("first screen: %s", got)
	}
	time.Sleep(100 * time.Millisecond) // a few polls: nothing shown twice, nothing left out by --limit shown
	writeTrail(t, path, audit.Record{Type: audit.ToolCall, User: "alice@example.com", Interface: audit.InterfaceMCP, Tool: "list_tables", Outcome: "ok"},
		audit.Record{Type: audit.ToolCall, User: "bob@example.com", Interface: audit.InterfaceMCP, Tool: "list_tables", Outcome: "ok"})
	waitForOutput(t, stdout, stderr, 3)
	// Rotation: the file moves to .1 (and .1 to .2); events go on in a new file.
	if err := os.Rename(path+".1", path+".2"); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	writeTrail(t, path, audit.Record{Type: audit.Query, User: "alice@example.com", Interface: audit.InterfaceGateway, Query: "SELECT 'after rotation'", Outcome: "ok"})
	waitForOutput(t, stdout, stderr, 4)
	time.Sleep(100 * time.Millisecond)
	if code := stop(); code != 0 || stderr.String() != "" {
		t.Errorf("exit %d when stopped\n%s", code, stderr.String())
	}
	recs := jsonRecords(t, stdout.String())
	if got := summary(recs); got != "Query:alice QueryRefused:alice ToolCall:alice Query:alice" || recs[3].Query != "SELECT 'after rotation'" {
		t.Errorf("followed: %s", got)
	}
}

// A file that does not exist yet is waited for; the table format prints
// its header first.
func TestAuditFollowFileNotYetThere(t *testing.T) {
	isolate(t)
	fastFollow(t)
	dir := t.TempDir()
	cfg := validConfig(t, dir, testkit.NewKey(t, jose.ES256, "k1"), "")
	stdout, stderr, stop := following(t, "--config", cfg)
	if out := waitForOutput(t, stdout, stderr, 1); !strings.HasPrefix(out, "TIME (UTC)  ") {
		t.Errorf("no header first: %q", out)
	}
	writeTrail(t, filepath.Join(dir, "session.log"), trailEvents[1])
	out := waitForOutput(t, stdout, stderr, 2)
	if code := stop(); code != 0 {
		t.Errorf("exit %d\n%s", code, stderr.String())
	}
	checkTable(t, out, trailEvents[1:2])
}

// tableTrail is a configuration whose audit.clickhouse is srv's table
// (and whose audit.file, never written, is ignored), and a function that
// writes events into that table.
func tableTrail(t *testing.T, srv *chtest.Server) (cfg string, write func(...audit.Record)) {
	t.Helper()
	dir := t.TempDir()
	cfg = validConfig(t, dir, testkit.NewKey(t, jose.ES256, "k1"), fmt.Sprintf(`  clickhouse:
    url: %s
    user: %s
    password: %s
    table: trail
    spool_dir: %s
`, srv.HTTPURL, chtest.AdminUser, chtest.AdminPassword, filepath.Join(dir, "spool")))
	write = func(recs ...audit.Record) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		log, err := audit.OpenOptions(ctx, audit.Options{Table: &audit.TableOptions{URL: srv.HTTPURL, User: chtest.AdminUser, Password: chtest.AdminPassword,
			Table: "trail", SpoolDir: t.TempDir()}})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			log.Write(r)
		}
		if err := log.Close(); err != nil {
			t.Fatal(err)
		}
		if s := log.Stats(); s.TableWritten != uint64(len(recs)) {
			t.Fatalf("%d of %d events inserted: %+v", s.TableWritten, len(recs), s)
		}
	}
	return cfg, write
}

func TestAuditTable(t *testing.T) {
	isolate(t)
	fastFollow(t)
	srv := chtest.Start(t, chtest.Options{})
	cfg, write := tableTrail(t, srv)
	write(trailEvents...)

	code, stdout, stderr := cli(t, "audit", "--config", cfg)
	if code != 0 || stderr != "" {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	t.Logf("clickgate audit --config %s\n%s", cfg, stdout)
	rows := checkTable(t, stdout, trailEvents)
	if !regexp.MustCompile(`  svc +gateway +SELECT +ok +12\.3 +1/1000  SELECT count\(\) FROM t$`).MatchString(rows[1]) {
		t.Errorf("query row:\n%s", rows[1])
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"all", nil, summary(trailEvents)},
		{"user", []string{"--user", "bob@example.com"}, "ToolCall:bob"},
		{"types", []string{"--type", "QueryRefused,LoginSuccess"}, "LoginSuccess:alice QueryRefused:alice"},
		{"since", []string{"--since", "1h"}, summary(trailEvents)},
		{"since later", []string{"--since", time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}, ""},
		{"limit", []string{"--limit", "2", "--user", "alice@example.com"}, "Query:alice QueryRefused:alice"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := cli(t, append([]string{"audit", "--config", cfg, "--format", "json"}, tc.args...)...)
			if got := summary(jsonRecords(t, stdout)); code != 0 || got != tc.want {
				t.Errorf("exit %d, got %s\nwant %s\n%s", code, got, tc.want, stderr)
			}
		})
	}
	code, stdout, _ = cli(t, "audit", "--config", cfg, "--format", "json", "--type", "Query")
	if recs := jsonRecords(t, stdout); code != 0 || len(recs) != 1 || recs[0].Query != trailEvents[1].Query || recs[0].ReadRows != 1000 || recs[0].Time().IsZero() {
		t.Errorf("a query from the table: %+v", recs)
	}

	// --follow: the newest events, then new ones as they are inserted.
	out, errw, stop := following(t, "--config", cfg, "--format", "json", "--limit", "1")
	if got := summary(jsonRecords(t, waitForOutput(t, out, errw, 1))); got != "LoginFailure:" {
		t.Errorf("first screen: %s", got)
	}
	write(audit.Record{Type: audit.SignIn, User: "carol@example.com", Interface: audit.InterfaceBroker, ClientID: "https://app.example/client.json"})
	waitForOutput(t, out, errw, 2)
	time.Sleep(100 * time.Millisecond)
	if code := stop(); code != 0 || errw.String() != "" {
		t.Errorf("exit %d when stopped\n%s", code, errw.String())
	}
	if got := summary(jsonRecords(t, out.String())); got != "LoginFailure: SignIn:carol" {
		t.Errorf("followed: %s", got)
	}

	// ClickHouse refuses: the error says so.
	srv.Stop()
	code, stdout, stderr = cli(t, "audit", "--config", cfg)
	wantFailure(t, code, stdout, stderr, 1, []string{"clickgate audit: audit: reading `default`.`trail`: "})
}
