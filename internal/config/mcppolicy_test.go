package config

import (
	"strings"
	"testing"
)

func TestMCPPolicyValid(t *testing.T) {
	cfg, err := parse([]byte(minimal+`mcp:
  policy:
    - {roles: [analysts], tools: [list_databases, run_query], deny_tools: [run_query, write_query], databases: [default, "sales_*"]}
    - {deny_tools: [write_query]}
`), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.MCP.Policy
	for _, tc := range []struct {
		roles []string
		want  int
	}{{[]string{"x", "analysts"}, 0}, {[]string{"admin"}, 1}, {nil, 1}} {
		if _, i := MCPPolicyFor(p, tc.roles); i != tc.want {
			t.Errorf("roles %v: entry %d, want %d", tc.roles, i, tc.want)
		}
	}
	if e, i := MCPPolicyFor(p[:1], []string{"admin"}); e != nil || i != -1 || !e.AllowsTool("write_query") || !e.AllowsDatabase("secret") {
		t.Errorf("no entry must allow everything: %v %d", e, i)
	}
	a := &p[0]
	for tool, want := range map[string]bool{"list_databases": true, "run_query": false, "write_query": false, "describe_table": false} {
		if a.AllowsTool(tool) != want {
			t.Errorf("AllowsTool(%s) = %v", tool, !want)
		}
	}
	for db, want := range map[string]bool{"default": true, "sales_eu": true, "sales_": true, "sales": false, "defaultx": false, "xdefault": false, "sales.eu": false, "Default": false} {
		if a.AllowsDatabase(db) != want {
			t.Errorf("AllowsDatabase(%s) = %v", db, !want)
		}
	}
	if got := a.DatabaseRegexp().String(); got != `^(?s:default|sales_.*)$` {
		t.Errorf("regexp %s", got)
	}
	if !p[1].AllowsTool("run_query") || p[1].AllowsTool("write_query") || !p[1].AllowsAllDatabases() {
		t.Error("second entry")
	}
}

func TestMCPPolicyErrors(t *testing.T) {
	for _, tc := range []struct{ name, policy, want string }{
		{"unknown tool", "- {tools: [run_sql]}", `mcp.policy[0].tools[0]: "run_sql" is not an MCP tool`},
		{"unknown denied tool", "- {deny_tools: [drop_all]}", `mcp.policy[0].deny_tools[0]: "drop_all"`},
		{"nothing left", "- {tools: [run_query], deny_tools: [run_query]}", "mcp.policy[0]: deny_tools removes every tool"},
		{"shadowed", "- {tools: [run_query]}\n    - {roles: [admin]}", "mcp.policy[1]: is never used: mcp.policy[0] has no roles"},
		{"empty role", "- {roles: [\"\"]}", "mcp.policy[0].roles[0]: is empty"},
		{"empty database", "- {databases: [\"\"]}", "mcp.policy[0].databases[0]"},
		{"unknown key", "- {role: [admin]}", "mcp.policy[0].role"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse([]byte(minimal+"mcp:\n  policy:\n    "+tc.policy+"\n"), env(nil))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}
