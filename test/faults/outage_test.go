package faults

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/server"
	"github.com/clickgate/clickgate/internal/servertest"
	"github.com/clickgate/clickgate/internal/testkit"
)

// adminConfig is the configuration after server: a jwt processor of iss,
// and everyone with the role admin mapped to ch's ch_admin.
func adminConfig(iss servertest.Issuer, ch *chtest.Server) string {
	return fmt.Sprintf(`token_processors:
  corp: %s
directory:
  roles: {filter: "^ch-.*$", transform: "s/^ch-//"}
clickhouse:
  url: %s
  mode: mapped
  accounts:
    - {role: admin, user: %s, password: %s}
`, iss.Processor(), ch.HTTPURL, chtest.AdminUser, chtest.AdminPassword)
}

// outageFront is clickgate in process (gateway and MCP) in front of ch as
// ch_admin, logging at warning level into logs.
func outageFront(t *testing.T, ch *chtest.Server, iss servertest.Issuer, logs io.Writer) string {
	t.Helper()
	cg := servertest.StartWithURL(t, func(publicURL string) string {
		return fmt.Sprintf("server: {public_url: %s}\n", publicURL) + adminConfig(iss, ch)
	}, server.Options{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	return cg.URL
}

// TestClickHouseKilledUnderLoad: ClickHouse is SIGKILLed while 16
// connections send SELECT 1 through the gateway. Every request after that
// gets a ClickHouse-style NETWORK_ERROR quickly (no hang): 502 "ClickHouse
// is unreachable" from the gateway, or 503 "no ClickHouse node is
// reachable" once the pool has marked the node down; and the log holds a
// few lines, not one per failed request.
func TestClickHouseKilledUnderLoad(t *testing.T) {
	ch := chtest.Start(t, chtest.Options{})
	iss := servertest.NewIssuer(t)
	var logs testkit.SyncBuffer
	base := outageFront(t, ch, iss, &logs)
	tok := "Bearer " + iss.Token(t, "clickhouse", "load@example.com", "ch-admin")
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 30 * time.Second}

	const conns = 16
	var ok, failed, slow, other atomic.Int64
	var maxFail atomic.Int64 // slowest failure, ns
	var firstOther atomic.Value
	killed := make(chan struct{})
	var killedAt time.Time // set before killed is closed
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			for ctx.Err() == nil {
				req, _ := http.NewRequest(http.MethodGet, base+"/?query="+url.QueryEscape("SELECT 1"), nil)
				req.Header.Set("Authorization", tok)
				start := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					other.Add(1)
					firstOther.CompareAndSwap(nil, err.Error())
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				d := time.Since(start)
				switch {
				case resp.StatusCode == http.StatusOK && string(body) == "1\n":
					ok.Add(1)
				case (resp.StatusCode == http.StatusBadGateway || resp.StatusCode == http.StatusServiceUnavailable) &&
					resp.Header.Get("X-ClickHouse-Exception-Code") == "210" &&
					strings.HasPrefix(string(body), "Code: 210. DB::Exception: clickgate: ") && strings.HasSuffix(string(body), "(NETWORK_ERROR)\n"):
					failed.Add(1)
					if d > time.Second {
						slow.Add(1)
					}
					for m := maxFail.Load(); int64(d) > m && !maxFail.CompareAndSwap(m, int64(d)); m = maxFail.Load() {
					}
				default:
					inFlight := false // when ClickHouse died: it may end otherwise
					select {
					case <-killed:
						inFlight = start.Before(killedAt)
					default:
					}
					if !inFlight {
						other.Add(1)
						firstOther.CompareAndSwap(nil, fmt.Sprintf("HTTP %d: %q", resp.StatusCode, body))
					}
				}
			}
		})
	}
	time.Sleep(time.Second)
	if ok.Load() == 0 {
		t.Fatalf("no request succeeded before the kill: %v", firstOther.Load())
	}
	killedAt = time.Now()
	if err := syscall.Kill(ch.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	close(killed)
	time.Sleep(4 * time.Second)
	stop()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("clients still waiting 30 s after the load stopped: a request hangs")
	}
	lines := strings.Count(logs.String(), "\n")
	unreachable := strings.Count(logs.String(), "gateway: ClickHouse unreachable")
	t.Logf("before the kill and after: %d answered, %d ClickHouse-style 502/503 (slowest %v, %d over 1 s), %d other; %d log lines (%d ClickHouse unreachable)",
		ok.Load(), failed.Load(), time.Duration(maxFail.Load()), slow.Load(), other.Load(), lines, unreachable)
	if failed.Load() < 100 {
		t.Errorf("only %d requests got a ClickHouse-style error in 4 s of outage", failed.Load())
	}
	if other.Load() > 0 {
		t.Errorf("%d requests failed otherwise, first: %v", other.Load(), firstOther.Load())
	}
	if slow.Load() > 0 {
		t.Errorf("%d failures took over a second (slowest %v)", slow.Load(), time.Duration(maxFail.Load()))
	}
	// The first line at once, then at most one per 10 s and key; a few
	// more for other keys (a request cut in flight).
	if unreachable < 1 || lines > 10 {
		t.Errorf("%d log lines for %d failed requests:\n%s", lines, failed.Load(), logs.String())
	}
}

// TestMCPClickHouseStopped: with ClickHouse stopped, an agent (the
// official Go MCP SDK client) reads that ClickHouse is unreachable — never
// its address — and the server log has the detail.
func TestMCPClickHouseStopped(t *testing.T) {
	ch := chtest.Start(t, chtest.Options{})
	iss := servertest.NewIssuer(t)
	var logs testkit.SyncBuffer
	base := outageFront(t, ch, iss, &logs)
	tok := iss.Token(t, base+"/mcp", "agent@example.com", "ch-admin")
	client := mcp.NewClient(&mcp.Implementation{Name: "faults", Version: "1"}, nil)
	cs, err := client.Connect(context.Background(), &mcp.StreamableClientTransport{
		Endpoint: base + "/mcp", HTTPClient: &http.Client{Transport: bearer{tok, http.DefaultTransport}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	call := func(name string, args map[string]any) (*mcp.CallToolResult, string) {
		res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: name, Arguments: args})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var b strings.Builder
		for _, c := range res.Content {
			if tc, ok := c.(*mcp.TextContent); ok {
				b.WriteString(tc.Text)
			}
		}
		return res, b.String()
	}
	if res, text := call("run_query", map[string]any{"query": "SELECT 1"}); res.IsError {
		t.Fatalf("before the stop: %s", text)
	}
	ch.Stop()
	chAddr := strings.TrimPrefix(ch.HTTPURL, "http://")
	for _, c := range []struct {
		name string
		args map[string]any
	}{
		{"run_query", map[string]any{"query": "SELECT 1"}},
		{"list_databases", map[string]any{}},
		{"run_query", map[string]any{"query": "SELECT 2"}},
	} {
		res, text := call(c.name, c.args)
		if !res.IsError || !strings.Contains(text, "clickgate: ClickHouse is unreachable; try again later") {
			t.Errorf("%s: error %v, %q", c.name, res.IsError, text)
		}
		for _, leak := range []string{chAddr, "127.0.0.1", "dial tcp", "Post "} {
			if strings.Contains(text, leak) {
				t.Errorf("%s: the agent reads %q (%q)", c.name, text, leak)
			}
		}
	}
	got := logs.String()
	if !strings.Contains(got, "mcp: ClickHouse unreachable") || !strings.Contains(got, chAddr) {
		t.Errorf("the log lacks the detail:\n%s", got)
	}
	if n := strings.Count(got, "mcp: ClickHouse unreachable"); n != 1 {
		t.Errorf("%d log lines for 3 failed calls, want 1 (then one per 10 s):\n%s", n, got)
	}
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
