// Package cluster tests the gateway in front of several real ClickHouse
// nodes, faulted the way an operator meets it: a node SIGKILLed under a
// read load, a node that leaves the network and comes back, a replica
// that lags.
package cluster

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/server"
	"github.com/clickgate/clickgate/internal/servertest"
	"github.com/clickgate/clickgate/internal/testkit"
)

// healthInterval is the nodes' check interval in these tests.
const healthInterval = 500 * time.Millisecond

// lagging is a node that answers /ping but whose replicas lag (its
// /replicas_status, in ClickHouse's documented wire format): these
// machines cannot run a replicated cluster with ZooKeeper. It counts the
// queries it gets, which must be none.
type lagging struct {
	*httptest.Server
	queries atomic.Int64
}

func newLagging(t *testing.T) *lagging {
	l := &lagging{}
	l.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ping":
			io.WriteString(w, "Ok.\n")
		case "/replicas_status":
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "default.events:\tAbsolute delay: 900. Relative delay: 900.\n")
		default:
			l.queries.Add(1)
			io.WriteString(w, "1\n")
		}
	}))
	t.Cleanup(l.Close)
	return l
}

// Three real nodes and a lagging one behind the gateway, under 16
// connections reading: a SIGKILLed node costs at most the requests in
// flight on it (requests that would have gone to it after are retried on
// another node before any byte was written); a node that leaves the
// network and comes back takes traffic again within two health
// intervals; the lagging replica gets no reads.
func TestNodesUnderFaults(t *testing.T) {
	a, b, c := chtest.Start(t, chtest.Options{}), chtest.Start(t, chtest.Options{}), chtest.Start(t, chtest.Options{})
	relay := testkit.NewRelay(t, c.HTTPAddr) // c can leave the network and come back
	lag := newLagging(t)
	iss := servertest.NewIssuer(t)
	cg := servertest.Start(t, fmt.Sprintf(`
token_processors:
  corp: %s
directory:
  roles: {filter: "^ch-.*$", transform: "s/^ch-//"}
clickhouse:
  urls: [%s, %s, http://%s, %s]
  mode: mapped
  accounts: [{role: analysts, user: %s, password: %s}]
  health: {interval: %s, timeout: 300ms, max_replica_delay: 5m}
  retries: 2
`, iss.Processor(), a.HTTPURL, b.HTTPURL, relay.Addr, lag.URL, chtest.ReaderUser, chtest.ReaderPassword, healthInterval), server.Options{})
	token := iss.Token(t, "clickhouse", "alice@example.com", "ch-analysts")
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}, Timeout: 30 * time.Second}
	read := func() (int, string) {
		req, _ := http.NewRequest("GET", cg.URL+"/?query=SELECT+1", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	// requests counts the requests clickgate sent to a node (its metric).
	requests := func(node string) int {
		resp, err := client.Get(cg.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		for _, line := range strings.Split(string(body), "\n") {
			if v, ok := strings.CutPrefix(line, `clickgate_clickhouse_node_requests_total{node="`+node+`"} `); ok {
				var n int
				fmt.Sscan(v, &n)
				return n
			}
		}
		return 0
	}

	type failure struct {
		at     time.Duration
		status int
		body   string
	}
	var (
		mu       sync.Mutex
		failures []failure
		ok       atomic.Int64
		stop     = make(chan struct{})
		wg       sync.WaitGroup
		start    = time.Now()
	)
	for range 16 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				status, body := read()
				if status == 200 && body == "1\n" {
					ok.Add(1)
					continue
				}
				mu.Lock()
				failures = append(failures, failure{time.Since(start), status, body})
				mu.Unlock()
			}
		})
	}
	time.Sleep(time.Second)
	bHost := strings.TrimPrefix(b.HTTPURL, "http://")
	beforeKill := requests(bHost)
	killedAt := time.Since(start)
	if err := syscall.Kill(b.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	// c leaves the network (connections refused) and comes back.
	downAt := time.Since(start)
	relay.Down()
	time.Sleep(2 * healthInterval)
	downRequests := requests(relay.Addr)
	time.Sleep(time.Second)
	if n := requests(relay.Addr); n != downRequests {
		t.Errorf("the node off the network got %d requests while down", n-downRequests)
	}
	relay.Up(t)
	back := time.Now()
	for requests(relay.Addr) == downRequests {
		if time.Since(back) > 2*healthInterval+time.Second {
			resp, _ := client.Get(cg.URL + "/metrics")
			body, _ := io.ReadAll(resp.Body)
			var lines []string
			for _, l := range strings.Split(string(body), "\n") {
				if strings.Contains(l, "clickgate_clickhouse_node_") {
					lines = append(lines, l)
				}
			}
			t.Fatalf("the node back on the network got no traffic within two health intervals (%s):\n%s", 2*healthInterval, strings.Join(lines, "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
	tookBack := time.Since(back)
	time.Sleep(500 * time.Millisecond)
	close(stop)
	wg.Wait()

	t.Logf("%d reads answered; node %s SIGKILLed at %s after %d requests; %d reads failed; node %s back on the network took traffic after %s; the lagging replica got %d queries",
		ok.Load(), bHost, killedAt.Round(time.Millisecond), beforeKill, len(failures), relay.Addr, tookBack.Round(time.Millisecond), lag.queries.Load())
	// Each failure is a read that was in flight on a node when it died or
	// left the network: a request that may have run is never repeated, so
	// the client sees it, ClickHouse-style. Any other failure is a bug.
	atKill, atDown := 0, 0
	for _, f := range failures {
		switch {
		case f.status != http.StatusBadGateway || !strings.Contains(f.body, "Code: 210"):
			t.Errorf("a read failed %s after the start: %d %q", f.at.Round(time.Millisecond), f.status, f.body)
		case f.at >= killedAt && f.at < killedAt+time.Second:
			atKill++
		case f.at >= downAt && f.at < downAt+time.Second:
			atDown++
		default:
			t.Errorf("a read failed %s after the start, away from the faults (kill at %s, network cut at %s): %d %q",
				f.at.Round(time.Millisecond), killedAt.Round(time.Millisecond), downAt.Round(time.Millisecond), f.status, f.body)
		}
	}
	t.Logf("failed reads: %d in flight on the killed node, %d in flight on the node cut off", atKill, atDown)
	if atKill > 16 || atDown > 16 {
		t.Errorf("more reads failed than the 16 that can be in flight on one node")
	}
	if ok.Load() < 100 {
		t.Errorf("only %d reads answered", ok.Load())
	}
	if n := lag.queries.Load(); n != 0 {
		t.Errorf("the lagging replica got %d queries", n)
	}
}

// A node that stops answering (SIGSTOP: it keeps its connections and
// accepts new ones, but says nothing) costs the reads in flight on it one
// clickhouse.response_timeout each, answered as TIMEOUT_EXCEEDED; the
// health check takes it out, the other node serves, and nothing hangs.
func TestStoppedNode(t *testing.T) {
	a, b := chtest.Start(t, chtest.Options{}), chtest.Start(t, chtest.Options{})
	iss := servertest.NewIssuer(t)
	const responseTimeout = time.Second
	cg := servertest.Start(t, fmt.Sprintf(`
token_processors:
  corp: %s
directory:
  roles: {filter: "^ch-.*$", transform: "s/^ch-//"}
clickhouse:
  urls: [%s, %s]
  mode: mapped
  accounts: [{role: analysts, user: %s, password: %s}]
  health: {interval: %s, timeout: 300ms}
  response_timeout: %s
`, iss.Processor(), a.HTTPURL, b.HTTPURL, chtest.ReaderUser, chtest.ReaderPassword, healthInterval, responseTimeout), server.Options{})
	token := iss.Token(t, "clickhouse", "alice@example.com", "ch-analysts")
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}, Timeout: 30 * time.Second}
	var (
		mu       sync.Mutex
		slowest  time.Duration
		failures []string
		ok       atomic.Int64
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				req, _ := http.NewRequest("GET", cg.URL+"/?query=SELECT+1", nil)
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := client.Do(req)
				var body []byte
				if err == nil {
					body, _ = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				took := time.Since(start)
				mu.Lock()
				slowest = max(slowest, took)
				switch {
				case err != nil:
					failures = append(failures, err.Error())
				case resp.StatusCode == 200:
					ok.Add(1)
				default:
					failures = append(failures, fmt.Sprintf("%d %s", resp.StatusCode, body))
				}
				mu.Unlock()
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	if err := syscall.Kill(a.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(a.PID, syscall.SIGCONT) })
	time.Sleep(3 * time.Second)
	during := ok.Load()
	syscall.Kill(a.PID, syscall.SIGCONT)
	time.Sleep(2 * healthInterval)
	close(stop)
	wg.Wait()

	t.Logf("%d reads answered (%d by the end of the stop); %d failed; the slowest took %s (response_timeout %s)", ok.Load(), during, len(failures), slowest.Round(time.Millisecond), responseTimeout)
	for _, f := range failures {
		if !strings.HasPrefix(f, "504 Code: 159.") || !strings.Contains(f, "clickhouse.response_timeout") {
			t.Errorf("a read failed otherwise than by the response timeout: %s", f)
		}
	}
	if len(failures) > 8 {
		t.Errorf("%d reads failed; at most the 8 in flight on the stopped node may", len(failures))
	}
	// Hanging means waiting for the stopped node until the client gives
	// up (30 s); the margin is for a loaded machine (a read took 3.0 s
	// in make test beside other jobs).
	if slowest > responseTimeout+10*time.Second {
		t.Errorf("a read took %s: it hung past clickhouse.response_timeout", slowest)
	}
	if during < 100 {
		t.Errorf("only %d reads were answered while a node was stopped", during)
	}
}
