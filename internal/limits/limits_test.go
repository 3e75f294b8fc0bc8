package limits

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/clickgate/clickgate/internal/config"
)

func parse(t *testing.T, y string) config.Limits {
	t.Helper()
	var l config.Limits
	if err := yaml.Unmarshal([]byte(y), &l); err != nil {
		t.Fatalf("%v\n%s", err, y)
	}
	return l
}

func nets(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, n := range s {
		out = append(out, netip.MustParsePrefix(n))
	}
	return out
}

// TestResolve is the precedence: person over roles over default, key by
// key; several roles give the most generous value of each key.
func TestResolve(t *testing.T) {
	cfg := parse(t, `
default: {max_concurrent_queries: 8, max_queue: 16, max_queue_time: 10s, requests_per_minute: 100, networks: [10.0.0.0/8]}
roles:
  admin:    {max_concurrent_queries: 32}
  slow:     {max_concurrent_queries: 2, max_queue: 1, max_queue_time: 1m}
  unlim:    {requests_per_minute: 0, max_queue: 0}
  office:   {networks: [192.168.0.0/16, 10.0.0.0/8]}
  anywhere: {networks: ["::/0", 0.0.0.0/0]}
  vpn:      {networks: [172.16.0.1]}
people:
  bot:   {requests_per_minute: 60}
  carol: {max_concurrent_queries: 1, networks: [127.0.0.1/32]}
  dave:  {max_concurrent_queries: 0}
`)
	l := New(cfg, nil)
	full := Limit{MaxConcurrentQueries: 8, MaxQueue: 16, MaxQueueTime: 10 * time.Second, RequestsPerMinute: 100, Networks: nets("10.0.0.0/8")}
	with := func(f func(*Limit)) Limit { c := full; f(&c); return c }
	for _, tt := range []struct {
		name  string
		user  string
		roles []string
		want  Limit
	}{
		{"default", "alice", nil, full},
		{"roles without entries play no part", "alice", []string{"analysts", "mcp_reader"}, full},
		{"a role's key wins, the rest inherited", "alice", []string{"admin"}, with(func(l *Limit) { l.MaxConcurrentQueries = 32 })},
		{"a stricter role", "alice", []string{"slow"}, with(func(l *Limit) { l.MaxConcurrentQueries, l.MaxQueue, l.MaxQueueTime = 2, 1, time.Minute })},
		// slow inherits requests_per_minute 100 and the default networks;
		// admin inherits queue 16 and 10 s: each key takes the most generous.
		{"several roles: most generous per key", "alice", []string{"slow", "admin"},
			with(func(l *Limit) { l.MaxConcurrentQueries, l.MaxQueue, l.MaxQueueTime = 32, 16, time.Minute })},
		{"a stricter role beside a role that inherits the default", "alice", []string{"slow", "office"},
			with(func(l *Limit) { l.MaxQueueTime = time.Minute; l.Networks = nets("10.0.0.0/8", "192.168.0.0/16") })},
		{"0 is the most generous", "alice", []string{"slow", "unlim"},
			with(func(l *Limit) { l.MaxQueue, l.RequestsPerMinute, l.MaxQueueTime = Unbounded, 0, time.Minute })},
		{"networks: the union", "alice", []string{"office", "vpn"}, with(func(l *Limit) { l.Networks = nets("10.0.0.0/8", "172.16.0.1/32", "192.168.0.0/16") })},
		{"networks: a role inherits the default's", "alice", []string{"vpn", "admin"}, with(func(l *Limit) { l.MaxConcurrentQueries = 32; l.Networks = nets("10.0.0.0/8", "172.16.0.1/32") })},
		{"networks: 0.0.0.0/0", "alice", []string{"vpn", "anywhere"}, with(func(l *Limit) { l.Networks = nets("0.0.0.0/0", "172.16.0.1/32", "::/0") })},
		{"the person's entry wins over roles", "bot", []string{"admin"}, with(func(l *Limit) { l.MaxConcurrentQueries, l.RequestsPerMinute = 32, 60 })},
		{"the person's stricter entry wins over a generous role", "carol", []string{"admin", "office"},
			with(func(l *Limit) { l.MaxConcurrentQueries = 1; l.Networks = nets("127.0.0.1/32") })},
		{"the person's 0 lifts the bound", "dave", []string{"slow"}, with(func(l *Limit) { l.MaxConcurrentQueries, l.MaxQueue, l.MaxQueueTime = 0, 1, time.Minute })},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := l.Resolve(tt.user, tt.roles)
			got.source = ""
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("Resolve(%s, %v)\n got %+v\nwant %+v", tt.user, tt.roles, got, tt.want)
			}
		})
	}
}

// TestResolveAnywhere: without networks in the default, a role without
// networks allows anywhere, whatever the person's other roles say.
func TestResolveAnywhere(t *testing.T) {
	l := New(parse(t, `
roles:
  office: {networks: [192.168.0.0/16]}
  admin:  {max_concurrent_queries: 3}
people:
  pat: {networks: [10.0.0.0/8]}`), nil)
	for _, tt := range []struct {
		user  string
		roles []string
		want  []netip.Prefix
	}{
		{"alice", []string{"office"}, nets("192.168.0.0/16")},
		{"alice", []string{"office", "admin"}, nil},
		{"alice", []string{"office", "nobody"}, nets("192.168.0.0/16")},
		{"pat", []string{"office", "admin"}, nets("10.0.0.0/8")},
	} {
		if got := l.Resolve(tt.user, tt.roles).Networks; fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("%s %v: networks %v, want %v", tt.user, tt.roles, got, tt.want)
		}
	}
}

// TestMCPDefault: mcp.max_concurrent_queries bounds MCP alone while
// limits sets max_concurrent_queries nowhere.
func TestMCPDefault(t *testing.T) {
	for _, tt := range []struct {
		yaml          string
		gateway, tool int
	}{
		{``, 0, 4},
		{`default: {max_queue: 2, requests_per_minute: 10}`, 0, 4},
		{`default: {max_concurrent_queries: 6}`, 6, 6},
		{`roles: {admin: {max_concurrent_queries: 6}}`, 0, 0},
		{`people: {alice: {max_concurrent_queries: 0}}`, 0, 0},
	} {
		l := NewOptions(parse(t, tt.yaml), Options{MCPMaxConcurrent: 4})
		if g, m := l.Resolve("alice", nil).MaxConcurrentQueries, l.ResolveTool("alice", nil).MaxConcurrentQueries; g != tt.gateway || m != tt.tool {
			t.Errorf("%q: gateway %d, MCP %d; want %d, %d", tt.yaml, g, m, tt.gateway, tt.tool)
		}
	}
	// With the fallback, MCP's slots are counted apart from the gateway's.
	l := NewOptions(config.Limits{}, Options{MCPMaxConcurrent: 1})
	ctx := context.Background()
	for range 3 {
		if _, err := l.Acquire(ctx, "alice", nil, ""); err != nil {
			t.Fatal(err)
		}
	}
	release, err := l.AcquireRequest(ctx, Request{User: "alice", Tool: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = l.AcquireRequest(ctx, Request{User: "alice", Tool: true})
	if r, ok := errors.AsType[*Refusal](err); !ok || r.Code != 202 || !strings.Contains(r.Message, "mcp.max_concurrent_queries: 1") {
		t.Fatalf("second MCP query: %v", err)
	}
	release()
	if _, err := l.AcquireRequest(ctx, Request{User: "alice", Tool: true}); err != nil {
		t.Fatal(err)
	}
}

// TestQueue: slots, a FIFO queue, refusal beyond it, and expiry.
func TestQueue(t *testing.T) {
	reg := prometheus.NewRegistry()
	l := New(parse(t, `default: {max_concurrent_queries: 2, max_queue: 2, max_queue_time: 200ms}`), reg)
	ctx := context.Background()
	var releases []func()
	for range 2 {
		r, err := l.Acquire(ctx, "alice", nil, "127.0.0.1:1")
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, r)
	}
	// Two wait, in order; the third is refused at once.
	var mu sync.Mutex
	var order []int
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() {
			time.Sleep(time.Duration(i) * 20 * time.Millisecond)
			r, err := l.Acquire(ctx, "alice", nil, "127.0.0.1:1")
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			r()
		})
	}
	waitFor(t, func() bool { return value(t, reg, "clickgate_limits_queued", "") == 2 })
	_, err := l.Acquire(ctx, "alice", nil, "127.0.0.1:1")
	r, ok := errors.AsType[*Refusal](err)
	if !ok || r.Status != 429 || r.Code != 202 || r.Name != "TOO_MANY_SIMULTANEOUS_QUERIES" || r.RetryAfterSeconds() != 1 ||
		!strings.Contains(r.Message, "max_concurrent_queries: 2") || !strings.Contains(r.Message, "max_queue: 2") {
		t.Fatalf("beyond the queue: %#v", err)
	}
	// Another person is not affected.
	if _, err := l.Acquire(ctx, "bob", nil, "127.0.0.1:1"); err != nil {
		t.Fatal(err)
	}
	releases[0]() // the first waiter runs, then gives its slot to the second
	wg.Wait()
	releases[1]()
	if fmt.Sprint(order) != "[0 1]" {
		t.Errorf("admitted in order %v", order)
	}

	// max_queue_time: the waiter gives up with 429 code 202.
	hold, _ := l.Acquire(ctx, "alice", nil, "")
	hold2, _ := l.Acquire(ctx, "alice", nil, "")
	start := time.Now()
	_, err = l.Acquire(ctx, "alice", nil, "")
	if r, ok := errors.AsType[*Refusal](err); !ok || r.Code != 202 || r.Reason != "queue_time" || !strings.Contains(r.Message, "max_queue_time: 200ms") {
		t.Fatalf("queue time: %v", err)
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > 10*time.Second {
		t.Errorf("waited %s for a 200ms max_queue_time", d)
	}
	// A cancelled request leaves the queue.
	cctx, cancel := context.WithCancel(ctx)
	go func() { time.Sleep(20 * time.Millisecond); cancel() }()
	if _, err := l.Acquire(cctx, "alice", nil, ""); err == nil {
		t.Fatal("admitted after cancellation")
	}
	hold()
	hold2()
	if n := value(t, reg, "clickgate_limits_queued", ""); n != 0 {
		t.Errorf("queued = %v after everything", n)
	}
	for reason, want := range map[string]float64{"queue_full": 1, "queue_time": 1, "cancelled": 1} {
		if got := value(t, reg, "clickgate_limits_refusals_total", reason); got != want {
			t.Errorf("refusals{%s} = %v, want %v", reason, got, want)
		}
	}
	if n := value(t, reg, "clickgate_limits_queue_wait_seconds", "admitted"); n != 2 {
		t.Errorf("%v admitted after waiting, want 2", n)
	}
	if n := value(t, reg, "clickgate_limits_queue_wait_seconds", "refused"); n != 2 {
		t.Errorf("%v refused after waiting, want 2", n)
	}
}

// TestQueueUnbounded: max_queue: 0 and no max_queue_time wait as long
// as the request.
func TestQueueUnbounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	l := New(parse(t, `default: {max_concurrent_queries: 1, max_queue: 0}`), reg)
	ctx := context.Background()
	hold, _ := l.Acquire(ctx, "alice", nil, "")
	done := make(chan error, 50)
	for range 50 {
		go func() {
			r, err := l.Acquire(ctx, "alice", nil, "")
			if err == nil {
				r()
			}
			done <- err
		}()
	}
	waitFor(t, func() bool { return value(t, reg, "clickgate_limits_queued", "") == 50 })
	hold()
	for range 50 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	// Without max_queue nobody waits.
	l = New(parse(t, `default: {max_concurrent_queries: 1}`), nil)
	hold, _ = l.Acquire(ctx, "alice", nil, "")
	defer hold()
	_, err := l.Acquire(ctx, "alice", nil, "")
	if r, ok := errors.AsType[*Refusal](err); !ok || !strings.Contains(r.Message, "no queue") {
		t.Fatalf("no queue: %v", err)
	}
}

// TestRate: a bucket of requests_per_minute tokens refilled evenly.
func TestRate(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := NewOptions(parse(t, `people: {bot: {requests_per_minute: 3, max_concurrent_queries: 1}}`), Options{Now: func() time.Time { return now }})
	ctx := context.Background()
	for i := range 3 {
		r, err := l.Acquire(ctx, "bot", nil, "")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		r()
	}
	_, err := l.Acquire(ctx, "bot", nil, "")
	r, ok := errors.AsType[*Refusal](err)
	if !ok || r.Status != 429 || r.Code != 201 || r.Name != "QUOTA_EXCEEDED" || r.RetryAfterSeconds() != 20 || !strings.Contains(r.Message, "requests_per_minute: 3") {
		t.Fatalf("4th request: %#v", err)
	}
	now = now.Add(19 * time.Second)
	_, err = l.Acquire(ctx, "bot", nil, "")
	if r, ok := errors.AsType[*Refusal](err); !ok || r.RetryAfterSeconds() != 1 {
		t.Fatalf("after 19 s: %#v", err)
	}
	now = now.Add(time.Second)
	hold, err := l.Acquire(ctx, "bot", nil, "")
	if err != nil {
		t.Fatalf("after 20 s: %v", err)
	}
	// A request refused for concurrency keeps its token.
	now = now.Add(20 * time.Second)
	if _, err := l.Acquire(ctx, "bot", nil, ""); err == nil || err.(*Refusal).Code != 202 {
		t.Fatalf("concurrency: %v", err)
	}
	hold()
	if r, err := l.Acquire(ctx, "bot", nil, ""); err != nil {
		t.Fatalf("the token refunded: %v", err)
	} else {
		r()
	}
	// Other queries of one MCP call are not charged again.
	now = now.Add(time.Hour)
	for range 10 {
		r, err := l.AcquireRequest(ctx, Request{User: "bot", Tool: true, Charged: true})
		if err != nil {
			t.Fatal(err)
		}
		r()
	}
	if _, err := l.Acquire(ctx, "alice", nil, ""); err != nil {
		t.Fatal("alice has no limit")
	}
}

func TestNetworks(t *testing.T) {
	l := New(parse(t, `
default: {networks: [10.0.0.0/8, "2001:db8::/32", 192.168.1.7]}
people: {open: {networks: ["0.0.0.0/0"]}}`), nil)
	ctx := context.Background()
	for addr, ok := range map[string]bool{
		"10.1.2.3:5555": true, "[2001:db8::1]:80": true, "192.168.1.7:1": true, "[::ffff:10.0.0.1]:9": true, "10.0.0.9": true,
		"127.0.0.1:5555": false, "192.168.1.8:1": false, "[::1]:80": false, "garbage": false,
		"": true, // stdio: no address
	} {
		_, err := l.Acquire(ctx, "alice", nil, addr)
		if (err == nil) != ok {
			t.Errorf("%q: %v, want allowed %v", addr, err, ok)
		}
		if r, isR := errors.AsType[*Refusal](err); err != nil && (!isR || r.Status != 403 || r.Code != 195 || r.RetryAfter != 0 ||
			!strings.Contains(r.Message, "10.0.0.0/8, 2001:db8::/32, 192.168.1.7/32")) {
			t.Errorf("%q: %#v", addr, err)
		}
	}
	if _, err := l.Acquire(ctx, "open", nil, "127.0.0.1:1"); err != nil {
		t.Errorf("open: %v", err)
	}
}

// TestEviction: idle people's state goes; busy people's stays.
func TestEviction(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := NewOptions(parse(t, `default: {max_concurrent_queries: 2, requests_per_minute: 1000}`), Options{Now: func() time.Time { return now }})
	ctx := context.Background()
	busy, _ := l.Acquire(ctx, "busy", nil, "")
	defer busy()
	for i := range 10000 {
		r, err := l.Acquire(ctx, fmt.Sprintf("user%d", i), nil, "")
		if err != nil {
			t.Fatal(err)
		}
		r()
		if i%1000 == 999 {
			now = now.Add(30 * time.Second)
		}
	}
	l.mu.Lock()
	n := len(l.state)
	_, kept := l.state["busy"]
	l.mu.Unlock()
	if n > 4500 || !kept {
		t.Errorf("%d people kept (busy kept: %v); idle ones should go after a minute", n, kept)
	}
	// Nobody with no limit has state at all.
	l = New(config.Limits{}, nil)
	for i := range 100 {
		l.Acquire(ctx, fmt.Sprint(i), nil, "")
	}
	if len(l.state) != 0 {
		t.Errorf("%d states without limits", len(l.state))
	}
}

func TestNilLimiter(t *testing.T) {
	var l *Limiter
	r, err := l.Acquire(context.Background(), "alice", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	r()
}

// value reads a metric from reg: a gauge's or counter's value, a
// histogram's count; label is the value of its one label, if any.
func value(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if len(m.GetLabel()) > 0 && m.GetLabel()[0].GetValue() != label {
				continue
			}
			switch {
			case m.GetGauge() != nil:
				return m.GetGauge().GetValue()
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return 0
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
