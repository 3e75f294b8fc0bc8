package chproc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary is also the fake server these tests start: with
// CHPROC_FAKE set, it reads "<http port> <behaviour>" from the file named
// by --config-file and behaves so.
func TestMain(m *testing.M) {
	if os.Getenv("CHPROC_FAKE") != "" {
		fakeServer()
		return
	}
	os.Exit(m.Run())
}

func fakeServer() {
	var port int
	var mode string
	for _, a := range os.Args[1:] {
		if path, ok := strings.CutPrefix(a, "--config-file="); ok {
			data, err := os.ReadFile(path)
			if err == nil {
				_, err = fmt.Sscan(string(data), &port, &mode)
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "fake:", err)
				os.Exit(2)
			}
		}
	}
	switch mode {
	case "exit":
		fmt.Fprintln(os.Stderr, "fake: the configuration is broken")
		os.Exit(3)
	case "never-ready":
		time.Sleep(time.Hour)
	case "ignore-term":
		signal.Ignore(syscall.SIGTERM)
	}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		// As ClickHouse says it.
		fmt.Fprintln(os.Stderr, "Net Exception: Address already in use:", err)
		os.Exit(4)
	}
	_ = http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "Ok.\n")
	}))
}

func fakeConfig(t *testing.T, mode string) Config {
	t.Helper()
	t.Setenv("CHPROC_FAKE", "1")
	dir := t.TempDir()
	return Config{
		Name:   "fake",
		Binary: os.Args[0],
		Dir:    dir,
		Configure: func(p Ports) error {
			return os.WriteFile(filepath.Join(dir, "config.xml"), fmt.Appendf(nil, "%d %s", p.HTTP, mode), 0o600)
		},
		Timeout: 10 * time.Second,
		Grace:   5 * time.Second,
	}
}

func start(t *testing.T, c Config) *Process {
	t.Helper()
	p, err := Start(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}

func gone(t *testing.T, p *Process) {
	t.Helper()
	select {
	case <-p.Done():
	default:
		t.Fatal("Done is open after Stop")
	}
	if err := syscall.Kill(p.PID, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("process %d still there after Stop: %v", p.PID, err)
	}
}

func TestStartAndStop(t *testing.T) {
	p := start(t, fakeConfig(t, "serve"))
	if p.StartDuration <= 0 || p.PID <= 0 || p.HTTPURL != fmt.Sprintf("http://127.0.0.1:%d", p.Ports.HTTP) || p.Ports.HTTP == p.Ports.TCP {
		t.Fatalf("process %+v", p)
	}
	t0 := time.Now()
	p.Stop()
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("a server that obeys SIGTERM took %v to stop", d)
	}
	gone(t, p)
	p.Stop() // idempotent
}

// Stop waits the grace period for a server that ignores SIGTERM, then
// kills it; without a grace period it kills at once.
func TestStopGrace(t *testing.T) {
	for _, grace := range []time.Duration{300 * time.Millisecond, 0} {
		c := fakeConfig(t, "ignore-term")
		c.Grace = grace
		p := start(t, c)
		t0 := time.Now()
		p.Stop()
		if d := time.Since(t0); d < grace || d > grace+2*time.Second {
			t.Errorf("grace %v: stopping took %v", grace, d)
		}
		gone(t, p)
	}
}

func TestExitBeforeReady(t *testing.T) {
	_, err := Start(context.Background(), fakeConfig(t, "exit"))
	ee, ok := errors.AsType[*ExitError](err)
	if !ok || !strings.Contains(err.Error(), "fake exited before it was ready (exit status 3)") ||
		!strings.Contains(ee.Log, "--- tail of ") || !strings.Contains(ee.Log, "the configuration is broken") {
		t.Fatalf("error: %v", err)
	}
}

func TestNotReady(t *testing.T) {
	c := fakeConfig(t, "never-ready")
	c.Timeout = 100 * time.Millisecond
	if _, err := Start(context.Background(), c); err == nil || !strings.Contains(err.Error(), "fake did not answer GET /ping within 100ms") {
		t.Fatalf("error: %v", err)
	}
	c.Timeout = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := Start(ctx, c); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ended context: %v", err)
	}
}

func TestRetryWhenPortTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	go func() { // hang up at once, so that pings fail quickly
		for {
			conn, err := taken.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	port := taken.Addr().(*net.TCPAddr).Port
	c := fakeConfig(t, "serve")
	calls := 0
	c.PickPort = func() (int, error) {
		if calls++; calls == 1 {
			return port, nil
		}
		return FreePort()
	}
	var retried []error
	c.OnRetry = func(err error) { retried = append(retried, err) }
	p := start(t, c)
	if p.Ports.HTTP == port || len(retried) != 1 || !errors.Is(retried[0], ErrAddrInUse) {
		t.Fatalf("ports %+v, retries %v", p.Ports, retried)
	}

	// A port that stays taken: the last attempt's error.
	calls = 0
	c.PickPort = func() (int, error) {
		if calls++; calls%2 == 1 {
			return port, nil // each attempt's HTTP port
		}
		return FreePort()
	}
	c.OnRetry = nil
	if _, err := Start(context.Background(), c); !errors.Is(err, ErrAddrInUse) {
		t.Fatalf("always taken: %v", err)
	}
}
