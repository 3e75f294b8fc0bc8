package gateway_test

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/clickgate/clickgate/internal/audit"
	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/server"
	"github.com/clickgate/clickgate/internal/servertest"
)

// Each request of an authenticated person is one event: Query when it
// reached ClickHouse (ok or failed, with ClickHouse's code), QueryRefused
// with the reason when clickgate refused it; an INSERT's rows are never
// recorded; a request nobody signed in for has no Query event.
func TestAuditEvents(t *testing.T) {
	ch := chtest.Start(t, chtest.Options{})
	iss := servertest.NewIssuer(t)
	file := filepath.Join(t.TempDir(), "audit.jsonl")
	cg := servertest.Start(t, fmt.Sprintf(`
token_processors:
  corp: %s
directory:
  roles: {filter: "^ch-.*$", transform: "s/^ch-//", common: [mcp_reader]}
clickhouse:
  url: %s
  settings: {max_result_rows: "1000"}
%s
audit: {file: %s, login_success: per_request}
`, iss.Processor(), ch.HTTPURL, mappedYAML, file), server.Options{})
	s := &stack{ch: ch, cg: cg, handler: cg.Config.Handler, iss: iss}
	bob := s.token(t, "bob@example.com", "ch-admin")
	s.query(t, bob, "CREATE TABLE default.audited (s String) ENGINE = Memory")

	for _, tc := range []struct {
		name, sql string
		set       func(*http.Request)
		want      audit.Record
	}{
		{"ok", "SELECT 42", nil, audit.Record{Type: audit.Query, QueryKind: "SELECT", Query: "SELECT 42", Outcome: "ok", HTTPStatus: 200}},
		{"ClickHouse refuses", "SELECT * FROM default.nowhere", nil, audit.Record{Type: audit.Query, QueryKind: "SELECT", Query: "SELECT * FROM default.nowhere", Outcome: "failed", HTTPStatus: 404, ExceptionCode: 60}},
		{"clickgate refuses", "SELECT 1 SETTINGS max_result_rows = 0", nil, audit.Record{Type: audit.QueryRefused, QueryKind: "SELECT", Query: "SELECT 1 SETTINGS max_result_rows = 0", Outcome: "refused", HTTPStatus: 400, ExceptionCode: 164, FailureReason: "max_result_rows is fixed"}},
		{"INSERT rows", "INSERT INTO default.audited FORMAT TSV\nsecret-row\n", nil, audit.Record{Type: audit.Query, QueryKind: "INSERT", Query: "INSERT INTO default.audited FORMAT TSV", Outcome: "ok", HTTPStatus: 200}},
		{"query parameter and session", "", func(r *http.Request) { r.URL.RawQuery = "query=SELECT+7&session_id=mine" }, audit.Record{Type: audit.Query, QueryKind: "SELECT", Query: "SELECT 7", Outcome: "ok", HTTPStatus: 200, SessionID: "_mine"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s.do(t, bob, "POST", "/", tc.sql, tc.set)
			recs, err := audit.ReadFile(file, audit.Filter{Types: []string{audit.Query, audit.QueryRefused}})
			if err != nil || len(recs) == 0 {
				t.Fatalf("no event: %v", err)
			}
			got, w := recs[len(recs)-1], tc.want
			if got.Type != w.Type || got.QueryKind != w.QueryKind || strings.TrimSpace(got.Query) != w.Query || got.Outcome != w.Outcome ||
				got.HTTPStatus != w.HTTPStatus || got.ExceptionCode != w.ExceptionCode || !strings.Contains(got.FailureReason, w.FailureReason) ||
				!strings.HasSuffix(got.SessionID, w.SessionID) || got.User != "bob@example.com" || got.Account != "ch_admin" ||
				got.Mode != "mapped" || got.Interface != audit.InterfaceGateway || !strings.HasPrefix(got.QueryID, "cg") {
				t.Errorf("event %+v\nwant like %+v", got, w)
			}
		})
	}
	// No sign-in: a LoginFailure, no Query event.
	before, _ := audit.ReadFile(file, audit.Filter{})
	s.do(t, "not-a-token", "POST", "/", "SELECT 1", nil)
	after, _ := audit.ReadFile(file, audit.Filter{})
	if len(after) != len(before)+1 || after[len(after)-1].Type != audit.LoginFailure {
		t.Errorf("a request without a valid token wrote %v", after[len(before):])
	}
}
