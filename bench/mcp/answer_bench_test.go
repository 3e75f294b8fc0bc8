//go:build linux

package mcp_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/clickgate/clickgate/bench/internal/benchkit"
	"github.com/clickgate/clickgate/internal/chtest"
)

// BenchmarkMCPFullAnswer is run_query of a million rows with the caps
// raised so that the whole answer comes back (mcp.max_result_rows
// 1000000, max_result_bytes 1e9), against the same rows sent straight from
// ClickHouse as FORMAT JSON, interleaved: clickgate's peak RSS against the
// answer's size (target ≤ 3 × answer + 40 MB) and the time per call against
// direct JSON (target ≤ 1.5 ×). The tools/call is the very request the Go
// SDK client sends, POSTed with net/http, so that the figures are
// clickgate's, not a client's decoding.
//
// It runs only when CLICKGATE_BENCH_MCP is set (make bench sets it);
// CLICKGATE_BENCH_MCP_FULL_CALLS (default 5) calls per way.
func BenchmarkMCPFullAnswer(b *testing.B) {
	if os.Getenv(envRun) == "" {
		b.Skipf("set %s=1 to run (make bench does)", envRun)
	}
	calls := benchkit.EnvInt(b, "CLICKGATE_BENCH_MCP_FULL_CALLS", 5, 1)
	const rows = 1_000_000
	sql := fmt.Sprintf("SELECT number, toString(number) FROM system.numbers LIMIT %d", rows)
	started, loadBefore := time.Now(), benchkit.LoadAvg()
	ctx := context.Background()
	ch := chtest.Start(b, chtest.Options{})
	cg := startClickgate(b, ch, "mcp: {max_result_rows: 1000000, max_result_bytes: 1000000000}\n")
	call := captureRunQuery(b, cg.resource, cg.adminToken, sql)
	client, directClient := newClient(), newClient()

	viaMCP := func() (int, error) {
		out, err := postRaw(ctx, client, cg.resource, call)
		if err == nil && (!strings.Contains(string(out), fmt.Sprintf(`"row_count":%d`, rows)) || !strings.Contains(string(out), `"truncated":false`)) {
			err = fmt.Errorf("run_query did not answer every row: %.300s", out)
		}
		return len(out), err
	}
	direct := func() (int, error) {
		params := url.Values{"readonly": {"1"}, "max_execution_time": {"30"}}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, ch.HTTPURL+"/?"+params.Encode(), strings.NewReader(sql+" FORMAT JSON"))
		if err != nil {
			return 0, err
		}
		req.SetBasicAuth(chtest.AdminUser, chtest.AdminPassword)
		resp, err := directClient.Do(req)
		if err != nil {
			return 0, err
		}
		out, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil && (resp.StatusCode != http.StatusOK || !strings.Contains(string(out), fmt.Sprintf(`"rows": %d`, rows))) {
			err = fmt.Errorf("direct FORMAT JSON: %s %.300s", resp.Status, out)
		}
		return len(out), err
	}
	// One untimed call each: connections, caches.
	if _, err := viaMCP(); err != nil {
		b.Fatal(err)
	}
	if _, err := direct(); err != nil {
		b.Fatal(err)
	}
	before := benchkit.ReadMemory(cg.pid)
	benchkit.ResetPeak(cg.pid)
	var mem memResult
	stop, sampled := make(chan struct{}), make(chan struct{})
	go func() { mem.sample(cg.pid, stop); close(sampled) }()
	var mcpTimes, directTimes []time.Duration
	var answer, directSize int
	for i := range 2 * calls {
		t0 := time.Now()
		if (i % 2) == 0 {
			n, err := viaMCP()
			if err != nil {
				b.Fatal(err)
			}
			mcpTimes, answer = append(mcpTimes, time.Since(t0)), n
		} else {
			n, err := direct()
			if err != nil {
				b.Fatal(err)
			}
			directTimes, directSize = append(directTimes, time.Since(t0)), n
		}
	}
	close(stop)
	<-sampled
	mem.after = benchkit.ReadMemory(cg.pid)

	peak := mem.peak()
	rssTarget := 3*int64(answer) + 40_000_000
	mcp50, direct50 := benchkit.Percentile(mcpTimes, 50), benchkit.Percentile(directTimes, 50)
	fmt.Printf("\n### MCP full answer, %s\n\n", started.UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Printf("ClickHouse %s; clickgate: %s; load average %s before, %s after; `%s`, %d calls per way, interleaved.\n\n",
		ch.Version, cg.binary, loadBefore, benchkit.LoadAvg(), sql, calls)
	fmt.Println("| measure | result | target | met? |")
	fmt.Println("| --- | --- | --- | --- |")
	fmt.Printf("| answer (tools/call response body) | %s | | |\n", fmtMB(int64(answer)))
	fmt.Printf("| clickgate peak RSS (VmHWM and 50 ms samples; %s before) | %s = %.2f × answer | ≤ 3 × answer + 40 MB = %s | %s |\n",
		fmtMB(before.RSS), fmtMB(peak), float64(peak)/float64(answer), fmtMB(rssTarget), benchkit.YesNo(peak <= rssTarget))
	fmt.Printf("| time per call, p50: run_query / direct FORMAT JSON (%s) | %s / %s = %.2f × | ≤ 1.5 × | %s |\n\n",
		fmtMB(int64(directSize)), fmtMS(mcp50), fmtMS(direct50), float64(mcp50)/float64(direct50), benchkit.YesNo(float64(mcp50) <= 1.5*float64(direct50)))
	b.ReportMetric(float64(peak)/float64(answer), "peak-RSS/answer")
	b.ReportMetric(float64(mcp50)/float64(direct50), "time/direct-JSON")
}
