package chpool

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clickgate/clickgate/internal/config"
)

func TestParseReplicasStatus(t *testing.T) {
	for _, c := range []struct {
		name     string
		status   int
		text     string
		delay    time.Duration
		readonly string
		err      bool
	}{
		{"ok", 200, "Ok.\n", 0, "", false},
		{"no replicated table (verbose)", 200, "", 0, "", false},
		{"18.16 verbose", 200, "db.t1:\tAbsolute delay: 0. Relative delay: 0.\ndb.t2:\tAbsolute delay: 12. Relative delay: 3.\n", 12 * time.Second, "", false},
		{"lagging 503", 503, "default.events:\tAbsolute delay: 360. Relative delay: 360.\n", 360 * time.Second, "", false},
		{"quoted names", 200, "`my db`.`t-1`:\tAbsolute delay: 7. Relative delay: 0.\n", 7 * time.Second, "", false},
		{"readonly", 503, "db.t:\tis readonly. \ndb.u:\tAbsolute delay: 1. Relative delay: 1.\n", time.Second, "db.t", false},
		{"500", 500, "Code: 999. DB::Exception: boom\n", 0, "", true},
		{"404 proxy", 404, "not found", 0, "", true},
		{"unknown line", 200, "something else\n", 0, "", true},
		{"503 empty", 503, "", 0, "", true},
	} {
		d, ro, err := parseReplicasStatus(c.status, c.text)
		if d != c.delay || ro != c.readonly || (err != nil) != c.err {
			t.Errorf("%s: got %v %q %v, want %v %q err=%v", c.name, d, ro, err, c.delay, c.readonly, c.err)
		}
	}
}

func TestFmtDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{5 * time.Minute: "5m", 90 * time.Second: "1m30s", time.Hour: "1h", 2 * time.Second: "2s", 300 * time.Millisecond: "300ms", 90 * time.Minute: "1h30m"} {
		if got := fmtDuration(d); got != want {
			t.Errorf("fmtDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestNewErrors(t *testing.T) {
	for _, urls := range [][]string{nil, {"ftp://x"}, {"localhost:8123"}, {"http://a:1", "http://a:1/"}} {
		if _, err := New(urls, Options{}); err == nil {
			t.Errorf("New(%q): no error", urls)
		} else {
			t.Logf("New(%q): %v", urls, err)
		}
	}
	// A second pool on the same registry (a reload) reuses the metrics.
	reg := prometheus.NewRegistry()
	for range 2 {
		if _, err := New([]string{"http://127.0.0.1:1"}, Options{Registerer: reg}); err != nil {
			t.Fatal(err)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
		if l := mf.GetMetric()[0].GetLabel()[0]; l.GetName() != "node" || l.GetValue() != "127.0.0.1:1" {
			t.Errorf("%s: label %s=%s", mf.GetName(), l.GetName(), l.GetValue())
		}
	}
	t.Logf("metrics: %v", names)
	if len(names) != 6 {
		t.Errorf("metrics: %v", names)
	}
}

// deadURL is the URL of a port nothing listens on.
func deadURL(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

// counter is a fake node: /ping answers Ok., every other path counts and
// answers "1\n".
type counter struct {
	*httptest.Server
	n atomic.Int64
}

func newCounter(t *testing.T) *counter {
	c := &counter{}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ping" {
			io.WriteString(w, "Ok.\n")
			return
		}
		io.Copy(io.Discard, r.Body)
		c.n.Add(1)
		io.WriteString(w, "1\n")
	}))
	t.Cleanup(c.Close)
	return c
}

func post(ctx context.Context, c *http.Client, base, sql string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/", strings.NewReader(sql))
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	return string(b), err
}

func TestRetryBeforeWrite(t *testing.T) {
	dead, live := deadURL(t), newCounter(t)
	p, err := New([]string{dead, live.URL}, Options{Retries: 2})
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: p.Transport()}
	for range 5 {
		if _, err := post(t.Context(), c, dead, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
	}
	ns := p.Nodes()
	t.Logf("dead: %+v", ns[0])
	if ns[0].Up || ns[0].Retries != 1 || ns[0].Requests != 1 || live.n.Load() != 5 {
		t.Errorf("dead node %+v, live node served %d of 5", ns[0], live.n.Load())
	}

	// Without retries, or with a body that cannot be replayed, the error.
	for _, tc := range []struct {
		name    string
		retries int
		body    func() io.Reader
	}{
		{"no retries", 0, func() io.Reader { return strings.NewReader("SELECT 1") }},
		{"body not replayable", 2, func() io.Reader { return io.MultiReader(strings.NewReader("SELECT 1")) }},
	} {
		p, _ := New([]string{dead, live.URL}, Options{Retries: tc.retries})
		req, _ := http.NewRequest(http.MethodPost, dead+"/", tc.body())
		_, err := (&http.Client{Transport: p.Transport()}).Do(req)
		var e *Error
		if !errors.As(err, &e) || e.Status != 502 || e.Code != CodeNetworkError || !strings.Contains(e.Msg, "is unreachable") {
			t.Errorf("%s: %v", tc.name, err)
		}
		t.Logf("%s: %v", tc.name, err)
	}
}

func TestNoNodeUp(t *testing.T) {
	p, err := New([]string{deadURL(t), deadURL(t)}, Options{Retries: 2})
	if err != nil {
		t.Fatal(err)
	}
	p.Check(t.Context())
	for _, n := range p.Nodes() {
		if n.Up {
			t.Fatalf("%+v", n)
		}
		t.Logf("%s: %s", n.Node, n.Reason)
	}
	_, err = post(t.Context(), &http.Client{Transport: p.Transport()}, "http://x", "SELECT 1")
	var e *Error
	if !errors.As(err, &e) || e.Status != 503 || e.Code != 210 || e.Msg != "clickgate: no ClickHouse node is reachable (2 of 2 down)" {
		t.Fatalf("%v", err)
	}
}

// TestNeverRetriedAfterWrite: a node that reads the request and closes the
// connection without answering sees it exactly once.
func TestNeverRetriedAfterWrite(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var seen atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				if req.URL.Path != "/ping" {
					seen.Add(1)
				}
			}()
		}
	}()
	other := newCounter(t)
	closer := "http://" + ln.Addr().String()
	p, err := New([]string{closer, other.URL}, Options{Retries: 2})
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: p.Transport()}
	for i, method := range []string{http.MethodPost, http.MethodGet} {
		p.nodes[1].picked = p.seq + 1 // the next pick is the closer (both nodes idle)
		req, _ := http.NewRequest(method, closer+"/?query=SELECT+1", strings.NewReader(map[string]string{"POST": "SELECT 1", "GET": ""}[method]))
		if method == http.MethodGet {
			req.Body, req.GetBody, req.ContentLength = nil, nil, 0
		}
		_, err := c.Do(req)
		var e *Error
		if !errors.As(err, &e) || e.Status != 502 || e.Code != 210 {
			t.Fatalf("%s: %v", method, err)
		}
		t.Logf("%s: %v", method, err)
		if got := seen.Load(); got != int64(i+1) {
			t.Fatalf("%s: the closing node saw %d requests, want %d", method, got, i+1)
		}
		if other.n.Load() != 0 {
			t.Fatalf("%s: retried on the other node", method)
		}
	}
	ns := p.Nodes()
	if !ns[0].Up || ns[0].Retries != 0 || ns[0].Errors != 2 {
		t.Errorf("closer: %+v", ns[0])
	}
}

// replicaFake answers /ping and /replicas_status?verbose=1 as ClickHouse
// does, with a settable absolute delay, and counts the other requests.
type replicaFake struct {
	*httptest.Server
	delay  atomic.Int64 // seconds
	served atomic.Int64
}

func newReplicaFake(t *testing.T, delay int64) *replicaFake {
	f := &replicaFake{}
	f.delay.Store(delay)
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ping":
			io.WriteString(w, "Ok.\n")
		case "/replicas_status":
			d := f.delay.Load()
			// 20.x and later: 503 when a table lags more than its
			// min_absolute_delay_to_close (default 0: never); the lines
			// with verbose=1 or when not ok, else "Ok.\n".
			if d > 300 {
				w.WriteHeader(http.StatusServiceUnavailable)
			} else if r.URL.Query().Get("verbose") != "1" {
				io.WriteString(w, "Ok.\n")
				return
			}
			fmt.Fprintf(w, "default.events:\tAbsolute delay: %d. Relative delay: %d.\n", d, d)
			fmt.Fprintf(w, "`my db`.`other-table`:\tAbsolute delay: 0. Relative delay: 0.\n")
		default:
			io.Copy(io.Discard, r.Body)
			f.served.Add(1)
			io.WriteString(w, "1\n")
		}
	}))
	t.Cleanup(f.Close)
	return f
}

// logs collects log records.
type logs struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *logs) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(b)
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func TestLaggingFakes(t *testing.T) {
	lag, fine := newReplicaFake(t, 360), newReplicaFake(t, 0)
	var lg logs
	p, err := New([]string{lag.URL, fine.URL}, Options{Health: config.Health{MaxReplicaDelay: time.Minute}, Logger: slog.New(slog.NewTextHandler(&lg, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		p.Check(t.Context())
	}
	ns := p.Nodes()
	if !ns[0].Up || !ns[0].Lagging || ns[0].Delay != 360*time.Second || ns[1].Lagging {
		t.Fatalf("%+v", ns)
	}
	c := &http.Client{Transport: p.Transport()}
	for range 20 {
		if _, err := post(t.Context(), c, lag.URL, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
	}
	if lag.served.Load() != 0 || fine.served.Load() != 20 {
		t.Fatalf("lagging served %d, fine %d", lag.served.Load(), fine.served.Load())
	}
	lag.delay.Store(5)
	p.Check(t.Context())
	for range 20 {
		if _, err := post(t.Context(), c, lag.URL, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
	}
	if lag.served.Load() != 10 {
		t.Fatalf("caught up node served %d of 20", lag.served.Load())
	}
	out := lg.String()
	t.Logf("log:\n%s", out)
	if strings.Count(out, "lagging") != 1 || strings.Count(out, "caught up") != 1 {
		t.Errorf("want one lagging and one caught-up record")
	}
}

func TestSessionTTLAndBound(t *testing.T) {
	a, b := newCounter(t), newCounter(t)
	p, err := New([]string{a.URL, b.URL}, Options{SessionTTL: 100 * time.Millisecond, MaxSessions: 2})
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Transport: p.Transport()}
	send := func(sid string, extra string) int {
		t.Helper()
		before := p.Nodes()
		resp, err := c.Post(a.URL+"/?session_id="+sid+extra, "text/plain", strings.NewReader("SELECT 1"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		for i, n := range p.Nodes() {
			if n.Requests != before[i].Requests {
				return i
			}
		}
		t.Fatal("no node counted the request")
		return -1
	}
	first := send("x", "")
	// Used within the TTL: refreshed, stays.
	for range 4 {
		time.Sleep(60 * time.Millisecond)
		if got := send("x", ""); got != first {
			t.Fatalf("session x moved from node %d to %d within its TTL", first, got)
		}
	}
	// Bounded: a third session evicts the one closest to expiry.
	send("y", "")
	send("z", "")
	p.mu.Lock()
	n, _, hasY := len(p.sessions), p.sessions["x"], p.sessions["y"] != nil
	p.mu.Unlock()
	if n != 2 || !hasY {
		t.Fatalf("%d sessions remembered (y kept: %v)", n, hasY)
	}
	// A request's own session_timeout lengthens the TTL.
	send("long", "&session_timeout=3600")
	time.Sleep(150 * time.Millisecond)
	p.mu.Lock()
	s := p.sessions["long"]
	p.mu.Unlock()
	if s == nil || time.Until(s.expires) < time.Hour-time.Minute {
		t.Fatalf("session_timeout=3600 not honoured: %+v", s)
	}
	// Expired: forgotten at the next check.
	p.Check(t.Context())
	p.mu.Lock()
	_, hasZ := p.sessions["z"]
	p.mu.Unlock()
	if hasZ {
		t.Fatal("expired session z still remembered after a check")
	}
}
