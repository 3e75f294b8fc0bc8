package lograte

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// buffer is a goroutine-safe log sink.
type buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *buffer) lines() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Split(strings.TrimSpace(b.b.String()), "\n")
}

func TestLimiter(t *testing.T) {
	var buf buffer
	l := slog.New(slog.NewTextHandler(&buf, nil))
	r := &Limiter{Every: 200 * time.Millisecond}
	for i := range 1000 {
		r.Log(l, slog.LevelWarn, "unreachable", "error", i)
	}
	r.Log(l, slog.LevelWarn, "other", "error", "x")
	got := buf.lines()
	if len(got) != 2 || !strings.Contains(got[0], "msg=unreachable error=0") || !strings.Contains(got[1], "msg=other") {
		t.Fatalf("at once: %q", got)
	}
	time.Sleep(300 * time.Millisecond)
	got = buf.lines()
	if len(got) != 3 || !strings.Contains(got[2], `msg="unreachable (repeated)" error=999 suppressed=999`) {
		t.Fatalf("after the interval: %q", got)
	}
	// An idle key is forgotten: its next occurrence is logged at once.
	time.Sleep(300 * time.Millisecond)
	r.mu.Lock()
	n := len(r.keys)
	r.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d keys kept after two idle intervals", n)
	}
	r.Log(l, slog.LevelWarn, "unreachable", "error", "again")
	if got = buf.lines(); len(got) != 4 || !strings.Contains(got[3], "msg=unreachable error=again") {
		t.Fatalf("after idling: %q", got)
	}
}

func TestLimiterFlush(t *testing.T) {
	var buf buffer
	l := slog.New(slog.NewTextHandler(&buf, nil))
	r := &Limiter{Every: time.Hour}
	for range 3 {
		r.Log(l, slog.LevelWarn, "m")
	}
	r.Flush()
	if got := buf.lines(); len(got) != 2 || !strings.Contains(got[1], "suppressed=2") {
		t.Fatalf("%q", got)
	}
}

func TestHandler(t *testing.T) {
	var buf buffer
	l := slog.New(NewHandler(slog.NewTextHandler(&buf, nil), time.Hour))
	for i := range 100 {
		l.Warn("http: TLS handshake error from 10.0.0." + string(rune('0'+i%10)) + ":5555: EOF")
	}
	l.Warn("http: Accept error: too many open files; retrying in 5ms")
	got := buf.lines()
	if len(got) != 2 || !strings.Contains(got[0], "10.0.0.0:5555") || !strings.Contains(got[1], "Accept error") {
		t.Fatalf("%q", got)
	}
}
