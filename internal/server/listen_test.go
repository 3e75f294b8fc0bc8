package server

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestDefaultMaxConnections(t *testing.T) {
	for _, tc := range []struct{ files, want int }{
		{0, 10000}, {1024, 384}, {4096, 1920}, {20000, 9872}, {1 << 20, 10000}, {100, 32},
	} {
		if got := defaultMaxConnections(tc.files); got != tc.want {
			t.Errorf("file limit %d: %d, want %d", tc.files, got, tc.want)
		}
	}
	if n := DefaultMaxConnections(); n < minDefaultConnections || n > maxConnectionsCeiling {
		t.Errorf("DefaultMaxConnections() = %d", n)
	}
}

func TestLimitListener(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := newConnMetrics(prometheus.NewRegistry())
	lim := m.limit(raw, "main", 3, "server.max_connections", nil)
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	hs.ConnState = lim.connState
	go hs.Serve(lim)
	t.Cleanup(func() { hs.Close() })
	addr := raw.Addr().String()

	get := func() (int, string, error) {
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
		resp, err := c.Get("http://" + addr + "/")
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	var idle []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	t.Cleanup(func() {
		for _, c := range idle {
			c.Close()
		}
	})
	waitFor(t, func() bool { return value(lim.open) == 3 })

	// At the cap, with no connection idle for a second: a 503, at once.
	start := time.Now()
	status, body, err := get()
	if err != nil || status != http.StatusServiceUnavailable || body != "clickgate: too many connections (server.max_connections = 3); try again later\n" {
		t.Fatalf("at the cap: %d %q %v", status, body, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the refusal took %v", d)
	}
	// A silent socket beyond the cap gets the 503 too, and is closed.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	b, err := io.ReadAll(c)
	c.Close()
	if !strings.HasPrefix(string(b), "HTTP/1.1 503 ") || err != nil {
		t.Fatalf("silent socket: %q %v", b, err)
	}
	if got := value(lim.refused); got != 2 {
		t.Errorf("refused = %v, want 2", got)
	}

	// Once the idle ones have idled for evictAfter, the oldest makes room.
	time.Sleep(evictAfter + 100*time.Millisecond)
	if status, body, err := get(); err != nil || status != http.StatusOK || body != "ok" {
		t.Fatalf("after eviction: %d %q %v", status, body, err)
	}
	if got := value(lim.evicted); got != 1 {
		t.Errorf("evicted = %v, want 1", got)
	}
	idle[0].SetReadDeadline(time.Now().Add(time.Second))
	if _, err := idle[0].Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("the oldest idle connection: %v, want EOF (closed)", err)
	}
	waitFor(t, func() bool { return value(lim.open) == 2 && lim.n.Load() == 2 })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// value is a gauge's or counter's value.
func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	if d.Gauge != nil {
		return d.Gauge.GetValue()
	}
	return d.Counter.GetValue()
}
