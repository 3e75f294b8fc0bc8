package mcp_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/clickgate/clickgate/internal/audit"
	"github.com/clickgate/clickgate/internal/chtest"
)

// gatewayQuery runs sql through the same clickgate's gateway.
func (s *stack) gatewayQuery(tok, sql string) (int, string) {
	req, _ := http.NewRequest("POST", s.cg.URL+"/", strings.NewReader(sql))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// runningCount is how many queries with marker ClickHouse runs now.
func (s *stack) runningCount(t *testing.T, marker string) int {
	t.Helper()
	out := s.ch.Query(t, chtest.AdminUser, chtest.AdminPassword,
		"SELECT count() FROM system.processes WHERE query LIKE '%"+marker+"%' AND query NOT LIKE '%system.processes%'")
	var n int
	fmt.Sscan(strings.TrimSpace(out), &n)
	return n
}

func (s *stack) waitRunning(t *testing.T, marker string, n int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for s.runningCount(t, marker) < n {
		if time.Now().After(deadline) {
			t.Fatalf("ClickHouse never ran %d queries marked %s", n, marker)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func callAsync(cs *mcp.ClientSession, name string, args map[string]any) <-chan *mcp.CallToolResult {
	done := make(chan *mcp.CallToolResult, 1)
	go func() {
		res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: name, Arguments: args})
		if err != nil {
			res = &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: "transport: " + err.Error()}}}
		}
		done <- res
	}()
	return done
}

// TestLimitsShared: a person's gateway queries and tool calls take the
// same slots; a tool call over the limit is a tool error that names the
// limit and says when to retry.
func TestLimitsShared(t *testing.T) {
	s := newStack(t, `  max_result_rows: 100
limits:
  default: {max_concurrent_queries: 2}
`)
	gw := s.iss.Token(t, "clickhouse", "alice@example.com", "ch-analysts")
	cs := s.connect(t, s.token(t, s.resource, "alice@example.com", "ch-analysts"))
	call(t, cs, "list_databases", nil) // the settings probe, once

	// Two gateway queries hold alice's two slots: her tool call is refused.
	marker := fmt.Sprintf("shared-%d", time.Now().UnixNano())
	gwDone := make(chan int, 2)
	for range 2 {
		go func() {
			status, _ := s.gatewayQuery(gw, fmt.Sprintf("SELECT sleep(3), '%s'", marker))
			gwDone <- status
		}()
	}
	s.waitRunning(t, marker, 2)
	res, _ := call(t, cs, "run_query", map[string]any{"query": "SELECT 1"})
	if msg := text(res); !res.IsError || !strings.Contains(msg, "max_concurrent_queries: 2") || !strings.Contains(msg, "retry in a second") {
		t.Errorf("tool call beside 2 gateway queries: %v %q", res.IsError, msg)
	} else {
		t.Logf("tool error: %s", msg)
	}
	// Bob is not affected.
	bob := s.connect(t, s.token(t, s.resource, "bob@example.com", "ch-analysts"))
	if res, _ := call(t, bob, "run_query", map[string]any{"query": "SELECT 1"}); res.IsError {
		t.Errorf("bob: %s", text(res))
	}
	for range 2 {
		if status := <-gwDone; status != 200 {
			t.Errorf("gateway query: %d", status)
		}
	}

	// The other way round: a tool call and a gateway query hold the
	// slots; the next gateway query is refused with 429, Code 202.
	marker = fmt.Sprintf("shared2-%d", time.Now().UnixNano())
	tool := callAsync(cs, "run_query", map[string]any{"query": fmt.Sprintf("SELECT sleep(3), '%s'", marker)})
	go func() {
		status, _ := s.gatewayQuery(gw, fmt.Sprintf("SELECT sleep(3), '%s'", marker))
		gwDone <- status
	}()
	s.waitRunning(t, marker, 2)
	if status, body := s.gatewayQuery(gw, "SELECT 1"); status != 429 || !strings.Contains(body, "Code: 202") {
		t.Errorf("gateway query beside a tool call and a gateway query: %d %q", status, body)
	}
	if res := <-tool; res.IsError {
		t.Errorf("the tool call: %s", text(res))
	}
	if status := <-gwDone; status != 200 {
		t.Errorf("gateway query: %d", status)
	}
	// All slots free again.
	if res, _ := call(t, cs, "run_query", map[string]any{"query": "SELECT 1"}); res.IsError {
		t.Errorf("after: %s", text(res))
	}
}

// TestLimitsMCPDefault: without max_concurrent_queries in limits,
// mcp.max_concurrent_queries bounds tool calls alone, as before limits.
func TestLimitsMCPDefault(t *testing.T) {
	s := newStack(t, "  max_concurrent_queries: 1\n")
	gw := s.iss.Token(t, "clickhouse", "alice@example.com", "ch-analysts")
	cs := s.connect(t, s.token(t, s.resource, "alice@example.com", "ch-analysts"))
	call(t, cs, "list_databases", nil)
	marker := fmt.Sprintf("mcpdefault-%d", time.Now().UnixNano())
	tool := callAsync(cs, "run_query", map[string]any{"query": fmt.Sprintf("SELECT sleep(3), '%s'", marker)})
	s.waitRunning(t, marker, 1)
	res, _ := call(t, cs, "run_query", map[string]any{"query": "SELECT 1"})
	if msg := text(res); !res.IsError || !strings.Contains(msg, "mcp.max_concurrent_queries: 1") {
		t.Errorf("second tool call: %v %q", res.IsError, msg)
	}
	// The gateway is not bounded by MCP's own limit.
	if status, body := s.gatewayQuery(gw, "SELECT 1"); status != 200 {
		t.Errorf("gateway: %d %q", status, body)
	}
	if res := <-tool; res.IsError {
		t.Errorf("the first tool call: %s", text(res))
	}
}

// TestLimitsMCPRate: a tool call takes one requests_per_minute token,
// however many queries it sends; beyond, a tool error with the wait.
func TestLimitsMCPRate(t *testing.T) {
	file := filepath.Join(t.TempDir(), "audit.jsonl")
	s := newStack(t, `  max_result_rows: 100
limits:
  people: {"alice@example.com": {requests_per_minute: 2}}
audit: {file: `+file+`}
`)
	cs := s.connect(t, s.token(t, s.resource, "alice@example.com", "ch-analysts"))
	for i := range 2 { // describe_table sends two queries (and the schema probe)
		if res, _ := call(t, cs, "describe_table", map[string]any{"database": "default", "table": "usage"}); res.IsError {
			t.Fatalf("call %d: %s", i+1, text(res))
		}
	}
	res, _ := call(t, cs, "run_query", map[string]any{"query": "SELECT 1"})
	if msg := text(res); !res.IsError || !strings.Contains(msg, "requests_per_minute: 2") || !strings.Contains(msg, "retry in") {
		t.Errorf("3rd call: %v %q", res.IsError, msg)
	} else {
		t.Logf("tool error: %s", msg)
	}
	recs, err := audit.ReadFile(file, audit.Filter{Types: []string{audit.ToolCall}})
	if err != nil || len(recs) != 3 {
		t.Fatalf("%d events: %v", len(recs), err)
	}
	if r := recs[2]; r.Outcome != "refused" || r.User != "alice@example.com" || !strings.Contains(r.FailureReason, "requests_per_minute: 2") {
		t.Errorf("event of the refused call: %+v", r)
	}
}
