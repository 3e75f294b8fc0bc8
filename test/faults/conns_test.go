package faults

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/server"
	"github.com/clickgate/clickgate/internal/servertest"
	"github.com/clickgate/clickgate/internal/testkit"
)

// serveInProcess runs server.New + Serve (the listener the connection
// limit wraps) on a port of its own until the test ends.
func serveInProcess(t *testing.T, yaml string, logs io.Writer) string {
	t.Helper()
	cfg, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yaml)
	}
	srv, err := server.New(cfg, server.Options{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + l.Addr().String()
}

// TestIdleSocketsBeyondMaxConnections: 2,200 sockets that send nothing,
// with server.max_connections = 200. Those beyond the cap get a 503 and
// are closed; clickgate keeps its file descriptors; a normal request with
// a token still gets through (an idle socket makes room) quickly.
func TestIdleSocketsBeyondMaxConnections(t *testing.T) {
	const maxConns, sockets = 200, 2200
	ch := chtest.Start(t, chtest.Options{})
	iss := servertest.NewIssuer(t)
	var logs testkit.SyncBuffer
	base := serveInProcess(t, fmt.Sprintf("server: {max_connections: %d}\n", maxConns)+adminConfig(iss, ch), &logs)
	addr := strings.TrimPrefix(base, "http://")

	var refused, closedSilently, open atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var held []net.Conn
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	start := time.Now()
	for range sockets {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		mu.Lock()
		held = append(held, c)
		mu.Unlock()
		wg.Go(func() {
			// Beyond the cap the answer comes within a second; within it
			// the socket stays open (until ReadHeaderTimeout, 10 s).
			_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
			b, err := io.ReadAll(c)
			switch {
			case strings.HasPrefix(string(b), "HTTP/1.1 503 ") &&
				strings.Contains(string(b), fmt.Sprintf("clickgate: too many connections (server.max_connections = %d)", maxConns)):
				refused.Add(1)
			case isTimeout(err):
				open.Add(1)
			default:
				closedSilently.Add(1)
			}
		})
	}
	opened := time.Since(start)
	wg.Wait()
	t.Logf("%d sockets opened in %v: %d got the 503 and were closed, %d were closed without it, %d still open after 3 s",
		sockets, opened.Round(time.Millisecond), refused.Load(), closedSilently.Load(), open.Load())
	if open.Load() > maxConns {
		t.Errorf("%d sockets held open, over max_connections = %d", open.Load(), maxConns)
	}
	if refused.Load() < (sockets-maxConns)*9/10 {
		t.Errorf("only %d of the %d sockets beyond the cap got the 503", refused.Load(), sockets-maxConns)
	}

	// The cap is full of sockets silent for over a second: a person's
	// request takes the place of one.
	tok := iss.Token(t, "clickhouse", "someone@example.com", "ch-admin")
	req, _ := http.NewRequest(http.MethodGet, base+"/?query="+url.QueryEscape("SELECT 1"), nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	t0 := time.Now()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("a normal request at the cap: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(t0)
	t.Logf("a normal request at the cap: HTTP %d %q in %v", resp.StatusCode, body, took.Round(time.Millisecond))
	if resp.StatusCode != http.StatusOK || string(body) != "1\n" {
		t.Errorf("a normal request at the cap: HTTP %d %q", resp.StatusCode, body)
	}
	if took > 2*time.Second {
		t.Errorf("a normal request at the cap took %v", took)
	}
	if strings.Contains(logs.String(), "too many open files") {
		t.Errorf("clickgate ran out of file descriptors:\n%s", logs.String())
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
