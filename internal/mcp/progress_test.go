package mcp_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/clickgate/clickgate/internal/audit"
	"github.com/clickgate/clickgate/internal/authn"
	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/clickhouse"
	cfgpkg "github.com/clickgate/clickgate/internal/config"
	mcpserver "github.com/clickgate/clickgate/internal/mcp"
	"github.com/clickgate/clickgate/internal/server"
	"github.com/clickgate/clickgate/internal/servertest"
)

// slowQuery runs about 3 s on ClickHouse 18.16, reading rows as it goes:
// sleepEachRow sleeps per row of each block, and clickhouse.settings
// makes blocks of 100 rows (readonly forbids a SETTINGS clause).
const slowQuery = "SELECT count() FROM (SELECT number FROM system.numbers LIMIT 3000) WHERE sleepEachRow(0.001) = 0"

// progressStack is newStack with a proxy between clickgate and ClickHouse
// that counts clickgate's polls of system.processes; config gives the
// configuration for a public_url.
func progressStack(t *testing.T) (s *stack, polls *atomic.Int64, config func(publicURL string) string) {
	t.Helper()
	// ch_slow's profile is not readonly, so clickhouse.settings may set
	// max_block_size; clickgate still sends its queries with readonly = 1.
	ch := chtest.Start(t, chtest.Options{ExtraUsers: []chtest.User{{Name: "ch_slow", Password: "slow-pw"}}})
	target, _ := url.Parse(ch.HTTPURL)
	polls = new(atomic.Int64)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.FlushInterval = -1
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		if strings.Contains(r.URL.Query().Get("query")+string(body), "system.processes") {
			polls.Add(1)
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	iss := servertest.NewIssuer(t)
	config = func(publicURL string) string {
		return fmt.Sprintf(`
server: {public_url: %s}
token_processors:
  corp: %s
directory:
  roles: {filter: "^ch-.*$", transform: "s/^ch-//", common: [mcp_reader]}
clickhouse:
  url: %s
  mode: mapped
  settings: {max_block_size: "100"}
  accounts:
    - {role: admin, user: ch_admin, password: admin-pw}
    - {role: mcp_reader, user: ch_slow, password: slow-pw}
mcp: {}
`, publicURL, iss.Processor(), front.URL)
	}
	cg := servertest.StartWithURL(t, config, server.Options{})
	// The slow query really is slow on this ClickHouse (and sleepEachRow
	// exists in 18.16).
	start := time.Now()
	if got := ch.Query(t, "ch_admin", "admin-pw", slowQuery+" SETTINGS max_block_size = 100"); got != "3000" {
		t.Fatalf("slow query: %q", got)
	}
	if d := time.Since(start); d < 2*time.Second {
		t.Fatalf("slow query took only %v", d)
	}
	return &stack{ch: ch, cg: cg, iss: iss, resource: cg.URL + "/mcp"}, polls, config
}

type progressLog struct {
	mu    sync.Mutex
	notes []*mcp.ProgressNotificationParams
	at    []time.Time
}

func (l *progressLog) handler(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.notes = append(l.notes, req.Params)
	l.at = append(l.at, time.Now())
}

func (l *progressLog) snapshot() ([]*mcp.ProgressNotificationParams, []time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*mcp.ProgressNotificationParams(nil), l.notes...), append([]time.Time(nil), l.at...)
}

// A call with a progress token receives progress notifications, with
// read rows increasing, while its slow query runs, before its result and
// none after; a call without one sends no polling query at all. Over
// Streamable HTTP (stateless, JSON responses) and over stdio.
func TestProgressNotifications(t *testing.T) {
	s, polls, config := progressStack(t)
	tok := s.token(t, s.resource, "alice@example.com", "ch-analysts")

	t.Run("http", func(t *testing.T) {
		var log progressLog
		client := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, &mcp.ClientOptions{ProgressNotificationHandler: log.handler})
		cs, err := client.Connect(context.Background(), &mcp.StreamableClientTransport{
			Endpoint: s.resource, HTTPClient: &http.Client{Transport: bearer{tok, http.DefaultTransport}},
		}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer cs.Close()
		checkProgress(t, cs, &log, polls)

		// Only a request with a progress token is answered as an SSE
		// stream; the rest keep their one JSON body.
		for meta, want := range map[string]string{`"_meta":{"progressToken":7},`: "text/event-stream", "": "application/json"} {
			body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{` + meta + `"name":"list_databases","arguments":{}}}`
			req, _ := http.NewRequest(http.MethodPost, s.resource, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			req.Header.Set("MCP-Protocol-Version", "2025-06-18")
			resp, err := (&http.Client{Transport: bearer{tok, http.DefaultTransport}}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, want) || !strings.Contains(string(got), "default") {
				t.Errorf("%s: %d %s %.300s", body, resp.StatusCode, ct, got)
			}
		}
	})

	t.Run("stdio", func(t *testing.T) {
		// What 'clickgate mcp' builds, on a pair of pipes.
		cfg, err := cfgpkg.Parse([]byte(config(s.cg.URL)))
		if err != nil {
			t.Fatal(err)
		}
		opt := server.Options{Logger: slog.New(slog.DiscardHandler)}
		auth, err := server.NewAuth(cfg, opt, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer auth.CloseAudit()
		up, err := server.NewUpstream(cfg, opt, auth.Verifier, nil)
		if err != nil {
			t.Fatal(err)
		}
		m := server.NewMCP(cfg, opt, up, auth.Log)
		req := &http.Request{RemoteAddr: "stdio", Header: http.Header{}}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		ctx = mcpserver.WithCallerSource(ctx, func(ctx context.Context) (*clickhouse.Caller, error) {
			res, err := auth.Authenticate(ctx, req, authn.Credentials{Token: tok}, audit.InterfaceMCP)
			if err != nil {
				return nil, err
			}
			return &clickhouse.Caller{Token: tok, Identity: res.Identity, Principal: res.Principal}, nil
		})
		c2sR, c2sW := io.Pipe()
		s2cR, s2cW := io.Pipe()
		go m.SDK().Run(ctx, &mcp.IOTransport{Reader: c2sR, Writer: s2cW})
		var log progressLog
		client := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, &mcp.ClientOptions{ProgressNotificationHandler: log.handler})
		cs, err := client.Connect(ctx, &mcp.IOTransport{Reader: s2cR, Writer: c2sW}, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer cs.Close()
		checkProgress(t, cs, &log, polls)
	})
}

func checkProgress(t *testing.T, cs *mcp.ClientSession, log *progressLog, polls *atomic.Int64) {
	t.Helper()
	// Without a progress token: the same query, and no poll.
	before := polls.Load()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "run_query", Arguments: map[string]any{"query": slowQuery}})
	if err != nil || res.IsError {
		t.Fatalf("run_query: %v %s", err, text(res))
	}
	if n := polls.Load() - before; n != 0 {
		t.Fatalf("a call without a progress token polled system.processes %d times", n)
	}
	if notes, _ := log.snapshot(); len(notes) != 0 {
		t.Fatalf("notifications without a progress token: %v", notes)
	}

	// With one.
	params := &mcp.CallToolParams{Name: "run_query", Arguments: map[string]any{"query": slowQuery}}
	params.SetProgressToken("q-1")
	res, err = cs.CallTool(context.Background(), params)
	done := time.Now()
	if err != nil || res.IsError {
		t.Fatalf("run_query with a progress token: %v %s", err, text(res))
	}
	if !strings.Contains(text(res), "3000") {
		t.Errorf("result: %s", text(res))
	}
	after := polls.Load()
	time.Sleep(1500 * time.Millisecond) // a notification or poll after the result would come by now
	if polls.Load() != after {
		t.Errorf("polling went on after the result: %d more", polls.Load()-after)
	}
	if after == before {
		t.Error("no poll counted")
	}
	notes, at := log.snapshot()
	if len(notes) == 0 {
		t.Fatalf("no progress notification (polls: %d)", after-before)
	}
	last := -1.0
	for i, n := range notes {
		t.Logf("progress %v/%v %q", n.Progress, n.Total, n.Message)
		if n.ProgressToken != "q-1" {
			t.Errorf("token %v", n.ProgressToken)
		}
		if n.Progress <= last || n.Progress > 3000 {
			t.Errorf("progress %v after %v", n.Progress, last)
		}
		last = n.Progress
		if !strings.HasPrefix(n.Message, "read ") || !strings.Contains(n.Message, " rows, ") {
			t.Errorf("message %q", n.Message)
		}
		if at[i].After(done) {
			t.Errorf("notification %d arrived after the result", i)
		}
	}
}
