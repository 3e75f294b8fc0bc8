package mcp_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/clickgate/clickgate/internal/audit"
)

// Each tools/call is one ToolCall event: the tool, its arguments without
// the SQL, the SQL itself, the account, the query id sent to ClickHouse
// (the event id), rows, and how it ended.
func TestToolCallEvents(t *testing.T) {
	file := filepath.Join(t.TempDir(), "audit.jsonl")
	s := newStack(t, "  max_result_rows: 5\naudit: {file: "+file+"}")
	cs := s.connect(t, s.token(t, s.resource, "alice@example.com", "ch-admin"))

	for _, tc := range []struct {
		tool string
		args map[string]any
		want audit.Record
	}{
		{"run_query", map[string]any{"query": "SELECT team FROM default.usage LIMIT 3"},
			audit.Record{Query: "SELECT team FROM default.usage LIMIT 3", QueryKind: "SELECT", Outcome: "ok", ResultRows: 3}},
		{"run_query", map[string]any{"query": "SELECT team FROM default.usage"},
			audit.Record{Query: "SELECT team FROM default.usage", QueryKind: "SELECT", Outcome: "capped", ResultRows: 5}},
		{"run_query", map[string]any{"query": "SELECT * FROM default.nowhere"},
			audit.Record{Query: "SELECT * FROM default.nowhere", QueryKind: "SELECT", Outcome: "failed", ExceptionCode: 60, FailureReason: "nowhere"}},
		{"run_query", map[string]any{"query": "KILL QUERY WHERE 1"},
			audit.Record{Query: "KILL QUERY WHERE 1", QueryKind: "KILL", Outcome: "refused", ExceptionCode: 497, FailureReason: "KILL is refused"}},
		// The schema probe (the first call of a person), then the listing.
		{"list_tables", map[string]any{"database": "default", "like": "%us%"},
			audit.Record{Query: "LIKE '%us%'", Arguments: `{"database":"default","like":"%us%"}`, QueryKind: "SELECT", Outcome: "ok"}},
	} {
		call(t, cs, tc.tool, tc.args)
		recs, err := audit.ReadFile(file, audit.Filter{Types: []string{audit.ToolCall}})
		if err != nil || len(recs) == 0 {
			t.Fatalf("%s: no event: %v", tc.tool, err)
		}
		got, w := recs[len(recs)-1], tc.want
		if got.Tool != tc.tool || got.User != "alice@example.com" || got.Account != "ch_admin" || got.Interface != audit.InterfaceMCP ||
			got.Mode != "mapped" || !strings.Contains(got.Query, w.Query) || got.QueryKind != w.QueryKind || got.Outcome != w.Outcome ||
			(w.ResultRows != 0 && got.ResultRows != w.ResultRows) || got.ExceptionCode != w.ExceptionCode || !strings.Contains(got.FailureReason, w.FailureReason) ||
			got.Arguments != w.Arguments || (got.Outcome != "refused" && got.QueryID != got.EventID) || got.HTTPUserAgent == "" {
			t.Errorf("%s %v: event %+v\nwant like %+v", tc.tool, tc.args, got, w)
		}
	}
}
