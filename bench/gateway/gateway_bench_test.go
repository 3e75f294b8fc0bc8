//go:build linux

package gateway_test

// BenchmarkGateway measures clickgate's gateway against the same ClickHouse
// reached directly, in one run, phases interleaved (direct and through
// clickgate alternate, the order flipping every round) so that load from
// other jobs on the machine hits both sides alike. It runs only when
// CLICKGATE_BENCH_GATEWAY is set (`make bench` sets it); otherwise it skips
// at once, so `make test` (-bench . -benchtime 1x) stays fast. It never
// fails on slow figures: it prints them, with the targets, in a table.
//
// clickgate is built from ./cmd/clickgate and run as its own process
// (`clickgate serve --config …`), so that its memory can be read from
// /proc/PID/status while a multi-GB result streams through it.
//
// Knobs (environment):
//
//	CLICKGATE_BENCH_GATEWAY=1          run at all
//	CLICKGATE_BENCH_PHASE=4s           length of each SELECT 1 phase at 16 connections (at 1 connection: 3/8 of it)
//	CLICKGATE_BENCH_ROUNDS=5           rounds (each: one direct and one clickgate phase)
//	CLICKGATE_BENCH_STREAM_ROWS=20000000    rows of the interleaved TSV streams
//	CLICKGATE_BENCH_BIG_ROWS=200000000 rows of the large stream (3.78 GB of TSV); 0 skips it
//	CLICKGATE_BENCH_AUDIT=file         the session log: "file" (a JSON line per request to a file) or "off"
//	CLICKGATE_BENCH_CPUPROFILE=path    instead of the built binary, run the same server
//	                                   (config.Load, server.New, Serve) in a child process that
//	                                   writes a CPU profile to path and an allocation profile to path.heap
//	                                   (clickgate itself has no profiling flag)

import (
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/clickgate/clickgate/bench/internal/benchkit"
	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/testkit"
)

const (
	envRun         = "CLICKGATE_BENCH_GATEWAY"
	envPhase       = "CLICKGATE_BENCH_PHASE"
	envRounds      = "CLICKGATE_BENCH_ROUNDS"
	envStreamRows  = "CLICKGATE_BENCH_STREAM_ROWS"
	envBigRows     = "CLICKGATE_BENCH_BIG_ROWS"
	envAudit       = "CLICKGATE_BENCH_AUDIT"
	envCPUProfile  = "CLICKGATE_BENCH_CPUPROFILE"
	envServeConfig = "CLICKGATE_BENCH_SERVE_CONFIG" // internal: child process mode
	envServeProf   = "CLICKGATE_BENCH_SERVE_PROFILE"

	connections = 16
)

// TestMain turns the test binary into a profiled clickgate server when the
// benchmark starts it with envServeConfig; otherwise it runs the tests.
func TestMain(m *testing.M) {
	benchkit.Profiled{ConfigEnv: envServeConfig, ProfileEnv: envServeProf}.Main(m)
}

// target is one way to reach ClickHouse: directly or through clickgate.
type target struct {
	name   string
	url    string // base URL, no trailing slash
	auth   string // Authorization header value
	pid    int    // the server process in front (ClickHouse or clickgate)
	client *http.Client
}

func newClient() *http.Client { return benchkit.KeepAliveClient(10*time.Minute, 4*connections) }

func BenchmarkGateway(b *testing.B) {
	if os.Getenv(envRun) == "" {
		b.Skipf("set %s=1 to run (make bench does); it takes about two minutes", envRun)
	}
	phase := benchkit.EnvDuration(b, envPhase, 4*time.Second)
	rounds := benchkit.EnvInt(b, envRounds, 5, 0)
	streamRows := benchkit.EnvInt(b, envStreamRows, 20_000_000, 0)
	bigRows := benchkit.EnvInt(b, envBigRows, 200_000_000, 0)
	auditMode := os.Getenv(envAudit)
	if auditMode == "" {
		auditMode = "file"
	}
	if rounds < 1 {
		rounds = 1
	}
	started := time.Now()
	loadBefore := benchkit.LoadAvg()

	ch := chtest.Start(b, chtest.Options{})
	chPID = ch.PID
	direct := &target{name: "direct", url: ch.HTTPURL, auth: basic(chtest.AdminUser, chtest.AdminPassword), pid: ch.PID, client: newClient()}
	cg, info := startClickgate(b, ch, auditMode)
	cg.client = newClient()

	// Both ways run as ch_admin; the first request through clickgate
	// verifies the token, every later one finds it in the cache.
	for _, t := range []*target{direct, cg} {
		if got := query(b, t, chtest.CurrentUserSQL()); got != chtest.AdminUser {
			b.Fatalf("%s runs as %q, want %s", t.name, got, chtest.AdminUser)
		}
	}
	// Warm up: connections, ClickHouse's caches, the gateway's pool.
	for _, t := range []*target{direct, cg} {
		runLoad(b, t, connections, time.Second)
	}

	var sel16, sel1 [2][]loadResult
	for r := 0; r < rounds; r++ {
		for _, i := range order(r) {
			sel16[i] = append(sel16[i], runLoad(b, []*target{direct, cg}[i], connections, phase))
		}
	}
	short := phase * 3 / 8
	for r := 0; r < rounds; r++ {
		for _, i := range order(r) {
			sel1[i] = append(sel1[i], runLoad(b, []*target{direct, cg}[i], 1, short))
		}
	}
	var streams [2][]streamResult
	for r := 0; r < rounds; r++ {
		for _, i := range order(r) {
			streams[i] = append(streams[i], stream(b, []*target{direct, cg}[i], streamRows, nil))
		}
	}
	for _, s := range streams {
		for _, x := range s {
			if x.bytes != streams[0][0].bytes {
				b.Fatalf("streams differ in size: %d and %d bytes", x.bytes, streams[0][0].bytes)
			}
		}
	}
	var bigDirect, bigCG streamResult
	var mem memResult
	if bigRows > 0 {
		bigDirect = stream(b, direct, bigRows, nil)
		mem.before = benchkit.ReadMemory(cg.pid)
		benchkit.ResetPeak(cg.pid)
		bigCG = stream(b, cg, bigRows, func(stop <-chan struct{}) { mem.sample(cg.pid, stop) })
		mem.after = benchkit.ReadMemory(cg.pid)
		if bigCG.bytes != bigDirect.bytes {
			b.Fatalf("large stream: %d bytes direct, %d through clickgate", bigDirect.bytes, bigCG.bytes)
		}
	}

	rep := report{
		started: started, elapsed: time.Since(started), chVersion: ch.Version, info: info,
		loadBefore: loadBefore, loadAfter: benchkit.LoadAvg(), phase: phase, short: short, rounds: rounds,
		streamRows: streamRows, bigRows: bigRows, auditMode: auditMode,
		sel16: sel16, sel1: sel1, streams: streams, bigDirect: bigDirect, bigCG: bigCG, mem: mem,
	}
	rep.print(os.Stdout)

	d, c := medianResult(sel16[0]), medianResult(sel16[1])
	b.ReportMetric(d.rps, "direct-req/s")
	b.ReportMetric(c.rps, "clickgate-req/s")
	b.ReportMetric(rep.rpsRatio(sel16), "req/s-ratio")
	b.ReportMetric(float64(rep.added(sel16, p99Of))/1e6, "p99-added-ms")
	b.ReportMetric(rep.streamRatio(), "stream-ratio")
	if bigRows > 0 {
		b.ReportMetric(float64(mem.maxRSS)/(1<<20), "max-RSS-MiB")
	}
}

// order alternates which side goes first, so that neither always runs
// right after the other's warm-up or under the same drift.
func order(round int) []int {
	if round%2 == 0 {
		return []int{0, 1}
	}
	return []int{1, 0}
}

func basic(user, pw string) string {
	r, _ := http.NewRequest("GET", "/", nil)
	r.SetBasicAuth(user, pw)
	return r.Header.Get("Authorization")
}

// clickgateInfo describes how clickgate ran.
type clickgateInfo struct {
	binary  string // what ran: the built binary or the profiled child
	profile string
}

// startClickgate writes a configuration (jwt processor with a JWKS file,
// mapped mode, ch-admin → ch_admin) and runs `clickgate serve` until the
// benchmark ends (benchkit.StartClickgate). It returns the target with a
// fresh token for bench@example.com in group ch-admin.
func startClickgate(b *testing.B, ch *chtest.Server, auditMode string) (*target, clickgateInfo) {
	dir := b.TempDir()
	key := testkit.NewKey(b, jose.ES256, "k1")
	jwks := testkit.WriteJWKS(b, dir, key)
	tok := key.Sign(b, testkit.Claims(benchkit.Issuer, "clickhouse", "bench@example.com", "ch-admin"))
	audit := ""
	switch auditMode {
	case "file":
		audit = fmt.Sprintf("audit: {file: %s}\n", filepath.Join(dir, "session.log"))
	case "off":
	default:
		b.Fatalf("%s=%q: want file or off", envAudit, auditMode)
	}
	cg := benchkit.StartClickgate(b, benchkit.ClickgateOptions{
		Dir: dir,
		Config: func(port int) string {
			return fmt.Sprintf("server:\n  listen: 127.0.0.1:%d\n", port) +
				benchkit.ClickgateConfig(jwks, ch.HTTPURL, benchkit.Account{Role: "admin", User: chtest.AdminUser, Password: chtest.AdminPassword}) +
				audit
		},
		Profile:  os.Getenv(envCPUProfile),
		Profiled: benchkit.Profiled{ConfigEnv: envServeConfig, ProfileEnv: envServeProf},
	})
	info := clickgateInfo{binary: "clickgate serve (go build ./cmd/clickgate)"}
	if cg.Profile != "" {
		info = clickgateInfo{binary: "profiled child (server.New + Serve in the test binary)", profile: cg.Profile}
	}
	return &target{name: "clickgate", url: cg.URL, auth: "Bearer " + tok, pid: cg.PID}, info
}

func query(b *testing.B, t *target, sql string) string {
	req, _ := http.NewRequest("POST", t.url+"/", strings.NewReader(sql))
	req.Header.Set("Authorization", t.auth)
	resp, err := t.client.Do(req)
	if err != nil {
		b.Fatalf("%s: %v", t.name, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("%s: %s: HTTP %d: %s", t.name, sql, resp.StatusCode, body)
	}
	return strings.TrimSpace(string(body))
}

// loadResult is one phase of SELECT 1 requests.
type loadResult struct {
	n, errs  int
	firstErr string
	elapsed  time.Duration
	rps      float64
	p50, p99 time.Duration
	// CPU time per request, of the server in front, of ClickHouse (when
	// it is not the server in front) and of this load generator.
	cpuFront, cpuCH, cpuSelf time.Duration
}

var selectOneQuery = "/?query=" + url.QueryEscape("SELECT 1")

// runLoad sends SELECT 1 from conns goroutines, each on its own keep-alive
// connection, one request after another, until dur has passed.
func runLoad(b *testing.B, t *target, conns int, dur time.Duration) loadResult {
	lats := make([][]time.Duration, conns)
	var errs atomic.Int64
	var firstErr atomic.Value
	fail := func(s string) {
		errs.Add(1)
		firstErr.CompareAndSwap(nil, s)
	}
	cpu0 := [3]time.Duration{benchkit.ProcCPU(t.pid), benchkit.ProcCPU(chPID), benchkit.ProcCPU(os.Getpid())}
	start := time.Now()
	deadline := start.Add(dur)
	var wg sync.WaitGroup
	for g := 0; g < conns; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			buf := make([]byte, 512)
			l := make([]time.Duration, 0, 1<<16)
			for time.Now().Before(deadline) {
				t0 := time.Now()
				req, _ := http.NewRequest("GET", t.url+selectOneQuery, nil)
				req.Header.Set("Authorization", t.auth)
				resp, err := t.client.Do(req)
				if err != nil {
					fail(err.Error())
					time.Sleep(time.Millisecond)
					continue
				}
				n, _ := io.ReadFull(resp.Body, buf)
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				d := time.Since(t0)
				if resp.StatusCode != http.StatusOK || string(buf[:n]) != "1\n" {
					fail(fmt.Sprintf("HTTP %d: %q", resp.StatusCode, buf[:n]))
					continue
				}
				l = append(l, d)
			}
			lats[g] = l
		}(g)
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	r := loadResult{n: len(all), errs: int(errs.Load()), elapsed: elapsed}
	if s, ok := firstErr.Load().(string); ok {
		r.firstErr = s
	}
	if r.errs*100 > r.n+r.errs {
		b.Fatalf("%s: %d of %d requests failed, first: %s", t.name, r.errs, r.n+r.errs, r.firstErr)
	}
	if r.n == 0 {
		b.Fatalf("%s: no request completed", t.name)
	}
	r.rps = float64(r.n) / elapsed.Seconds()
	r.p50, r.p99 = benchkit.SortedPercentile(all, 50), benchkit.SortedPercentile(all, 99)
	per := func(d time.Duration) time.Duration { return d / time.Duration(r.n) }
	r.cpuFront = per(benchkit.ProcCPU(t.pid) - cpu0[0])
	if t.pid != chPID {
		r.cpuCH = per(benchkit.ProcCPU(chPID) - cpu0[1])
	}
	r.cpuSelf = per(benchkit.ProcCPU(os.Getpid()) - cpu0[2])
	return r
}

// chPID is ClickHouse's process, for CPU accounting.
var chPID int

// streamResult is one TSV stream read to its end.
type streamResult struct {
	bytes   int64
	elapsed time.Duration
	// CPU time of the server in front, of ClickHouse (when it is not in
	// front) and of this process while the stream ran.
	cpuFront, cpuCH, cpuSelf time.Duration
}

func (s streamResult) mbps() float64 { return float64(s.bytes) / 1e6 / s.elapsed.Seconds() }

// stream reads `SELECT number, toString(number) FROM system.numbers LIMIT
// rows FORMAT TSV` to its end; during runs while it does.
func stream(b *testing.B, t *target, rows int, during func(stop <-chan struct{})) streamResult {
	q := fmt.Sprintf("SELECT number, toString(number) FROM system.numbers LIMIT %d FORMAT TSV", rows)
	req, _ := http.NewRequest("GET", t.url+"/?query="+url.QueryEscape(q), nil)
	req.Header.Set("Authorization", t.auth)
	stop := make(chan struct{})
	done := make(chan struct{})
	if during != nil {
		go func() { during(stop); close(done) }()
	} else {
		close(done)
	}
	cpu0 := [3]time.Duration{benchkit.ProcCPU(t.pid), benchkit.ProcCPU(chPID), benchkit.ProcCPU(os.Getpid())}
	t0 := time.Now()
	resp, err := t.client.Do(req)
	if err != nil {
		b.Fatalf("%s stream: %v", t.name, err)
	}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		b.Fatalf("%s stream: HTTP %d: %s", t.name, resp.StatusCode, body)
	}
	n, last, err := benchkit.Drain(resp.Body)
	if err != nil {
		resp.Body.Close()
		b.Fatalf("%s stream after %d bytes: %v", t.name, n, err)
	}
	resp.Body.Close()
	elapsed := time.Since(t0)
	close(stop)
	<-done
	if want := fmt.Sprintf("%d\t%d\n", rows-1, rows-1); !strings.HasSuffix(string(last), want) {
		b.Fatalf("%s stream ends with %q, want …%q (an exception mid-stream?)", t.name, last, want)
	}
	r := streamResult{bytes: n, elapsed: elapsed, cpuFront: benchkit.ProcCPU(t.pid) - cpu0[0], cpuSelf: benchkit.ProcCPU(os.Getpid()) - cpu0[2]}
	if t.pid != chPID {
		r.cpuCH = benchkit.ProcCPU(chPID) - cpu0[1]
	}
	return r
}

// memResult is clickgate's memory around and during the large stream.
type memResult struct {
	before, after benchkit.Memory
	maxRSS        int64 // largest VmRSS sampled, bytes
	samples       int
	series        []int64 // VmRSS of every sample
}

func (m *memResult) sample(pid int, stop <-chan struct{}) {
	benchkit.SampleMemory(pid, 100*time.Millisecond, stop, func(s benchkit.Memory) {
		m.samples++
		m.series = append(m.series, s.RSS)
		m.maxRSS = max(m.maxRSS, s.RSS, s.HWM)
	})
}

func medianResult(rs []loadResult) loadResult {
	pick := func(get func(loadResult) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = get(r)
		}
		return median(v)
	}
	return loadResult{
		rps:      pick(func(r loadResult) float64 { return r.rps }),
		p50:      time.Duration(pick(func(r loadResult) float64 { return float64(r.p50) })),
		p99:      time.Duration(pick(func(r loadResult) float64 { return float64(r.p99) })),
		cpuFront: time.Duration(pick(func(r loadResult) float64 { return float64(r.cpuFront) })),
		cpuCH:    time.Duration(pick(func(r loadResult) float64 { return float64(r.cpuCH) })),
		cpuSelf:  time.Duration(pick(func(r loadResult) float64 { return float64(r.cpuSelf) })),
	}
}

func medianStream(s []streamResult) float64 {
	v := make([]float64, len(s))
	for i, x := range s {
		v[i] = x.mbps()
	}
	return median(v)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

type report struct {
	started             time.Time
	elapsed             time.Duration
	chVersion           string
	info                clickgateInfo
	loadBefore          string
	loadAfter           string
	phase, short        time.Duration
	rounds              int
	streamRows, bigRows int
	auditMode           string
	sel16, sel1         [2][]loadResult
	streams             [2][]streamResult
	bigDirect, bigCG    streamResult
	mem                 memResult
}

// The ratios and added latencies are paired: computed per round (the
// direct and clickgate phases of one round ran back to back) and then
// the median taken, which cancels most of the drift of a shared machine.

func (r *report) rpsRatio(sel [2][]loadResult) float64 {
	v := make([]float64, len(sel[0]))
	for i := range v {
		v[i] = sel[1][i].rps / sel[0][i].rps
	}
	return median(v)
}

func p50Of(l loadResult) time.Duration { return l.p50 }
func p99Of(l loadResult) time.Duration { return l.p99 }

func (r *report) added(sel [2][]loadResult, q func(loadResult) time.Duration) time.Duration {
	v := make([]float64, len(sel[0]))
	for i := range v {
		v[i] = float64(q(sel[1][i]) - q(sel[0][i]))
	}
	return time.Duration(median(v))
}

func (r *report) streamRatio() float64 {
	v := make([]float64, len(r.streams[0]))
	for i := range v {
		v[i] = r.streams[1][i].mbps() / r.streams[0][i].mbps()
	}
	return median(v)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }

func signedMs(d time.Duration) string {
	if d < 0 {
		return fmt.Sprintf("−%.2f ms", float64(-d)/1e6)
	}
	return fmt.Sprintf("+%.2f ms", float64(d)/1e6)
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/1e3) }

// perGB is CPU time per 10^9 bytes streamed.
func perGB(cpu time.Duration, bytes int64) string {
	return fmt.Sprintf("%.2f s", cpu.Seconds()/(float64(bytes)/1e9))
}

func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "\n### Gateway benchmark, %s\n\n", r.started.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "%s, %s/%s, %d CPUs (GOMAXPROCS %d), ClickHouse %s, clickgate: %s, session log: %s.\n",
		runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), r.chVersion, r.info.binary, r.auditMode)
	fmt.Fprintf(w, "Load average before %s, after %s; the run took %s.\n", r.loadBefore, r.loadAfter, r.elapsed.Round(time.Second))
	fmt.Fprintf(w, "SELECT 1 (GET ?query=, keep-alive): %d rounds of %s per side at %d connections, then %d rounds of %s at 1 connection; ", r.rounds, r.phase, connections, r.rounds, r.short)
	fmt.Fprintf(w, "TSV streams of %d rows: %d rounds per side. Sides alternate within a round, the order flipping each round. ", r.streamRows, r.rounds)
	fmt.Fprintf(w, "Columns direct and through clickgate: medians of the rounds; ratio and added latency: medians of the per-round pairs.\n\n")

	d16, c16 := medianResult(r.sel16[0]), medianResult(r.sel16[1])
	d1, c1 := medianResult(r.sel1[0]), medianResult(r.sel1[1])
	sd, sc := medianStream(r.streams[0]), medianStream(r.streams[1])
	ratio16, add99 := r.rpsRatio(r.sel16), r.added(r.sel16, p99Of)
	sratio := r.streamRatio()

	fmt.Fprintln(w, "| metric | direct | through clickgate | ratio / added | target | met? |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | --- | --- |")
	fmt.Fprintf(w, "| SELECT 1, %d conns: req/s | %.0f | %.0f | %.2f | ≥ 0.90 | %s |\n", connections, d16.rps, c16.rps, ratio16, benchkit.YesNo(ratio16 >= 0.90))
	fmt.Fprintf(w, "| SELECT 1, %d conns: p50 | %s | %s | %s | — | |\n", connections, ms(d16.p50), ms(c16.p50), signedMs(r.added(r.sel16, p50Of)))
	fmt.Fprintf(w, "| SELECT 1, %d conns: p99 | %s | %s | %s | added ≤ 1 ms | %s |\n", connections, ms(d16.p99), ms(c16.p99), signedMs(add99), benchkit.YesNo(add99 <= time.Millisecond))
	fmt.Fprintf(w, "| SELECT 1, 1 conn: req/s | %.0f | %.0f | %.2f | — | |\n", d1.rps, c1.rps, r.rpsRatio(r.sel1))
	fmt.Fprintf(w, "| SELECT 1, 1 conn: p50 | %s | %s | %s | — | |\n", ms(d1.p50), ms(c1.p50), signedMs(r.added(r.sel1, p50Of)))
	fmt.Fprintf(w, "| SELECT 1, 1 conn: p99 | %s | %s | %s | — | |\n", ms(d1.p99), ms(c1.p99), signedMs(r.added(r.sel1, p99Of)))
	fmt.Fprintf(w, "| TSV stream, %s rows (%.0f MB): MB/s | %.0f | %.0f | %.2f | ≥ 0.95 | %s |\n", millions(r.streamRows), float64(r.streams[0][0].bytes)/1e6, sd, sc, sratio, benchkit.YesNo(sratio >= 0.95))
	if r.bigRows > 0 {
		fmt.Fprintf(w, "| TSV stream, %s rows (%.2f GB): MB/s | %.0f | %.0f | %.2f | — (one run each) | |\n", millions(r.bigRows), float64(r.bigDirect.bytes)/1e9, r.bigDirect.mbps(), r.bigCG.mbps(), r.bigCG.mbps()/r.bigDirect.mbps())
		fmt.Fprintf(w, "| clickgate max RSS during the %s-row stream | | %.1f MiB | | ≤ 64 MB | %s |\n", millions(r.bigRows), mib(r.mem.maxRSS), benchkit.YesNo(r.mem.maxRSS <= 64<<20))
	}

	fmt.Fprintln(w, "\nPer round, direct → through clickgate:")
	fmt.Fprintln(w)
	for i := range r.sel16[0] {
		d, c := r.sel16[0][i], r.sel16[1][i]
		fmt.Fprintf(w, "- round %d: %d conns %.0f → %.0f req/s (%.2f), p99 %s → %s", i+1, connections, d.rps, c.rps, c.rps/d.rps, ms(d.p99), ms(c.p99))
		if d.errs+c.errs > 0 {
			fmt.Fprintf(w, ", errors %d, %d", d.errs, c.errs)
		}
		d, c = r.sel1[0][i], r.sel1[1][i]
		fmt.Fprintf(w, "; 1 conn %.0f → %.0f req/s, p99 %s → %s", d.rps, c.rps, ms(d.p99), ms(c.p99))
		fmt.Fprintf(w, "; stream %.0f → %.0f MB/s (%.2f)\n", r.streams[0][i].mbps(), r.streams[1][i].mbps(), r.streams[1][i].mbps()/r.streams[0][i].mbps())
	}
	for i, rs := range [][]loadResult{r.sel16[0], r.sel16[1], r.sel1[0], r.sel1[1]} {
		for _, x := range rs {
			if x.firstErr != "" {
				fmt.Fprintf(w, "- %s: first error: %s\n", []string{"direct", "clickgate", "direct, 1 conn", "clickgate, 1 conn"}[i], x.firstErr)
				break
			}
		}
	}

	// On a machine whose CPUs are all busy (the load generator, ClickHouse
	// and clickgate share 2 CPUs), req/s is bounded by the CPU time a
	// request costs in all three processes together.
	dTot := d16.cpuFront + d16.cpuSelf
	cTot := c16.cpuFront + c16.cpuCH + c16.cpuSelf
	fmt.Fprintf(w, "\nCPU time per request, SELECT 1 at %d conns (medians; utime+stime from /proc/PID/stat, 10 ms ticks):\n\n", connections)
	fmt.Fprintln(w, "| path | clickgate | ClickHouse | load generator | all three |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: |")
	fmt.Fprintf(w, "| direct | — | %s | %s | %s |\n", us(d16.cpuFront), us(d16.cpuSelf), us(dTot))
	fmt.Fprintf(w, "| through clickgate | %s | %s | %s | %s |\n", us(c16.cpuFront), us(c16.cpuCH), us(c16.cpuSelf), us(cTot))
	fmt.Fprintf(w, "\nWith every CPU busy, req/s through clickgate can be at most %.2f of direct (CPU per request direct / through). ", float64(dTot)/float64(cTot))
	fmt.Fprintf(w, "For the 0.90 target clickgate and the extra work it causes would have to fit in %s per request here.\n", us(time.Duration(float64(dTot)/0.90)-dTot))

	var sbytes int64
	var scg, sch, sself, dch, dself time.Duration
	for i := range r.streams[0] {
		sbytes += r.streams[1][i].bytes
		scg += r.streams[1][i].cpuFront
		sch += r.streams[1][i].cpuCH
		sself += r.streams[1][i].cpuSelf
		dch += r.streams[0][i].cpuFront
		dself += r.streams[0][i].cpuSelf
	}
	fmt.Fprintf(w, "\nCPU time per GB of TSV (%d streams of %s rows per side):\n\n", r.rounds, millions(r.streamRows))
	fmt.Fprintln(w, "| path | clickgate | ClickHouse | load generator |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: |")
	fmt.Fprintf(w, "| direct | — | %s | %s |\n", perGB(dch, sbytes), perGB(dself, sbytes))
	fmt.Fprintf(w, "| through clickgate | %s | %s | %s |\n", perGB(scg, sbytes), perGB(sch, sbytes), perGB(sself, sbytes))

	if r.bigRows > 0 {
		m := r.mem
		fmt.Fprintf(w, "\nclickgate memory: VmRSS %.1f MiB before the %s-row stream, %.1f MiB after; during it (%d samples, every 100 ms) min %.1f, max %.1f MiB; VmHWM %.1f MiB over the whole run before the stream, %.1f MiB over the stream (reset through clear_refs before it).\n",
			mib(m.before.RSS), millions(r.bigRows), mib(m.after.RSS), m.samples, mib(minOf(m.series)), mib(maxOf(m.series)), mib(m.before.HWM), mib(m.after.HWM))
	}
	if r.info.profile != "" {
		fmt.Fprintf(w, "\nCPU profile of the server: %s (allocations: %s.heap); go tool pprof -top -cum %s\n", r.info.profile, r.info.profile, r.info.profile)
	}
	fmt.Fprintln(w)
}

func mib(n int64) float64 { return float64(n) / (1 << 20) }

func minOf(v []int64) int64 {
	if len(v) == 0 {
		return 0
	}
	m := v[0]
	for _, x := range v {
		m = min(m, x)
	}
	return m
}

func maxOf(v []int64) int64 {
	var m int64
	for _, x := range v {
		m = max(m, x)
	}
	return m
}

func millions(n int) string {
	if n%1_000_000 == 0 {
		return fmt.Sprintf("%dM", n/1_000_000)
	}
	return strconv.Itoa(n)
}
