package mcp

import (
	"context"
	"strconv"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/clickgate/clickgate/internal/chsql"
)

// maxCompletions is how many values completion/complete returns at most
// (the protocol's limit).
const maxCompletions = 100

// complete answers completion/complete: database and table names for the
// table resource template and the prompts' database argument, as the
// person's account sees them in system.databases and system.tables,
// filtered by mcp.policy, starting with what was typed. Anything else
// completes to nothing.
func (s *Server) complete(ctx context.Context, req *mcp.CompleteRequest) (*mcp.CompleteResult, error) {
	p := req.Params
	var database string
	if p.Context != nil {
		database = p.Context.Arguments["database"]
	}
	kind := ""
	switch ref := p.Ref; {
	case ref.Type == "ref/resource" && ref.URI == tableURITemplate:
		kind = p.Argument.Name
	case ref.Type == "ref/prompt" && ref.Name == promptExploreDatabase && p.Argument.Name == "database":
		kind = "database"
	}
	empty := &mcp.CompleteResult{Completion: mcp.CompletionResultDetails{Values: []string{}}}
	if kind != "database" && kind != "table" {
		return empty, nil
	}
	ctx, done, c, err := begin(ctx, req.Extra)
	defer done()
	if err != nil {
		return nil, err
	}
	a := s.accessFor(c)
	prefix := chsql.Literal(p.Argument.Value)
	var sql string
	if kind == "database" {
		sql = "SELECT name FROM system.databases WHERE startsWith(name, " + prefix + ")" + a.where("name", false)
	} else {
		if database == "" || !a.database(database) {
			return empty, nil // a table needs its database first
		}
		sql = "SELECT name FROM system.tables WHERE database = " + chsql.Literal(database) + " AND startsWith(name, " + prefix + ")"
	}
	sql += " ORDER BY name LIMIT " + strconv.Itoa(maxCompletions+1)
	res, err := s.run(ctx, c, queryRun{sql: sql, maxRows: maxCompletions + 1, maxBytes: 1 << 20})
	if err != nil {
		return nil, err
	}
	values := []string{}
	for _, row := range res.Rows {
		if name, ok := row[0].(string); ok && (kind == "table" || a.database(name)) {
			values = append(values, name)
		}
	}
	more := len(values) > maxCompletions
	if more {
		values = values[:maxCompletions]
	}
	return &mcp.CompleteResult{Completion: mcp.CompletionResultDetails{Values: values, HasMore: more}}, nil
}
