//go:build linux

package audit_test

// BenchmarkAuditTrail measures what the audit trail costs the gateway on
// SELECT 1, as ratios of req/s measured in one run: one ClickHouse 18.16
// (internal/chtest) and three clickgate servers in the test process
// (config.Parse, server.New, Serve on a loopback listener), configured
// alike except for the audit section:
//
//	off         no audit section
//	file        audit.file (a JSON line per event, in b.TempDir())
//	file+table  audit.file and audit.clickhouse: the same ClickHouse, table
//	            default.bench_audit, spool in b.TempDir(), batch_rows and
//	            flush_interval at their defaults (1000 rows, 1 s)
//
// Each round sends each gateway the same number of GET ?query=SELECT 1
// requests from N goroutines (keep-alive connections, one request after
// another), in blocks: one block of each gateway after another, the order
// of each three blocks cycling through all six permutations, so that
// drift and other jobs' load hit all three alike. A round's req/s of a
// gateway is its blocks' requests over their summed time. The ratios
// file/off and file+table/off are taken per round; their medians are
// reported (b.ReportMetric and a printed markdown table).
//
// The table sink inserts in the background (every batch_rows events or
// flush_interval), and ClickHouse merges the parts afterwards: some of
// that work falls into the next block, another gateway's. Blocks of a few
// thousand requests (several inserts each) keep that small.
//
// It never fails on slow figures, only on wrong answers: any request that
// fails, and — after the servers are stopped, which closes their trails
// (the table's last insert) — a file that does not hold exactly one Query
// line per request sent through its gateway, a table that does not hold
// (FINAL) exactly one Query event per request sent through the file+table
// gateway, or a spool left non-empty.
//
// The servers' goroutines carry the pprof label gateway=<name> and the
// load generator's client=<name>, so that a CPU profile of the run (go
// test -cpuprofile) can be split by gateway (pprof -tagfocus).
//
// Knobs (environment):
//
//	CLICKGATE_BENCH_AUDIT_COST=1              run at all
//	CLICKGATE_BENCH_AUDIT_COST_ROUNDS=6       rounds
//	CLICKGATE_BENCH_AUDIT_COST_REQUESTS=20000 requests per round and gateway
//	CLICKGATE_BENCH_AUDIT_COST_BLOCK=2000     requests per block
//	CLICKGATE_BENCH_AUDIT_COST_CONNS=16       goroutines (connections) sending at once
//
// (Not CLICKGATE_BENCH_AUDIT: that is BenchmarkGateway's knob, "file" or
// "off".)

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
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
	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/server"
	"github.com/clickgate/clickgate/internal/testkit"
)

const (
	envRun      = "CLICKGATE_BENCH_AUDIT_COST"
	envRounds   = "CLICKGATE_BENCH_AUDIT_COST_ROUNDS"
	envRequests = "CLICKGATE_BENCH_AUDIT_COST_REQUESTS"
	envBlock    = "CLICKGATE_BENCH_AUDIT_COST_BLOCK"
	envConns    = "CLICKGATE_BENCH_AUDIT_COST_CONNS"

	// auditTable is the file+table gateway's table, in database default.
	auditTable = "bench_audit"
)

// The three gateways, as indexes.
const (
	gwOff = iota
	gwFile
	gwTable
	numGateways
)

var gwNames = [numGateways]string{"off", "file", "file+table"}

// orders are the six orders of the three gateways; the k-th triple of
// blocks (one per gateway) takes orders[k%6], so each gateway runs as
// often in each place, after each of the others.
var orders = [][numGateways]int{
	{gwOff, gwFile, gwTable}, {gwFile, gwTable, gwOff}, {gwTable, gwOff, gwFile},
	{gwOff, gwTable, gwFile}, {gwTable, gwFile, gwOff}, {gwFile, gwOff, gwTable},
}

var selectOne = "/?query=" + url.QueryEscape("SELECT 1")

// gateway is one clickgate server of the benchmark, served in process.
type gateway struct {
	name   string
	url    string // http://127.0.0.1:port
	auth   string // Authorization header value
	client *http.Client
	file   string // the audit file; "" when the audit is off
	spool  string // the table's spool directory; "" without the table
	logs   string // the server's log (warnings and errors)
	// sent counts every request sent through the gateway: the setup
	// check, the warm-up and the rounds.
	sent atomic.Int64
	// stop ends Serve, which closes the audit trail (the table's last
	// insert); it waits for that, once.
	stop func() error
}

func BenchmarkAuditTrail(b *testing.B) {
	if os.Getenv(envRun) == "" {
		b.Skipf("set %s=1 to run (make bench does); it needs clickhouse-server (make deps) and takes about a minute", envRun)
	}
	rounds := benchkit.EnvInt(b, envRounds, 6, 1)
	perRound := benchkit.EnvInt(b, envRequests, 20000, 1)
	block := min(benchkit.EnvInt(b, envBlock, 2000, 1), perRound)
	conns := benchkit.EnvInt(b, envConns, 16, 1)
	started := time.Now()
	loadBefore := benchkit.LoadAvg()

	ch := chtest.Start(b, chtest.Options{})
	key := testkit.NewKey(b, jose.ES256, "k1")
	jwks := testkit.WriteJWKS(b, b.TempDir(), key)
	tok := key.Sign(b, testkit.Claims(benchkit.Issuer, "clickhouse", "bench@example.com", "ch-admin"))

	var gws [numGateways]*gateway
	for i := range gws {
		gws[i] = startGateway(b, i, ch, jwks, tok, conns)
	}
	// Each runs as ch_admin (one request each, counted).
	for _, g := range gws {
		if got := query(b, g, chtest.CurrentUserSQL()); got != chtest.AdminUser {
			b.Fatalf("gateway %s runs as %q, want %s", g.name, got, chtest.AdminUser)
		}
	}
	// Warm up: connections, the token cache, ClickHouse's caches, the
	// table's first inserts.
	for _, g := range gws {
		drive(b, g, max(conns, perRound/5), conns, ch.PID)
	}

	b.ResetTimer()
	res := make([][numGateways]phase, rounds)
	step := 0 // blocks of all three so far: which order the next three take
	for r := range rounds {
		for k := 0; k*block < perRound; k++ {
			n := min(block, perRound-k*block)
			for _, i := range orders[step%len(orders)] {
				res[r][i].add(drive(b, gws[i], n, conns, ch.PID))
			}
			step++
		}
	}
	b.StopTimer()

	// Stop the servers: Serve closes each trail, so the table has had its
	// last insert (or the spool has it) when stop returns.
	for _, g := range gws {
		g.client.CloseIdleConnections()
		if err := g.stop(); err != nil {
			b.Fatalf("gateway %s: Serve: %v\n%s", g.name, err, readLogs(g))
		}
	}
	ver := verify(b, ch, gws)

	rep := report{
		started: started, elapsed: time.Since(started), loadBefore: loadBefore, loadAfter: benchkit.LoadAvg(),
		chVersion: ch.Version, rounds: rounds, perRound: perRound, block: block, conns: conns, res: res, verified: ver,
	}
	rep.print(os.Stdout)

	for i := range numGateways {
		b.ReportMetric(rep.medianRPS(i), gwNames[i]+"-req/s")
	}
	b.ReportMetric(median(rep.ratios(gwFile)), "file/off-ratio")
	b.ReportMetric(median(rep.ratios(gwTable)), "file+table/off-ratio")
}

// startGateway configures gateway i (the benchmark's common configuration
// plus i's audit section) and serves it in process, on its own loopback
// listener, until the benchmark ends or g.stop is called. server.New and
// Serve run under the pprof label gateway=<name>, which every goroutine
// they start inherits (connections, the upstream transport, the table
// sink's writer).
func startGateway(b *testing.B, i int, ch *chtest.Server, jwks, tok string, conns int) *gateway {
	dir := b.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	g := &gateway{
		name: gwNames[i], url: "http://" + l.Addr().String(), auth: "Bearer " + tok,
		client: benchkit.KeepAliveClient(10*time.Minute, 4*conns), logs: filepath.Join(dir, "clickgate.log"),
	}
	auditYAML := ""
	switch i {
	case gwFile:
		g.file = filepath.Join(dir, "audit.log")
		auditYAML = fmt.Sprintf("audit: {file: %s}\n", g.file)
	case gwTable:
		g.file, g.spool = filepath.Join(dir, "audit.log"), filepath.Join(dir, "spool")
		auditYAML = fmt.Sprintf("audit:\n  file: %s\n  clickhouse: {url: %s, user: %s, password: %s, database: default, table: %s, spool_dir: %s}\n",
			g.file, ch.HTTPURL, chtest.AdminUser, chtest.AdminPassword, auditTable, g.spool)
	}
	yaml := fmt.Sprintf("server:\n  listen: %s\n", l.Addr()) +
		benchkit.ClickgateConfig(jwks, ch.HTTPURL, benchkit.Account{Role: "admin", User: chtest.AdminUser, Password: chtest.AdminPassword}) +
		auditYAML
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		l.Close()
		b.Fatalf("gateway %s: config: %v\n%s", g.name, err, yaml)
	}
	logf, err := os.Create(g.logs)
	if err != nil {
		l.Close()
		b.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelWarn}))

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	var srv *server.Server
	pprof.Do(context.Background(), pprof.Labels("gateway", g.name), func(context.Context) {
		srv, err = server.New(cfg, server.Options{Logger: logger, Version: "bench"})
		if err == nil {
			go func() { errc <- srv.Serve(ctx, l) }()
		}
	})
	if err != nil {
		cancel()
		l.Close()
		logf.Close()
		b.Fatalf("gateway %s: server.New: %v\n%s", g.name, err, yaml)
	}
	var once sync.Once
	var stopErr error
	g.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case stopErr = <-errc:
			case <-time.After(30 * time.Second):
				stopErr = errors.New("Serve did not return 30 s after its context ended")
			}
			logf.Close()
		})
		return stopErr
	}
	b.Cleanup(func() { _ = g.stop() })
	return g
}

// query sends sql through g as a POST body and returns the answer.
func query(b *testing.B, g *gateway, sql string) string {
	req, _ := http.NewRequest("POST", g.url+"/", strings.NewReader(sql))
	req.Header.Set("Authorization", g.auth)
	g.sent.Add(1)
	resp, err := g.client.Do(req)
	if err != nil {
		b.Fatalf("gateway %s: %v", g.name, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("gateway %s: %s: HTTP %d: %s", g.name, sql, resp.StatusCode, body)
	}
	return strings.TrimSpace(string(body))
}

// phase is one gateway's requests in one round.
type phase struct {
	n       int
	elapsed time.Duration
	lats    []time.Duration
	// CPU time of this process (the load generator and all three
	// gateways; only this one was sent anything) and of ClickHouse.
	cpuSelf, cpuCH time.Duration
}

func (p phase) rps() float64 { return float64(p.n) / p.elapsed.Seconds() }

// add sums o into p: one gateway's blocks of a round.
func (p *phase) add(o phase) {
	p.n += o.n
	p.elapsed += o.elapsed
	p.lats = append(p.lats, o.lats...)
	p.cpuSelf += o.cpuSelf
	p.cpuCH += o.cpuCH
}

// drive sends n GET ?query=SELECT 1 requests through g from conns
// goroutines, each on its own keep-alive connection, one request after
// another, and checks every answer (200, "1\n"). Any failure fails the
// benchmark: every request must have its audit event.
func drive(b *testing.B, g *gateway, n, conns int, chPID int) phase {
	var next, failed atomic.Int64
	var firstErr atomic.Value
	fail := func(s string) {
		failed.Add(1)
		firstErr.CompareAndSwap(nil, s)
	}
	lats := make([][]time.Duration, conns)
	self0, ch0 := selfCPU(), benchkit.ProcCPU(chPID)
	start := time.Now()
	var wg sync.WaitGroup
	for c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pprof.Do(context.Background(), pprof.Labels("client", g.name), func(context.Context) {
				buf := make([]byte, 64)
				l := make([]time.Duration, 0, n/conns+1)
				for next.Add(1) <= int64(n) {
					req, _ := http.NewRequest("GET", g.url+selectOne, nil)
					req.Header.Set("Authorization", g.auth)
					g.sent.Add(1)
					t0 := time.Now()
					resp, err := g.client.Do(req)
					if err != nil {
						fail(err.Error())
						continue
					}
					k, _ := io.ReadFull(resp.Body, buf)
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					d := time.Since(t0)
					if resp.StatusCode != http.StatusOK || string(buf[:k]) != "1\n" {
						fail(fmt.Sprintf("HTTP %d: %q", resp.StatusCode, buf[:k]))
						continue
					}
					l = append(l, d)
				}
				lats[c] = l
			})
		}()
	}
	wg.Wait()
	p := phase{elapsed: time.Since(start), cpuSelf: selfCPU() - self0, cpuCH: benchkit.ProcCPU(chPID) - ch0}
	if k := failed.Load(); k > 0 {
		b.Fatalf("gateway %s: %d of %d requests failed, first: %v\n%s", g.name, k, n, firstErr.Load(), readLogs(g))
	}
	for _, l := range lats {
		p.lats = append(p.lats, l...)
	}
	p.n = len(p.lats)
	return p
}

// selfCPU is this process's user+system CPU time (getrusage: µs, not
// /proc's 10 ms ticks).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func readLogs(g *gateway) string {
	data, _ := os.ReadFile(g.logs)
	if len(data) == 0 {
		return "(the server logged no warning)"
	}
	return "server log:\n" + string(data)
}

// verified is what the trails hold after the run.
type verified struct {
	sent      [numGateways]int64
	fileTypes [numGateways]map[string]int // events by type in each file
	table     map[string]int              // events by type in the table, FINAL
	tableRows int                         // rows before FINAL
	warnings  [numGateways]int            // lines in each server's log
}

// verify checks every trail against the requests sent (see
// BenchmarkAuditTrail) and fails the benchmark when one is off.
func verify(b *testing.B, ch *chtest.Server, gws [numGateways]*gateway) verified {
	var v verified
	for i, g := range gws {
		v.sent[i] = g.sent.Load()
		if data, err := os.ReadFile(g.logs); err == nil && len(data) > 0 {
			v.warnings[i] = strings.Count(string(data), "\n")
		}
		if g.file == "" {
			continue
		}
		types, bad, err := countFile(g.file)
		if err != nil {
			b.Fatalf("gateway %s: audit file: %v", g.name, err)
		}
		v.fileTypes[i] = types
		if types["Query"] != int(v.sent[i]) || bad > 0 {
			b.Fatalf("gateway %s: the audit file %s has %d Query lines (%d not ok; all types: %v) for %d requests sent\n%s",
				g.name, g.file, types["Query"], bad, types, v.sent[i], readLogs(g))
		}
	}

	g := gws[gwTable]
	// Batches waiting in the spool are *.jsonl files (*.tmp while being
	// written); other files there (a clean-shutdown marker) are not events.
	entries, err := os.ReadDir(g.spool)
	if err != nil {
		b.Fatalf("gateway %s: the spool: %v", g.name, err)
	}
	var waiting []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".jsonl") || strings.HasSuffix(e.Name(), ".tmp") {
			waiting = append(waiting, e.Name())
		}
	}
	if len(waiting) > 0 {
		b.Fatalf("gateway %s: the spool %s still holds batches after the trail was closed: %v\n%s", g.name, g.spool, waiting, readLogs(g))
	}
	name := "default." + auditTable
	out := ch.Query(b, chtest.AdminUser, chtest.AdminPassword,
		"SELECT type, count(), uniqExact(event_id), countIf(outcome != 'ok'), countIf(interface != 'gateway') FROM "+name+" FINAL GROUP BY type ORDER BY type")
	v.table = map[string]int{}
	var notOK, notGateway, unique int
	for _, line := range strings.Split(out, "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 5 {
			b.Fatalf("%s: unexpected answer %q", name, out)
		}
		n := atoi(b, f[1])
		v.table[f[0]] = n
		if f[0] == "Query" {
			unique, notOK, notGateway = atoi(b, f[2]), atoi(b, f[3]), atoi(b, f[4])
		}
	}
	if v.table["Query"] != int(v.sent[gwTable]) || unique != v.table["Query"] || notOK > 0 || notGateway > 0 {
		b.Fatalf("gateway %s: the table %s holds (FINAL) %d Query events (%d distinct event ids, %d not ok, %d not from the gateway; all types: %v) for %d requests sent\n%s",
			g.name, name, v.table["Query"], unique, notOK, notGateway, v.table, v.sent[gwTable], readLogs(g))
	}
	v.tableRows = atoi(b, ch.Query(b, chtest.AdminUser, chtest.AdminPassword, "SELECT count() FROM "+name))
	return v
}

// countFile counts the events of a JSON-lines audit file by type, and the
// Query events whose outcome is not ok. A line that is not a JSON object
// is an error.
func countFile(path string) (map[string]int, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	types := map[string]int{}
	bad := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		var r struct{ Type, Outcome, Interface string }
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, 0, fmt.Errorf("line %d: %v: %q", n, err, sc.Text())
		}
		types[r.Type]++
		if r.Type == "Query" && (r.Outcome != "ok" || r.Interface != "gateway") {
			bad++
		}
	}
	return types, bad, sc.Err()
}

func atoi(b *testing.B, s string) int {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		b.Fatalf("not a number: %q", s)
	}
	return n
}

type report struct {
	started         time.Time
	elapsed         time.Duration
	loadBefore      string
	loadAfter       string
	chVersion       string
	rounds          int
	perRound, block int
	conns           int
	res             [][numGateways]phase // [round][gateway]
	verified        verified
}

// ratios is gateway i's req/s over off's, one per round (the three's
// blocks alternated over the same stretch of time).
func (r *report) ratios(i int) []float64 {
	v := make([]float64, len(r.res))
	for k, x := range r.res {
		v[k] = x[i].rps() / x[gwOff].rps()
	}
	return v
}

func (r *report) medianRPS(i int) float64 {
	v := make([]float64, len(r.res))
	for k, x := range r.res {
		v[k] = x[i].rps()
	}
	return median(v)
}

// pooled is gateway i's latencies over all rounds, sorted, and its CPU
// times per request.
func (r *report) pooled(i int) (lats []time.Duration, self, ch time.Duration) {
	var n int
	for _, x := range r.res {
		lats = append(lats, x[i].lats...)
		self += x[i].cpuSelf
		ch += x[i].cpuCH
		n += x[i].n
	}
	slices.Sort(lats)
	return lats, self / time.Duration(max(n, 1)), ch / time.Duration(max(n, 1))
}

func (r *report) print(w io.Writer) {
	fmt.Fprintf(w, "\n### Audit trail cost, %s\n\n", r.started.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "%s, %s/%s, %d CPUs (GOMAXPROCS %d), ClickHouse %s. Load average before %s, after %s; the run took %s.\n",
		runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0), r.chVersion,
		r.loadBefore, r.loadAfter, r.elapsed.Round(time.Second))
	fmt.Fprintf(w, "Three clickgate servers in the test process, one ClickHouse; GET ?query=SELECT 1 from %d connections (keep-alive). "+
		"%d rounds; in each, %d requests per gateway in blocks of %d, one block of each gateway after another, the three in one of the six orders (cycling). "+
		"req/s: median of rounds (a round's req/s: its blocks' requests over their time); ratios: median of the per-round ratios (min … max); latencies: all rounds pooled; "+
		"CPU: getrusage of the test process (load generator and clickgate) and /proc of ClickHouse over each gateway's blocks.\n\n",
		r.conns, r.rounds, r.perRound, r.block)
	fmt.Fprintln(w, "| gateway | req/s | ratio to off | p50 | p99 | CPU/req, test process | CPU/req, ClickHouse |")
	fmt.Fprintln(w, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
	for i := range numGateways {
		lats, self, ch := r.pooled(i)
		ratio := "—"
		if i != gwOff {
			v := r.ratios(i)
			ratio = fmt.Sprintf("**%.3f** (%.3f … %.3f)", median(v), slices.Min(v), slices.Max(v))
		}
		fmt.Fprintf(w, "| %s | %.0f | %s | %s | %s | %d µs | %d µs |\n", gwNames[i], r.medianRPS(i), ratio,
			ms3(benchkit.SortedPercentile(lats, 50)), ms3(benchkit.SortedPercentile(lats, 99)), self.Microseconds(), ch.Microseconds())
	}
	fmt.Fprintln(w, "\nPer round, req/s (ratio to off):")
	fmt.Fprintln(w)
	for k, x := range r.res {
		fmt.Fprintf(w, "- round %d: off %.0f, file %.0f (%.3f), file+table %.0f (%.3f)\n", k+1,
			x[gwOff].rps(), x[gwFile].rps(), x[gwFile].rps()/x[gwOff].rps(), x[gwTable].rps(), x[gwTable].rps()/x[gwOff].rps())
	}
	v := r.verified
	fmt.Fprintf(w, "\nVerified after the servers stopped: requests sent (setup check, warm-up, rounds) off %d, file %d, file+table %d; "+
		"file's audit file %d Query lines (%v); file+table's audit file %d Query lines (%v), its table %s FINAL %d Query events (%v; %d rows before FINAL), no batch left in the spool. "+
		"Server log lines (warnings, errors): off %d, file %d, file+table %d.\n\n",
		v.sent[gwOff], v.sent[gwFile], v.sent[gwTable],
		v.fileTypes[gwFile]["Query"], v.fileTypes[gwFile], v.fileTypes[gwTable]["Query"], v.fileTypes[gwTable],
		"default."+auditTable, v.table["Query"], v.table, v.tableRows,
		v.warnings[gwOff], v.warnings[gwFile], v.warnings[gwTable])
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

func ms3(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/1e6) }
