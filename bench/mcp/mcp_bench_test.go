//go:build linux

package mcp_test

// BenchmarkMCP measures clickgate's MCP endpoint (/mcp) against the same
// ClickHouse reached directly, in one run: sequential `tools/call run_query`
// of `SELECT 1` through the official Go SDK client (one session) and the
// same query POSTed straight to ClickHouse over a keep-alive connection,
// interleaved in blocks whose order rotates every round, so that load from
// other jobs on the machine hits every side alike. Then ~20 calls of a
// 1M-row query capped at mcp.max_result_rows while clickgate's RSS is
// sampled every 50 ms.
//
// It runs only when CLICKGATE_BENCH_MCP is set (`make bench` sets it);
// otherwise it skips at once, so `make test` (-bench . -benchtime 1x) stays
// fast. It never fails on slow figures: it prints them, with the targets,
// in a markdown table. It fails when an answer is wrong.
//
// clickgate is built from ./cmd/clickgate and run as its own process
// (`clickgate serve --config …`), so that /proc/PID/status shows its memory
// alone.
//
// Knobs (environment):
//
//	CLICKGATE_BENCH_MCP=1                 run at all
//	CLICKGATE_BENCH_MCP_CALLS=2000        timed SELECT 1 calls per way
//	CLICKGATE_BENCH_MCP_BLOCK=100         calls per interleaved block
//	CLICKGATE_BENCH_MCP_BIG_CALLS=20      capped big-query calls (and as many direct ones)
//	CLICKGATE_BENCH_MCP_BIG_ROWS=1000000  rows the big query asks for
//	CLICKGATE_BENCH_MCP_CPUPROFILE=path   instead of the built binary, run the same server
//	                                      (config.Load, server.New, Serve) in a child process
//	                                      that writes a CPU profile to path and an allocation
//	                                      profile to path.heap (clickgate has no profiling flag)

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/server"
	"github.com/clickgate/clickgate/internal/testkit"
)

const (
	envRun         = "CLICKGATE_BENCH_MCP"
	envCalls       = "CLICKGATE_BENCH_MCP_CALLS"
	envBlock       = "CLICKGATE_BENCH_MCP_BLOCK"
	envBigCalls    = "CLICKGATE_BENCH_MCP_BIG_CALLS"
	envBigRows     = "CLICKGATE_BENCH_MCP_BIG_ROWS"
	envCPUProfile  = "CLICKGATE_BENCH_MCP_CPUPROFILE"
	envServeConfig = "CLICKGATE_BENCH_MCP_SERVE_CONFIG" // internal: child process mode
	envServeProf   = "CLICKGATE_BENCH_MCP_SERVE_PROFILE"

	issuer = "https://idp.test/realms/corp"

	smallSQL = "SELECT 1"
	// What clickgate sends ClickHouse for run_query (internal/mcp/server.go),
	// minus the settings that depend on the account.
	tsvFormat = "TabSeparatedWithNamesAndTypes"
	// queryTimeout is clickgate's default mcp.query_timeout (30 s), which it
	// sends as max_execution_time.
	queryTimeout = 30

	targetAddedP50 = 2 * time.Millisecond
	targetRSS      = 96_000_000 // bytes: "≤ 96 MB RSS"
	defaultMaxRows = 1000       // mcp.max_result_rows when not configured
	sampleEvery    = 50 * time.Millisecond
)

// TestMain turns the test binary into a profiled clickgate server when the
// benchmark starts it with envServeConfig; otherwise it runs the tests.
func TestMain(m *testing.M) {
	if cfg := os.Getenv(envServeConfig); cfg != "" {
		os.Exit(serveProfiled(cfg, os.Getenv(envServeProf)))
	}
	os.Exit(m.Run())
}

// serveProfiled is cmd/clickgate's serve (config.Load, server.New, Serve
// until SIGTERM) with a CPU profile around it.
func serveProfiled(cfgPath, profile string) int {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "profiled serve:", err); return 1 }
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return fail(err)
	}
	srv, err := server.New(cfg, server.Options{Logger: logger, Version: "bench"})
	if err != nil {
		return fail(err)
	}
	l, err := net.Listen("tcp", cfg.Server.Listen)
	if err != nil {
		return fail(err)
	}
	f, err := os.Create(profile)
	if err != nil {
		return fail(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		return fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	err = srv.Serve(ctx, l)
	pprof.StopCPUProfile()
	f.Close()
	if h, herr := os.Create(profile + ".heap"); herr == nil {
		_ = pprof.Lookup("allocs").WriteTo(h, 0)
		h.Close()
	}
	if err != nil {
		return fail(err)
	}
	return 0
}

func envInt(b *testing.B, name string, def, min int) int {
	if v := os.Getenv(name); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < min {
			b.Fatalf("%s=%q: want a number ≥ %d", name, v, min)
		}
		return n
	}
	return def
}

// way is one way of sending the small query, timed call by call.
type way struct {
	name string
	desc string
	call func(ctx context.Context) error

	samples []time.Duration
	// CPU used during this way's blocks by clickgate, ClickHouse and this
	// process (the clients).
	cpuCG, cpuCH, cpuSelf time.Duration
}

func BenchmarkMCP(b *testing.B) {
	if os.Getenv(envRun) == "" {
		b.Skipf("set %s=1 to run (make bench does); it takes about a minute", envRun)
	}
	calls := envInt(b, envCalls, 2000, 1)
	block := envInt(b, envBlock, 100, 1)
	bigCalls := envInt(b, envBigCalls, 20, 0)
	bigRows := envInt(b, envBigRows, 1_000_000, 1)
	if block > calls {
		block = calls
	}
	started := time.Now()
	loadBefore := loadAvg()
	ctx := context.Background()

	ch := chtest.Start(b, chtest.Options{})
	cg := startClickgate(b, ch)

	// The clients: one keep-alive connection each.
	directClient := newClient()
	direct := func(ctx context.Context, sql string, extra url.Values) (*http.Response, error) {
		params := url.Values{"default_format": {tsvFormat}, "max_execution_time": {strconv.Itoa(queryTimeout)}}
		for k, v := range extra {
			params[k] = v
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, ch.HTTPURL+"/?"+params.Encode(), strings.NewReader(sql))
		if err != nil {
			return nil, err
		}
		req.SetBasicAuth(chtest.AdminUser, chtest.AdminPassword)
		resp, err := directClient.Do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			return nil, fmt.Errorf("direct: %s: %s", resp.Status, body)
		}
		return resp, nil
	}
	readonlyProbe := probeReadonly(ch)
	admin := connect(b, cg.resource, cg.adminToken, nil)
	reader := connect(b, cg.resource, cg.readerToken, nil)
	rawCall := captureRunQuery(b, cg.resource, cg.adminToken, smallSQL)
	protocol := admin.InitializeResult().ProtocolVersion
	rawClient := newClient()

	runQuery := func(ctx context.Context, cs *mcp.ClientSession, sql string) (*mcp.CallToolResult, error) {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "run_query", Arguments: map[string]any{"query": sql}})
		if err != nil {
			return nil, err
		}
		if res.IsError {
			return nil, fmt.Errorf("run_query %q: tool error: %s", sql, text(res))
		}
		return res, nil
	}
	ways := []*way{
		{name: "direct", desc: "POST `SELECT 1` to ClickHouse's HTTP port as ch_admin, keep-alive, with default_format=TabSeparatedWithNamesAndTypes, max_execution_time=30 and readonly=1 (what clickgate sends for that account)",
			call: func(ctx context.Context) error {
				resp, err := direct(ctx, smallSQL, url.Values{"readonly": {"1"}})
				if err != nil {
					return err
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil && string(body) != "1\nUInt8\n1\n" {
					err = fmt.Errorf("direct SELECT 1: %q", body)
				}
				return err
			}},
		{name: "mcp", desc: "`tools/call run_query` `SELECT 1` through clickgate with the official Go SDK client (one session), mapped to ch_admin (default profile: clickgate's settings are accepted, one ClickHouse request per call)",
			call: func(ctx context.Context) error { _, err := runQuery(ctx, admin, smallSQL); return err }},
		{name: "mcp-readonly-account", desc: "the same, mapped to ch_reader, whose profile has readonly=1: ClickHouse refuses the settings of clickgate's first attempt (code 164, see below) and clickgate sends the query again without them — two ClickHouse requests per call",
			call: func(ctx context.Context) error { _, err := runQuery(ctx, reader, smallSQL); return err }},
		{name: "mcp-raw-post", desc: "the very request the SDK client sends for that call (body and headers, captured once) POSTed with net/http, as ch_admin: clickgate's share without the client SDK's",
			call: func(ctx context.Context) error {
				out, err := postRaw(ctx, rawClient, cg.resource, rawCall)
				if err == nil && (!strings.Contains(string(out), `"row_count":1`) || strings.Contains(string(out), `"isError":true`)) {
					err = fmt.Errorf("raw tools/call: %.300s", out)
				}
				return err
			}},
		{name: "mcp-no-clickhouse", desc: "`prompts/get explore_database` through clickgate with the SDK client, as ch_admin: authentication (cached) + the SDK's stateless request handling and a small answer, no ClickHouse (not `ping`: protocol 2026-07-28 removed it, and go-sdk v1.8.0's `ClientSession.Ping`, which omits the request `_meta`, gets a 400 instead of \"method not found\")",
			call: func(ctx context.Context) error {
				p, err := admin.GetPrompt(ctx, &mcp.GetPromptParams{Name: "explore_database", Arguments: map[string]string{"database": "default"}})
				if err == nil && len(p.Messages) == 0 {
					err = fmt.Errorf("prompts/get: no messages")
				}
				return err
			}},
	}

	// Check the answers once, then warm up every way (connections, the
	// token cache, ClickHouse's caches).
	if res, err := runQuery(ctx, admin, chtest.CurrentUserSQL()); err != nil || !strings.Contains(text(res), chtest.AdminUser) {
		b.Fatalf("admin session: %v %v", err, text(res))
	}
	if res, err := runQuery(ctx, reader, chtest.CurrentUserSQL()); err != nil || !strings.Contains(text(res), chtest.ReaderUser) {
		b.Fatalf("reader session: %v %v", err, text(res))
	}
	if res, err := runQuery(ctx, admin, smallSQL); err != nil || fmt.Sprint(structured(res)["rows"]) != "[[1]]" {
		b.Fatalf("run_query SELECT 1: %v %v", err, structured(res))
	}
	warm := min(200, calls)
	for _, w := range ways {
		for range warm {
			if err := callOnce(ctx, w); err != nil {
				b.Fatalf("%s (warm-up): %v", w.name, err)
			}
		}
		w.samples = make([]time.Duration, 0, calls)
	}

	// The timed part: rounds of one block per way, in an order rotating
	// every round.
	rounds := (calls + block - 1) / block
	blockMedians := make([][]time.Duration, len(ways)) // [way][round]
	for r := 0; r < rounds; r++ {
		n := min(block, calls-r*block)
		for k := range ways {
			i := (k + r) % len(ways)
			w := ways[i]
			cg0, ch0, self0 := procCPU(cg.pid), procCPU(ch.PID), selfCPU()
			first := len(w.samples)
			for range n {
				t0 := time.Now()
				if err := callOnce(ctx, w); err != nil {
					b.Fatalf("%s: %v", w.name, err)
				}
				w.samples = append(w.samples, time.Since(t0))
			}
			w.cpuCG += procCPU(cg.pid) - cg0
			w.cpuCH += procCPU(ch.PID) - ch0
			w.cpuSelf += selfCPU() - self0
			blockMedians[i] = append(blockMedians[i], percentile(w.samples[first:], 50))
		}
	}
	afterSmall := readStatus(cg.pid)

	// Memory: the capped 1M-row query, interleaved with the same query
	// sent directly and read only as far as clickgate reads it (the header
	// lines and max_result_rows rows), then closed.
	bigSQL := fmt.Sprintf("SELECT number, toString(number) FROM system.numbers LIMIT %d", bigRows)
	var mem memResult
	var bigMCP, bigRaw, bigDirect []time.Duration
	if bigCalls > 0 {
		// One untimed call of each first: the new connections they need.
		if _, err := runQuery(ctx, admin, bigSQL); err != nil {
			b.Fatal(err)
		}
		bigCall := captureRunQuery(b, cg.resource, cg.adminToken, bigSQL)
		if _, err := postRaw(ctx, rawClient, cg.resource, bigCall); err != nil {
			b.Fatal(err)
		}
		if err := directCapped(ctx, direct, bigSQL); err != nil {
			b.Fatal(err)
		}
		mem.before = readStatus(cg.pid)
		resetPeak(cg.pid)
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() { mem.sample(cg.pid, stop); close(sampled) }()
		for i := range bigCalls {
			for k := range 3 {
				t0 := time.Now()
				switch (k + i) % 3 {
				case 0:
					res, err := runQuery(ctx, admin, bigSQL)
					if err != nil {
						b.Fatal(err)
					}
					d := time.Since(t0)
					out := structured(res)
					if out["row_count"] != float64(defaultMaxRows) || out["truncated"] != true {
						b.Fatalf("capped run_query: row_count %v, truncated %v", out["row_count"], out["truncated"])
					}
					bigMCP = append(bigMCP, d)
				case 1:
					out, err := postRaw(ctx, rawClient, cg.resource, bigCall)
					if err != nil {
						b.Fatal(err)
					}
					bigRaw = append(bigRaw, time.Since(t0))
					if !strings.Contains(string(out), fmt.Sprintf(`"row_count":%d`, defaultMaxRows)) {
						b.Fatalf("capped raw tools/call: %.300s", out)
					}
				default:
					if err := directCapped(ctx, direct, bigSQL); err != nil {
						b.Fatal(err)
					}
					bigDirect = append(bigDirect, time.Since(t0))
				}
			}
		}
		close(stop)
		<-sampled
		mem.after = readStatus(cg.pid)
		mem.leftRunning = leftRunning(ch)
	}

	rep := report{
		started: started, elapsed: time.Since(started), loadBefore: loadBefore, loadAfter: loadAvg(),
		chVersion: ch.Version, binary: cg.binary, protocol: protocol, readonlyProbe: readonlyProbe,
		calls: calls, block: block, rounds: rounds, ways: ways, blockMedians: blockMedians,
		afterSmall: afterSmall, bigCalls: bigCalls, bigRows: bigRows, bigSQL: bigSQL,
		bigMCP: bigMCP, bigRaw: bigRaw, bigDirect: bigDirect, mem: mem,
	}
	rep.print(os.Stdout)

	d, m := ways[0], ways[1]
	b.ReportMetric(ms(percentile(d.samples, 50)), "direct-p50-ms")
	b.ReportMetric(ms(percentile(m.samples, 50)), "mcp-p50-ms")
	b.ReportMetric(ms(percentile(m.samples, 50)-percentile(d.samples, 50)), "p50-added-ms")
	b.ReportMetric(ms(percentile(m.samples, 99)-percentile(d.samples, 99)), "p99-added-ms")
	if bigCalls > 0 {
		b.ReportMetric(float64(mem.peak())/(1<<20), "peak-RSS-MiB")
	}
}

// callOnce runs one call of w under a time limit.
func callOnce(ctx context.Context, w *way) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	return w.call(ctx)
}

// directCapped sends the big query straight to ClickHouse, reads the two
// header lines and max_result_rows rows, and closes the connection, as
// clickgate does.
func directCapped(ctx context.Context, direct func(context.Context, string, url.Values) (*http.Response, error), sql string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	resp, err := direct(ctx, sql, url.Values{"readonly": {"1"}})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	for i := 0; i < 2+defaultMaxRows; i++ {
		if _, err := br.ReadString('\n'); err != nil {
			return fmt.Errorf("direct big query, line %d: %w", i, err)
		}
	}
	return nil
}

// probeReadonly says what ClickHouse answers ch_reader (profile
// readonly=1) for the settings clickgate tries first.
func probeReadonly(ch *chtest.Server) string {
	var out []string
	for _, params := range []string{"max_execution_time=30&readonly=1"} {
		req, _ := http.NewRequest(http.MethodPost, ch.HTTPURL+"/?"+params, strings.NewReader(smallSQL))
		req.SetBasicAuth(chtest.ReaderUser, chtest.ReaderPassword)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			out = append(out, params+": "+err.Error())
			continue
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			out = append(out, params+": accepted")
			continue
		}
		msg, _, _ := strings.Cut(strings.TrimSpace(string(body)), ", e.what()")
		out = append(out, fmt.Sprintf("%s: HTTP %d %q", params, resp.StatusCode, msg))
	}
	return strings.Join(out, "; ")
}

// leftRunning counts the queries ClickHouse still runs a moment after the
// capped calls (besides the one asking): each capped call closes its
// connection to cancel the rest of the query.
func leftRunning(ch *chtest.Server) string {
	var last string
	for range 20 {
		v, err := ch.QueryErr(chtest.AdminUser, chtest.AdminPassword, "SELECT count() - 1 FROM system.processes")
		if err != nil {
			return "? (" + err.Error() + ")"
		}
		last = strings.TrimSpace(v)
		if last == "0" {
			return last
		}
		time.Sleep(100 * time.Millisecond)
	}
	return last + " (after 2 s)"
}

func text(res *mcp.CallToolResult) string {
	if res == nil {
		return ""
	}
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

func structured(res *mcp.CallToolResult) map[string]any {
	var out map[string]any
	if res != nil && res.StructuredContent != nil {
		raw, _ := json.Marshal(res.StructuredContent)
		_ = json.Unmarshal(raw, &out)
	}
	return out
}

func newClient() *http.Client {
	return &http.Client{
		Timeout: 5 * time.Minute,
		Transport: &http.Transport{
			Proxy:               nil,
			MaxIdleConns:        4,
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
}

// capturedRequest is a tools/call POST as the SDK client sent it.
type capturedRequest struct {
	header http.Header
	body   string
}

type bearer struct {
	token   string
	base    http.RoundTripper
	capture *capturedRequest // if set, tools/call requests are recorded here
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	if b.capture != nil && r.Method == http.MethodPost && r.Body != nil {
		body, err := io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			return nil, err
		}
		if strings.Contains(string(body), `"tools/call"`) {
			b.capture.header, b.capture.body = r.Header.Clone(), string(body)
		}
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		r.ContentLength = int64(len(body))
	}
	return b.base.RoundTrip(r)
}

// connect opens an MCP session with the official Go SDK client, on its own
// keep-alive transport; capture, if set, records its tools/call requests.
func connect(b *testing.B, resource, tok string, capture *capturedRequest) *mcp.ClientSession {
	b.Helper()
	client := mcp.NewClient(&mcp.Implementation{Name: "clickgate-bench", Version: "1"}, nil)
	cs, err := client.Connect(context.Background(), &mcp.StreamableClientTransport{
		Endpoint: resource, HTTPClient: &http.Client{Transport: bearer{tok, newClient().Transport, capture}},
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cs.Close() })
	return cs
}

// captureRunQuery records the request the SDK client sends for
// `tools/call run_query` of sql (the protocol's per-request _meta
// included), from a session of its own.
func captureRunQuery(b *testing.B, resource, tok, sql string) capturedRequest {
	b.Helper()
	var c capturedRequest
	cs := connect(b, resource, tok, &c)
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "run_query", Arguments: map[string]any{"query": sql}})
	if err != nil || res.IsError || c.body == "" {
		b.Fatalf("capturing a tools/call request: %v %s", err, text(res))
	}
	cs.Close()
	return c
}

// postRaw sends a captured request again with net/http and returns the
// answer's body.
func postRaw(ctx context.Context, client *http.Client, resource string, c capturedRequest) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, resource, strings.NewReader(c.body))
	if err != nil {
		return nil, err
	}
	req.Header = c.header.Clone()
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	out, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %.300s", resp.Status, out)
	}
	return out, err
}

// clickgate is the running clickgate process.
type clickgate struct {
	pid                     int
	resource                string // public_url + /mcp
	adminToken, readerToken string
	binary                  string // what ran
}

// startClickgate builds cmd/clickgate, writes a configuration (jwt
// processor with a JWKS file, mapped mode: ch-admin → ch_admin, ch-reader →
// ch_reader; MCP on with its defaults: read_only, max_result_rows 1000,
// max_result_bytes 1 MiB, query_timeout 30 s; no audit file) and runs
// `clickgate serve` until the benchmark ends. Tokens carry the MCP
// resource (public_url + /mcp) as audience.
func startClickgate(b *testing.B, ch *chtest.Server) *clickgate {
	dir := b.TempDir()
	key := testkit.NewKey(b, jose.ES256, "k1")
	jwks := testkit.WriteJWKS(b, dir, key)
	for attempt := 1; ; attempt++ {
		port := freePort(b)
		public := fmt.Sprintf("http://127.0.0.1:%d", port)
		cfgPath := filepath.Join(dir, "clickgate.yaml")
		yaml := fmt.Sprintf(`server:
  listen: 127.0.0.1:%d
  public_url: %s
token_processors:
  corp: {type: jwt, issuer: %s, jwks_file: %s, audiences: [clickhouse], username_claim: email}
directory:
  roles: {filter: "^ch-.*$", transform: "s/^ch-//"}
clickhouse:
  url: %s
  mode: mapped
  accounts:
    - {role: admin, user: %s, password: %s}
    - {role: reader, user: %s, password: %s}
`, port, public, issuer, jwks, ch.HTTPURL, chtest.AdminUser, chtest.AdminPassword, chtest.ReaderUser, chtest.ReaderPassword)
		if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
			b.Fatal(err)
		}
		var cmd *exec.Cmd
		binary := "clickgate serve (go build ./cmd/clickgate)"
		if prof := os.Getenv(envCPUProfile); prof != "" {
			prof, _ = filepath.Abs(prof)
			self, err := os.Executable()
			if err != nil {
				b.Fatal(err)
			}
			cmd = exec.Command(self)
			cmd.Env = append(os.Environ(), envServeConfig+"="+cfgPath, envServeProf+"="+prof)
			binary = "profiled child (server.New + Serve in the test binary), profile " + prof
		} else {
			cmd = exec.Command(buildClickgate(b, dir), "serve", "--config", cfgPath, "--log-level", "warn")
		}
		logf, err := os.Create(filepath.Join(dir, "clickgate.log"))
		if err != nil {
			b.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		logf.Close()
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		b.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(15 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
			}
		})
		if waitHealthy(public, exited) {
			resource := public + "/mcp"
			return &clickgate{
				pid: cmd.Process.Pid, resource: resource, binary: binary,
				adminToken:  key.Sign(b, testkit.Claims(issuer, resource, "bench-admin@example.com", "ch-admin")),
				readerToken: key.Sign(b, testkit.Claims(issuer, resource, "bench-reader@example.com", "ch-reader")),
			}
		}
		logText, _ := os.ReadFile(filepath.Join(dir, "clickgate.log"))
		if strings.Contains(string(logText), "address already in use") && attempt < 5 {
			continue
		}
		b.Fatalf("clickgate did not become healthy:\n%s", logText)
	}
}

var buildOnce struct {
	sync.Once
	bin string
	err error
}

func buildClickgate(b *testing.B, dir string) string {
	buildOnce.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		bin := filepath.Join(dir, "clickgate")
		out, err := exec.Command(goTool, "build", "-o", bin, "github.com/clickgate/clickgate/cmd/clickgate").CombinedOutput()
		if err != nil {
			buildOnce.err = fmt.Errorf("go build ./cmd/clickgate: %v\n%s", err, out)
			return
		}
		buildOnce.bin = bin
	})
	if buildOnce.err != nil {
		b.Fatal(buildOnce.err)
	}
	return buildOnce.bin
}

func freePort(b *testing.B) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func waitHealthy(base string, exited <-chan struct{}) bool {
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		if resp, err := c.Get(base + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// procStatus is a process's resident memory: now and its peak.
type procStatus struct{ rss, hwm int64 }

func readStatus(pid int) procStatus {
	var s procStatus
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), ":")
		var p *int64
		switch k {
		case "VmRSS":
			p = &s.rss
		case "VmHWM":
			p = &s.hwm
		default:
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		*p = kb << 10
	}
	return s
}

// resetPeak resets VmHWM to the current RSS (clear_refs "5"), so that the
// peak read afterwards is the memory phase's own.
func resetPeak(pid int) {
	_ = os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// memResult is clickgate's memory during the capped calls.
type memResult struct {
	before, after procStatus
	maxRSS        int64 // the largest VmRSS sampled
	samples       int
	leftRunning   string
}

func (m *memResult) sample(pid int, stop <-chan struct{}) {
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	for {
		if s := readStatus(pid); s.rss > 0 {
			m.maxRSS = max(m.maxRSS, s.rss)
			m.samples++
		}
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

// peak is the larger of the sampled maximum and the kernel's VmHWM (which
// sees spikes between samples).
func (m *memResult) peak() int64 { return max(m.maxRSS, m.after.hwm) }

// procCPU is a process's user+system CPU time (clock ticks of 10 ms).
func procCPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// selfCPU is this process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func loadAvg() string {
	data, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// percentile is the nearest-rank percentile of d (not modified).
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func mean(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	var sum time.Duration
	for _, x := range d {
		sum += x
	}
	return sum / time.Duration(len(d))
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

func fmtMS(d time.Duration) string { return fmt.Sprintf("%.3f ms", ms(d)) }

func fmtAdded(d time.Duration) string { return fmt.Sprintf("%+.3f ms", ms(d)) }

func fmtMB(n int64) string {
	return fmt.Sprintf("%.1f MB (%.1f MiB)", float64(n)/1e6, float64(n)/(1<<20))
}

func yesNo(ok bool) string {
	if ok {
		return "**yes**"
	}
	return "**no**"
}

type report struct {
	started              time.Time
	elapsed              time.Duration
	loadBefore           string
	loadAfter            string
	chVersion            string
	binary               string
	protocol             string
	readonlyProbe        string
	calls, block, rounds int
	ways                 []*way
	blockMedians         [][]time.Duration
	afterSmall           procStatus
	bigCalls, bigRows    int
	bigSQL               string
	bigMCP, bigRaw       []time.Duration
	bigDirect            []time.Duration
	mem                  memResult
}

// pairedAdded is the median over rounds of (way i's block median − the
// direct block median of the same round).
func (r *report) pairedAdded(i int) time.Duration {
	var diffs []time.Duration
	for k := range r.blockMedians[i] {
		diffs = append(diffs, r.blockMedians[i][k]-r.blockMedians[0][k])
	}
	return percentile(diffs, 50)
}

func (r *report) print(w io.Writer) {
	d, m := r.ways[0], r.ways[1]
	dp50, mp50 := percentile(d.samples, 50), percentile(m.samples, 50)
	dp99, mp99 := percentile(d.samples, 99), percentile(m.samples, 99)
	fmt.Fprintf(w, "\n### MCP benchmark, %s\n\n", r.started.UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(w, "%s, %d CPUs, %s; ClickHouse %s; clickgate: %s; MCP protocol %s (go-sdk client and server); load average %s before, %s after; %s in all.\n\n",
		runtime.Version(), runtime.NumCPU(), runtime.GOOS+"/"+runtime.GOARCH, r.chVersion, r.binary, r.protocol,
		r.loadBefore, r.loadAfter, r.elapsed.Round(time.Second))
	fmt.Fprintf(w, "`SELECT 1`: %d timed calls per way, sequential, in %d rounds of one %d-call block per way (order rotating), after %d warm-up calls each.\n\n",
		r.calls, r.rounds, r.block, min(200, r.calls))

	fmt.Fprintln(w, "| metric | direct | through clickgate MCP | added | target | met? |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | --- | --- |")
	fmt.Fprintf(w, "| `run_query` `SELECT 1`, p50 | %s | %s | %s | ≤ 2 ms added | %s |\n",
		fmtMS(dp50), fmtMS(mp50), fmtAdded(mp50-dp50), yesNo(mp50-dp50 <= targetAddedP50))
	fmt.Fprintf(w, "| `run_query` `SELECT 1`, p99 | %s | %s | %s | — | — |\n", fmtMS(dp99), fmtMS(mp99), fmtAdded(mp99-dp99))
	fmt.Fprintf(w, "| `run_query` `SELECT 1`, p50 added, paired by round (median of per-round block-median differences) | | | %s | ≤ 2 ms added | %s |\n",
		fmtAdded(r.pairedAdded(1)), yesNo(r.pairedAdded(1) <= targetAddedP50))
	if r.bigCalls > 0 {
		fmt.Fprintf(w, "| peak RSS of clickgate, %d × `run_query` of a %d-row query capped at %d rows | — | %s | %s over the %s before | ≤ 96 MB | %s |\n",
			r.bigCalls, r.bigRows, defaultMaxRows, fmtMB(r.mem.peak()), fmtMB(r.mem.peak()-r.mem.before.rss), fmtMB(r.mem.before.rss),
			yesNo(r.mem.peak() <= targetRSS))
		bd, bm := percentile(r.bigDirect, 50), percentile(r.bigMCP, 50)
		fmt.Fprintf(w, "| that capped query, p50 (direct: read the first %d rows, then close) | %s | %s | %s | — | — |\n",
			defaultMaxRows, fmtMS(bd), fmtMS(bm), fmtAdded(bm-bd))
	}

	fmt.Fprintln(w, "\nEvery way, `SELECT 1` (CPU per call: clickgate's, ClickHouse's and the client process's, from /proc and getrusage over the way's blocks):")
	fmt.Fprintln(w, "\n| way | p50 | p90 | p99 | mean | p50 − direct p50 | paired p50 added | clickgate CPU/call | ClickHouse CPU/call | client CPU/call |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for i, x := range r.ways {
		n := time.Duration(len(x.samples))
		added, paired := "—", "—"
		if i > 0 {
			added = fmtAdded(percentile(x.samples, 50) - dp50)
			paired = fmtAdded(r.pairedAdded(i))
		}
		us := func(t time.Duration) string { return fmt.Sprintf("%.0f µs", float64(t/n)/1e3) }
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", x.name,
			fmtMS(percentile(x.samples, 50)), fmtMS(percentile(x.samples, 90)), fmtMS(percentile(x.samples, 99)), fmtMS(mean(x.samples)),
			added, paired, us(x.cpuCG), us(x.cpuCH), us(x.cpuSelf))
	}
	fmt.Fprintln(w)
	for _, x := range r.ways {
		fmt.Fprintf(w, "- %s: %s\n", x.name, x.desc)
	}
	fmt.Fprintf(w, "\n`SELECT 1` sent directly as ch_reader (profile readonly=1) — %s.\n", r.readonlyProbe)
	fmt.Fprintf(w, "clickgate after the SELECT 1 phase: VmRSS %s, VmHWM %s.\n", fmtMB(r.afterSmall.rss), fmtMB(r.afterSmall.hwm))
	if r.bigCalls > 0 {
		fmt.Fprintf(w, "Capped phase (`%s`; %d calls through clickgate with the SDK client, %d as raw POSTs of the same request, %d direct, interleaved): VmRSS %s before; largest of %d samples every %v: %s; VmHWM after (peak reset before the phase): %s; VmRSS after: %s; ClickHouse queries still running afterwards: %s.\n",
			r.bigSQL, len(r.bigMCP), len(r.bigRaw), len(r.bigDirect), fmtMB(r.mem.before.rss), r.mem.samples, sampleEvery, fmtMB(r.mem.maxRSS),
			fmtMB(r.mem.after.hwm), fmtMB(r.mem.after.rss), r.mem.leftRunning)
		fmt.Fprintf(w, "Capped calls, p50 / max: direct (first %d rows, then close) %s / %s; raw POST through clickgate %s / %s; SDK client through clickgate %s / %s.\n",
			defaultMaxRows, fmtMS(percentile(r.bigDirect, 50)), fmtMS(percentile(r.bigDirect, 100)),
			fmtMS(percentile(r.bigRaw, 50)), fmtMS(percentile(r.bigRaw, 100)),
			fmtMS(percentile(r.bigMCP, 50)), fmtMS(percentile(r.bigMCP, 100)))
	}
	fmt.Fprintln(w)
}
