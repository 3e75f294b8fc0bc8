package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/clickgate/clickgate/internal/config"
)

// describeMCPPolicy says what mcp.policy offers: without roles, every
// entry in order and what applies to people no entry names; with roles,
// which entry applies to a person holding them and the tools and
// databases they get. ClickHouse's grants stay the final word, which
// the last line says.
func describeMCPPolicy(cfg *config.Config, roles []string) []string {
	m := cfg.MCP
	readOnly := m.ReadOnly == nil || *m.ReadOnly
	offered := slices.DeleteFunc(slices.Clone(config.MCPToolNames), func(t string) bool { return readOnly && t == "write_query" })
	tools := func(p *config.MCPPolicy) string {
		var allowed []string
		for _, t := range offered {
			if p.AllowsTool(t) {
				allowed = append(allowed, t)
			}
		}
		if len(allowed) == 0 {
			return "no tools"
		}
		if len(allowed) == len(offered) {
			return "every tool (" + strings.Join(allowed, ", ") + ")"
		}
		return "tools " + strings.Join(allowed, ", ")
	}
	databases := func(p *config.MCPPolicy) string {
		if p.AllowsAllDatabases() {
			return "every database their account can see"
		}
		return "databases " + strings.Join(p.Databases, ", ") + " (others are hidden from list_databases, list_tables, describe_table, sample_rows, search_schema, the resources and completions)"
	}
	entry := func(p *config.MCPPolicy) string { return tools(p) + "; " + databases(p) }
	var out []string
	if roles != nil {
		p, i := config.MCPPolicyFor(m.Policy, roles)
		who := "roles " + strings.Join(roles, ", ")
		if len(roles) == 0 {
			who = "no roles"
		}
		switch {
		case len(m.Policy) == 0:
			out = append(out, fmt.Sprintf("%s: no mcp.policy: %s", who, entry(nil)))
		case p == nil:
			out = append(out, fmt.Sprintf("%s: no mcp.policy entry applies: %s", who, entry(nil)))
		default:
			out = append(out, fmt.Sprintf("%s: mcp.policy[%d] applies: %s", who, i, entry(p)))
		}
	} else {
		if len(m.Policy) == 0 {
			return []string{"no mcp.policy: everyone gets " + entry(nil) + "; their ClickHouse grants decide the rest"}
		}
		everyone := false
		for i := range m.Policy {
			p := &m.Policy[i]
			who := "everyone not matched above"
			if len(p.Roles) > 0 {
				who = "roles " + strings.Join(p.Roles, ", ")
			} else {
				everyone = true
			}
			out = append(out, fmt.Sprintf("mcp.policy[%d], %s: %s", i, who, entry(p)))
			if everyone {
				break
			}
		}
		if !everyone {
			out = append(out, "anyone else (no entry matches): "+entry(nil))
		}
	}
	return append(out, "run_query, explain_query and write_query run as the person's ClickHouse account: its grants, not mcp.policy, decide what the SQL may read or change (clickgate does not parse it)")
}
