//go:build linux

package cluster_test

// BenchmarkCluster measures, in one run, four ways to reach ClickHouse
// 18.16 (internal/chtest), phases interleaved so that load from other jobs
// on the machine hits all four alike:
//
//	direct     node A, Basic ch_admin
//	proxy      a bare net/http/httputil.ReverseProxy in front of node A that
//	           only adds Basic ch_admin: NewSingleHostReverseProxy, its
//	           Director wrapped to set the credentials, FlushInterval -1, a
//	           clone of http.DefaultTransport with MaxIdleConnsPerHost 64
//	           (the default 2 would close most upstream connections at 16
//	           clients), a default http.Server. It runs as its own process
//	           (this test binary, started again by TestMain), like clickgate,
//	           so that neither shares a Go runtime with the load generator.
//	clickgate  clickgate with one node (A), no limits: the baseline
//	cluster    clickgate with two nodes (clickhouse.urls: [A, B]) and a
//	           default limits entry generous enough never to refuse at 16
//	           connections (max_concurrent_queries 64, max_queue 64,
//	           requests_per_minute 10000000), so that the pool's choice of
//	           node and the limiter's bookkeeping are paid on every request
//
// Both clickgates are the same binary, built from ./cmd/clickgate and run
// as their own processes (`clickgate serve`), configured like
// BenchmarkGateway (a jwt processor with a JWKS file, mode mapped, group
// ch-admin → ch_admin); the session log is off by default
// (BenchmarkAuditTrail measures it). Nodes A and B are two ClickHouse
// servers with the same data: the queries read system.numbers.
//
// Workloads, each at 16 keep-alive connections, every response checked
// byte for byte:
//
//	SELECT 1                    req/s and p99 over a phase
//	TSV of 10,000 rows          SELECT number, toString(number) FROM
//	                            system.numbers LIMIT 10000 FORMAT TSV
//	                            (97,780 bytes): req/s and p99 over a phase
//	a TSV stream of 20M rows    the same query with LIMIT 20000000
//	                            (338 MB), one request: MB/s
//
// Each round runs every workload once per target, in the order of one row
// of a 4×4 balanced Latin square (each target follows each other one once
// every four rounds). Every figure is given as the median over rounds; the
// ratios (to direct, to the proxy, cluster to clickgate) are medians of the
// per-round ratios, which cancels most of the drift of a shared machine.
// The cluster's figures include what spreading the work over two
// ClickHouse servers changes on ClickHouse's side (on one machine they
// share its CPUs); clickgate's own CPU per request (per byte for the
// streams), cluster against one node, is reported apart as the cost that
// is the pool's and the limiter's alone.
//
// It fails on any request that fails (transport error, non-200, a body
// that is not exactly the expected one, a truncated stream) and on any
// setup error (the cluster clickgate must have sent requests to both nodes
// and refused none), never on slow figures: it prints them, with the
// targets (the cluster costs ≤ 5 % against the one-node clickgate; every
// clickgate figure at or above the bare proxy's), in markdown tables and
// reports them with b.ReportMetric.
//
// Knobs (environment):
//
//	CLICKGATE_BENCH_CLUSTER=1                   run at all
//	CLICKGATE_BENCH_CLUSTER_PHASE=3s            length of each SELECT 1 and 10,000-row phase
//	CLICKGATE_BENCH_CLUSTER_ROUNDS=4            rounds (each: every workload once per target)
//	CLICKGATE_BENCH_CLUSTER_TSV_ROWS=10000      rows of the TSV answer
//	CLICKGATE_BENCH_CLUSTER_STREAM_ROWS=20000000 rows of each stream; 0 skips the streams
//	CLICKGATE_BENCH_CLUSTER_AUDIT=off           clickgate's session log: "off" or "file"
//	CLICKGATE_BENCH_CLUSTER_NODES=2             nodes of the cluster clickgate: 1 or 2
//	CLICKGATE_BENCH_CLUSTER_LIMITS=on           the cluster clickgate's limits: "on" or "off"
//
// The last two split the cluster's cost between the pool and the limiter
// (NODES=1 with limits on: the limiter alone; LIMITS=off with 2 nodes: the
// pool alone); the targets are for the defaults.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/clickgate/clickgate/bench/internal/benchkit"
	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/testkit"
)

const (
	envRun        = "CLICKGATE_BENCH_CLUSTER"
	envPhase      = "CLICKGATE_BENCH_CLUSTER_PHASE"
	envRounds     = "CLICKGATE_BENCH_CLUSTER_ROUNDS"
	envTSVRows    = "CLICKGATE_BENCH_CLUSTER_TSV_ROWS"
	envStreamRows = "CLICKGATE_BENCH_CLUSTER_STREAM_ROWS"
	envAudit      = "CLICKGATE_BENCH_CLUSTER_AUDIT"
	envNodes      = "CLICKGATE_BENCH_CLUSTER_NODES"
	envLimits     = "CLICKGATE_BENCH_CLUSTER_LIMITS"

	// Internal: the test binary started again as the bare proxy.
	envProxyUpstream = "CLICKGATE_BENCH_CLUSTER_PROXY_UPSTREAM"
	envProxyUser     = "CLICKGATE_BENCH_CLUSTER_PROXY_USER"
	envProxyPassword = "CLICKGATE_BENCH_CLUSTER_PROXY_PASSWORD"

	connections = 16

	// The cluster clickgate's default limits entry: present, so that the
	// limiter runs on every request, but never refusing at 16 connections.
	limitsYAML = "limits:\n  default: {max_concurrent_queries: 64, max_queue: 64, requests_per_minute: 10000000}\n"
)

// TestMain serves as the bare proxy when the benchmark starts the test
// binary with envProxyUpstream; otherwise it runs the tests.
func TestMain(m *testing.M) {
	if up := os.Getenv(envProxyUpstream); up != "" {
		os.Exit(serveProxy(up, os.Getenv(envProxyUser), os.Getenv(envProxyPassword)))
	}
	os.Exit(m.Run())
}

// serveProxy is the bare proxy: it listens on a free loopback port, writes
// "listening on ADDR" to stdout, and serves until SIGTERM.
func serveProxy(upstream, user, password string) int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "bare proxy:", err); return 1 }
	u, err := url.Parse(upstream)
	if err != nil {
		return fail(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	director := rp.Director
	rp.Director = func(r *http.Request) {
		director(r)
		r.SetBasicAuth(user, password)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 4 * connections
	rp.Transport = tr
	rp.FlushInterval = -1
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	fmt.Printf("listening on %s\n", l.Addr())
	srv := &http.Server{Handler: rp}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fail(err)
	}
	return 0
}

// target is one way to reach ClickHouse.
type target struct {
	key, name string // short (metrics) and long (tables) names
	url       string // base URL, no trailing slash
	auth      string // Authorization header value; "" sends none (the proxy adds it)
	pid       int    // the proxy or clickgate process; 0 for direct (ClickHouse is counted apart)
	client    *http.Client
}

const (
	tDirect = iota
	tProxy
	tClickgate
	tCluster
	nTargets
)

// latin is a balanced 4×4 Latin square: row r is the order of round r%4;
// each target runs once in each position and follows each other target
// once every four rounds.
var latin = [4][nTargets]int{{0, 1, 3, 2}, {1, 2, 0, 3}, {2, 3, 1, 0}, {3, 0, 2, 1}}

func BenchmarkCluster(b *testing.B) {
	if os.Getenv(envRun) == "" {
		b.Skipf("set %s=1 to run (make bench does): CLICKGATE_BENCH_CLUSTER=1 go test -run '^$' -bench '^BenchmarkCluster$' -benchtime 1x -count 1 -timeout 20m ./bench/cluster/ (about three minutes; see bench/README.md)", envRun)
	}
	phase := benchkit.EnvDuration(b, envPhase, 3*time.Second)
	rounds := benchkit.EnvInt(b, envRounds, 4, 1)
	tsvRows := benchkit.EnvInt(b, envTSVRows, 10_000, 1)
	streamRows := benchkit.EnvInt(b, envStreamRows, 20_000_000, 0)
	auditMode := os.Getenv(envAudit)
	if auditMode == "" {
		auditMode = "off"
	}
	if auditMode != "off" && auditMode != "file" {
		b.Fatalf("%s=%q: want off or file", envAudit, auditMode)
	}
	nodes := benchkit.EnvInt(b, envNodes, 2, 1)
	if nodes > 2 {
		b.Fatalf("%s=%d: want 1 or 2", envNodes, nodes)
	}
	limitsOn := os.Getenv(envLimits) != "off"
	if v := os.Getenv(envLimits); v != "" && v != "on" && v != "off" {
		b.Fatalf("%s=%q: want on or off", envLimits, v)
	}
	clusterName := fmt.Sprintf("clickgate, %d node", nodes)
	if nodes > 1 {
		clusterName += "s"
	}
	extra := ""
	if limitsOn {
		clusterName += " + limits"
		extra = limitsYAML
	}
	started := time.Now()
	loadBefore := benchkit.LoadAvg()

	chA := chtest.Start(b, chtest.Options{})
	chB := chtest.Start(b, chtest.Options{})
	env := &bench{chA: chA.PID, chB: chB.PID}

	dir := b.TempDir()
	bin, err := testkit.BuildClickgate(dir)
	if err != nil {
		b.Fatalf("go build ./cmd/clickgate: %v", err)
	}
	key := testkit.NewKey(b, jose.ES256, "k1")
	jwks := testkit.WriteJWKS(b, dir, key)
	bearer := "Bearer " + key.Sign(b, testkit.Claims(benchkit.Issuer, "clickhouse", "bench@example.com", "ch-admin"))

	proxyURL, proxyPID := startProxy(b, dir, chA.HTTPURL)
	cg := startClickgate(b, bin, jwks, auditMode, []string{chA.HTTPURL}, "")
	clusterURLs := []string{chA.HTTPURL, chB.HTTPURL}[:nodes]
	cl := startClickgate(b, bin, jwks, auditMode, clusterURLs, extra)

	client := func() *http.Client { return benchkit.KeepAliveClient(10*time.Minute, 4*connections) }
	targets := [nTargets]*target{
		{key: "direct", name: "direct", url: chA.HTTPURL, auth: basic(chtest.AdminUser, chtest.AdminPassword), client: client()},
		{key: "proxy", name: "bare ReverseProxy", url: proxyURL, pid: proxyPID, client: client()},
		{key: "cg1", name: "clickgate, 1 node", url: cg.URL, auth: bearer, pid: cg.PID, client: client()},
		{key: "cg2", name: clusterName, url: cl.URL, auth: bearer, pid: cl.PID, client: client()},
	}
	// Every way runs as ch_admin (the first request through a clickgate
	// verifies the token; every later one finds it in the cache).
	for _, t := range targets {
		if got := strings.TrimSpace(string(get(b, t, "/?query="+url.QueryEscape(chtest.CurrentUserSQL())))); got != chtest.AdminUser {
			b.Fatalf("%s runs as %q, want %s", t.name, got, chtest.AdminUser)
		}
	}

	sel := workload{name: "SELECT 1", path: "/?query=" + url.QueryEscape("SELECT 1"), want: []byte("1\n")}
	tsv := workload{
		name: fmt.Sprintf("TSV %s rows", thousands(tsvRows)),
		path: "/?query=" + url.QueryEscape(fmt.Sprintf("SELECT number, toString(number) FROM system.numbers LIMIT %d FORMAT TSV", tsvRows)),
		want: tsvBody(tsvRows),
	}
	// Warm up: connections, ClickHouse's caches, clickgate's pools.
	for _, t := range targets {
		env.run(b, t, sel, time.Second)
		env.run(b, t, tsv, time.Second)
	}

	var res results
	for r := 0; r < rounds; r++ {
		for _, i := range latin[r%4] {
			res.sel[i] = append(res.sel[i], env.run(b, targets[i], sel, phase))
		}
	}
	for r := 0; r < rounds; r++ {
		for _, i := range latin[r%4] {
			res.tsv[i] = append(res.tsv[i], env.run(b, targets[i], tsv, phase))
		}
	}
	if streamRows > 0 {
		for r := 0; r < rounds; r++ {
			for _, i := range latin[r%4] {
				res.stream[i] = append(res.stream[i], env.stream(b, targets[i], streamRows))
			}
		}
	}

	// The cluster clickgate must have used both nodes, failed nothing and
	// refused nothing; the one-node clickgate must have no limiter.
	shares := checkCluster(b, cl.URL, limitsOn, clusterURLs...)

	rep := &report{
		started: started, elapsed: time.Since(started), loadBefore: loadBefore, loadAfter: benchkit.LoadAvg(),
		chVersion: chA.Version, auditMode: auditMode, phase: phase, rounds: rounds, tsvRows: tsvRows, streamRows: streamRows,
		targets: targets, res: &res, sel: sel, tsv: tsv, nodes: shares,
	}
	rep.print(os.Stdout)
	rep.metrics(b)
}

// bench holds the ClickHouse processes, for CPU accounting.
type bench struct{ chA, chB int }

// cpu is CPU time (utime+stime) spent during a phase.
type cpu struct{ front, chA, chB, self time.Duration }

func (e *bench) cpuNow(t *target) cpu {
	return cpu{benchkit.ProcCPU(t.pid), benchkit.ProcCPU(e.chA), benchkit.ProcCPU(e.chB), benchkit.ProcCPU(os.Getpid())}
}

func (c cpu) sub(d cpu) cpu {
	return cpu{c.front - d.front, c.chA - d.chA, c.chB - d.chB, c.self - d.self}
}

// workload is a request sent again and again, and its exact answer.
type workload struct {
	name string
	path string // "/?query=…"
	want []byte
}

// phaseResult is one phase of one workload against one target.
type phaseResult struct {
	n        int
	elapsed  time.Duration
	rps      float64
	p50, p99 time.Duration
	cpu      cpu // totals over the phase
}

// run sends w from connections goroutines, each on its own keep-alive
// connection, one request after another, until dur has passed; every
// answer must be HTTP 200 with exactly w.want as its body, or the
// benchmark fails.
func (e *bench) run(b *testing.B, t *target, w workload, dur time.Duration) phaseResult {
	lats := make([][]time.Duration, connections)
	var errs atomic.Int64
	var firstErr atomic.Value
	fail := func(s string) {
		errs.Add(1)
		firstErr.CompareAndSwap(nil, s)
	}
	cpu0 := e.cpuNow(t)
	start := time.Now()
	deadline := start.Add(dur)
	var wg sync.WaitGroup
	for g := 0; g < connections; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			buf := make([]byte, len(w.want)+1)
			l := make([]time.Duration, 0, 1<<15)
			for time.Now().Before(deadline) {
				t0 := time.Now()
				req, _ := http.NewRequest("GET", t.url+w.path, nil)
				if t.auth != "" {
					req.Header.Set("Authorization", t.auth)
				}
				resp, err := t.client.Do(req)
				if err != nil {
					fail(err.Error())
					time.Sleep(time.Millisecond)
					continue
				}
				n, rerr := io.ReadFull(resp.Body, buf)
				extra, _ := io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				d := time.Since(t0)
				switch {
				case resp.StatusCode != http.StatusOK:
					fail(fmt.Sprintf("HTTP %d: %q", resp.StatusCode, buf[:min(n, 300)]))
				case rerr != nil && !errors.Is(rerr, io.ErrUnexpectedEOF) && !errors.Is(rerr, io.EOF):
					fail(fmt.Sprintf("reading the body after %d bytes: %v", n, rerr))
				case n != len(w.want) || extra != 0 || !bytes.Equal(buf[:n], w.want):
					fail(fmt.Sprintf("body of %d bytes, want %d: %q…", int64(n)+extra, len(w.want), buf[:min(n, 100)]))
				default:
					l = append(l, d)
				}
			}
			lats[g] = l
		}(g)
	}
	wg.Wait()
	elapsed := time.Since(start)
	used := e.cpuNow(t).sub(cpu0)
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	if n := errs.Load(); n > 0 {
		b.Fatalf("%s, %s: %d of %d requests failed, first: %s", t.name, w.name, n, int64(len(all))+n, firstErr.Load())
	}
	if len(all) == 0 {
		b.Fatalf("%s, %s: no request completed in %s", t.name, w.name, dur)
	}
	slices.Sort(all)
	return phaseResult{
		n: len(all), elapsed: elapsed, rps: float64(len(all)) / elapsed.Seconds(),
		p50: benchkit.SortedPercentile(all, 50), p99: benchkit.SortedPercentile(all, 99), cpu: used,
	}
}

// streamResult is one TSV stream read to its end.
type streamResult struct {
	bytes   int64
	elapsed time.Duration
	cpu     cpu
}

func (s streamResult) mbps() float64 { return float64(s.bytes) / 1e6 / s.elapsed.Seconds() }

// stream reads `SELECT number, toString(number) FROM system.numbers LIMIT
// rows FORMAT TSV` to its end; it must be exactly tsvSize(rows) bytes and
// end with the last row, or the benchmark fails.
func (e *bench) stream(b *testing.B, t *target, rows int) streamResult {
	q := fmt.Sprintf("SELECT number, toString(number) FROM system.numbers LIMIT %d FORMAT TSV", rows)
	req, _ := http.NewRequest("GET", t.url+"/?query="+url.QueryEscape(q), nil)
	if t.auth != "" {
		req.Header.Set("Authorization", t.auth)
	}
	cpu0 := e.cpuNow(t)
	t0 := time.Now()
	resp, err := t.client.Do(req)
	if err != nil {
		b.Fatalf("%s stream: %v", t.name, err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		b.Fatalf("%s stream: HTTP %d: %s", t.name, resp.StatusCode, body)
	}
	n, last, err := benchkit.Drain(resp.Body)
	if err != nil {
		resp.Body.Close()
		b.Fatalf("%s stream after %d bytes: %v", t.name, n, err)
	}
	resp.Body.Close()
	elapsed := time.Since(t0)
	want := fmt.Sprintf("%d\t%d\n", rows-1, rows-1)
	if size := tsvSize(rows); n != size || !strings.HasSuffix(string(last), want) {
		b.Fatalf("%s stream: %d bytes ending with %q, want %d bytes ending with %q (an exception mid-stream?)", t.name, n, last, size, want)
	}
	return streamResult{bytes: n, elapsed: elapsed, cpu: e.cpuNow(t).sub(cpu0)}
}

// tsvBody is the TSV answer of the first rows of system.numbers with
// toString(number).
func tsvBody(rows int) []byte {
	var b []byte
	for i := 0; i < rows; i++ {
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, '\t')
		b = strconv.AppendInt(b, int64(i), 10)
		b = append(b, '\n')
	}
	return b
}

// tsvSize is len(tsvBody(rows)) without building it.
func tsvSize(rows int) int64 {
	var size int64
	lo, hi, digits := int64(0), int64(10), int64(1)
	for lo < int64(rows) {
		size += (min(int64(rows), hi) - lo) * (2*digits + 2)
		lo, hi, digits = hi, hi*10, digits+1
	}
	return size
}

// TestTSVSize: tsvSize agrees with the body it stands for.
func TestTSVSize(t *testing.T) {
	for _, n := range []int{0, 1, 9, 10, 11, 99, 100, 10_000, 123_457} {
		if got, want := tsvSize(n), int64(len(tsvBody(n))); got != want {
			t.Errorf("tsvSize(%d) = %d, want %d", n, got, want)
		}
	}
}

func basic(user, pw string) string {
	r, _ := http.NewRequest("GET", "/", nil)
	r.SetBasicAuth(user, pw)
	return r.Header.Get("Authorization")
}

// get sends one GET and returns the body of its 200 answer; anything else
// fails the benchmark.
func get(b *testing.B, t *target, path string) []byte {
	req, _ := http.NewRequest("GET", t.url+path, nil)
	if t.auth != "" {
		req.Header.Set("Authorization", t.auth)
	}
	resp, err := t.client.Do(req)
	if err != nil {
		b.Fatalf("%s: GET %s: %v", t.name, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("%s: GET %s: HTTP %d, %v: %s", t.name, path, resp.StatusCode, err, body)
	}
	return body
}

// startProxy runs this test binary as the bare proxy in front of upstream
// until the benchmark ends; it returns the proxy's URL and process id
// once GET /ping through it answers ClickHouse's "Ok.".
func startProxy(b *testing.B, dir, upstream string) (string, int) {
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), envProxyUpstream+"="+upstream, envProxyUser+"="+chtest.AdminUser, envProxyPassword+"="+chtest.AdminPassword)
	logPath := filepath.Join(dir, "proxy.log")
	logf, err := os.Create(logPath)
	if err != nil {
		b.Fatal(err)
	}
	defer logf.Close()
	cmd.Stderr = logf
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		b.Fatalf("bare proxy: %v", err)
	}
	exited := make(chan struct{})
	b.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			addr <- strings.TrimPrefix(sc.Text(), "listening on ")
		}
		close(addr)
		_, _ = io.Copy(io.Discard, out)
		_ = cmd.Wait()
		close(exited)
	}()
	var a string
	select {
	case a = <-addr:
	case <-time.After(30 * time.Second):
	}
	if a == "" {
		logText, _ := os.ReadFile(logPath)
		b.Fatalf("bare proxy did not start:\n%s", logText)
	}
	base := "http://" + a
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(base + "/ping")
	if err != nil {
		b.Fatalf("bare proxy: GET /ping: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "Ok.\n" {
		b.Fatalf("bare proxy: GET /ping: HTTP %d %q", resp.StatusCode, body)
	}
	return base, cmd.Process.Pid
}

// startClickgate runs bin (`clickgate serve`) with the benchmarks' common
// configuration (benchkit.ClickgateConfig: jwt processor, mapped mode,
// admin → ch_admin) in front of the nodes urls, plus extra, until the
// benchmark ends.
func startClickgate(b *testing.B, bin, jwks, auditMode string, urls []string, extra string) *benchkit.Clickgate {
	dir := b.TempDir()
	cfg := benchkit.ClickgateConfig(jwks, urls[0], benchkit.Account{Role: "admin", User: chtest.AdminUser, Password: chtest.AdminPassword})
	if len(urls) > 1 {
		one := "  url: " + urls[0] + "\n"
		if strings.Count(cfg, one) != 1 {
			b.Fatalf("benchkit.ClickgateConfig has no line %q to replace with clickhouse.urls:\n%s", one, cfg)
		}
		cfg = strings.Replace(cfg, one, "  urls: ["+strings.Join(urls, ", ")+"]\n", 1)
	}
	if auditMode == "file" {
		cfg += fmt.Sprintf("audit: {file: %s}\n", filepath.Join(dir, "session.log"))
	}
	cfg += extra
	return benchkit.StartClickgate(b, benchkit.ClickgateOptions{
		Dir:    dir,
		Binary: bin,
		Config: func(port int) string { return fmt.Sprintf("server:\n  listen: 127.0.0.1:%d\n", port) + cfg },
	})
}

// nodeShare is what the cluster clickgate sent to each node.
type nodeShare struct {
	node     string
	requests float64
}

// checkCluster reads the cluster clickgate's /metrics: every node must
// have had requests, none may have failed, the limiter (when limitsOn)
// must be keeping state for the benchmark's person, and nothing may have
// been refused.
func checkCluster(b *testing.B, base string, limitsOn bool, nodes ...string) []nodeShare {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		b.Fatalf("cluster clickgate: GET /metrics: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("cluster clickgate: GET /metrics: HTTP %d: %s", resp.StatusCode, body)
	}
	values := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			values[line[:i]] = v
		}
	}
	var shares []nodeShare
	for _, n := range nodes {
		host := strings.TrimPrefix(n, "http://")
		req, ok := values[`clickgate_clickhouse_node_requests_total{node="`+host+`"}`]
		if !ok || req == 0 {
			b.Fatalf("cluster clickgate sent no request to node %s (metrics: clickgate_clickhouse_node_requests_total %v)", host, grep(body, "clickgate_clickhouse_node_requests_total"))
		}
		if e := values[`clickgate_clickhouse_node_errors_total{node="`+host+`"}`]; e != 0 {
			b.Fatalf("cluster clickgate: %v requests to node %s failed", e, host)
		}
		shares = append(shares, nodeShare{node: host, requests: req})
	}
	if limitsOn && values["clickgate_limits_people"] < 1 {
		b.Fatalf("cluster clickgate: the limiter keeps no state (clickgate_limits_people %v): are limits on?", grep(body, "clickgate_limits_people"))
	}
	for k, v := range values {
		if strings.HasPrefix(k, "clickgate_limits_refusals_total") && v != 0 {
			b.Fatalf("cluster clickgate refused requests: %s %v", k, v)
		}
	}
	return shares
}

func grep(body []byte, prefix string) []string {
	var out []string
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, prefix) {
			out = append(out, line)
		}
	}
	return out
}

// results are the phases, by target and round.
type results struct {
	sel, tsv [nTargets][]phaseResult
	stream   [nTargets][]streamResult
}

// figure is one measured quantity, by target and round.
type figure struct {
	key, name    string
	unit         string // "req/s", "ms", "MB/s"
	higherBetter bool
	v            [nTargets][]float64
}

func (f *figure) format(x float64) string {
	switch f.unit {
	case "ms":
		return fmt.Sprintf("%.2f ms", x)
	default:
		return fmt.Sprintf("%.0f %s", x, f.unit)
	}
}

// med is the median over rounds of target t.
func (f *figure) med(t int) float64 { return median(f.v[t]) }

// ratio is the median, over rounds, of t's value over base's in the same
// round, with the smallest and largest of the per-round ratios.
func (f *figure) ratio(t, base int) (med, lo, hi float64) {
	r := make([]float64, len(f.v[t]))
	for i := range r {
		r[i] = f.v[t][i] / f.v[base][i]
	}
	return median(r), slices.Min(r), slices.Max(r)
}

// cost is how much worse the cluster clickgate is than the one-node
// clickgate, in per cent (negative: better): for req/s and MB/s the share
// lost, for p99 the share added.
func (f *figure) cost() float64 {
	r, _, _ := f.ratio(tCluster, tClickgate)
	if f.higherBetter {
		return (1 - r) * 100
	}
	return (r - 1) * 100
}

// atLeastProxy says whether t's figure is at or above the bare proxy's:
// req/s and MB/s not lower, p99 not higher (paired medians).
func (f *figure) atLeastProxy(t int) bool {
	r, _, _ := f.ratio(t, tProxy)
	if f.higherBetter {
		return r >= 1
	}
	return r <= 1
}

// cpuCost is how much more CPU the cluster clickgate spends than the
// one-node clickgate per request (per byte for the streams), in per cent:
// the median of the per-round ratios, minus one. Unlike the figures, it
// leaves out ClickHouse, whose work the cluster spreads over two servers.
func (r *report) cpuCost(workload string) (cost float64, ok bool) {
	per := func(t int) []float64 {
		var v []float64
		switch workload {
		case "sel1", "tsv":
			src := r.res.sel
			if workload == "tsv" {
				src = r.res.tsv
			}
			for _, p := range src[t] {
				v = append(v, float64(p.cpu.front)/float64(p.n))
			}
		case "stream":
			for _, s := range r.res.stream[t] {
				v = append(v, float64(s.cpu.front)/float64(s.bytes))
			}
		}
		return v
	}
	one, two := per(tClickgate), per(tCluster)
	var q []float64
	for i := range one {
		if one[i] > 0 {
			q = append(q, two[i]/one[i])
		}
	}
	if len(q) == 0 {
		return 0, false
	}
	return (median(q) - 1) * 100, true
}

func (r *report) figures() []*figure {
	res := r.res
	phase := func(key, name, unit string, hb bool, src *[nTargets][]phaseResult, get func(phaseResult) float64) *figure {
		f := &figure{key: key, name: name, unit: unit, higherBetter: hb}
		for t := range src {
			for _, p := range src[t] {
				f.v[t] = append(f.v[t], get(p))
			}
		}
		return f
	}
	rps := func(p phaseResult) float64 { return p.rps }
	p99 := func(p phaseResult) float64 { return float64(p.p99) / 1e6 }
	fs := []*figure{
		phase("sel1-req/s", fmt.Sprintf("SELECT 1, %d conns: req/s", connections), "req/s", true, &res.sel, rps),
		phase("sel1-p99-ms", fmt.Sprintf("SELECT 1, %d conns: p99", connections), "ms", false, &res.sel, p99),
		phase("tsv-req/s", fmt.Sprintf("%s, %d conns: req/s", r.tsv.name, connections), "req/s", true, &res.tsv, rps),
		phase("tsv-p99-ms", fmt.Sprintf("%s, %d conns: p99", r.tsv.name, connections), "ms", false, &res.tsv, p99),
	}
	if r.streamRows > 0 {
		f := &figure{key: "stream-MB/s", unit: "MB/s", higherBetter: true,
			name: fmt.Sprintf("TSV stream, %s rows (%.0f MB): MB/s", millions(r.streamRows), float64(tsvSize(r.streamRows))/1e6)}
		for t := range res.stream {
			for _, s := range res.stream[t] {
				f.v[t] = append(f.v[t], s.mbps())
			}
		}
		fs = append(fs, f)
	}
	return fs
}

type report struct {
	started               time.Time
	elapsed               time.Duration
	loadBefore, loadAfter string
	chVersion             string
	auditMode             string
	phase                 time.Duration
	rounds                int
	tsvRows, streamRows   int
	targets               [nTargets]*target
	res                   *results
	sel, tsv              workload
	nodes                 []nodeShare
}

func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "\n### Cluster benchmark, %s\n\n", r.started.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "%s, %s/%s, %d CPUs (GOMAXPROCS %d), ClickHouse %s (two servers, nodes A and B), clickgate: `clickgate serve` (go build ./cmd/clickgate), session log %s. ",
		runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), r.chVersion, r.auditMode)
	fmt.Fprintf(w, "Load average before %s, after %s; the run took %s.\n", r.loadBefore, r.loadAfter, r.elapsed.Round(time.Second))
	fmt.Fprintf(w, "%d rounds; in each, every target gets a %s phase of SELECT 1 and of %s at %d keep-alive connections", r.rounds, r.phase, r.tsv.name, connections)
	if r.streamRows > 0 {
		fmt.Fprintf(w, " and one %s-row stream", millions(r.streamRows))
	}
	fmt.Fprintf(w, ", in the order of a row of a balanced 4×4 Latin square. Values: medians over rounds; ratios: medians of the per-round ratios.\n\n")

	fs := r.figures()
	cn := r.targets[tCluster].name
	fmt.Fprintf(w, "| figure | direct (node A) | bare ReverseProxy | clickgate, 1 node | %s |\n", cn)
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: |")
	for _, f := range fs {
		fmt.Fprintf(w, "| %s | %s |", f.name, f.format(f.med(tDirect)))
		for t := tProxy; t < nTargets; t++ {
			q, _, _ := f.ratio(t, tDirect)
			fmt.Fprintf(w, " %s (**%.2f**) |", f.format(f.med(t)), q)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "\n(in parentheses: ratio to direct; for p99 above 1 is slower)")

	fmt.Fprintf(w, "\n| figure | %s vs clickgate, 1 node: cost | ≤ 5 %%? | clickgate, 1 node / proxy | %s / proxy | every clickgate ≥ proxy? |\n", cn, cn)
	fmt.Fprintln(w, "| --- | ---: | --- | ---: | ---: | --- |")
	for _, f := range fs {
		c := f.cost()
		_, clo, chi := f.ratio(tCluster, tClickgate)
		fmt.Fprintf(w, "| %s | %+.1f %% (ratios %.2f … %.2f) | %s |", f.name, c, clo, chi, benchkit.YesNo(c <= 5))
		for _, t := range []int{tClickgate, tCluster} {
			q, lo, hi := f.ratio(t, tProxy)
			fmt.Fprintf(w, " %.2f (%.2f … %.2f) |", q, lo, hi)
		}
		fmt.Fprintf(w, " %s |\n", benchkit.YesNo(f.atLeastProxy(tClickgate) && f.atLeastProxy(tCluster)))
	}
	fmt.Fprintln(w, "\n(cost: positive is worse — req/s or MB/s lost, p99 added; in parentheses the smallest and largest per-round ratio. Ratios to the proxy: for p99 at or below 1 is at or above the proxy.)")

	fmt.Fprintln(w, "\nPer round (in run order), req/s of SELECT 1 | of "+r.tsv.name+" | stream MB/s:")
	fmt.Fprintln(w)
	for i := 0; i < r.rounds; i++ {
		fmt.Fprintf(w, "- round %d:", i+1)
		for _, t := range latin[i%4] {
			fmt.Fprintf(w, " %s %.0f | %.0f", r.targets[t].key, r.res.sel[t][i].rps, r.res.tsv[t][i].rps)
			if r.streamRows > 0 {
				fmt.Fprintf(w, " | %.0f", r.res.stream[t][i].mbps())
			}
			fmt.Fprint(w, ";")
		}
		fmt.Fprintln(w)
	}

	var total float64
	for _, n := range r.nodes {
		total += n.requests
	}
	fmt.Fprint(w, "\nThe cluster clickgate's requests by node (clickgate_clickhouse_node_requests_total, the whole run):")
	for i, n := range r.nodes {
		fmt.Fprintf(w, " %s %s %.0f (%.0f %%)", string(rune('A'+i)), n.node, n.requests, 100*n.requests/total)
	}
	fmt.Fprintln(w, "; none failed, none refused.")

	fmt.Fprintf(w, "\nclickgate's own CPU, %s against clickgate, 1 node (median of the per-round ratios of CPU per request, per byte for the streams; ClickHouse left out):", r.targets[tCluster].name)
	for _, c := range []struct{ key, name string }{{"sel1", "SELECT 1"}, {"tsv", r.tsv.name}, {"stream", "stream"}} {
		if v, ok := r.cpuCost(c.key); ok {
			fmt.Fprintf(w, " %s %+.1f %%;", c.name, v)
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "\nCPU time per request (medians over rounds; utime+stime from /proc/PID/stat, 10 ms ticks):\n\n")
	fmt.Fprintln(w, "| workload | target | proxy or clickgate | ClickHouse A | ClickHouse B | load generator | all |")
	fmt.Fprintln(w, "| --- | --- | ---: | ---: | ---: | ---: | ---: |")
	for _, wl := range []struct {
		name string
		src  *[nTargets][]phaseResult
	}{{"SELECT 1", &r.res.sel}, {r.tsv.name, &r.res.tsv}} {
		for t := range nTargets {
			per := func(get func(cpu) time.Duration) time.Duration {
				v := make([]float64, len(wl.src[t]))
				for i, p := range wl.src[t] {
					v[i] = float64(get(p.cpu)) / float64(p.n)
				}
				return time.Duration(median(v))
			}
			front := per(func(c cpu) time.Duration { return c.front })
			a := per(func(c cpu) time.Duration { return c.chA })
			bb := per(func(c cpu) time.Duration { return c.chB })
			self := per(func(c cpu) time.Duration { return c.self })
			fs := "—"
			if t != tDirect {
				fs = us(front)
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", wl.name, r.targets[t].name, fs, us(a), us(bb), us(self), us(front+a+bb+self))
		}
	}
	if r.streamRows > 0 {
		fmt.Fprintf(w, "\nCPU time per GB of the streams (all %d rounds):\n\n", r.rounds)
		fmt.Fprintln(w, "| target | proxy or clickgate | ClickHouse A | ClickHouse B | load generator |")
		fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: |")
		for t := range nTargets {
			var sum cpu
			var n int64
			for _, s := range r.res.stream[t] {
				sum = cpu{sum.front + s.cpu.front, sum.chA + s.cpu.chA, sum.chB + s.cpu.chB, sum.self + s.cpu.self}
				n += s.bytes
			}
			gb := func(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()/(float64(n)/1e9)) }
			fs := "—"
			if t != tDirect {
				fs = gb(sum.front)
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", r.targets[t].name, fs, gb(sum.chA), gb(sum.chB), gb(sum.self))
		}
	}
	fmt.Fprintln(w)
}

// metrics reports, per figure, direct's value, each target's ratio to
// direct, the cluster's cost against the one-node clickgate, and how many
// clickgate figures fell below the bare proxy's.
func (r *report) metrics(b *testing.B) {
	below := 0
	for _, f := range r.figures() {
		b.ReportMetric(f.med(tDirect), f.key+"-direct")
		for t := tProxy; t < nTargets; t++ {
			q, _, _ := f.ratio(t, tDirect)
			b.ReportMetric(q, f.key+"-x-"+r.targets[t].key)
		}
		b.ReportMetric(f.cost(), f.key+"-cg2-cost-%")
		for _, t := range []int{tClickgate, tCluster} {
			if !f.atLeastProxy(t) {
				below++
			}
		}
	}
	for _, k := range []string{"sel1", "tsv", "stream"} {
		if v, ok := r.cpuCost(k); ok {
			b.ReportMetric(v, k+"-cg2-cpu-cost-%")
		}
	}
	b.ReportMetric(float64(below), "clickgate-figures-below-proxy")
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/1e3) }

func millions(n int) string {
	if n%1_000_000 == 0 {
		return fmt.Sprintf("%dM", n/1_000_000)
	}
	return thousands(n)
}

// thousands writes n with commas: 10,000.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
