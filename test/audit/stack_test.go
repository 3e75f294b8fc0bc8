// Package audit tests the audit trail end to end: clickgate serving real
// gateway requests and MCP tool calls (official Go SDK client) to a real
// ClickHouse, recording them to a file and to a table in a second real
// ClickHouse that goes away and comes back, as an operator meets it.
package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/clickgate/clickgate/internal/audit"
	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/server"
	"github.com/clickgate/clickgate/internal/servertest"
	"github.com/clickgate/clickgate/internal/testkit"
)

func TestMain(m *testing.M) { os.Exit(testkit.MainWithClickgate(m)) }

// Accounts of the upstream ClickHouse; each logs its queries.
const (
	readerUser, readerPassword = "reader", "reader-pw" // analysts
	writerUser, writerPassword = "writer", "writer-pw" // admin
)

// person is someone with a token, and the account their roles map to.
type person struct {
	email   string
	groups  []string
	account string
}

var people = []person{
	{"alice@example.com", []string{"ch-admin"}, writerUser},
	{"bob@example.com", []string{"ch-analysts"}, readerUser},
	{"carol@example.com", []string{"ch-analysts", "ch-admin"}, writerUser}, // admin's account is listed first
}

// upstream starts the ClickHouse that queries go to, logging every query.
func upstream(t *testing.T, r chtest.Release) *chtest.Server {
	return chtest.Start(t, chtest.Options{
		Release: r, ExtraConfig: chtest.QueryLogConfig,
		ExtraProfiles: `<logged><log_queries>1</log_queries></logged>`,
		ExtraUsers: []chtest.User{
			{Name: readerUser, Password: readerPassword, Profile: "logged"},
			{Name: writerUser, Password: writerPassword, Profile: "logged"},
		},
	})
}

// configYAML is clickgate's configuration: mapped mode on ch, the audit
// trail to a file in dir and to the table at tableURL (the audit
// ClickHouse, as its admin), spooling in dir.
func configYAML(publicURL, processor string, ch *chtest.Server, tableURL, dir, queryText string) string {
	return fmt.Sprintf(`
server: {listen: %s, public_url: %s}
token_processors:
  corp: %s
directory:
  roles: {filter: "^ch-.*$", transform: "s/^ch-//"}
clickhouse:
  url: %s
  mode: mapped
  accounts:
    - {role: admin, user: %s, password: %s}
    - {role: analysts, user: %s, password: %s}
mcp: {max_concurrent_queries: 32}
audit:
  file: %s
  query_text: %s
  clickhouse: {url: %s, user: %s, password: %s, batch_rows: 200, flush_interval: 200ms, spool_dir: %s}
`, strings.TrimPrefix(publicURL, "http://"), publicURL, processor, ch.HTTPURL, writerUser, writerPassword, readerUser, readerPassword,
		filepath.Join(dir, "audit.jsonl"), queryText, tableURL, chtest.AdminUser, chtest.AdminPassword, filepath.Join(dir, "spool"))
}

// clickgate is a clickgate server run in this process as `clickgate serve`
// runs it (Serve: a clean shutdown flushes the audit trail).
type clickgate struct {
	url     string
	metrics http.Handler
	stop    func() // shuts down and waits, audit flushed
}

func startClickgate(t *testing.T, yaml func(url string) string) *clickgate {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + l.Addr().String()
	cfg, err := config.Parse([]byte(yaml(url)))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(cfg, server.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("serve: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return &clickgate{url: url, metrics: srv.MetricsHandler(), stop: stop}
}

// metric returns the value of a metric line of clickgate's /metrics.
func (c *clickgate) metric(t *testing.T, line string) string {
	t.Helper()
	rec := &responseRecorder{header: http.Header{}}
	c.metrics.ServeHTTP(rec, httpRequest(t, "GET", "/metrics", ""))
	for _, l := range strings.Split(rec.body.String(), "\n") {
		if v, ok := strings.CutPrefix(l, line+" "); ok {
			return v
		}
	}
	return ""
}

type responseRecorder struct {
	header http.Header
	body   strings.Builder
}

func (r *responseRecorder) Header() http.Header         { return r.header }
func (r *responseRecorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *responseRecorder) WriteHeader(int)             {}

func httpRequest(t *testing.T, method, url, body string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// client sends gateway requests; many at once.
var client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 60 * time.Second}

// query sends sql through clickgate's gateway as the token's holder.
func query(c *clickgate, token, sql string) (int, string, error) {
	req, err := http.NewRequest("POST", c.url+"/", strings.NewReader(sql))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

type bearer struct {
	token string
	base  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

// connectMCP opens an MCP session to c with the official Go SDK client.
func connectMCP(t *testing.T, c *clickgate, token string) *mcp.ClientSession {
	t.Helper()
	cl := mcp.NewClient(&mcp.Implementation{Name: "audit-test", Version: "1"}, nil)
	cs, err := cl.Connect(context.Background(), &mcp.StreamableClientTransport{
		Endpoint: c.url + "/mcp", HTTPClient: &http.Client{Transport: bearer{token, client.Transport}},
	}, nil)
	if err != nil {
		t.Fatalf("MCP connect: %v", err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// runQuery calls run_query and returns the number of rows, or an error
// with the tool's message.
func runQuery(cs *mcp.ClientSession, sql string) (int, error) {
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "run_query", Arguments: map[string]any{"query": sql}})
	if err != nil {
		return 0, err
	}
	if res.IsError {
		var text string
		for _, c := range res.Content {
			if tc, ok := c.(*mcp.TextContent); ok {
				text += tc.Text
			}
		}
		return 0, errors.New(text)
	}
	var out struct {
		RowCount int `json:"row_count"`
	}
	b, _ := json.Marshal(res.StructuredContent)
	if err := json.Unmarshal(b, &out); err != nil {
		return 0, err
	}
	return out.RowCount, nil
}

// tokens are each person's tokens for the gateway and for MCP.
func tokens(t *testing.T, iss servertest.Issuer, resource string, p person) (gateway, mcp string) {
	return iss.Token(t, "clickhouse", p.email, p.groups...), iss.Token(t, resource, p.email, p.groups...)
}

// tableEvents reads the audit table (FINAL: duplicates merged) straight
// from the audit ClickHouse.
func tableEvents(t *testing.T, ch *chtest.Server, where string) []audit.Record {
	t.Helper()
	out := ch.Query(t, chtest.AdminUser, chtest.AdminPassword,
		"SELECT event_id, type, user, account, query, query_id, tool, outcome, result_rows, read_rows, toString(event_time_microseconds) AS t FROM default.clickgate_audit FINAL"+
			" WHERE "+where+" ORDER BY event_time_microseconds FORMAT JSONEachRow")
	var recs []audit.Record
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var r struct {
			EventID    string `json:"event_id"`
			Type       string `json:"type"`
			User       string `json:"user"`
			Account    string `json:"account"`
			Query      string `json:"query"`
			QueryID    string `json:"query_id"`
			Tool       string `json:"tool"`
			Outcome    string `json:"outcome"`
			ResultRows string `json:"result_rows"` // UInt64 comes quoted
			ReadRows   string `json:"read_rows"`
			Time       string `json:"t"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("audit table row %q: %v", line, err)
		}
		var rows, read uint64
		fmt.Sscan(r.ResultRows, &rows)
		fmt.Sscan(r.ReadRows, &read)
		recs = append(recs, audit.Record{EventID: r.EventID, Type: r.Type, User: r.User, Account: r.Account, Query: r.Query, QueryID: r.QueryID,
			Tool: r.Tool, Outcome: r.Outcome, ResultRows: rows, ReadRows: read, EventTimeMicroseconds: r.Time})
	}
	return recs
}

// flushLogs waits until the upstream's query_log holds a query run now.
func flushLogs(t *testing.T, ch *chtest.Server) {
	t.Helper()
	sentinel := fmt.Sprintf("flush-%d", time.Now().UnixNano())
	ch.Query(t, writerUser, writerPassword, "SELECT '"+sentinel+"'")
	finish := "type = 2"
	if ch.Release == chtest.ChDB267 {
		finish = "type = 'QueryFinish'"
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		ch.Query(t, chtest.AdminUser, chtest.AdminPassword, "SYSTEM FLUSH LOGS")
		n, err := ch.QueryErr(chtest.AdminUser, chtest.AdminPassword, "SELECT count() FROM system.query_log WHERE "+finish+" AND query = 'SELECT ''"+sentinel+"'''")
		if err == nil && n == "1" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("query_log never showed %s: %v", sentinel, err)
		}
	}
}
