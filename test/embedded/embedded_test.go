// Package embedded_test runs clickgate's MCP tools on the ClickHouse engine
// inside clickgate (clickhouse.url chdb://<dir>, package chdb): ClickHouse
// 26.7 from the npm package chdb, so that the schema tools meet current
// system tables (the other MCP tests run on 18.16). The tools are called
// with the official Go SDK client, through server.New behind httptest, with
// tokens signed by a test key.
//
// It is a package of its own because chDB runs one engine per process: every
// test here shares the engine TestMain opens, and no other package's tests
// (with their own ClickHouse, or chdbtest's engine) share the process.
// libchdb.so must be installed (make test does): without it the tests fail
// with the install hint rather than skip.
package embedded_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/clickgate/clickgate/internal/chdb"
	"github.com/clickgate/clickgate/internal/chdb/npmlib"
	"github.com/clickgate/clickgate/internal/server"
	"github.com/clickgate/clickgate/internal/servertest"
	"github.com/clickgate/clickgate/internal/testkit"
)

const issuer = "https://idp.test/realms/corp"

var (
	// dataDir is the engine's data directory, which every test's
	// clickgate names in chdb://; engine is that engine, opened first.
	dataDir string
	engine  *chdb.Engine
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "clickgate-embedded-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	dataDir = filepath.Join(dir, "chdb")
	engine, err = chdb.Open(dataDir)
	if err != nil {
		fmt.Fprintf(os.Stderr, "embedded tests: %v\n", err)
		return 1
	}
	// The engine's background work must stop before its directory goes.
	defer engine.Close()
	if err := seed(); err != nil {
		fmt.Fprintf(os.Stderr, "embedded tests: seeding: %v\n", err)
		return 1
	}
	testkit.Clickgate, err = testkit.BuildClickgate(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "building clickgate:", err)
		return 1
	}
	return m.Run()
}

// seed creates, through the engine itself, a MergeTree table with a
// partition key, a sorting key longer than its primary key, and comments.
func seed() error {
	for _, sql := range []string{
		"CREATE DATABASE demo COMMENT 'demo data'",
		`CREATE TABLE demo.usage (
			day Date COMMENT 'the day',
			team LowCardinality(String) COMMENT 'who',
			tokens UInt64 DEFAULT 0 COMMENT 'how many',
			note String
		) ENGINE = MergeTree PARTITION BY toYYYYMM(day) PRIMARY KEY team ORDER BY (team, day)
		COMMENT 'tokens per team and day'`,
		"INSERT INTO demo.usage SELECT toDate('2026-01-01') + number % 60, concat('team-', toString(number % 3)), number, repeat('x', 100) FROM numbers(3000)",
		"CREATE TABLE demo.scratch (a UInt8) ENGINE = Memory",
	} {
		if _, err := engine.Exec(context.Background(), sql, "TSV", chdb.Settings{}); err != nil {
			return err
		}
	}
	return nil
}

type stack struct {
	cg       *httptest.Server
	iss      servertest.Issuer
	resource string
}

// newStack runs clickgate in process on chdb://<dataDir>; mcpYAML adds keys
// to the mcp section.
func newStack(t *testing.T, mcpYAML string) *stack {
	t.Helper()
	iss := servertest.NewIssuer(t)
	cg := servertest.StartWithURL(t, func(publicURL string) string {
		return fmt.Sprintf(`
server: {public_url: %s}
token_processors:
  corp: %s
clickhouse:
  url: chdb://%s
  mode: service
mcp:
%s`, publicURL, iss.Processor(), dataDir, mcpYAML)
	}, server.Options{})
	return &stack{cg: cg, iss: iss, resource: cg.URL + "/mcp"}
}

type bearer struct {
	token string
	base  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

// connect opens an MCP session for email with the official Go SDK client.
func (s *stack) connect(t *testing.T, email string) *mcp.ClientSession {
	t.Helper()
	tok := s.iss.Token(t, s.resource, email)
	client := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil)
	cs, err := client.Connect(context.Background(), &mcp.StreamableClientTransport{
		Endpoint: s.resource, HTTPClient: &http.Client{Transport: bearer{tok, http.DefaultTransport}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// result is a tool's structured answer.
type result struct {
	Columns []struct{ Name, Type string } `json:"columns"`
	Rows    [][]any                       `json:"rows"`
	Count   int                           `json:"row_count"`
	Cut     bool                          `json:"truncated"`
	Reason  string                        `json:"truncated_reason"`
}

// col returns the values of column name.
func (r result) col(t *testing.T, name string) []any {
	t.Helper()
	for i, c := range r.Columns {
		if c.Name == name {
			var out []any
			for _, row := range r.Rows {
				out = append(out, row[i])
			}
			return out
		}
	}
	t.Fatalf("no column %s in %v", name, r.Columns)
	return nil
}

func call(t *testing.T, cs *mcp.ClientSession, name string, args map[string]any, into any) *mcp.CallToolResult {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if into != nil && res.StructuredContent != nil {
		b, _ := json.Marshal(res.StructuredContent)
		if err := json.Unmarshal(b, into); err != nil {
			t.Fatal(err)
		}
	}
	return res
}

func text(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

func TestSchemaToolsOnCurrentSystemTables(t *testing.T) {
	s := newStack(t, "")
	cs := s.connect(t, "alice@example.com")

	var dbs result
	if res := call(t, cs, "list_databases", nil, &dbs); res.IsError {
		t.Fatal(text(res))
	}
	if got := fmt.Sprint(dbs.col(t, "name")); !strings.Contains(got, "demo") || !strings.Contains(got, "system") {
		t.Errorf("list_databases: %s", got)
	}

	// 26.7's system.tables has every column list_tables asks for.
	var tables struct {
		result
		Next string `json:"next_cursor"`
	}
	if res := call(t, cs, "list_tables", map[string]any{"database": "demo"}, &tables); res.IsError {
		t.Fatal(text(res))
	}
	var names []string
	for _, c := range tables.Columns {
		names = append(names, c.Name)
	}
	if got := strings.Join(names, ","); got != "name,engine,total_rows,total_bytes,comment" {
		t.Fatalf("list_tables columns: %s", got)
	}
	if fmt.Sprint(tables.Rows[1][:3]) != "[usage MergeTree 3000]" || tables.Rows[1][4] != "tokens per team and day" {
		t.Errorf("list_tables usage: %v", tables.Rows)
	}
	if b, _ := strconv.Atoi(fmt.Sprint(tables.Rows[1][3])); b <= 0 {
		t.Errorf("total_bytes of usage = %v", tables.Rows[1][3])
	}
	if fmt.Sprint(tables.Rows[0][:2]) != "[scratch Memory]" {
		t.Errorf("list_tables scratch: %v", tables.Rows[0])
	}
	call(t, cs, "list_tables", map[string]any{"database": "demo", "like": "us%"}, &tables)
	if len(tables.Rows) != 1 || tables.Next != "" {
		t.Errorf("list_tables like us%%: %v", tables.Rows)
	}

	// describe_table: the table's keys, and each column's membership.
	var desc struct {
		Table   result `json:"table"`
		Columns result `json:"columns"`
	}
	if res := call(t, cs, "describe_table", map[string]any{"database": "demo", "table": "usage"}, &desc); res.IsError {
		t.Fatal(text(res))
	}
	for col, want := range map[string]string{
		"engine": "MergeTree", "partition_key": "toYYYYMM(day)", "sorting_key": "team, day", "primary_key": "team",
		"total_rows": "3000", "comment": "tokens per team and day",
	} {
		if got := fmt.Sprint(desc.Table.col(t, col)); got != "["+want+"]" {
			t.Errorf("describe_table %s = %s, want %s", col, got, want)
		}
	}
	want := map[string][]any{
		"name":                {"day", "team", "tokens", "note"},
		"type":                {"Date", "LowCardinality(String)", "UInt64", "String"},
		"default_kind":        {"", "", "DEFAULT", ""},
		"comment":             {"the day", "who", "how many", ""},
		"is_in_partition_key": {float64(1), float64(0), float64(0), float64(0)},
		"is_in_sorting_key":   {float64(1), float64(1), float64(0), float64(0)},
		"is_in_primary_key":   {float64(0), float64(1), float64(0), float64(0)},
	}
	for col, w := range want {
		if got := desc.Columns.col(t, col); fmt.Sprint(got) != fmt.Sprint(w) {
			t.Errorf("describe_table column %s = %v, want %v", col, got, w)
		}
	}
	res := call(t, cs, "describe_table", map[string]any{"database": "demo", "table": "nope"}, nil)
	if !res.IsError {
		t.Errorf("describe_table of a missing table: %s", text(res))
	}
}

func TestRunQueryCaps(t *testing.T) {
	s := newStack(t, "  max_result_rows: 100\n  max_result_bytes: 5000\n")
	cs := s.connect(t, "alice@example.com")

	var out result
	res := call(t, cs, "run_query", map[string]any{"query": "SELECT team, sum(tokens) AS total FROM demo.usage GROUP BY team ORDER BY team"}, &out)
	if res.IsError || out.Count != 3 || fmt.Sprint(out.Rows[0]) != "[team-0 1498500]" || !strings.Contains(text(res), "untrusted data") {
		t.Fatalf("run_query: %s %+v", text(res), out)
	}
	// The row cap: 3000 rows asked for, 100 given, said plainly.
	res = call(t, cs, "run_query", map[string]any{"query": "SELECT day, team, tokens FROM demo.usage"}, &out)
	if out.Count != 100 || !out.Cut || !strings.Contains(out.Reason, "max_result_rows") || !strings.Contains(text(res), "the result was cut") {
		t.Fatalf("row cap: %d rows, %v %q", out.Count, out.Cut, out.Reason)
	}
	// The byte cap: ~120 bytes a row, so about 40 rows fit in 5000 bytes.
	call(t, cs, "run_query", map[string]any{"query": "SELECT * FROM demo.usage"}, &out)
	if out.Count == 0 || out.Count >= 100 || !out.Cut || !strings.Contains(out.Reason, "max_result_bytes") {
		t.Fatalf("byte cap: %d rows, %v %q", out.Count, out.Cut, out.Reason)
	}
	// A result far beyond the caps streams and stops: the call returns
	// quickly, and the engine is free for the next one.
	start := time.Now()
	call(t, cs, "run_query", map[string]any{"query": "SELECT number FROM system.numbers"}, &out)
	if out.Count != 100 || time.Since(start) > 10*time.Second {
		t.Fatalf("endless result: %d rows after %v", out.Count, time.Since(start))
	}
	// ClickHouse's own error.
	res = call(t, cs, "run_query", map[string]any{"query": "SELECT nope FROM demo.usage"}, nil)
	if !res.IsError || !strings.Contains(text(res), "nope") || !strings.Contains(text(res), "UNKNOWN_IDENTIFIER") {
		t.Fatalf("bad query: %s", text(res))
	}
}

func TestRunQueryRefusesWrites(t *testing.T) {
	s := newStack(t, "")
	cs := s.connect(t, "alice@example.com")
	outfile := filepath.Join(t.TempDir(), "out.tsv")
	for _, sql := range []string{
		"INSERT INTO demo.usage (day, team, tokens) VALUES ('2026-01-01', 'x', 1)",
		"INSERT INTO demo.usage SELECT * FROM demo.usage SETTINGS readonly = 0",
		"DROP TABLE demo.scratch",
		"CREATE TABLE demo.x (a UInt8) ENGINE = Memory",
		"ALTER TABLE demo.usage DELETE WHERE 1",
		"SET readonly = 0",
		"USE system",
		"SELECT 1 INTO OUTFILE '" + outfile + "'", // clickhouse-local would write it

	} {
		res := call(t, cs, "run_query", map[string]any{"query": sql}, nil)
		if !res.IsError || !strings.Contains(text(res), "readonly") {
			t.Errorf("%s through run_query: %v %s", sql, res.IsError, text(res))
		}
	}
	var out result
	call(t, cs, "run_query", map[string]any{"query": "SELECT count() FROM demo.usage"}, &out)
	if fmt.Sprint(out.Rows) != "[[3000]]" {
		t.Fatalf("rows after refused writes: %v", out.Rows)
	}
	if _, err := os.Stat(outfile); err == nil {
		t.Error("INTO OUTFILE wrote a file through run_query")
	}
	tools, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range tools.Tools {
		if tool.Name == "write_query" {
			t.Error("write_query offered with mcp.read_only")
		}
	}
}

func TestExplainQuery(t *testing.T) {
	s := newStack(t, "")
	cs := s.connect(t, "alice@example.com")
	res := call(t, cs, "explain_query", map[string]any{"query": "SELECT team, count() FROM demo.usage WHERE team = 'team-1' GROUP BY team"}, nil)
	if res.IsError || !strings.Contains(text(res), "ReadFromMergeTree") || !strings.Contains(text(res), "Aggregating") {
		t.Fatalf("explain_query (plan): %s", text(res))
	}
	for kind, want := range map[string]string{"pipeline": "MergeTree", "syntax": "SELECT", "estimate": "parts"} {
		res := call(t, cs, "explain_query", map[string]any{"query": "SELECT count() FROM demo.usage WHERE team = 'team-1'", "kind": kind}, nil)
		if res.IsError || !strings.Contains(text(res), want) {
			t.Errorf("explain_query %s: %s", kind, text(res))
		}
	}
}

// With mcp.read_only: false, write_query writes and run_query still
// refuses: the engine's session goes from readonly and back.
func TestWriteQuery(t *testing.T) {
	s := newStack(t, "  read_only: false\n")
	cs := s.connect(t, "alice@example.com")
	for _, sql := range []string{
		"CREATE TABLE demo.notes (id UInt32, body String) ENGINE = MergeTree ORDER BY id",
		"INSERT INTO demo.notes VALUES (1, 'one')",
	} {
		if res := call(t, cs, "write_query", map[string]any{"query": sql}, nil); res.IsError {
			t.Fatalf("%s: %s", sql, text(res))
		}
	}
	if res := call(t, cs, "run_query", map[string]any{"query": "INSERT INTO demo.notes VALUES (2, 'two')"}, nil); !res.IsError || !strings.Contains(text(res), "readonly") {
		t.Fatalf("write through run_query: %s", text(res))
	}
	if res := call(t, cs, "write_query", map[string]any{"query": "INSERT INTO demo.notes VALUES (3, 'three')"}, nil); res.IsError {
		t.Fatalf("write after a read: %s", text(res))
	}
	var out result
	call(t, cs, "run_query", map[string]any{"query": "SELECT groupArray(id) FROM (SELECT id FROM demo.notes ORDER BY id)"}, &out)
	if fmt.Sprint(out.Rows) != "[[[1,3]]]" {
		t.Fatalf("notes: %v", out.Rows)
	}
	call(t, cs, "write_query", map[string]any{"query": "DROP TABLE demo.notes"}, nil)
}

// The gateway cannot proxy to an engine inside the process: it says so,
// in a ClickHouse-style error; readiness and MCP are unaffected.
func TestGatewayIsOff(t *testing.T) {
	s := newStack(t, "")
	resp, err := http.Get(s.cg.URL + "/?query=SELECT+1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotImplemented || resp.Header.Get("X-ClickHouse-Exception-Code") != "48" ||
		!strings.Contains(string(body), "chdb://") || !strings.Contains(string(body), "/mcp") {
		t.Fatalf("gateway: %d %s", resp.StatusCode, body)
	}
	resp, err = http.Get(s.cg.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("readyz: %d %s", resp.StatusCode, body)
	}
}

// The clickgate binary loads libchdb.so only for chdb://: without the
// library it serves an http:// ClickHouse as ever, and refuses chdb:// with
// the install hint.
func TestBinaryWithoutTheLibrary(t *testing.T) {
	dir := t.TempDir()
	key := testkit.NewKey(t, jose.ES256, "k1")
	jwks := testkit.WriteJWKS(t, dir, key)
	write := func(name, url string) string {
		path := filepath.Join(dir, name)
		yaml := fmt.Sprintf(`
server: {listen: "127.0.0.1:0"}
token_processors:
  corp: {type: jwt, issuer: %s, jwks_file: %s, audiences: [clickhouse]}
clickhouse: {url: %q, mode: service%s}
`, issuer, jwks, url, map[bool]string{true: ", user: svc"}[!strings.HasPrefix(url, "chdb:")])
		if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	// Run from a directory with no node_modules above it, and a
	// CHDB_LIB_PATH that names nothing.
	env := append(os.Environ(), chdb.EnvLibPath+"=/nonexistent/libchdb.so")

	cmd := exec.Command(testkit.Clickgate, "serve", "--config", write("chdb.yaml", "chdb://"+filepath.Join(dir, "data")))
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	hint := "libchdb.so not found: install the npm package chdb (npm install chdb) and set CHDB_LIB_PATH=…/node_modules/@chdb/lib-" + npmlib.Platform() + "/libchdb.so"
	if err == nil || !strings.Contains(string(out), hint) || !strings.Contains(string(out), "clickhouse.url") {
		t.Fatalf("serve chdb:// without the library: %v\n%s", err, out)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cmd = exec.CommandContext(ctx, testkit.Clickgate, "serve", "--config", write("http.yaml", "http://127.0.0.1:1"))
	cmd.Dir, cmd.Env = dir, env
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); cmd.Wait() }()
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		re := regexp.MustCompile(`address=(127\.0\.0\.1:\d+)`)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
		close(addr)
	}()
	select {
	case a, ok := <-addr:
		if !ok {
			t.Fatal("clickgate (http://) exited before listening")
		}
		resp, err := http.Get("http://" + a + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("healthz: %d", resp.StatusCode)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("clickgate (http://) did not start")
	}
}
