//go:build unix

// Package ops tests what operators do to a running clickgate serve:
// reload its configuration (SIGHUP, serve --watch) and stop it (SIGTERM)
// while it carries queries to a real ClickHouse (18.16).
package ops

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/clickgate/clickgate/internal/testkit"
)

// TestMain builds cmd/clickgate: the tests signal it as a process.
func TestMain(m *testing.M) { os.Exit(testkit.MainWithClickgate(m)) }

// issuer signs tokens with one key, published in its own JWKS file.
type issuer struct {
	url  string
	key  *testkit.Key
	jwks string
}

func newIssuer(t *testing.T, url, kid string) issuer {
	t.Helper()
	key := testkit.NewKey(t, jose.ES256, kid)
	return issuer{url: url, key: key, jwks: testkit.WriteJWKS(t, t.TempDir(), key)}
}

// processor is the YAML of a jwt processor that trusts the issuer.
func (i issuer) processor() string {
	return fmt.Sprintf("{type: jwt, issuer: %s, jwks_file: %s, audiences: [clickhouse], username_claim: email}", i.url, i.jwks)
}

func (i issuer) token(t *testing.T, email string, groups ...string) string {
	t.Helper()
	return i.key.Sign(t, testkit.Claims(i.url, "clickhouse", email, groups...))
}

// writeRenamed writes a file as most tools do: a temporary file in the
// same directory, renamed over the old one.
func writeRenamed(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// proc is a running clickgate serve whose log lines the test reads.
type proc struct {
	cmd  *exec.Cmd
	base string // http://127.0.0.1:port
	done chan error

	mu    sync.Mutex
	lines []string
	cond  *sync.Cond
}

// startServe runs clickgate serve --config path (plus args) and waits
// until it listens.
func startServe(t *testing.T, path, addr string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(testkit.Clickgate, append([]string{"serve", "--config", path, "--log-level", "info"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, base: "http://" + addr, done: make(chan error, 1)}
	p.cond = sync.NewCond(&p.mu)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.cond.Broadcast()
			p.mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, stderr)
		p.done <- cmd.Wait()
		p.mu.Lock()
		p.lines = append(p.lines, "<exited>")
		p.cond.Broadcast()
		p.mu.Unlock()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("clickgate's log (last 40 lines):\n%s", p.tail(40))
		}
	})
	p.waitLine(t, 0, 30*time.Second, "clickgate listening")
	return p
}

// mark is the number of log lines so far, for waitLine.
func (p *proc) mark() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.lines)
}

// waitLine waits for a log line after from that contains one of subs;
// it returns the line and the index after it.
func (p *proc) waitLine(t *testing.T, from int, timeout time.Duration, subs ...string) (string, int) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	stop := time.AfterFunc(timeout, func() { p.mu.Lock(); p.cond.Broadcast(); p.mu.Unlock() })
	defer stop.Stop()
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := from; ; {
		for ; i < len(p.lines); i++ {
			for _, s := range subs {
				if strings.Contains(p.lines[i], s) {
					return p.lines[i], i + 1
				}
			}
			if p.lines[i] == "<exited>" {
				t.Fatalf("clickgate exited while waiting for %q", subs)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q within %v", subs, timeout)
		}
		p.cond.Wait()
	}
}

func (p *proc) tail(n int) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines[max(0, len(p.lines)-n):], "\n")
}

func (p *proc) count(sub string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.lines {
		if strings.Contains(l, sub) {
			n++
		}
	}
	return n
}

func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// query sends sql by GET with the token and returns status and body.
func query(ctx context.Context, c *http.Client, base, token, sql string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/?query="+url.QueryEscape(sql), nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func mustWrite(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func tempFile(t *testing.T, name string) string { return filepath.Join(t.TempDir(), name) }
