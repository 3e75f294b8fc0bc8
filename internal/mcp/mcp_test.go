package mcp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/server"
	"github.com/clickgate/clickgate/internal/servertest"
	"github.com/clickgate/clickgate/internal/testkit"
)

type stack struct {
	ch       *chtest.Server
	cg       *httptest.Server
	iss      servertest.Issuer
	resource string
}

// newStack runs clickgate (mapped mode, MCP on) in front of a real
// ClickHouse 18.16 holding a small table of per-team data; mcpYAML adds
// keys to the mcp section.
func newStack(t *testing.T, mcpYAML string) *stack {
	t.Helper()
	ch := chtest.Start(t, chtest.Options{})
	ch.Query(t, "ch_admin", "admin-pw", "CREATE TABLE default.usage (day Date, team String, tokens UInt64) ENGINE = MergeTree ORDER BY (team, day)")
	ch.Query(t, "ch_admin", "admin-pw", "INSERT INTO default.usage SELECT toDate('2026-01-01') + number % 30, concat('team-', toString(number % 3)), number FROM system.numbers LIMIT 3000")
	iss := servertest.NewIssuer(t)
	// MCP's resource is public_url + /mcp.
	cg := servertest.StartWithURL(t, func(publicURL string) string {
		return fmt.Sprintf(`
server: {public_url: %s}
token_processors:
  corp: %s
directory:
  roles: {filter: "^ch-.*$", transform: "s/^ch-//", common: [mcp_reader]}
clickhouse:
  url: %s
  mode: mapped
  accounts:
    - {role: admin, user: ch_admin, password: admin-pw}
    - {role: mcp_reader, user: ch_reader, password: reader-pw}
mcp:
%s`, publicURL, iss.Processor(), ch.HTTPURL, mcpYAML)
	}, server.Options{})
	return &stack{ch: ch, cg: cg, iss: iss, resource: cg.URL + "/mcp"}
}

// token mints a token for the MCP resource (aud), as the broker or an IdP would.
func (s *stack) token(t *testing.T, aud, email string, groups ...string) string {
	return s.iss.Token(t, aud, email, groups...)
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

// connect opens an MCP session with the official Go SDK client.
func (s *stack) connect(t *testing.T, tok string) *mcp.ClientSession {
	t.Helper()
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

func call(t *testing.T, cs *mcp.ClientSession, name string, args map[string]any) (*mcp.CallToolResult, map[string]any) {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	var structured map[string]any
	if res.StructuredContent != nil {
		b, _ := json.Marshal(res.StructuredContent)
		json.Unmarshal(b, &structured)
	}
	return res, structured
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

func TestTools(t *testing.T) {
	s := newStack(t, "  max_result_rows: 100\n")
	cs := s.connect(t, s.token(t, s.resource, "alice@example.com", "ch-analysts"))

	tools, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range tools.Tools {
		names = append(names, tool.Name)
		if tool.Annotations == nil || !tool.Annotations.ReadOnlyHint || tool.OutputSchema == nil {
			t.Errorf("%s: annotations %+v, output schema %v", tool.Name, tool.Annotations, tool.OutputSchema)
		}
	}
	if got := strings.Join(names, ","); got != "describe_table,explain_query,list_databases,list_tables,run_query,sample_rows,search_schema" {
		t.Fatalf("tools = %s (write_query must be absent when read_only)", got)
	}

	_, dbs := call(t, cs, "list_databases", nil)
	if !strings.Contains(fmt.Sprint(dbs["rows"]), "default") {
		t.Errorf("list_databases: %v", dbs)
	}
	_, tables := call(t, cs, "list_tables", map[string]any{"database": "default", "like": "us%"})
	if fmt.Sprint(tables["rows"]) != "[[usage MergeTree]]" {
		t.Errorf("list_tables: %v", tables)
	}
	res, desc := call(t, cs, "describe_table", map[string]any{"database": "default", "table": "usage"})
	if !strings.Contains(text(res), "tokens UInt64") && !strings.Contains(fmt.Sprint(desc["columns"]), "tokens UInt64") {
		t.Errorf("describe_table: %s", text(res))
	}
	res, out := call(t, cs, "run_query", map[string]any{"query": "SELECT team, sum(tokens) AS total FROM default.usage GROUP BY team ORDER BY team"})
	if res.IsError || out["row_count"] != float64(3) || !strings.Contains(text(res), "untrusted data") {
		t.Fatalf("run_query: %s %v", text(res), out)
	}
	// The cap: 3000 rows asked for, max_result_rows (100) returned, said plainly.
	res, out = call(t, cs, "run_query", map[string]any{"query": "SELECT * FROM default.usage"})
	if out["row_count"] != float64(100) || out["truncated"] != true || !strings.Contains(text(res), "the result was cut") {
		t.Fatalf("capped run_query: %v / %.200s", out["row_count"], text(res))
	}
	// Writes are refused by ClickHouse (readonly), as a tool error.
	res, _ = call(t, cs, "run_query", map[string]any{"query": "INSERT INTO default.usage VALUES ('2026-01-01', 'x', 1)"})
	if !res.IsError || !strings.Contains(text(res), "readonly") {
		t.Fatalf("write through run_query: %v %s", res.IsError, text(res))
	}
	// ClickHouse's own error, without a stack trace.
	res, _ = call(t, cs, "run_query", map[string]any{"query": "SELECT nope FROM default.usage"})
	if !res.IsError || !strings.Contains(text(res), "nope") || strings.Contains(text(res), "Stack trace") {
		t.Fatalf("bad query: %s", text(res))
	}
	// 18.16 has no EXPLAIN: said clearly.
	res, _ = call(t, cs, "explain_query", map[string]any{"query": "SELECT 1"})
	if !res.IsError || !strings.Contains(text(res), "needs ClickHouse 20.6") {
		t.Fatalf("explain on 18.16: %s", text(res))
	}
}

func TestPeopleSeeTheirOwnAccount(t *testing.T) {
	s := newStack(t, "")
	for email, want := range map[string]string{"alice@example.com": "ch_reader", "bob@example.com": "ch_admin"} {
		groups := []string{"ch-analysts"}
		if email == "bob@example.com" {
			groups = []string{"ch-admin"}
		}
		cs := s.connect(t, s.token(t, s.resource, email, groups...))
		_, out := call(t, cs, "run_query", map[string]any{"query": chtest.CurrentUserSQL()})
		if fmt.Sprint(out["rows"]) != "[["+want+"]]" {
			t.Errorf("%s runs as %v, want %s", email, out["rows"], want)
		}
	}
}

func TestResourcesAndPrompts(t *testing.T) {
	s := newStack(t, "")
	cs := s.connect(t, s.token(t, s.resource, "alice@example.com", "ch-analysts"))
	r, err := cs.ReadResource(context.Background(), &mcp.ReadResourceParams{URI: "clickhouse://schema"})
	if err != nil || !strings.Contains(r.Contents[0].Text, "usage") {
		t.Fatalf("schema: %v %v", r, err)
	}
	r, err = cs.ReadResource(context.Background(), &mcp.ReadResourceParams{URI: "clickhouse://table/default/usage"})
	if err != nil || !strings.Contains(r.Contents[0].Text, "tokens") {
		t.Fatalf("table resource: %v %v", r, err)
	}
	p, err := cs.GetPrompt(context.Background(), &mcp.GetPromptParams{Name: "explore_database", Arguments: map[string]string{"database": "default"}})
	if err != nil || len(p.Messages) == 0 {
		t.Fatalf("prompt: %v %v", p, err)
	}
}

func TestProtectedResource(t *testing.T) {
	s := newStack(t, "  scopes: {read: clickhouse.read, write: clickhouse.write}\n  read_only: false\n")
	post := func(tok, origin, body string) *http.Response {
		req, _ := http.NewRequest("POST", s.resource, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	list := `{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}`
	write := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"write_query","arguments":{"query":"SELECT 1"}}}`
	withScope := func(scope string) string {
		c := testkit.Claims(servertest.IssuerURL, s.resource, "bob@example.com", "ch-admin")
		c["scope"] = scope
		return s.iss.Key.Sign(t, c)
	}
	meta := s.cg.URL + "/.well-known/oauth-protected-resource/mcp"
	tests := []struct {
		name, tok, origin, body string
		status                  int
		challenge               string
	}{
		{"no token", "", "", list, 401, `resource_metadata="` + meta + `", scope="clickhouse.read"`},
		{"a token only for ClickHouse", s.token(t, "clickhouse", "bob@example.com", "ch-admin"), "", list, 401, `error="invalid_token"`},
		{"bad token", "x.y.z", "", list, 401, `error="invalid_token"`},
		{"no read scope", withScope("openid"), "", list, 403, `error="insufficient_scope"`},
		{"read scope lists", withScope("clickhouse.read"), "", list, 200, ""},
		{"read scope cannot write", withScope("clickhouse.read"), "", write, 403, `scope="clickhouse.write"`},
		{"write scope writes", withScope("clickhouse.write"), "", write, 200, ""},
		{"read scope cannot write in a batch", withScope("clickhouse.read"), "", "[" + list + "," + strings.Replace(write, `"id":1`, `"id":2`, 1) + "]", 403, `scope="clickhouse.write"`},
		{"foreign Origin", withScope("clickhouse.read"), "https://evil.example", list, 403, ""},
		{"own Origin", withScope("clickhouse.read"), s.cg.URL, list, 200, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := post(tc.tok, tc.origin, tc.body)
			if resp.StatusCode != tc.status || !strings.Contains(resp.Header.Get("WWW-Authenticate"), tc.challenge) {
				t.Fatalf("%d %q, want %d with %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), tc.status, tc.challenge)
			}
		})
	}
	for _, path := range []string{"/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"} {
		resp, err := http.Get(s.cg.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		resp.Body.Close()
		if m["resource"] != s.resource || fmt.Sprint(m["authorization_servers"]) != "["+servertest.IssuerURL+"]" || fmt.Sprint(m["scopes_supported"]) != "[clickhouse.read clickhouse.write]" {
			t.Errorf("%s: %v", path, m)
		}
	}
}

// A cancelled call cancels its query in ClickHouse, and each person has a
// bounded number of queries in flight.
func TestCancelAndConcurrencyLimit(t *testing.T) {
	// Wide rows, one per block, so that ClickHouse 18.16 writes (and so
	// notices a closed connection) often; caps high enough not to end it.
	// The slow query goes through write_query, which may set
	// max_block_size (read-only tools may not change settings).
	s := newStack(t, "  read_only: false\n  max_concurrent_queries: 1\n  max_result_bytes: 1000000000\n  max_result_rows: 1000000\n")
	cs := s.connect(t, s.token(t, s.resource, "bob@example.com", "ch-admin"))
	const slow = "SELECT number, range(20000), sleepEachRow(0.02), 'slow-marker-42' FROM system.numbers SETTINGS max_block_size = 1"
	// A client cancels a call in stateless Streamable HTTP by closing its
	// request (as the TypeScript SDK's AbortController does).
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		body := fmt.Sprintf(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"write_query","arguments":{"query":%q}}}`, slow)
		req, _ := http.NewRequestWithContext(ctx, "POST", s.resource, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer "+s.token(t, s.resource, "bob@example.com", "ch-admin"))
		req.Header.Set("Mcp-Protocol-Version", "2025-06-18")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	running := func() string {
		return strings.TrimSpace(s.ch.Query(t, "ch_admin", "admin-pw",
			"SELECT count() FROM system.processes WHERE query LIKE '%slow-marker-42%' AND query NOT LIKE '%system.processes%'"))
	}
	for deadline := time.Now().Add(10 * time.Second); running() != "1"; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the slow query never started")
		}
	}
	res, _ := call(t, s.connect(t, s.token(t, s.resource, "bob@example.com", "ch-admin")), "run_query", map[string]any{"query": "SELECT 1"})
	if !res.IsError || !strings.Contains(text(res), "queries running") {
		t.Fatalf("a second concurrent query for bob: %s", text(res))
	}
	cancel()
	<-done
	for deadline := time.Now().Add(10 * time.Second); running() != "0"; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("ClickHouse still runs the query of a cancelled call")
		}
	}
	// The slot is free again.
	if res, _ := call(t, cs, "run_query", map[string]any{"query": "SELECT 1"}); res.IsError {
		t.Fatalf("after the cancel: %s", text(res))
	}
}

// Read-only tools stay read-only on an account that may write: no table
// functions reaching the network, no killing other people's queries on a
// shared account, no writes; a FORMAT clause is refused clearly.
func TestReadOnlyOnAWritableAccount(t *testing.T) {
	s := newStack(t, "  max_result_rows: 100\n")
	cs := s.connect(t, s.token(t, s.resource, "bob@example.com", "ch-admin"))
	// Someone else's long query, to be protected from bob's agent.
	go s.ch.QueryParams("ch_reader", "reader-pw", "SELECT count() FROM system.numbers", url.Values{"query_id": {"victim-1"}})
	t.Cleanup(func() { s.ch.QueryErr("ch_admin", "admin-pw", "KILL QUERY WHERE query_id = 'victim-1' SYNC") })
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(s.ch.Query(t, "ch_admin", "admin-pw", "SELECT query_id FROM system.processes"), "victim-1"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the victim query never started")
		}
	}
	for _, tc := range []struct{ query, want string }{
		{fmt.Sprintf("SELECT * FROM url('%s/healthz', TSV, 's String')", s.cg.URL), "readonly"},
		{"KILL QUERY WHERE query_id = 'victim-1' SYNC", "KILL is refused"},
		{"CREATE TABLE default.t (x UInt8) ENGINE = Memory", "readonly"},
		{"INSERT INTO default.usage SELECT * FROM default.usage LIMIT 1 SETTINGS readonly = 0", "readonly"},
		{"SELECT 1 FORMAT JSON", "leave out the FORMAT clause"},
		{"SELECT 1 FORMAT Vertical", "leave out the FORMAT clause"},
	} {
		res, _ := call(t, cs, "run_query", map[string]any{"query": tc.query})
		if !res.IsError || !strings.Contains(strings.ToLower(text(res)), strings.ToLower(tc.want)) || strings.Contains(text(res), "e.what()") {
			t.Errorf("%s: %v %s", tc.query, res.IsError, text(res))
		}
	}
	// bob's account may set the time limit, so it is set.
	if res, out := call(t, cs, "run_query", map[string]any{"query": "SELECT value FROM system.settings WHERE name IN ('max_execution_time', 'readonly') ORDER BY name"}); res.IsError || fmt.Sprint(out["rows"]) != "[[30] [1]]" {
		t.Errorf("settings: %s", text(res))
	}
	_, err := cs.ReadResource(context.Background(), &mcp.ReadResourceParams{URI: "clickhouse://table/default/missing"})
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("missing table resource: %v", err)
	}
}
