package audit

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/servertest"
)

// With audit.query_text: redacted, no literal of any statement reaches the
// trail, whichever way it was sent: string and number literals, comments,
// an INSERT's rows, the query parameter, MCP tool arguments and
// ClickHouse's error messages (which quote the query).
func TestRedactedTrail(t *testing.T) {
	ch := upstream(t, chtest.Debian1816)
	ch.Query(t, writerUser, writerPassword, "CREATE TABLE default.notes (s String) ENGINE = Memory")
	trailCH := chtest.Start(t, chtest.Options{})
	iss := servertest.NewIssuer(t)
	dir := t.TempDir()
	cg := startClickgate(t, func(u string) string {
		return configYAML(u, iss.Processor(), ch, trailCH.HTTPURL, dir, "redacted")
	})
	alice := people[0]
	gw, mcpToken := tokens(t, iss, cg.url+"/mcp", alice)

	secrets := []string{"s3cret-string", "9876543210123", "s3cret-comment", "s3cret-row", "s3cret-param", "s3cret-heredoc",
		"s3cret-mcp", "s3cret-like", "s3cret-syntax"}
	for _, sql := range []string{
		"SELECT 's3cret-string' AS a, 9876543210123 AS b",
		"SELECT 1 /* s3cret-comment */ -- s3cret-comment\n",
		"INSERT INTO default.notes VALUES ('s3cret-row')",
		"INSERT INTO default.notes FORMAT TSV\ns3cret-row\n",
		"SELECT $tag$s3cret-heredoc$tag$", // a syntax error on 18.16, quoting it: recorded all the same
	} {
		if status, body, err := query(cg, gw, sql); err != nil || (status != 200 && !strings.Contains(sql, "heredoc")) {
			t.Fatalf("%s: %d %s %v", sql, status, body, err)
		}
	}
	// The query in the URL.
	req := httpRequest(t, "POST", cg.url+"/?"+url.Values{"query": {"SELECT 's3cret-param'"}}.Encode(), "")
	req.Header.Set("Authorization", "Bearer "+gw)
	if resp, err := client.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("query parameter: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	cs := connectMCP(t, cg, mcpToken)
	if _, err := runQuery(cs, "SELECT 's3cret-mcp' AS x"); err != nil {
		t.Fatal(err)
	}
	if _, err := runQuery(cs, "SELECT 1 FRM 's3cret-syntax'"); err == nil || !strings.Contains(err.Error(), "s3cret-syntax") {
		t.Fatalf("the syntax error should quote the query to the caller: %v", err)
	}
	if _, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "list_tables", Arguments: map[string]any{"database": "default", "like": "%s3cret-like%"}}); err != nil {
		t.Fatal(err)
	}
	cg.stop()

	file, err := os.ReadFile(filepath.Join(dir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	table := trailCH.Query(t, chtest.AdminUser, chtest.AdminPassword, "SELECT * FROM default.clickgate_audit FORMAT TSV")
	for _, where := range []struct{ name, text string }{{"file", string(file)}, {"table", table}} {
		// The statements are there, redacted: the check could fail.
		for _, want := range []string{`SELECT ? AS a, ? AS b`, `INSERT INTO default.notes VALUES`, `run_query`, `list_tables`, `"database":"default"`} {
			if !strings.Contains(strings.ReplaceAll(where.text, `\"`, `"`), want) {
				t.Errorf("the %s lacks %q:\n%s", where.name, want, where.text)
			}
		}
		for _, s := range secrets {
			if strings.Contains(where.text, s) {
				t.Errorf("the %s holds the literal %q:\n%s", where.name, s, where.text)
			}
		}
	}
}
