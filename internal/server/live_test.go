package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/testkit"
)

// liveServer builds a server of a minimal configuration (no ClickHouse)
// whose handler is h, with the process's metrics in p.
func liveServer(t *testing.T, p *Process, server string, h http.Handler) *Server {
	t.Helper()
	key := testkit.NewKey(t, jose.ES256, "k1")
	cfg, err := config.Parse(fmt.Appendf(nil, `
server: %s
token_processors:
  corp: {type: jwt, issuer: %s, jwks_file: %s, audiences: [clickhouse]}
`, server, issuer, testkit.WriteJWKS(t, t.TempDir(), key)))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(cfg, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Process: p})
	if err != nil {
		t.Fatal(err)
	}
	if h != nil {
		mux := http.NewServeMux()
		mux.Handle("/", h)
		mux.Handle("/readyz", s.handler)
		mux.Handle("/metrics", s.handler)
		s.handler = mux
	}
	return s
}

// A swap sends new requests to the new server at once; a request in
// flight finishes on the old one, which is closed only after it.
func TestLiveSwapWaitsForRequestsInFlight(t *testing.T) {
	p := NewProcess()
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	old := liveServer(t, p, "{}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-release
		fmt.Fprint(w, "old")
	}))
	next := liveServer(t, p, "{}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "new") }))
	lv := NewLive(old)
	hs := httptest.NewServer(lv)
	defer hs.Close()

	slow := make(chan string, 1)
	go func() { slow <- body(t, hs.URL+"/") }()
	<-started
	if err := lv.Swap(next); err != nil {
		t.Fatal(err)
	}
	if got := body(t, hs.URL+"/"); got != "new" {
		t.Errorf("after the swap: %q", got)
	}
	closed := make(chan struct{})
	go func() { lv.retiring.Wait(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("the old server was closed with a request in flight")
	case <-time.After(200 * time.Millisecond):
	}
	if n := old.InFlight(); n != 1 {
		t.Errorf("old server: %d in flight", n)
	}
	close(release)
	if got := <-slow; got != "old" {
		t.Errorf("the request in flight: %q", got)
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the old server was not closed after its last request")
	}

	// Both servers' metrics registries live side by side; the process's
	// metrics appear once.
	m := body(t, hs.URL+"/metrics")
	if strings.Count(m, "# TYPE clickgate_config_reloads_total") != 1 || strings.Count(m, "# TYPE go_goroutines") != 1 {
		t.Errorf("/metrics: process metrics not exactly once:\n%s", m)
	}
}

// Serve's stop: /readyz 503 at once, requests served through the grace,
// then the listener closes; a request longer than shutdown_timeout is
// cut and Serve still returns nil.
func TestLiveServeShutdown(t *testing.T) {
	const grace, timeout = 400 * time.Millisecond, 300 * time.Millisecond
	s := liveServer(t, nil, fmt.Sprintf("{shutdown_grace: %s, shutdown_timeout: %s}", grace, timeout),
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/hang" {
				w.WriteHeader(http.StatusOK)
				w.(http.Flusher).Flush()
				<-r.Context().Done()
				return
			}
			fmt.Fprint(w, "ok")
		}))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + l.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	if status(t, base+"/readyz") != http.StatusOK {
		t.Fatal("/readyz not 200 while serving")
	}
	hang := make(chan error, 1)
	go func() {
		resp, err := http.Get(base + "/hang")
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		hang <- err
	}()
	time.Sleep(50 * time.Millisecond)

	stop := time.Now()
	cancel()
	time.Sleep(50 * time.Millisecond)
	if got := status(t, base+"/readyz"); got != http.StatusServiceUnavailable {
		t.Errorf("/readyz while draining: %d", got)
	}
	if got := body(t, base+"/"); got != "ok" {
		t.Errorf("a request within the grace: %q", got)
	}
	err = <-done
	took := time.Since(stop)
	if err != nil {
		t.Errorf("Serve: %v", err)
	}
	if took < grace+timeout || took > grace+timeout+time.Second {
		t.Errorf("Serve returned %v after the stop; want about grace + timeout = %v", took, grace+timeout)
	}
	if err := <-hang; err == nil {
		t.Error("the request past shutdown_timeout was not cut")
	}
	if _, err := http.Get(base + "/"); err == nil {
		t.Error("the listener is still open")
	}
}

func body(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func status(t *testing.T, u string) int {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
