package server

import (
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/clickgate/clickgate/internal/audit"
	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/testkit"
)

// Servers of one process share the audit trail while its configuration
// stays (a reload must not open a second table sink on the same spool),
// its metrics are gathered by each, and the last server to close closes it.
func TestReloadsShareTheAuditTrail(t *testing.T) {
	p := NewProcess()
	dir := t.TempDir()
	key := testkit.NewKey(t, jose.ES256, "k1")
	jwks := testkit.WriteJWKS(t, dir, key)
	build := func(file, queryText string) *Server {
		cfg, err := config.Parse(fmt.Appendf(nil, `
token_processors:
  corp: {type: jwt, issuer: %s, jwks_file: %s, audiences: [clickhouse]}
audit: {file: %s, query_text: %s}
`, issuer, jwks, filepath.Join(dir, file), queryText))
		if err != nil {
			t.Fatal(err)
		}
		s, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Process: p})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	first := build("a.jsonl", "full")
	second := build("a.jsonl", "redacted") // query_text is the fronts', not the trail's
	other := build("b.jsonl", "full")
	if first.audit != second.audit || first.audit == other.audit {
		t.Fatal("servers with the same trail configuration do not share it, or others do")
	}
	if err := first.Close(t.Context()); err != nil {
		t.Fatal(err)
	}
	second.audit.Write(audit.Record{Type: audit.Query, User: "after-the-first-closed"})
	recs, _ := audit.ReadFile(filepath.Join(dir, "a.jsonl"), audit.Filter{})
	if len(recs) != 1 || recs[0].User != "after-the-first-closed" {
		t.Fatalf("the shared trail stopped with the first server: %+v", recs)
	}
	rec := httptest.NewRecorder()
	second.metrics.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if metrics := rec.Body.String(); !strings.Contains(metrics, "clickgate_audit_events_written_total") {
		t.Errorf("the second server does not gather the trail's metrics:\n%s", metrics)
	}
	second.Close(t.Context())
	other.Close(t.Context())
	if n := len(p.trails.open); n != 0 {
		t.Errorf("%d trails left open after every server closed", n)
	}
}
