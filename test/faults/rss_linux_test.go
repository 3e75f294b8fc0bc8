package faults

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/servertest"
	"github.com/clickgate/clickgate/internal/testkit"
)

// clickgateProcess runs `clickgate serve` (the binary TestMain built) on
// the configuration yaml gets with the listen address, until the test
// ends; it returns the base URL and the process id.
func clickgateProcess(t *testing.T, yaml func(listen string) string) (string, int) {
	t.Helper()
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := l.Addr().String()
	l.Close()
	cfg := filepath.Join(dir, "clickgate.yaml")
	if err := os.WriteFile(cfg, []byte(yaml(listen)), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "clickgate.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testkit.Clickgate, "serve", "--config", cfg, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logf.Close()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	base := "http://" + listen
	for deadline := time.Now().Add(20 * time.Second); ; {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base, cmd.Process.Pid
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "clickgate.log"))
			t.Fatalf("clickgate did not start: %v\n%s", err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// vmRSS is the process's resident set in bytes (/proc/PID/status).
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// TestRSSPerConnection: the RSS of a `clickgate serve` process while 200,
// then 1,000 keep-alive connections send SELECT 1 one after another (the
// load test saw ~1 MB per connection).
func TestRSSPerConnection(t *testing.T) {
	ch := chtest.Start(t, chtest.Options{})
	iss := servertest.NewIssuer(t)
	base, pid := clickgateProcess(t, func(listen string) string {
		return fmt.Sprintf("server: {listen: %s}\n", listen) + adminConfig(iss, ch)
	})
	tok := "Bearer " + iss.Token(t, "clickhouse", "load@example.com", "ch-admin")
	target := base + "/?query=" + url.QueryEscape("SELECT 1")

	load := func(conns int, dur time.Duration) (ok, failed int64, peak int64) {
		tr := &http.Transport{MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, IdleConnTimeout: time.Minute}
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
		var okN, failN atomic.Int64
		stop := time.Now().Add(dur)
		var wg sync.WaitGroup
		for range conns {
			wg.Go(func() {
				for time.Now().Before(stop) {
					req, _ := http.NewRequest(http.MethodGet, target, nil)
					req.Header.Set("Authorization", tok)
					resp, err := client.Do(req)
					if err != nil {
						failN.Add(1)
						time.Sleep(10 * time.Millisecond)
						continue
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						okN.Add(1)
					} else {
						failN.Add(1) // ClickHouse 18.16 runs 100 queries at once at most
					}
				}
			})
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		for {
			if r := vmRSS(t, pid); r > peak {
				peak = r
			}
			select {
			case <-done:
				return okN.Load(), failN.Load(), peak
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	load(1, time.Second)
	idle := vmRSS(t, pid)
	t.Logf("clickgate RSS after 1 connection: %.1f MiB", float64(idle)/(1<<20))
	for _, conns := range []int{200, 1000} {
		ok, failed, peak := load(conns, 4*time.Second)
		per := float64(peak-idle) / float64(conns)
		t.Logf("%d keep-alive connections doing SELECT 1 for 4 s: %d answered, %d refused by ClickHouse or failed; peak RSS %.1f MiB, %.0f KB per connection over the 1-connection RSS",
			conns, ok, failed, float64(peak)/(1<<20), per/1000)
		if ok == 0 {
			t.Errorf("%d connections: no request answered", conns)
		}
		if per > 300_000 {
			t.Errorf("%d connections: %.0f KB per connection, want ≤ 300 KB (target 150 KB)", conns, per/1000)
		}
	}
}
