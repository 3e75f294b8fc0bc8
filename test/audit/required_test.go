package audit

import (
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/servertest"
	"github.com/clickgate/clickgate/internal/testkit"
)

// audit.required: while no sink can keep events (the file's disk is full,
// the table's ClickHouse is away and the spool is full), queries are
// refused with a clear error instead of running unrecorded, through the
// gateway and MCP alike; ClickHouse never sees them.
func TestRequiredTrailRefusesUnrecordedQueries(t *testing.T) {
	ch := upstream(t, chtest.Debian1816)
	iss := servertest.NewIssuer(t)
	nowhere := "http://" + testkit.FreeAddr(t) // nothing listens there
	cg := startClickgate(t, func(url string) string {
		yaml := configYAML(url, iss.Processor(), ch, nowhere, t.TempDir(), "full")
		yaml = regexp.MustCompile(`\n  file: [^\n]*`).ReplaceAllString(yaml, "\n  file: /dev/full")
		yaml = strings.Replace(yaml, "spool_dir:", "spool_max_bytes: 1, spool_dir:", 1)
		return yaml + "  required: true\n"
	})
	gw, mcpToken := tokens(t, iss, cg.url+"/mcp", people[0])
	// Ready reflects the sinks' last attempts: once the file's write has
	// failed and a batch found the spool full, queries are refused.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if status, _, _ := query(cg, gw, "SELECT 'until-refused'"); status == 503 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("queries still run while no sink can keep their events")
		}
	}
	const marker = "required-refused-1"
	status, body, err := query(cg, gw, "SELECT '"+marker+"'")
	if err != nil || status != 503 || !strings.Contains(body, "audit.required") || !strings.Contains(body, "Code: 210") {
		t.Fatalf("gateway: %d %q %v; want 503 naming audit.required", status, body, err)
	}
	if _, err := runQuery(connectMCP(t, cg, mcpToken), "SELECT '"+marker+"'"); err == nil || !strings.Contains(err.Error(), "audit.required") {
		t.Fatalf("MCP: %v; want a tool error naming audit.required", err)
	}
	flushLogs(t, ch)
	if n := ch.Query(t, chtest.AdminUser, chtest.AdminPassword, fmt.Sprintf("SELECT count() FROM system.query_log WHERE query LIKE '%%%s%%' AND query NOT LIKE '%%query_log%%'", marker)); n != "0" {
		t.Fatalf("ClickHouse ran %s queries that could not be recorded", n)
	}
}
