// Package chproc runs a ClickHouse server as a child process: Debian's
// clickhouse-server, or ClickHouse 26.7 (the engine of the npm package chdb,
// libchdb.so) through the chdbserver program beneath this package. The demo
// (internal/demo) and the test harness (internal/chtest) both start their
// servers with it.
//
// Start picks free loopback ports, has the caller write the server's
// config.xml for them, starts the server in its own process group (on Linux
// it dies with its parent), waits until GET /ping answers and, when the
// server exits first or does not answer in time, says why with the end of
// its logs. A server that finds a port taken is started again on other
// ports. Stop sends SIGTERM and SIGKILL after a grace period that each
// caller chooses.
package chproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/clickgate/clickgate/internal/chdb/npmlib"
)

// DefaultBinary is where Debian's package installs the server.
const DefaultBinary = "/usr/sbin/clickhouse-server"

// FindServer returns the path of clickhouse-server: DefaultBinary, else the
// one on PATH; "" when there is none.
func FindServer() string {
	if fi, err := os.Stat(DefaultBinary); err == nil && !fi.IsDir() {
		return DefaultBinary
	}
	if p, err := exec.LookPath("clickhouse-server"); err == nil {
		return p
	}
	return ""
}

// Ports are the loopback ports a server listens on.
type Ports struct {
	HTTP int
	TCP  int // native protocol
}

// Config says which server to run and how.
type Config struct {
	// Name is the server in messages, e.g. "clickhouse-server".
	Name string
	// Binary is clickhouse-server, or the chdbserver program when ChDBLib
	// is set.
	Binary string
	// ChDBLib, when set, is libchdb.so: Binary is then the chdbserver
	// program, which Start gives the query that starts the configured
	// listeners and serves until the process ends.
	ChDBLib string
	// Dir is the server's directory: its working directory, config.xml
	// (written by Configure) and log/, where Start puts the server's
	// standard output (stdout.log) and where the configuration should put
	// its error log (err.log): failure messages show the end of both.
	Dir string
	// Configure writes Dir/config.xml for ports. Start calls it once per
	// attempt: again, with other ports, after the server found one taken.
	Configure func(Ports) error
	// Timeout bounds the wait for GET /ping of each attempt.
	Timeout time.Duration
	// Grace is how long Stop waits after SIGTERM before it sends SIGKILL;
	// zero sends SIGKILL at once. A chDB server always gets SIGKILL at
	// once: its engine keeps serving on SIGTERM.
	Grace time.Duration
	// PickPort returns a free loopback port; FreePort when nil. Tests set
	// it to hand out a taken port.
	PickPort func() (int, error)
	// OnRetry, when set, is told why an attempt failed before the next one
	// starts on other ports.
	OnRetry func(error)
}

// attempts is how many times Start tries ports before it gives up.
const attempts = 5

// ErrAddrInUse is wrapped by Start's error when the server found a port
// taken on every attempt.
var ErrAddrInUse = errors.New("address already in use")

// ExitError is a server that exited before it answered GET /ping.
type ExitError struct {
	Name string
	Err  error  // the process's exit status
	Log  string // the end of its logs, each headed by its path
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("%s exited before it was ready (%v)%s", e.Name, e.Err, e.Log)
}

// Process is a running server.
type Process struct {
	Ports   Ports
	HTTPURL string // http://127.0.0.1:PORT
	PID     int
	// StartDuration is the time from starting the process to the first
	// answer of GET /ping.
	StartDuration time.Duration

	dir      string
	grace    time.Duration
	cmd      *exec.Cmd
	exited   chan struct{} // closed when the process has exited
	waitErr  error         // set before exited is closed
	stopOnce sync.Once
}

// Start runs the server and returns once it answers GET /ping. When ctx
// ends first, the server is stopped and ctx's error returned.
func Start(ctx context.Context, c Config) (*Process, error) {
	pick := c.PickPort
	if pick == nil {
		pick = FreePort
	}
	for attempt := 1; ; attempt++ {
		ports, err := freePorts(pick)
		if err != nil {
			return nil, err
		}
		if err := c.Configure(ports); err != nil {
			return nil, err
		}
		p, err := startOnce(ctx, c, ports)
		if err == nil || !errors.Is(err, ErrAddrInUse) || attempt == attempts {
			return p, err
		}
		if c.OnRetry != nil {
			c.OnRetry(err)
		}
	}
}

func freePorts(pick func() (int, error)) (Ports, error) {
	httpPort, err := pick()
	if err != nil {
		return Ports{}, err
	}
	tcpPort, err := pick()
	for err == nil && tcpPort == httpPort {
		tcpPort, err = pick()
	}
	return Ports{HTTP: httpPort, TCP: tcpPort}, err
}

// FreePort asks the kernel for a free loopback port. Another process may
// take it before the server binds it; Start then tries other ports.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// serveQuery makes chDB's command-line entry a server: it starts the
// listeners of the configuration, then sleeps for a day, as long as they
// serve; Stop ends the process.
const serveQuery = "SYSTEM START LISTEN HTTP; SYSTEM START LISTEN TCP; " +
	"SELECT sleepEachRow(1) FROM numbers(86400) SETTINGS max_block_size = 1 FORMAT Null"

func startOnce(ctx context.Context, c Config, ports Ports) (*Process, error) {
	logDir := filepath.Join(c.Dir, "log")
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		return nil, err
	}
	out, err := os.OpenFile(filepath.Join(logDir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	defer out.Close() // the child has its own descriptor
	// Not CommandContext: Stop ends the server, gracefully.
	args := []string{"--config-file=" + filepath.Join(c.Dir, "config.xml")}
	grace := c.Grace
	if c.ChDBLib != "" {
		args = append(args, "--multiquery", "--query", serveQuery)
		grace = 0
	}
	cmd := exec.Command(c.Binary, args...)
	if c.ChDBLib != "" {
		cmd.Env = append(os.Environ(), npmlib.EnvLibPath+"="+c.ChDBLib)
	}
	cmd.Dir = c.Dir
	cmd.Stdout, cmd.Stderr = out, out
	setProcAttr(cmd)
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", c.Binary, err)
	}
	p := &Process{
		Ports:   ports,
		HTTPURL: "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(ports.HTTP)),
		PID:     cmd.Process.Pid,
		dir:     c.Dir,
		grace:   grace,
		cmd:     cmd,
		exited:  make(chan struct{}),
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()

	deadline := time.Now().Add(c.Timeout)
	ping := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for {
		select {
		case <-p.exited:
			tail := p.LogTail()
			if strings.Contains(tail, "Address already in use") {
				return nil, fmt.Errorf("%w (ports %d, %d)", ErrAddrInUse, ports.HTTP, ports.TCP)
			}
			return nil, &ExitError{Name: c.Name, Err: p.waitErr, Log: tail}
		case <-ctx.Done():
			p.Stop()
			return nil, ctx.Err()
		default:
		}
		if resp, err := ping.Get(p.HTTPURL + "/ping"); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && string(body) == "Ok.\n" {
				p.StartDuration = time.Since(t0)
				return p, nil
			}
		}
		if time.Now().After(deadline) {
			p.Stop()
			return nil, fmt.Errorf("%s did not answer GET /ping within %v%s", c.Name, c.Timeout, p.LogTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// LogTail is the end of the server's error log and standard output, each
// headed by its path, for failure messages; "" when both are empty.
func (p *Process) LogTail() string {
	var b strings.Builder
	for _, name := range []string{"err.log", "stdout.log"} {
		path := filepath.Join(p.dir, "log", name)
		data, err := os.ReadFile(path)
		if err != nil || len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		const max = 4000
		if len(data) > max {
			data = data[len(data)-max:]
		}
		fmt.Fprintf(&b, "\n--- tail of %s ---\n%s", path, bytes.TrimSpace(data))
	}
	return b.String()
}

// Stop ends the server: SIGTERM to its process group, SIGKILL after the
// grace period (at once without one), and waits until it has exited. It
// is idempotent.
func (p *Process) Stop() {
	p.stopOnce.Do(func() {
		select {
		case <-p.exited:
			return
		default:
		}
		if p.grace <= 0 {
			signalGroup(p.cmd, true)
			<-p.exited
			return
		}
		signalGroup(p.cmd, false)
		select {
		case <-p.exited:
		case <-time.After(p.grace):
			signalGroup(p.cmd, true)
			<-p.exited
		}
	})
}

// Done is closed when the server process has ended.
func (p *Process) Done() <-chan struct{} { return p.exited }
