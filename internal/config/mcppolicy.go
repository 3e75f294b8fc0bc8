package config

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/clickgate/clickgate/internal/problems"
)

// MCPPolicy is one entry of mcp.policy: what people holding one of Roles
// may use over MCP. The first entry whose roles intersect the person's
// applies; an entry without roles matches everyone. Without an entry that
// matches, a person may use every tool and see every database their
// ClickHouse account can.
//
// The policy narrows what MCP offers; it grants nothing. run_query,
// explain_query and write_query still run as the person's ClickHouse
// account, whose grants remain the final word: Databases hides databases
// from the listing tools, resources and completions and refuses them in
// list_tables, describe_table, sample_rows and search_schema, but
// clickgate does not parse SQL.
type MCPPolicy struct {
	// Roles are clickgate roles (after directory.roles); empty: everyone.
	Roles []string `yaml:"roles"`
	// Tools are the tools allowed; empty: all.
	Tools []string `yaml:"tools"`
	// DenyTools are removed from what Tools allows.
	DenyTools []string `yaml:"deny_tools"`
	// Databases are the databases visible: exact names, or patterns in
	// which * stands for any run of characters; empty: all.
	Databases []string `yaml:"databases"`
}

// MCPToolNames are the MCP server's tools, for checking mcp.policy.
var MCPToolNames = []string{"list_databases", "list_tables", "describe_table", "sample_rows", "search_schema", "run_query", "explain_query", "write_query"}

// MCPPolicyFor returns the entry of policy that applies to a person with
// roles and its index; nil and -1 when none does (no restriction).
func MCPPolicyFor(policy []MCPPolicy, roles []string) (*MCPPolicy, int) {
	for i := range policy {
		p := &policy[i]
		if len(p.Roles) == 0 || slices.ContainsFunc(p.Roles, func(r string) bool { return slices.Contains(roles, r) }) {
			return p, i
		}
	}
	return nil, -1
}

// AllowsTool reports whether the entry lets its people use the tool; a
// nil entry allows everything.
func (p *MCPPolicy) AllowsTool(name string) bool {
	if p == nil {
		return true
	}
	return (len(p.Tools) == 0 || slices.Contains(p.Tools, name)) && !slices.Contains(p.DenyTools, name)
}

// AllowsAllDatabases reports whether the entry leaves databases alone.
func (p *MCPPolicy) AllowsAllDatabases() bool { return p == nil || len(p.Databases) == 0 }

// AllowsDatabase reports whether the entry lets its people see the
// database; a nil entry allows every database.
func (p *MCPPolicy) AllowsDatabase(name string) bool {
	if p.AllowsAllDatabases() {
		return true
	}
	return p.DatabaseRegexp().MatchString(name)
}

// DatabaseRegexp is one RE2 expression matching exactly the databases
// the entry allows (anchored; * becomes .*), which ClickHouse's match()
// understands as well as Go; nil when every database is allowed.
func (p *MCPPolicy) DatabaseRegexp() *regexp.Regexp {
	if p.AllowsAllDatabases() {
		return nil
	}
	alts := make([]string, len(p.Databases))
	for i, d := range p.Databases {
		parts := strings.Split(d, "*")
		for j, part := range parts {
			parts[j] = regexp.QuoteMeta(part)
		}
		alts[i] = strings.Join(parts, ".*")
	}
	return regexp.MustCompile(`^(?s:` + strings.Join(alts, "|") + `)$`)
}

// validateMCPPolicy checks mcp.policy: known tool names, non-empty roles
// and database names, and no entry shadowed by one before it that
// matches everyone.
func (c *Config) validateMCPPolicy(v *problems.List) {
	everyone := -1
	for i, p := range c.MCP.Policy {
		path := fmt.Sprintf("mcp.policy[%d]", i)
		if everyone >= 0 {
			v.Add(path, "is never used: mcp.policy[%d] has no roles and so applies to everyone first", everyone)
		}
		if len(p.Roles) == 0 && everyone < 0 {
			everyone = i
		}
		for j, r := range p.Roles {
			if strings.TrimSpace(r) == "" {
				v.Add(fmt.Sprintf("%s.roles[%d]", path, j), "is empty")
			}
		}
		for _, list := range []struct {
			key   string
			names []string
		}{{"tools", p.Tools}, {"deny_tools", p.DenyTools}} {
			for j, name := range list.names {
				if !slices.Contains(MCPToolNames, name) {
					v.Add(fmt.Sprintf("%s.%s[%d]", path, list.key, j), "%q is not an MCP tool (have: %s)", name, strings.Join(MCPToolNames, ", "))
				}
			}
		}
		if len(p.Tools) > 0 && !slices.ContainsFunc(p.Tools, func(t string) bool { return !slices.Contains(p.DenyTools, t) }) {
			v.Add(path, "deny_tools removes every tool that tools allows; leave the entry's people some tool, or remove MCP from their roles")
		}
		for j, d := range p.Databases {
			if d == "" || strings.ContainsAny(d, "\x00\n\r") {
				v.Add(fmt.Sprintf("%s.databases[%d]", path, j), "%q is not a database name or pattern (exact names, or * for any run of characters: analytics_*)", d)
			}
		}
	}
}
