package mcp_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/clickgate/clickgate/internal/audit"
	"github.com/clickgate/clickgate/internal/config"
)

// policyYAML gives analysts three listing tools over default and sales*
// (run_query allowed, then denied), admins everything but explain_query,
// and everyone else (mcp_reader alone) only list_databases.
const policyYAML = `  read_only: false
  policy:
    - {roles: [analysts], tools: [list_databases, list_tables, describe_table, run_query], deny_tools: [run_query], databases: [default, "sales*"]}
    - {roles: [admin], deny_tools: [explain_query]}
    - {tools: [list_databases]}
`

// policyStack adds the databases sales, sales_eu and secret, each with a
// table, to newStack's default.usage.
func policyStack(t *testing.T, extra string) *stack {
	s := newStack(t, policyYAML+extra)
	for _, q := range []string{
		"CREATE DATABASE sales", "CREATE DATABASE sales_eu", "CREATE DATABASE secret",
		"CREATE TABLE sales.orders (id UInt64) ENGINE = Memory", "CREATE TABLE sales.order_lines (id UInt64) ENGINE = Memory",
		"CREATE TABLE sales.refunds (id UInt64) ENGINE = Memory", "CREATE TABLE sales_eu.orders (id UInt64) ENGINE = Memory",
		"CREATE TABLE secret.keys (k String) ENGINE = Memory",
	} {
		s.ch.Query(t, "ch_admin", "admin-pw", q)
	}
	return s
}

func toolNames(t *testing.T, cs *mcp.ClientSession) string {
	t.Helper()
	res, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tool := range res.Tools {
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	return strings.Join(names, ",")
}

// Two people with different roles see different tools on the one
// stateless server; a hidden tool called by name is refused as a tool
// error and recorded as refused.
func TestPolicyTools(t *testing.T) {
	file := filepath.Join(t.TempDir(), "audit.jsonl")
	s := policyStack(t, "audit: {file: "+file+"}\n")
	alice := s.connect(t, s.token(t, s.resource, "alice@example.com", "ch-analysts"))
	bob := s.connect(t, s.token(t, s.resource, "bob@example.com", "ch-admin"))
	carol := s.connect(t, s.token(t, s.resource, "carol@example.com", "ch-nobody"))
	for _, tc := range []struct {
		cs   *mcp.ClientSession
		want string
	}{
		{alice, "describe_table,list_databases,list_tables"},
		{bob, "describe_table,list_databases,list_tables,run_query,sample_rows,search_schema,write_query"},
		{carol, "list_databases"},
		{alice, "describe_table,list_databases,list_tables"}, // again, after the others
	} {
		if got := toolNames(t, tc.cs); got != tc.want {
			t.Errorf("tools = %s, want %s", got, tc.want)
		}
	}

	for _, tc := range []struct {
		cs        *mcp.ClientSession
		who, tool string
	}{{alice, "alice@example.com", "run_query"}, {alice, "alice@example.com", "write_query"}, {bob, "bob@example.com", "explain_query"}, {carol, "carol@example.com", "describe_table"}} {
		res, _ := call(t, tc.cs, tc.tool, map[string]any{"query": "SELECT 1", "database": "default", "table": "usage"})
		if !res.IsError || !strings.Contains(text(res), "the tool "+tc.tool+" is not available to you (mcp.policy[") {
			t.Errorf("%s calls %s: %v %s", tc.who, tc.tool, res.IsError, text(res))
		}
		recs, err := audit.ReadFile(file, audit.Filter{Types: []string{audit.ToolCall}})
		if err != nil || len(recs) == 0 {
			t.Fatalf("no event: %v", err)
		}
		if got := recs[len(recs)-1]; got.Tool != tc.tool || got.User != tc.who || got.Outcome != "refused" || !strings.Contains(got.FailureReason, "mcp.policy") || got.Query != "" {
			t.Errorf("event of %s calling %s: %+v", tc.who, tc.tool, got)
		}
	}
	// What is allowed still works, and a tool that does not exist stays
	// the SDK's error.
	if res, out := call(t, bob, "run_query", map[string]any{"query": "SELECT 1"}); res.IsError || fmt.Sprint(out["rows"]) != "[[1]]" {
		t.Errorf("bob's run_query: %s", text(res))
	}
	if _, err := alice.CallTool(context.Background(), &mcp.CallToolParams{Name: "no_such_tool"}); err == nil || strings.Contains(err.Error(), "mcp.policy") {
		t.Errorf("unknown tool: %v", err)
	}
}

// A database outside the policy is absent from list_databases, the
// schema resource and completions, and refused by list_tables,
// describe_table, the table resource and the explore_database prompt; ClickHouse's grants still
// decide what run_query reads.
func TestPolicyDatabases(t *testing.T) {
	s := policyStack(t, "")
	alice := s.connect(t, s.token(t, s.resource, "alice@example.com", "ch-analysts"))
	bob := s.connect(t, s.token(t, s.resource, "bob@example.com", "ch-admin"))

	_, out := call(t, alice, "list_databases", nil)
	if got := fmt.Sprint(out["rows"]); got != "[[default] [sales] [sales_eu]]" {
		t.Errorf("alice's databases: %s", got)
	}
	_, out = call(t, bob, "list_databases", nil)
	if got := fmt.Sprint(out["rows"]); !strings.Contains(got, "[secret]") || !strings.Contains(got, "[system]") {
		t.Errorf("bob's databases: %s", got)
	}
	_, out = call(t, alice, "list_tables", map[string]any{"database": "sales_eu"})
	if got := fmt.Sprint(out["rows"]); !strings.HasPrefix(got, "[[orders") {
		t.Errorf("alice's sales_eu tables: %s", got)
	}
	for _, tc := range []struct {
		tool string
		args map[string]any
	}{
		{"list_tables", map[string]any{"database": "secret"}},
		{"list_tables", map[string]any{"database": "system"}},
		{"describe_table", map[string]any{"database": "secret", "table": "keys"}},
		{"describe_table", map[string]any{"database": "sale", "table": "orders"}}, // not "sales*"
	} {
		res, _ := call(t, alice, tc.tool, tc.args)
		if !res.IsError || !strings.Contains(text(res), "is not available to you over MCP (mcp.policy[0])") {
			t.Errorf("alice %s %v: %v %s", tc.tool, tc.args, res.IsError, text(res))
		}
	}
	if res, _ := call(t, bob, "describe_table", map[string]any{"database": "secret", "table": "keys"}); res.IsError {
		t.Errorf("bob describes secret.keys: %s", text(res))
	}

	r, err := alice.ReadResource(context.Background(), &mcp.ReadResourceParams{URI: "clickhouse://schema"})
	if err != nil || !strings.Contains(r.Contents[0].Text, "orders") || strings.Contains(r.Contents[0].Text, "secret") {
		t.Errorf("alice's schema: %v %v", r, err)
	}
	r, err = bob.ReadResource(context.Background(), &mcp.ReadResourceParams{URI: "clickhouse://schema"})
	if err != nil || !strings.Contains(r.Contents[0].Text, "secret") {
		t.Errorf("bob's schema: %v %v", r, err)
	}
	if _, err := alice.ReadResource(context.Background(), &mcp.ReadResourceParams{URI: "clickhouse://table/secret/keys"}); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("alice reads secret.keys as a resource: %v", err)
	}
	if r, err := alice.ReadResource(context.Background(), &mcp.ReadResourceParams{URI: "clickhouse://table/sales/orders"}); err != nil || !strings.Contains(r.Contents[0].Text, "UInt64") {
		t.Errorf("alice reads sales.orders as a resource: %v %v", r, err)
	}
	if _, err := alice.GetPrompt(context.Background(), &mcp.GetPromptParams{Name: "explore_database", Arguments: map[string]string{"database": "secret"}}); err == nil || !strings.Contains(err.Error(), "not available to you") {
		t.Errorf("alice's explore_database secret: %v", err)
	}
	if p, err := bob.GetPrompt(context.Background(), &mcp.GetPromptParams{Name: "explore_database", Arguments: map[string]string{"database": "secret"}}); err != nil || len(p.Messages) == 0 {
		t.Errorf("bob's explore_database secret: %v", err)
	}
}

func complete(t *testing.T, cs *mcp.ClientSession, ref *mcp.CompleteReference, arg, value string, context map[string]string) []string {
	t.Helper()
	p := &mcp.CompleteParams{Ref: ref, Argument: mcp.CompleteParamsArgument{Name: arg, Value: value}}
	if context != nil {
		p.Context = &mcp.CompleteContext{Arguments: context}
	}
	res, err := cs.Complete(t.Context(), p)
	if err != nil {
		t.Fatalf("complete %s %q: %v", arg, value, err)
	}
	return res.Completion.Values
}

// Completions offer the databases and tables the person can see, by
// prefix, within the policy.
func TestCompletions(t *testing.T) {
	s := policyStack(t, "")
	alice := s.connect(t, s.token(t, s.resource, "alice@example.com", "ch-analysts"))
	bob := s.connect(t, s.token(t, s.resource, "bob@example.com", "ch-admin"))
	if caps := alice.InitializeResult().Capabilities; caps.Completions == nil {
		t.Fatalf("no completions capability: %+v", caps)
	}
	table := &mcp.CompleteReference{Type: "ref/resource", URI: "clickhouse://table/{database}/{table}"}
	prompt := &mcp.CompleteReference{Type: "ref/prompt", Name: "explore_database"}
	for _, tc := range []struct {
		name    string
		cs      *mcp.ClientSession
		ref     *mcp.CompleteReference
		arg     string
		value   string
		context map[string]string
		want    string
	}{
		{"alice, databases", alice, table, "database", "", nil, "default,sales,sales_eu"},
		{"alice, databases s", alice, table, "database", "s", nil, "sales,sales_eu"},
		{"alice, databases se", alice, table, "database", "se", nil, ""},
		{"bob, databases se", bob, table, "database", "se", nil, "secret"},
		{"alice, prompt", alice, prompt, "database", "sal", nil, "sales,sales_eu"},
		{"alice, tables", alice, table, "table", "order", map[string]string{"database": "sales"}, "order_lines,orders"},
		{"alice, tables of secret", alice, table, "table", "", map[string]string{"database": "secret"}, ""},
		{"bob, tables of secret", bob, table, "table", "k", map[string]string{"database": "secret"}, "keys"},
		{"table without database", alice, table, "table", "", nil, ""},
		{"other prompt", alice, &mcp.CompleteReference{Type: "ref/prompt", Name: "efficient_clickhouse_sql"}, "question", "", nil, ""},
		{"quote in prefix", bob, table, "database", "x'", nil, ""},
	} {
		if got := strings.Join(complete(t, tc.cs, tc.ref, tc.arg, tc.value, tc.context), ","); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
		}
	}
}

// At most 100 completions, with hasMore.
func TestCompletionsCapped(t *testing.T) {
	s := newStack(t, "")
	for i := range 120 {
		s.ch.Query(t, "ch_admin", "admin-pw", fmt.Sprintf("CREATE TABLE default.t%03d (x UInt8) ENGINE = Memory", i))
	}
	cs := s.connect(t, s.token(t, s.resource, "bob@example.com", "ch-admin"))
	res, err := cs.Complete(t.Context(), &mcp.CompleteParams{
		Ref:      &mcp.CompleteReference{Type: "ref/resource", URI: "clickhouse://table/{database}/{table}"},
		Argument: mcp.CompleteParamsArgument{Name: "table", Value: "t"}, Context: &mcp.CompleteContext{Arguments: map[string]string{"database": "default"}},
	})
	if err != nil || len(res.Completion.Values) != 100 || !res.Completion.HasMore || res.Completion.Values[0] != "t000" {
		t.Fatalf("%v %+v", err, res)
	}
}

// The server's tool names are the ones mcp.policy is checked against.
func TestPolicyToolNames(t *testing.T) {
	s := newStack(t, "  read_only: false\n")
	cs := s.connect(t, s.token(t, s.resource, "bob@example.com", "ch-admin"))
	want := slices.Clone(config.MCPToolNames)
	slices.Sort(want)
	if got := toolNames(t, cs); got != strings.Join(want, ",") {
		t.Errorf("tools %s, config.MCPToolNames %s", got, want)
	}
}
