package main

import (
	"strings"
	"testing"

	"github.com/clickgate/clickgate/internal/config"
)

func TestDescribeMCPPolicy(t *testing.T) {
	f := false
	cfg := &config.Config{MCP: config.MCP{ReadOnly: &f, Policy: []config.MCPPolicy{
		{Roles: []string{"analysts"}, Tools: []string{"list_databases", "run_query"}, DenyTools: []string{"run_query"}, Databases: []string{"default", "sales_*"}},
		{Roles: []string{"admin"}, DenyTools: []string{"write_query"}},
	}}}
	const grants = "run_query, explain_query and write_query run as the person's ClickHouse account: its grants, not mcp.policy, decide"
	for _, tc := range []struct {
		name  string
		cfg   *config.Config
		roles []string
		want  []string
	}{
		{"whole policy", cfg, nil, []string{
			"mcp.policy[0], roles analysts: tools list_databases; databases default, sales_* (others are hidden from list_databases, list_tables, describe_table, sample_rows, search_schema, the resources and completions)",
			"mcp.policy[1], roles admin: tools list_databases, list_tables, describe_table, sample_rows, search_schema, run_query, explain_query; every database their account can see",
			"anyone else (no entry matches): every tool (list_databases, list_tables, describe_table, sample_rows, search_schema, run_query, explain_query, write_query); every database their account can see",
			grants}},
		{"an analyst", cfg, []string{"mcp_reader", "analysts"}, []string{
			"roles mcp_reader, analysts: mcp.policy[0] applies: tools list_databases; databases default, sales_*", grants}},
		{"no entry", cfg, []string{}, []string{"no roles: no mcp.policy entry applies: every tool", grants}},
		{"no policy, read only", &config.Config{}, nil, []string{
			"no mcp.policy: everyone gets every tool (list_databases, list_tables, describe_table, sample_rows, search_schema, run_query, explain_query); every database their account can see"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := describeMCPPolicy(tc.cfg, tc.roles)
			if len(got) != len(tc.want) {
				t.Fatalf("%d lines, want %d:\n%s", len(got), len(tc.want), strings.Join(got, "\n"))
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("line %d:\n%s\nwant prefix\n%s", i, got[i], w)
				}
			}
		})
	}
	everyone := &config.Config{MCP: config.MCP{Policy: []config.MCPPolicy{{Tools: []string{"list_databases"}}, {Roles: []string{"x"}}}}}
	if got := describeMCPPolicy(everyone, nil); len(got) != 2 || !strings.HasPrefix(got[0], "mcp.policy[0], everyone not matched above: tools list_databases;") {
		t.Errorf("%q", got)
	}
}
