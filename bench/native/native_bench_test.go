//go:build linux

// Package native_test benchmarks clickgate's native-protocol listener
// against the same ClickHouse reached directly.
package native_test

// BenchmarkNative measures, in one run, with direct and clickgate phases
// interleaved (the order flipping every round, so that load from other
// jobs hits both alike):
//
//   - a 20M-row SELECT (numbers, and strings) streamed to
//     clickhouse-client (--format Null), with and without compression: clickgate's throughput as a share of
//     direct (target ≥ 0.95), and clickgate's RSS during the stream (flat);
//   - SELECT 1 over one clickhouse-go connection: p50 and p99 latency,
//     and what clickgate adds at p50 (target ≤ 0.3 ms).
//
// clickgate is built from ./cmd/clickgate and runs as its own process
// (benchkit.StartClickgate). It runs only when CLICKGATE_BENCH_NATIVE is
// set; it never fails on slow figures: it prints them with the targets.
//
// Knobs: CLICKGATE_BENCH_NATIVE=1 (run at all), CLICKGATE_BENCH_ROUNDS=3,
// CLICKGATE_BENCH_STREAM_ROWS=20000000, CLICKGATE_BENCH_BIG_ROWS=200000000
// (a longer stream, where a client's start-up weighs less; 0 skips it),
// CLICKGATE_BENCH_PINGS=2000.

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sort"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/clickgate/clickgate/bench/internal/benchkit"
	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/servertest"
	"github.com/clickgate/clickgate/internal/testkit"
)

func BenchmarkNative(b *testing.B) {
	if os.Getenv("CLICKGATE_BENCH_NATIVE") == "" {
		b.Skip("set CLICKGATE_BENCH_NATIVE=1 (make bench) to run")
	}
	rounds := benchkit.EnvInt(b, "CLICKGATE_BENCH_ROUNDS", 3, 1)
	rows := benchkit.EnvInt(b, "CLICKGATE_BENCH_STREAM_ROWS", 20_000_000, 1)
	pings := benchkit.EnvInt(b, "CLICKGATE_BENCH_PINGS", 2000, 10)
	bigRows := benchkit.EnvInt(b, "CLICKGATE_BENCH_BIG_ROWS", 200_000_000, 0)
	ch := chtest.Start(b, chtest.Options{})
	iss := servertest.NewIssuer(b)
	nativeAddr := testkit.FreeAddr(b)
	cg := benchkit.StartClickgate(b, benchkit.ClickgateOptions{Dir: b.TempDir(), Config: func(port int) string {
		return fmt.Sprintf("server: {listen: 127.0.0.1:%d, native_listen: %s}\n", port, nativeAddr) +
			benchkit.ClickgateConfig(iss.JWKSFile, ch.HTTPURL, benchkit.Account{Role: "admin", User: chtest.AdminUser, Password: chtest.AdminPassword}) +
			"  native_url: tcp://" + ch.TCPAddr + "\n"
	}})
	tok := iss.Token(b, "clickhouse", "bench@example.com", "ch-admin")
	direct := target{addr: ch.TCPAddr, user: chtest.AdminUser, password: chtest.AdminPassword}
	gated := target{addr: nativeAddr, password: tok}
	waitListening(b, nativeAddr)

	type sample struct{ direct, gated []time.Duration }
	type phase struct {
		compression string
		rows        int
		column      string // what each row is
	}
	const numbers, strings = "number", "toString(number * 7)"
	phases := []phase{{"1", rows, numbers}, {"0", rows, numbers}, {"1", rows, strings}, {"0", rows, strings}}
	if bigRows > 0 {
		phases = append(phases, phase{"0", bigRows, numbers}, phase{"1", bigRows, numbers})
	}
	streams := map[phase]*sample{}
	for _, p := range phases {
		streams[p] = &sample{}
	}
	var rssBase, rssPeak int64
	for r := range rounds {
		for _, p := range phases {
			sql := fmt.Sprintf("SELECT %s FROM system.numbers LIMIT %d", p.column, p.rows)
			order := []bool{false, true}
			if r%2 == 1 {
				order = []bool{true, false}
			}
			for _, viaGate := range order {
				if !viaGate {
					streams[p].direct = append(streams[p].direct, stream(b, direct, p.compression, sql))
					continue
				}
				base := benchkit.ReadMemory(cg.PID).RSS
				if rssBase == 0 {
					rssBase = base
				}
				stop := make(chan struct{})
				done := make(chan struct{})
				go func() {
					defer close(done)
					benchkit.SampleMemory(cg.PID, 50*time.Millisecond, stop, func(m benchkit.Memory) { rssPeak = max(rssPeak, m.RSS) })
				}()
				streams[p].gated = append(streams[p].gated, stream(b, gated, p.compression, sql))
				close(stop)
				<-done
			}
		}
	}

	var lat sample
	for r := range rounds {
		for _, viaGate := range []bool{r%2 == 1, r%2 == 0} {
			t := direct
			if viaGate {
				t = gated
			}
			d := selectOne(b, t, pings)
			if viaGate {
				lat.gated = append(lat.gated, d...)
			} else {
				lat.direct = append(lat.direct, d...)
			}
		}
	}

	b.ReportMetric(0, "ns/op")
	fmt.Printf("\nBenchmarkNative: ClickHouse %s, %d rounds, load average %s\n\n", ch.Version, rounds, benchkit.LoadAvg())
	fmt.Printf("| measure | direct | through clickgate | ratio or added | target | met? |\n| --- | --- | --- | --- | --- | --- |\n")
	for _, p := range phases {
		d, g := median(streams[p].direct), median(streams[p].gated)
		ratio := d.Seconds() / g.Seconds()
		fmt.Printf("| %dM-row SELECT %s, --compression %s (median time; rows/s) | %s (%.1fM/s) | %s (%.1fM/s) | %.3f of direct | ≥ 0.95 | %s |\n",
			p.rows/1_000_000, p.column, p.compression, d.Round(time.Millisecond), float64(p.rows)/d.Seconds()/1e6, g.Round(time.Millisecond), float64(p.rows)/g.Seconds()/1e6, ratio, benchkit.YesNo(ratio >= 0.95))
	}
	sort.Slice(lat.direct, func(i, j int) bool { return lat.direct[i] < lat.direct[j] })
	sort.Slice(lat.gated, func(i, j int) bool { return lat.gated[i] < lat.gated[j] })
	p50d, p50g := benchkit.SortedPercentile(lat.direct, 50), benchkit.SortedPercentile(lat.gated, 50)
	p99d, p99g := benchkit.SortedPercentile(lat.direct, 99), benchkit.SortedPercentile(lat.gated, 99)
	added := p50g - p50d
	fmt.Printf("| SELECT 1 over one connection, p50 (p99) | %s (%s) | %s (%s) | +%s at p50 | ≤ 0.3 ms added | %s |\n",
		p50d, p99d, p50g, p99g, added, benchkit.YesNo(added <= 300*time.Microsecond))
	fmt.Printf("| clickgate RSS during the streams | | %d MiB before, %d MiB peak | +%d MiB | flat | %s |\n\n",
		rssBase>>20, rssPeak>>20, (rssPeak-rssBase)>>20, benchkit.YesNo(rssPeak-rssBase < 64<<20))
}

type target struct{ addr, user, password string }

// stream runs sql through clickhouse-client with its output discarded.
func stream(b *testing.B, t target, compression, sql string) time.Duration {
	host, port, _ := net.SplitHostPort(t.addr)
	args := []string{"--host", host, "--port", port, "--password", t.password, "--compression", compression, "--format", "Null", "--query", sql}
	if t.user != "" {
		args = append(args, "--user", t.user)
	}
	start := time.Now()
	if out, err := exec.Command("clickhouse-client", args...).CombinedOutput(); err != nil {
		b.Fatalf("clickhouse-client: %v: %s", err, out)
	}
	return time.Since(start)
}

// selectOne times n SELECT 1 over one clickhouse-go connection.
func selectOne(b *testing.B, t target, n int) []time.Duration {
	c, err := clickhouse.Open(&clickhouse.Options{Addr: []string{t.addr}, Auth: clickhouse.Auth{Username: t.user, Password: t.password}, MaxOpenConns: 1, MaxIdleConns: 1})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	one := func(c driver.Conn) time.Duration {
		start := time.Now()
		var v uint8
		if err := c.QueryRow(ctx, "SELECT 1").Scan(&v); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	for range 20 { // warm: the connection is open
		one(c)
	}
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = one(c)
	}
	return out
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func waitListening(b *testing.B, addr string) {
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("the native listener %s does not accept: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
