package gateway_test

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clickgate/clickgate/internal/audit"
	"github.com/clickgate/clickgate/internal/chtest"
)

// answer is one response of the gateway.
type answer struct {
	status int
	header http.Header
	body   string
	err    error
}

func (s *stack) post(tok, sql string) answer {
	req, _ := http.NewRequest("POST", s.cg.URL+"/", strings.NewReader(sql))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: string(b), err: err}
}

// running counts the queries ClickHouse runs now whose text has marker.
func running(t *testing.T, ch *chtest.Server, marker string) []string {
	t.Helper()
	out, err := ch.QueryErr(chtest.AdminUser, chtest.AdminPassword,
		"SELECT query FROM system.processes WHERE query LIKE '%"+marker+"%' AND query NOT LIKE '%system.processes%' FORMAT TSVRaw")
	if err != nil {
		t.Errorf("system.processes: %v", err)
		return nil
	}
	var qs []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if l != "" {
			qs = append(qs, l)
		}
	}
	return qs
}

// wantRefusal checks a ClickHouse-style refusal with its Retry-After.
func wantRefusal(t *testing.T, what string, a answer, status, code int, retryMax int, mentions ...string) {
	t.Helper()
	if a.err != nil || a.status != status || a.header.Get("X-ClickHouse-Exception-Code") != strconv.Itoa(code) ||
		!strings.HasPrefix(a.body, fmt.Sprintf("Code: %d. DB::Exception: clickgate: ", code)) {
		t.Errorf("%s: %d %v %q; want %d with Code: %d", what, a.status, a.err, a.body, status, code)
		return
	}
	for _, m := range mentions {
		if !strings.Contains(a.body, m) {
			t.Errorf("%s: %q does not mention %q", what, a.body, m)
		}
	}
	ra := a.header.Get("Retry-After")
	if retryMax == 0 {
		if ra != "" {
			t.Errorf("%s: Retry-After %q", what, ra)
		}
		return
	}
	if n, err := strconv.Atoi(ra); err != nil || n < 1 || n > retryMax {
		t.Errorf("%s: Retry-After %q, want 1…%d seconds", what, ra, retryMax)
	}
}

// TestLimitsConcurrency: 20 queries of one person at once with 4 slots
// and a queue of 4: ClickHouse never runs more than 4, the 4 queued run
// after them, the other 12 are refused with 429, Code 202 and
// Retry-After; another person is not affected.
func TestLimitsConcurrency(t *testing.T) {
	s := newStack(t, chtest.Start(t, chtest.Options{}), mappedYAML+`
limits:
  default: {max_concurrent_queries: 4, max_queue: 4}
`)
	alice := s.token(t, "alice@example.com", "ch-analysts")
	bob := s.token(t, "bob@example.com", "ch-analysts")
	marker := fmt.Sprintf("limits-%d", time.Now().UnixNano())

	// Sample ClickHouse's running queries until the burst is over.
	stop := make(chan struct{})
	sampled := make(chan map[string]bool, 1)
	maxRunning := make(chan int, 1)
	go func() {
		most, seen := 0, map[string]bool{}
		defer func() { maxRunning <- most; sampled <- seen }()
		for {
			select {
			case <-stop:
				return
			default:
			}
			qs := running(t, s.ch, marker)
			most = max(most, len(qs))
			for _, q := range qs {
				seen[q] = true
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()

	answers := make([]answer, 20)
	var wg sync.WaitGroup
	for i := range answers {
		wg.Go(func() { answers[i] = s.post(alice, fmt.Sprintf("SELECT sleep(1), '%s-%02d'", marker, i)) })
	}
	// While alice's slots and queue are full, bob runs as usual.
	deadline := time.Now().Add(10 * time.Second)
	for len(running(t, s.ch, marker)) < 4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if a := s.post(bob, "SELECT 'bob'"); a.status != 200 || strings.TrimSpace(a.body) != "bob" {
		t.Errorf("bob during alice's burst: %d %v %q", a.status, a.err, a.body)
	}
	wg.Wait()
	close(stop)
	most, seen := <-maxRunning, <-sampled

	ok, refused := 0, 0
	for i, a := range answers {
		switch a.status {
		case 200:
			ok++
		case 429:
			refused++
			wantRefusal(t, fmt.Sprintf("request %d", i), a, 429, 202, 5, "TOO_MANY_SIMULTANEOUS_QUERIES", "max_concurrent_queries: 4", "max_queue: 4")
		default:
			t.Errorf("request %d: %d %v %q", i, a.status, a.err, a.body)
		}
	}
	if ok != 8 || refused != 12 {
		t.Errorf("%d answered, %d refused; want 8 (4 running, 4 queued) and 12", ok, refused)
	}
	if most > 4 || most < 1 {
		t.Errorf("ClickHouse ran up to %d of alice's queries at once; want at most 4", most)
	}
	// The 8 admitted queries all reached ClickHouse (the sampler saw each:
	// each runs a second, the sampler looks every 20 ms); no refused one did.
	if len(seen) != 8 {
		t.Errorf("ClickHouse ran %d distinct queries of the burst, want 8: %v", len(seen), seen)
	}
	t.Logf("at most %d at once in system.processes; %d distinct queries ran", most, len(seen))
}

// TestLimitsQueueTime: a queued request gives up after max_queue_time.
func TestLimitsQueueTime(t *testing.T) {
	s := newStack(t, chtest.Start(t, chtest.Options{}), mappedYAML+`
limits:
  default: {max_concurrent_queries: 1, max_queue: 1, max_queue_time: 300ms}
`)
	alice := s.token(t, "alice@example.com", "ch-analysts")
	marker := fmt.Sprintf("queuetime-%d", time.Now().UnixNano())
	first := make(chan answer, 1)
	go func() { first <- s.post(alice, fmt.Sprintf("SELECT sleep(3), '%s'", marker)) }()
	deadline := time.Now().Add(10 * time.Second)
	for len(running(t, s.ch, marker)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the first query never ran")
		}
		time.Sleep(10 * time.Millisecond)
	}
	start := time.Now()
	second := s.post(alice, "SELECT 'second'")
	waited := time.Since(start)
	wantRefusal(t, "second", second, 429, 202, 5, "max_queue_time: 300ms")
	// It waited, and gave up before the first query ended.
	if len(running(t, s.ch, marker)) != 1 || waited < 200*time.Millisecond {
		t.Errorf("the second request came back after %s", waited)
	}
	if a := <-first; a.status != 200 {
		t.Errorf("first: %d %v %q", a.status, a.err, a.body)
	}
	if a := s.post(alice, "SELECT 'third'"); a.status != 200 {
		t.Errorf("after the first: %d %v %q", a.status, a.err, a.body)
	}
}

// TestLimitsRate: the N+1th request in a minute gets 429, Code 201 and
// Retry-After until the next token; other people are not counted.
func TestLimitsRate(t *testing.T) {
	file := filepath.Join(t.TempDir(), "audit.jsonl")
	s := newStack(t, chtest.Start(t, chtest.Options{}), mappedYAML+`
limits:
  people: {"carol@example.com": {requests_per_minute: 3}}
audit: {file: `+file+`}
`)
	carol := s.token(t, "carol@example.com", "ch-analysts")
	for i := range 3 {
		if a := s.post(carol, "SELECT 1"); a.status != 200 {
			t.Fatalf("request %d: %d %q", i+1, a.status, a.body)
		}
	}
	a := s.post(carol, "SELECT 1")
	wantRefusal(t, "4th request", a, 429, 201, 20, "QUOTA_EXCEEDED", "requests_per_minute: 3")
	// The refusal is the request's audit event.
	recs, err := audit.ReadFile(file, audit.Filter{Types: []string{audit.Query, audit.QueryRefused}})
	if err != nil || len(recs) != 4 {
		t.Fatalf("%d events: %v", len(recs), err)
	}
	if r := recs[3]; r.Type != audit.QueryRefused || r.Outcome != "refused" || r.HTTPStatus != 429 || r.ExceptionCode != 201 ||
		r.User != "carol@example.com" || !strings.Contains(r.FailureReason, "requests_per_minute: 3") {
		t.Errorf("event of the refusal: %+v", r)
	}
	if a := s.post(s.token(t, "dave@example.com", "ch-analysts"), "SELECT 1"); a.status != 200 {
		t.Errorf("dave: %d %q", a.status, a.body)
	}
}

// TestLimitsNetworks: a person limited to 10.0.0.0/8 connecting from
// 127.0.0.1 gets 403, Code 195, and ClickHouse never sees the query;
// X-Forwarded-For does not help.
func TestLimitsNetworks(t *testing.T) {
	s := newStack(t, chtest.Start(t, chtest.Options{}), mappedYAML+`
limits:
  people: {"erin@example.com": {networks: [10.0.0.0/8]}}
`)
	erin := s.token(t, "erin@example.com", "ch-admin")
	req, _ := http.NewRequest("POST", s.cg.URL+"/", strings.NewReader("CREATE TABLE default.erin_was_here (x UInt8) ENGINE = Memory"))
	req.Header.Set("Authorization", "Bearer "+erin)
	req.Header.Set("X-Forwarded-For", "10.1.2.3")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	wantRefusal(t, "erin", answer{status: resp.StatusCode, header: resp.Header, body: string(b)}, 403, 195, 0,
		"IP_ADDRESS_NOT_ALLOWED", "127.0.0.1", "10.0.0.0/8")
	if got := s.ch.Query(t, chtest.AdminUser, chtest.AdminPassword, "EXISTS TABLE default.erin_was_here"); strings.TrimSpace(got) != "0" {
		t.Errorf("ClickHouse ran erin's query: EXISTS = %q", got)
	}
	// Someone else with the same role is not limited.
	if a := s.post(s.token(t, "frank@example.com", "ch-admin"), "SELECT 1"); a.status != 200 {
		t.Errorf("frank: %d %q", a.status, a.body)
	}
}
