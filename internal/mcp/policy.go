package mcp

import (
	"context"
	"fmt"
	"regexp"
	"slices"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/clickgate/clickgate/internal/chsql"
	"github.com/clickgate/clickgate/internal/clickhouse"
	"github.com/clickgate/clickgate/internal/config"
)

// access is what mcp.policy lets one person use: the entry that applies
// to them (nil: everything their account can) and its databases as one
// anchored expression (nil: every database).
type access struct {
	entry *config.MCPPolicy
	index int
	dbs   *regexp.Regexp
}

// accessFor returns the caller's access under the server's policy.
func (s *Server) accessFor(c *clickhouse.Caller) access {
	p, i := config.MCPPolicyFor(s.opt.Policy, c.Principal.Roles)
	return access{entry: p, index: i, dbs: p.DatabaseRegexp()}
}

func (a access) tool(name string) bool { return a.entry.AllowsTool(name) }

func (a access) database(name string) bool { return a.dbs == nil || a.dbs.MatchString(name) }

// databaseSQL is a condition on column that holds for the databases the
// person may see (ClickHouse's match() is RE2, as Go's regexp); "" when
// every database is allowed.
func (a access) databaseSQL(column string) string {
	if a.dbs == nil {
		return ""
	}
	return "match(" + column + ", " + chsql.Literal(a.dbs.String()) + ")"
}

// where returns the SQL condition " AND cond" (or " WHERE cond" when
// first) for databaseSQL, "" when there is none.
func (a access) where(column string, first bool) string {
	cond := a.databaseSQL(column)
	switch {
	case cond == "":
		return ""
	case first:
		return " WHERE " + cond
	default:
		return " AND " + cond
	}
}

// policyPath names the entry in messages.
func (a access) policyPath() string { return fmt.Sprintf("mcp.policy[%d]", a.index) }

// errToolDenied and errDatabaseDenied are policy refusals; the tool
// call's audit event records them as refused.
func (a access) errToolDenied(name string) error {
	return fmt.Errorf("clickgate: the tool %s is not available to you (%s)", name, a.policyPath())
}

func (a access) errDatabaseDenied(name string) error {
	return fmt.Errorf("clickgate: the database %q is not available to you over MCP (%s)", name, a.policyPath())
}

// callerOf returns the caller of a request without tying a context to it:
// the HTTP request's TokenInfo, or the stdio caller source.
func callerOf(ctx context.Context, req mcp.Request) (*clickhouse.Caller, error) {
	if extra := req.GetExtra(); extra != nil && extra.TokenInfo != nil {
		if c, ok := extra.TokenInfo.Extra[tokenInfoCaller].(*clickhouse.Caller); ok {
			return c, nil
		}
	}
	return callerFrom(ctx)
}

// applyPolicy filters tools/list to the tools the caller may use and
// refuses calls of the others, as a tool error that the call's audit
// event records as refused. It runs inside auditToolCalls. Without
// mcp.policy it does nothing.
func (s *Server) applyPolicy(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		if len(s.opt.Policy) == 0 || (method != "tools/list" && method != "tools/call") {
			return next(ctx, method, req)
		}
		c, err := callerOf(ctx, req)
		if err != nil {
			return nil, err
		}
		a := s.accessFor(c)
		if call, ok := req.(*mcp.CallToolRequest); ok && method == "tools/call" {
			if a.tool(call.Params.Name) || !s.hasTool(call.Params.Name) {
				return next(ctx, method, req) // an unknown tool is the SDK's to refuse
			}
			err := a.errToolDenied(call.Params.Name)
			tc := callFrom(ctx)
			tc.caller(c)
			tc.refuse(err)
			res := textResult(err.Error())
			res.IsError = true
			return res, nil
		}
		res, err := next(ctx, method, req)
		list, ok := res.(*mcp.ListToolsResult)
		if err != nil || !ok {
			return res, err
		}
		filtered := *list
		filtered.Tools = []*mcp.Tool{}
		for _, t := range list.Tools {
			if a.tool(t.Name) {
				filtered.Tools = append(filtered.Tools, t)
			}
		}
		filtered.CacheScope = "private"
		return &filtered, nil
	}
}

// hasTool reports whether the server offers the tool at all.
func (s *Server) hasTool(name string) bool {
	return slices.Contains(config.MCPToolNames, name) && (name != toolWriteQuery || !s.opt.ReadOnly)
}

// setCacheable marks per-person answers private: the tool list (with a
// policy) and resource contents (always the caller's own view).
func (s *Server) setCacheable(_ context.Context, req mcp.Request, c *mcp.Cacheable) {
	switch req.(type) {
	case *mcp.ReadResourceRequest:
		c.CacheScope = "private"
	case *mcp.ListToolsRequest:
		if len(s.opt.Policy) > 0 {
			c.CacheScope = "private"
		}
	}
}

// checkDatabase refuses a database outside the caller's policy, recording
// the refusal in the tool call's audit event.
func (s *Server) checkDatabase(ctx context.Context, c *clickhouse.Caller, database string) error {
	a := s.accessFor(c)
	if a.database(database) {
		return nil
	}
	err := a.errDatabaseDenied(database)
	tc := callFrom(ctx)
	tc.caller(c)
	tc.refuse(err)
	return err
}
