//go:build linux

package gateway_test

// BenchmarkGatewayBase measures what a change to clickgate costs on
// SELECT 1 through the gateway, as a ratio new/base in one run: two
// clickgate binaries — "base" (CLICKGATE_BENCH_BASE_BINARY, built from an
// older commit) and "new" (built from ./cmd/clickgate, or
// CLICKGATE_BENCH_NEW_BINARY) — each run as its own process with the same
// configuration in front of one ClickHouse. Requests to the two alternate
// in blocks (base, new, new, base, …), so that drift and load from other
// jobs hit both alike. It runs only when CLICKGATE_BENCH_BASE_BINARY is
// set; otherwise it skips at once. Like BenchmarkGateway it never fails on
// slow figures, only on wrong answers.
//
// Each configuration runs on both binaries: the benchmark's (mapped mode,
// ch-admin → ch_admin, the session log as CLICKGATE_BENCH_AUDIT says) and
// the same with clickhouse.settings fixed (max_result_rows and
// max_execution_time), under which clickgate also appends settings and
// checks the SQL text for them. Each sends SELECT 1 as GET ?query= and as
// a POST body.
//
// Knobs (environment):
//
//	CLICKGATE_BENCH_BASE_BINARY=path   the base clickgate; run at all
//	CLICKGATE_BENCH_NEW_BINARY=path    the new clickgate (default: go build ./cmd/clickgate)
//	CLICKGATE_BENCH_BASE_ROUNDS=5      rounds
//	CLICKGATE_BENCH_BASE_REQUESTS=2000 requests per round, per case (configuration × method) and binary
//	CLICKGATE_BENCH_BASE_BLOCK=100     requests per block; blocks of the two binaries alternate
//	CLICKGATE_BENCH_BASE_CONNS=1       connections sending at once (1: latency without queueing)
//	CLICKGATE_BENCH_BASE_METHODS=GET,POST  the ways of sending SELECT 1 (GET ?query=, POST body)
//	CLICKGATE_BENCH_AUDIT=file         as for BenchmarkGateway
//	CLICKGATE_BENCH_BASE_CPUPROFILE=path  instead of the new binary, run this tree's server as the
//	                                   test binary's profiled child (as CLICKGATE_BENCH_CPUPROFILE does
//	                                   for BenchmarkGateway): CPU profiles to path (mapped) and
//	                                   path.settings (with settings), allocations to each + ".heap"

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
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
	envBaseBinary   = "CLICKGATE_BENCH_BASE_BINARY"
	envNewBinary    = "CLICKGATE_BENCH_NEW_BINARY"
	envBaseRounds   = "CLICKGATE_BENCH_BASE_ROUNDS"
	envBaseRequests = "CLICKGATE_BENCH_BASE_REQUESTS"
	envBaseBlock    = "CLICKGATE_BENCH_BASE_BLOCK"
	envBaseConns    = "CLICKGATE_BENCH_BASE_CONNS"
	envBaseProfile  = "CLICKGATE_BENCH_BASE_CPUPROFILE"
	envBaseMethods  = "CLICKGATE_BENCH_BASE_METHODS"
)

// The two binaries, as indexes.
const (
	sideBase = iota
	sideNew
)

var sideNames = [2]string{"base", "new"}

// baseConfig is one clickgate configuration, run on both binaries.
type baseConfig struct {
	name   string // in tables
	metric string // in metric names
	extra  string // YAML appended to the clickhouse: block
	// profile is appended to CLICKGATE_BENCH_BASE_CPUPROFILE for this
	// configuration's profile.
	profile string
}

var baseConfigs = []baseConfig{
	{name: "mapped", metric: "mapped"},
	{name: "mapped + settings", metric: "settings", profile: ".settings",
		extra: "  settings: {max_result_rows: \"1000\", max_execution_time: \"30\"}\n"},
}

// baseCase is one configuration and one way of sending SELECT 1.
type baseCase struct {
	config int
	post   bool
}

func (c baseCase) method() string {
	if c.post {
		return "POST"
	}
	return "GET"
}

func BenchmarkGatewayBase(b *testing.B) {
	baseBin := os.Getenv(envBaseBinary)
	if baseBin == "" {
		b.Skipf("set %s to a clickgate binary built from the base commit to run (make bench-base BASE=<commit> does)", envBaseBinary)
	}
	rounds := benchkit.EnvInt(b, envBaseRounds, 5, 1)
	perRound := benchkit.EnvInt(b, envBaseRequests, 2000, 1)
	block := min(benchkit.EnvInt(b, envBaseBlock, 100, 1), perRound)
	conns := benchkit.EnvInt(b, envBaseConns, 1, 1)
	profile := os.Getenv(envBaseProfile)
	var posts []bool
	methods := cmp.Or(os.Getenv(envBaseMethods), "GET,POST")
	for _, m := range strings.Split(methods, ",") {
		switch strings.ToUpper(strings.TrimSpace(m)) {
		case "GET":
			posts = append(posts, false)
		case "POST":
			posts = append(posts, true)
		default:
			b.Fatalf("%s=%q: want GET, POST or both, comma-separated", envBaseMethods, methods)
		}
	}
	auditMode := os.Getenv(envAudit)
	if auditMode == "" {
		auditMode = "file"
	}
	started := time.Now()
	loadBefore := benchkit.LoadAvg()

	var bins [2]string
	var err error
	if bins[sideBase], err = filepath.Abs(baseBin); err != nil {
		b.Fatal(err)
	}
	if profile != "" {
		bins[sideNew] = "profiled child (server.New + Serve in the test binary, this tree)"
	} else if bins[sideNew] = os.Getenv(envNewBinary); bins[sideNew] != "" {
		if bins[sideNew], err = filepath.Abs(bins[sideNew]); err != nil {
			b.Fatal(err)
		}
	} else if bins[sideNew], err = testkit.BuildClickgate(b.TempDir()); err != nil {
		b.Fatalf("go build ./cmd/clickgate: %v", err)
	}
	for side, bin := range bins {
		if _, err := os.Stat(bin); err != nil && (side == sideBase || profile == "") {
			b.Fatal(err)
		}
	}

	ch := chtest.Start(b, chtest.Options{})
	chPID = ch.PID
	key := testkit.NewKey(b, jose.ES256, "k1")
	jwks := testkit.WriteJWKS(b, b.TempDir(), key)
	tok := key.Sign(b, testkit.Claims(benchkit.Issuer, "clickhouse", "bench@example.com", "ch-admin"))

	// cgs[config][side]: every process gets its own directory, port and
	// session log; otherwise the configurations are the same.
	cgs := make([][2]*target, len(baseConfigs))
	for ci, cfg := range baseConfigs {
		for side, bin := range bins {
			dir := b.TempDir()
			audit := ""
			switch auditMode {
			case "file":
				audit = fmt.Sprintf("audit: {file: %s}\n", filepath.Join(dir, "session.log"))
			case "off":
			default:
				b.Fatalf("%s=%q: want file or off", envAudit, auditMode)
			}
			o := benchkit.ClickgateOptions{
				Dir:    dir,
				Binary: bin,
				Config: func(port int) string {
					return fmt.Sprintf("server:\n  listen: 127.0.0.1:%d\n", port) +
						benchkit.ClickgateConfig(jwks, ch.HTTPURL, benchkit.Account{Role: "admin", User: chtest.AdminUser, Password: chtest.AdminPassword}) +
						cfg.extra + audit
				},
			}
			if side == sideNew && profile != "" {
				o.Profile = profile + cfg.profile
				o.Profiled = benchkit.Profiled{ConfigEnv: envServeConfig, ProfileEnv: envServeProf}
			}
			cg := benchkit.StartClickgate(b, o)
			t := &target{name: cfg.name + ", " + sideNames[side], url: cg.URL, auth: "Bearer " + tok, pid: cg.PID, client: newClient()}
			if got := query(b, t, chtest.CurrentUserSQL()); got != chtest.AdminUser {
				b.Fatalf("%s runs as %q, want %s", t.name, got, chtest.AdminUser)
			}
			cgs[ci][side] = t
		}
	}
	var cases []baseCase
	for ci := range baseConfigs {
		for _, post := range posts {
			cases = append(cases, baseCase{ci, post})
		}
	}

	// Warm up: connections, the token cache, ClickHouse's caches.
	for _, c := range cases {
		for _, t := range cgs[c.config] {
			sendBlock(b, t, c.post, max(200, perRound/10), conns)
		}
	}

	// res[case][side][round]; cpu[case][side][round] is the CPU time of
	// that side's clickgate process over the case's blocks of the round
	// (while the other side's blocks ran too: it is idle then).
	res := make([][2][]blockResult, len(cases))
	cpu := make([][2][]time.Duration, len(cases))
	for r := 0; r < rounds; r++ {
		for i, c := range cases {
			pair := cgs[c.config]
			cpu0 := [2]time.Duration{benchkit.ProcCPU(pair[0].pid), benchkit.ProcCPU(pair[1].pid)}
			var acc [2]blockResult
			for k := 0; k*block < perRound; k++ {
				n := min(block, perRound-k*block)
				for _, side := range order(r + k) {
					acc[side].add(sendBlock(b, pair[side], c.post, n, conns))
				}
			}
			for side := range acc {
				res[i][side] = append(res[i][side], acc[side])
				cpu[i][side] = append(cpu[i][side], benchkit.ProcCPU(pair[side].pid)-cpu0[side])
			}
		}
	}

	rep := baseReport{
		started: started, elapsed: time.Since(started), loadBefore: loadBefore, loadAfter: benchkit.LoadAvg(),
		chVersion: ch.Version, bins: bins, auditMode: auditMode,
		rounds: rounds, perRound: perRound, block: block, conns: conns,
		cases: cases, res: res, cpu: cpu, profile: profile,
	}
	for i := range res {
		for side := range 2 {
			for _, x := range res[i][side] {
				if x.errs*100 > x.n()+x.errs {
					b.Fatalf("%s %s: %d of %d requests failed, first: %s", cgs[cases[i].config][side].name, cases[i].method(), x.errs, x.n()+x.errs, x.firstErr)
				}
			}
		}
	}
	rep.print(os.Stdout)

	for i, c := range cases {
		prefix := baseConfigs[c.config].metric + "-" + c.method()
		b.ReportMetric(median(rep.ratios(i, blockResult.p50)), prefix+"-p50-ratio")
		b.ReportMetric(median(rep.ratios(i, blockResult.mean)), prefix+"-mean-ratio")
	}
	for i, c := range cases {
		b.ReportMetric(median(rep.cpuRatios(i)), baseConfigs[c.config].metric+"-"+c.method()+"-cpu-ratio")
	}
}

// blockResult is the requests of one case to one binary, in one block or
// summed over a round's blocks.
type blockResult struct {
	lats     []time.Duration
	errs     int
	firstErr string
}

func (r *blockResult) add(o blockResult) {
	r.lats = append(r.lats, o.lats...)
	r.errs += o.errs
	if r.firstErr == "" {
		r.firstErr = o.firstErr
	}
}

func (r blockResult) n() int { return len(r.lats) }

func (r blockResult) sorted() []time.Duration {
	s := slices.Clone(r.lats)
	slices.Sort(s)
	return s
}

func (r blockResult) p50() float64 { return float64(benchkit.Percentile(r.lats, 50)) }

func (r blockResult) mean() float64 {
	if len(r.lats) == 0 {
		return math.NaN()
	}
	var sum time.Duration
	for _, d := range r.lats {
		sum += d
	}
	return float64(sum) / float64(len(r.lats))
}

// sendBlock sends n SELECT 1 requests to t from conns goroutines, each on
// its own keep-alive connection, one request after another, and records
// each one's latency.
func sendBlock(b *testing.B, t *target, post bool, n, conns int) blockResult {
	var next atomic.Int64
	var mu sync.Mutex
	var res blockResult
	var wg sync.WaitGroup
	for range min(conns, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 512)
			lats := make([]time.Duration, 0, n)
			var errs int
			var firstErr string
			for next.Add(1) <= int64(n) {
				t0 := time.Now()
				var req *http.Request
				if post {
					req, _ = http.NewRequest("POST", t.url+"/", strings.NewReader("SELECT 1"))
				} else {
					req, _ = http.NewRequest("GET", t.url+selectOneQuery, nil)
				}
				req.Header.Set("Authorization", t.auth)
				resp, err := t.client.Do(req)
				if err != nil {
					errs++
					firstErr = firstOf(firstErr, err.Error())
					time.Sleep(time.Millisecond)
					continue
				}
				k, _ := io.ReadFull(resp.Body, buf)
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				d := time.Since(t0)
				if resp.StatusCode != http.StatusOK || string(buf[:k]) != "1\n" {
					errs++
					firstErr = firstOf(firstErr, fmt.Sprintf("HTTP %d: %q", resp.StatusCode, buf[:k]))
					continue
				}
				lats = append(lats, d)
			}
			mu.Lock()
			res.add(blockResult{lats: lats, errs: errs, firstErr: firstErr})
			mu.Unlock()
		}()
	}
	wg.Wait()
	if res.n() == 0 {
		b.Fatalf("%s: no request completed, first error: %s", t.name, res.firstErr)
	}
	return res
}

// firstOf is the first non-empty string.
func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

type baseReport struct {
	started          time.Time
	elapsed          time.Duration
	loadBefore       string
	loadAfter        string
	chVersion        string
	bins             [2]string
	auditMode        string
	rounds, perRound int
	block, conns     int
	cases            []baseCase
	res              [][2][]blockResult   // [case][side][round]
	cpu              [][2][]time.Duration // [case][side][round]
	profile          string
}

// ratios is new/base of stat for case i, one per round: the two sides of
// a round ran in alternating blocks over the same stretch of time.
func (r *baseReport) ratios(i int, stat func(blockResult) float64) []float64 {
	v := make([]float64, r.rounds)
	for k := range v {
		v[k] = stat(r.res[i][sideNew][k]) / stat(r.res[i][sideBase][k])
	}
	return v
}

// pooled is one side's requests of case i over all rounds.
func (r *baseReport) pooled(i, side int) blockResult {
	var all blockResult
	for _, x := range r.res[i][side] {
		all.add(x)
	}
	return all
}

// cpuPerRequest is clickgate's CPU time per request of case i on side in
// round k.
func (r *baseReport) cpuPerRequest(i, side, k int) time.Duration {
	return r.cpu[i][side][k] / time.Duration(max(r.res[i][side][k].n(), 1))
}

func (r *baseReport) cpuRatios(i int) []float64 {
	v := make([]float64, r.rounds)
	for k := range v {
		v[k] = float64(r.cpuPerRequest(i, sideNew, k)) / float64(r.cpuPerRequest(i, sideBase, k))
	}
	return v
}

// spread is "median (min–max)" of ratios as percentages over 1.
func spread(v []float64) string {
	return fmt.Sprintf("%s (%s … %s)", pct(median(v)), pct(slices.Min(v)), pct(slices.Max(v)))
}

func pct(ratio float64) string {
	d := (ratio - 1) * 100
	if d < 0 {
		return fmt.Sprintf("−%.1f %%", -d)
	}
	return fmt.Sprintf("+%.1f %%", d)
}

func fmtRatios(v []float64) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprintf("%.3f", x)
	}
	return strings.Join(s, ", ")
}

// version is what `clickgate version` says of bin (build with
// -ldflags "-X main.version=…", as make bench-base does, to name the commit).
func version(bin string) string {
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimPrefix(strings.TrimSpace(string(out)), "clickgate ")
}

func (r *baseReport) print(w io.Writer) {
	fmt.Fprintf(w, "\n### Gateway, new against base, %s\n\n", r.started.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "%s, %s/%s, %d CPUs (GOMAXPROCS %d), ClickHouse %s, session log: %s.\n",
		runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), r.chVersion, r.auditMode)
	fmt.Fprintf(w, "base: %s (version %s); new: %s (version %s).\n", r.bins[sideBase], version(r.bins[sideBase]), r.bins[sideNew], version(r.bins[sideNew]))
	fmt.Fprintf(w, "Load average before %s, after %s; the run took %s.\n", r.loadBefore, r.loadAfter, r.elapsed.Round(time.Second))
	fmt.Fprintf(w, "SELECT 1 at %d connection(s), keep-alive: %d rounds; in each, per case and binary, %d requests in blocks of %d, the two binaries' blocks alternating (base, new, new, base, …). ",
		r.conns, r.rounds, r.perRound, r.block)
	fmt.Fprintf(w, "Latency columns: all rounds pooled; ratios new/base: median of the per-round ratios (min … max over rounds).\n\n")

	fmt.Fprintln(w, "| case | base p50 | new p50 | p50 new/base | base mean | new mean | mean new/base | base p99 | new p99 |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for i, c := range r.cases {
		pb, pn := r.pooled(i, sideBase), r.pooled(i, sideNew)
		sb, sn := pb.sorted(), pn.sorted()
		fmt.Fprintf(w, "| %s, %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", baseConfigs[c.config].name, c.method(),
			ms3(benchkit.SortedPercentile(sb, 50)), ms3(benchkit.SortedPercentile(sn, 50)), spread(r.ratios(i, blockResult.p50)),
			ms3(time.Duration(pb.mean())), ms3(time.Duration(pn.mean())), spread(r.ratios(i, blockResult.mean)),
			ms3(benchkit.SortedPercentile(sb, 99)), ms3(benchkit.SortedPercentile(sn, 99)))
	}

	fmt.Fprintf(w, "\nclickgate CPU time per request (utime+stime of each process around each case's blocks, 10 ms ticks; medians of rounds):\n\n")
	fmt.Fprintln(w, "| case | base | new | new/base |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: |")
	for i, c := range r.cases {
		var v [2][]float64
		for side := range 2 {
			for k := range r.rounds {
				v[side] = append(v[side], float64(r.cpuPerRequest(i, side, k)))
			}
		}
		fmt.Fprintf(w, "| %s, %s | %s | %s | %s |\n", baseConfigs[c.config].name, c.method(), us(time.Duration(median(v[sideBase]))), us(time.Duration(median(v[sideNew]))), spread(r.cpuRatios(i)))
	}

	fmt.Fprintln(w, "\nPer round, new/base:")
	fmt.Fprintln(w)
	for i, c := range r.cases {
		fmt.Fprintf(w, "- %s, %s: p50 %s; mean %s; clickgate CPU %s\n", baseConfigs[c.config].name, c.method(),
			fmtRatios(r.ratios(i, blockResult.p50)), fmtRatios(r.ratios(i, blockResult.mean)), fmtRatios(r.cpuRatios(i)))
	}
	errs := 0
	for i := range r.res {
		for side := range 2 {
			for _, x := range r.res[i][side] {
				if x.errs > 0 {
					errs += x.errs
					fmt.Fprintf(w, "- %s %s, %s: %d failed, first: %s\n", baseConfigs[r.cases[i].config].name, r.cases[i].method(), sideNames[side], x.errs, x.firstErr)
				}
			}
		}
	}
	if errs == 0 {
		fmt.Fprintln(w, "\nNo request failed.")
	}
	if r.profile != "" {
		for _, cfg := range baseConfigs {
			p := r.profile + cfg.profile
			fmt.Fprintf(w, "\nCPU profile of the new side, %s: %s (allocations: %s.heap); go tool pprof -top -cum %s\n", cfg.name, p, p, p)
		}
	}
	fmt.Fprintln(w)
}

func ms3(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/1e6) }
