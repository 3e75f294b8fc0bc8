package chpool

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/config"
)

func startServers(t *testing.T, k int) ([]*chtest.Server, []string) {
	t.Helper()
	var srvs []*chtest.Server
	var urls []string
	for range k {
		s := chtest.Start(t, chtest.Options{})
		t.Logf("ClickHouse %s at %s (pid %d) started in %s", s.Version, s.HTTPURL, s.PID, s.StartDuration.Round(time.Millisecond))
		srvs = append(srvs, s)
		urls = append(urls, s.HTTPURL)
	}
	return srvs, urls
}

// run starts p's health checks until the test ends.
func run(t *testing.T, p *Pool) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; p.Close() })
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tlogWriter{t}, nil))
}

type tlogWriter struct{ t *testing.T }

func (w tlogWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// query runs sql as the reader (or as user) with the given URL parameters.
func query(ctx context.Context, c *http.Client, base, user, password, sql string, params url.Values) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/?"+params.Encode(), strings.NewReader(sql))
	if err != nil {
		return "", err
	}
	req.SetBasicAuth(user, password)
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return string(b), err
}

func waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

// TestKillNode: 16 clients read through three nodes; one node is killed
// with SIGKILL. Only requests that were started before the pool marked the
// node down may fail.
func TestKillNode(t *testing.T) {
	srvs, urls := startServers(t, 3)
	p, err := New(urls, Options{Health: config.Health{Interval: 200 * time.Millisecond, Timeout: 2 * time.Second},
		Retries: 2, ConnectTimeout: time.Second, ResponseTimeout: 10 * time.Second, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	run(t, p)
	c := &http.Client{Transport: p.Transport()}

	type failure struct {
		start, end time.Time
		err        error
	}
	var (
		mu       sync.Mutex
		failures []failure
		ok       atomic.Int64
		killedAt time.Time
	)
	ctx, stop := context.WithTimeout(t.Context(), 3*time.Second)
	defer stop()
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for ctx.Err() == nil {
				start := time.Now()
				out, err := query(context.Background(), c, urls[0], chtest.ReaderUser, chtest.ReaderPassword, "SELECT 1", nil)
				if err == nil && out != "1\n" {
					err = fmt.Errorf("answer %q", out)
				}
				if err != nil {
					mu.Lock()
					failures = append(failures, failure{start, time.Now(), err})
					mu.Unlock()
					continue
				}
				ok.Add(1)
			}
		})
	}
	time.Sleep(time.Second)
	before := p.Nodes()
	mu.Lock()
	killedAt = time.Now()
	mu.Unlock()
	if err := syscall.Kill(srvs[2].PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	ns := p.Nodes()
	victim := ns[2]
	if victim.Up {
		t.Fatalf("the killed node is up: %+v", victim)
	}
	downAt := victim.Since
	t.Logf("in flight on the killed node just before the kill (sampled): %d; marked down %s after the kill: %s",
		before[2].InFlight, downAt.Sub(killedAt).Round(time.Microsecond), victim.Reason)
	t.Logf("%d requests answered, %d failed", ok.Load(), len(failures))
	for _, f := range failures {
		t.Logf("failure started %s after the kill, took %s: %v", f.start.Sub(killedAt).Round(time.Microsecond), f.end.Sub(f.start).Round(time.Microsecond), f.err)
		if !f.start.Before(downAt) {
			t.Errorf("a request started after the node was marked down failed: %v", f.err)
		}
		// Either RoundTrip failed on the killed node, or the response
		// began and its body was cut by the kill.
		var e *Error
		if !(errors.As(f.err, &e) && e.Node == victim.Node) && !errors.Is(f.err, io.ErrUnexpectedEOF) {
			t.Errorf("failure not from the killed node: %v", f.err)
		}
	}
	for _, n := range ns {
		t.Logf("%s: up=%v requests=%d errors=%d retries=%d in_flight=%d", n.Node, n.Up, n.Requests, n.Errors, n.Retries, n.InFlight)
		if n.InFlight != 0 {
			t.Errorf("%s: %d in flight after the end", n.Node, n.InFlight)
		}
	}
	if ok.Load() < 1000 {
		t.Errorf("only %d requests answered", ok.Load())
	}
}

// relay is a TCP relay in front of a node that can be closed and opened
// again on the same address, like a node restart.
type relay struct {
	addr, target string
	mu           sync.Mutex
	ln           net.Listener
	conns        map[net.Conn]bool
}

func newRelay(t *testing.T, target string) *relay {
	r := &relay{addr: "127.0.0.1:0", target: target, conns: map[net.Conn]bool{}}
	r.open(t)
	r.addr = r.ln.Addr().String()
	t.Cleanup(r.close)
	return r
}

func (r *relay) open(t *testing.T) {
	ln, err := net.Listen("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	r.ln = ln
	r.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", r.target)
			if err != nil {
				c.Close()
				continue
			}
			r.mu.Lock()
			r.conns[c], r.conns[u] = true, true
			r.mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
}

func (r *relay) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ln.Close()
	for c := range r.conns {
		c.Close()
	}
	clear(r.conns)
}

// TestNodeComesBack: a node that goes away (its relay closed) is marked
// down; when it comes back it takes traffic again within two intervals.
func TestNodeComesBack(t *testing.T) {
	srvs, _ := startServers(t, 2)
	r := newRelay(t, srvs[0].HTTPAddr)
	const interval = 200 * time.Millisecond
	p, err := New([]string{"http://" + r.addr, srvs[1].HTTPURL}, Options{Health: config.Health{Interval: interval, Timeout: 500 * time.Millisecond},
		Retries: 2, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	run(t, p)
	c := &http.Client{Transport: p.Transport()}
	read := func(k int) {
		t.Helper()
		for range k {
			if _, err := query(t.Context(), c, srvs[1].HTTPURL, chtest.ReaderUser, chtest.ReaderPassword, "SELECT 1", nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	read(10)
	if n := p.Nodes()[0].Requests; n != 5 {
		t.Fatalf("the relayed node got %d of 10", n)
	}

	r.close()
	took := waitFor(t, "relayed node down", 2*interval+time.Second, func() bool { return !p.Nodes()[0].Up })
	t.Logf("marked down %s after its relay closed: %s", took.Round(time.Millisecond), p.Nodes()[0].Reason)
	read(10) // all on the other node
	before := p.Nodes()[0].Requests

	r.open(t)
	took = waitFor(t, "relayed node up", 2*interval, func() bool { return p.Nodes()[0].Up })
	t.Logf("up again %s after its relay reopened", took.Round(time.Millisecond))
	read(10)
	if got := p.Nodes()[0].Requests - before; got != 5 {
		t.Fatalf("the node that came back got %d of 10", got)
	}
}

// TestSpread: equal nodes get equal shares; a busy node gets none while
// others are idle.
func TestSpread(t *testing.T) {
	_, urls := startServers(t, 3)
	p, err := New(urls, Options{Health: config.Health{Interval: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: p.Transport()}
	requests := func() []uint64 {
		var out []uint64
		for _, n := range p.Nodes() {
			out = append(out, n.Requests)
		}
		return out
	}
	// Sequential: round robin, exactly 10 each.
	for range 30 {
		if _, err := query(t.Context(), c, urls[0], chtest.ReaderUser, chtest.ReaderPassword, "SELECT 1", nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := requests(); got[0] != 10 || got[1] != 10 || got[2] != 10 {
		t.Fatalf("sequential: %v", got)
	}
	// Concurrent: 8 clients × 50 queries.
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				if _, err := query(t.Context(), c, urls[0], chtest.ReaderUser, chtest.ReaderPassword, "SELECT count() FROM system.one", nil); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	got := requests()
	t.Logf("concurrent, 400 queries: %d %d %d", got[0]-10, got[1]-10, got[2]-10)
	// Least in flight favours a node that answers faster, so on a busy
	// machine the shares differ somewhat; none may starve.
	for _, g := range got {
		if g-10 < 400/3/2 {
			t.Errorf("uneven: %v", got)
		}
	}
	// Least in flight: a slow query holds one node; the others share the
	// rest.
	base := requests()
	slow := make(chan error, 1)
	go func() {
		_, err := query(t.Context(), c, urls[0], chtest.ReaderUser, chtest.ReaderPassword, "SELECT sleep(2)", nil)
		slow <- err
	}()
	busy := -1
	waitFor(t, "the slow query in flight", 2*time.Second, func() bool {
		for i, n := range p.Nodes() {
			if n.InFlight == 1 {
				busy = i
				return true
			}
		}
		return false
	})
	for range 10 {
		if _, err := query(t.Context(), c, urls[0], chtest.ReaderUser, chtest.ReaderPassword, "SELECT 1", nil); err != nil {
			t.Fatal(err)
		}
	}
	got = requests()
	for i := range got {
		want := uint64(5)
		if i == busy {
			want = 1 // the slow query
		}
		if got[i]-base[i] != want {
			t.Errorf("node %d (busy: %v) got %d requests during the slow query, want %d", i, i == busy, got[i]-base[i], want)
		}
	}
	if err := <-slow; err != nil {
		t.Fatal(err)
	}
}

// TestSessions: a session's requests stay on its node (a temporary table
// exists there only); when that node is gone, a clear error.
func TestSessions(t *testing.T) {
	srvs, urls := startServers(t, 2)
	p, err := New(urls, Options{Health: config.Health{Interval: time.Hour}, Retries: 2})
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: p.Transport()}
	q := func(sid, sql string) (string, error) {
		return query(t.Context(), c, urls[0], chtest.AdminUser, chtest.AdminPassword, sql, url.Values{"session_id": {sid}})
	}
	node := map[string]int{}
	for i := range 6 {
		sid := fmt.Sprintf("s%d", i)
		before := p.Nodes()
		if _, err := q(sid, "CREATE TEMPORARY TABLE t (x UInt8)"); err != nil {
			t.Fatal(err)
		}
		for j, n := range p.Nodes() {
			if n.Requests != before[j].Requests {
				node[sid] = j
			}
		}
	}
	t.Logf("session → node: %v", node)
	for range 5 {
		for sid := range node {
			if _, err := q(sid, "INSERT INTO t VALUES (1)"); err != nil {
				t.Fatalf("%s: %v", sid, err)
			}
		}
	}
	for sid := range node {
		if out, err := q(sid, "SELECT count() FROM t"); err != nil || out != "5\n" {
			t.Fatalf("%s: %q %v", sid, out, err)
		}
	}
	ns := p.Nodes()
	t.Logf("requests per node: %d %d", ns[0].Requests, ns[1].Requests)
	if ns[0].Requests != 21 || ns[1].Requests != 21 { // 6 + 30 + 6 requests
		t.Errorf("sessions were not spread evenly: %d %d", ns[0].Requests, ns[1].Requests)
	}

	// The node of s0 goes away: its sessions are lost, others go on.
	gone := node["s0"]
	srvs[gone].Stop()
	// The first request may be written on a kept-alive connection that the
	// stopping server closed: it fails with EOF and is not retried (it
	// cannot be told apart from a query that ran). Then the next one finds
	// the node unreachable, and the one after knows it is down.
	_, err = q("s0", "SELECT count() FROM t")
	var e *Error
	if errors.As(err, &e) && e.Code == CodeNetworkError {
		t.Logf("first request after the stop: %v", err)
		_, err = q("s0", "SELECT count() FROM t")
	}
	for range 2 {
		if !errors.As(err, &e) || e.Code != CodeSessionNotFound || e.Status != 502 {
			t.Fatalf("%v", err)
		}
		want := fmt.Sprintf("clickgate: the ClickHouse session s0 was on node %s, which is unreachable; the session is lost, start a new one", p.Nodes()[gone].Node)
		if e.Msg != want {
			t.Fatalf("got %q, want %q", e.Msg, want)
		}
		t.Logf("%v (cause: %v)", e, e.Err)
		_, err = q("s0", "SELECT count() FROM t")
	}
	for sid, n := range node {
		if n == gone {
			continue
		}
		if out, err := q(sid, "SELECT count() FROM t"); err != nil || out != "5\n" {
			t.Fatalf("%s: %q %v", sid, out, err)
		}
	}
	// A new session starts on the node left.
	if _, err := q("fresh", "CREATE TEMPORARY TABLE t (x UInt8)"); err != nil {
		t.Fatal(err)
	}
}

// TestLaggingReplica: a node whose /replicas_status shows a delay above
// max_replica_delay gets no requests while a real node is fine; when that
// one is gone, the lagging one serves.
func TestLaggingReplica(t *testing.T) {
	srvs, urls := startServers(t, 1)
	lag := newReplicaFake(t, 360)
	p, err := New([]string{lag.URL, urls[0]}, Options{Health: config.Health{Interval: time.Hour, Timeout: time.Second, MaxReplicaDelay: time.Minute},
		Retries: 2, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	p.Check(t.Context())
	ns := p.Nodes()
	t.Logf("%+v", ns)
	if !ns[0].Lagging || ns[1].Lagging || !ns[1].Up {
		t.Fatalf("%+v", ns)
	}
	c := &http.Client{Transport: p.Transport()}
	for range 20 {
		if _, err := query(t.Context(), c, urls[0], chtest.ReaderUser, chtest.ReaderPassword, "SELECT 1", nil); err != nil {
			t.Fatal(err)
		}
	}
	if lag.served.Load() != 0 {
		t.Fatalf("the lagging node served %d of 20", lag.served.Load())
	}
	srvs[0].Stop()
	p.Check(t.Context())
	for range 5 {
		if _, err := query(t.Context(), c, urls[0], chtest.ReaderUser, chtest.ReaderPassword, "SELECT 1", nil); err != nil {
			t.Fatal(err)
		}
	}
	if lag.served.Load() != 5 {
		t.Fatalf("with the real node down, the lagging node served %d of 5", lag.served.Load())
	}
}

// TestStoppedNode: a node stopped with SIGSTOP accepts connections but
// answers nothing: requests fail after response_timeout, not later, and
// the health check marks it down.
func TestStoppedNode(t *testing.T) {
	srvs, urls := startServers(t, 2)
	const responseTimeout = time.Second
	p, err := New(urls, Options{Health: config.Health{Interval: time.Hour, Timeout: 300 * time.Millisecond},
		Retries: 2, ResponseTimeout: responseTimeout, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: p.Transport()}
	sess := url.Values{"session_id": {"pinned"}}
	if _, err := query(t.Context(), c, urls[0], chtest.ReaderUser, chtest.ReaderPassword, "SELECT 1", sess); err != nil {
		t.Fatal(err)
	}
	if p.Nodes()[0].Requests != 1 {
		t.Fatal("the session is not on node 0")
	}
	if err := syscall.Kill(srvs[0].PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(srvs[0].PID, syscall.SIGCONT) })
	// kill returns before every thread has stopped.
	waitFor(t, "every thread of the server stopped", 5*time.Second, func() bool { return stopped(srvs[0].PID) })

	// The session's request is written to the stopped node and times out.
	start := time.Now()
	_, err = query(t.Context(), c, urls[0], chtest.ReaderUser, chtest.ReaderPassword, "SELECT 1", sess)
	took := time.Since(start)
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeTimeoutExceeded || e.Status != 504 {
		t.Fatalf("%v", err)
	}
	want := fmt.Sprintf("clickgate: ClickHouse node %s did not answer within clickhouse.response_timeout = 1s", srvs[0].HTTPAddr)
	if e.Msg != want {
		t.Fatalf("got %q, want %q", e.Msg, want)
	}
	t.Logf("after %s: %v", took.Round(time.Millisecond), err)
	if took < responseTimeout || took > responseTimeout+500*time.Millisecond {
		t.Errorf("took %s", took)
	}
	if p.Nodes()[0].Up {
		t.Errorf("the node is still up after a response timeout")
	}
	// Now everything goes to the other node, without waiting.
	for range 10 {
		start := time.Now()
		if _, err := query(t.Context(), c, urls[0], chtest.ReaderUser, chtest.ReaderPassword, "SELECT 1", nil); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > responseTimeout {
			t.Errorf("a request took %s", d)
		}
	}

	// The health check of a fresh pool finds it down too.
	p2, err := New(urls, Options{Health: config.Health{Timeout: 300 * time.Millisecond}, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	p2.Check(t.Context())
	ns := p2.Nodes()
	t.Logf("check took %s: %s: up=%v %s", time.Since(start).Round(time.Millisecond), ns[0].Node, ns[0].Up, ns[0].Reason)
	if ns[0].Up || !ns[1].Up {
		t.Fatalf("%+v", ns)
	}
}

// stopped reports whether every thread of process pid is stopped.
func stopped(pid int) bool {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, task := range tasks {
		b, err := os.ReadFile(dir + "/" + task.Name() + "/stat")
		if err != nil {
			continue // ended
		}
		// pid (comm) S ...: the state follows the last ')'.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 || i+2 >= len(b) || b[i+2] != 'T' && b[i+2] != 't' {
			return false
		}
	}
	return true
}
