package benchkit

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/clickgate/clickgate/internal/testkit"
)

// ClickgateOptions says how StartClickgate runs clickgate.
type ClickgateOptions struct {
	// Dir receives the binary, clickgate.yaml and clickgate.log (the
	// benchmark's b.TempDir()).
	Dir string
	// Config is the whole configuration of a clickgate listening on
	// 127.0.0.1:port.
	Config func(port int) string
	// Profile, if set (the benchmark's *_CPUPROFILE knob), is where a CPU
	// profile goes: the test binary is run as Profiled's server instead of
	// the built binary.
	Profile  string
	Profiled Profiled
	// Binary, if set (and Profile is not), is the clickgate binary that
	// runs instead of one built from ./cmd/clickgate: BenchmarkGatewayBase
	// runs two builds side by side.
	Binary string
}

// Clickgate is a running clickgate process.
type Clickgate struct {
	PID int
	URL string // http://127.0.0.1:port, no trailing slash
	// Profile is the absolute path of the CPU profile when the test binary
	// runs as a profiled server; empty when the built binary runs.
	Profile string
}

// StartClickgate builds cmd/clickgate (testkit.BuildClickgate), or takes
// o.Binary, and runs `clickgate serve --config … --log-level warn` (or,
// with o.Profile, the test binary as a profiled server) until the
// benchmark ends, then stops it with SIGTERM (SIGKILL after 15 s). It
// picks a free port, waits for /healthz, and tries another port when the
// one it picked was taken in between ("address already in use"), up to 5
// times.
func StartClickgate(tb testing.TB, o ClickgateOptions) *Clickgate {
	tb.Helper()
	var bin, prof string
	switch {
	case o.Profile != "":
		prof, _ = filepath.Abs(o.Profile)
	case o.Binary != "":
		bin = o.Binary
	default:
		var err error
		if bin, err = testkit.BuildClickgate(o.Dir); err != nil {
			tb.Fatalf("go build ./cmd/clickgate: %v", err)
		}
	}
	cfgPath := filepath.Join(o.Dir, "clickgate.yaml")
	logPath := filepath.Join(o.Dir, "clickgate.log")
	for attempt := 1; ; attempt++ {
		port := freePort(tb)
		if err := os.WriteFile(cfgPath, []byte(o.Config(port)), 0o600); err != nil {
			tb.Fatal(err)
		}
		var cmd *exec.Cmd
		if prof != "" {
			self, err := os.Executable()
			if err != nil {
				tb.Fatal(err)
			}
			cmd = exec.Command(self)
			cmd.Env = append(os.Environ(), o.Profiled.ConfigEnv+"="+cfgPath, o.Profiled.ProfileEnv+"="+prof)
		} else {
			cmd = exec.Command(bin, "serve", "--config", cfgPath, "--log-level", "warn")
		}
		logf, err := os.Create(logPath)
		if err != nil {
			tb.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			tb.Fatal(err)
		}
		logf.Close()
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		tb.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(15 * time.Second):
				_ = cmd.Process.Kill()
				<-exited
			}
		})
		url := fmt.Sprintf("http://127.0.0.1:%d", port)
		if waitHealthy(url, exited) {
			return &Clickgate{PID: cmd.Process.Pid, URL: url, Profile: prof}
		}
		logText, _ := os.ReadFile(logPath)
		if strings.Contains(string(logText), "address already in use") && attempt < 5 {
			continue
		}
		tb.Fatalf("clickgate did not become healthy:\n%s", logText)
	}
}

func freePort(tb testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitHealthy polls base/healthz for up to 30 s; false if it never answers
// 200 or the process exits first.
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

// KeepAliveClient is a load-generating client: keep-alive with up to
// maxIdle idle connections, no proxy, no compression.
func KeepAliveClient(timeout time.Duration, maxIdle int) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:               nil,
			MaxIdleConns:        maxIdle,
			MaxIdleConnsPerHost: maxIdle,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
}
