//go:build unix

package ops

import (
	"fmt"
	"io"
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
	"github.com/clickgate/clickgate/internal/testkit"
)

// TestShutdownUnderLoad: SIGTERM to clickgate serve while 8 connections
// run streaming queries of 2.5 s each, back to back (staggered). /readyz answers 503
// at once; for server.shutdown_grace (2 s) new connections and requests
// are still served; then the listener closes, the requests in flight
// finish (within shutdown_timeout), and clickgate exits 0. No request is
// cut mid-answer; the only ones not answered are those sent after the
// grace, refused at connect.
func TestShutdownUnderLoad(t *testing.T) {
	const workers, grace, timeout = 8, 2 * time.Second, 10 * time.Second
	ch := chtest.Start(t, chtest.Options{})
	iss := newIssuer(t, "https://idp.test", "k1")
	addr := testkit.FreeAddr(t)
	path := tempFile(t, "clickgate.yaml")
	auditFile := tempFile(t, "audit.jsonl")
	mustWrite(t, path, fmt.Sprintf(`
server: {listen: %s, shutdown_grace: %s, shutdown_timeout: %s}
token_processors:
  corp: %s
directory:
  roles: {filter: "^ch-.*$", transform: "s/^ch-//"}
clickhouse:
  url: %s
  mode: mapped
  accounts:
    - {role: analyst, user: %s, password: %s}
audit: {file: %s}
`, addr, grace, timeout, iss.processor(), ch.HTTPURL, chtest.ReaderUser, chtest.ReaderPassword, auditFile))
	p := startServe(t, path, addr)

	// 5 rows, one every half second.
	const stream = "SELECT n, sleepEachRow(0.5) FROM (SELECT arrayJoin(range(5)) AS n)"
	const wantBody = "0\t0\n1\t0\n2\t0\n3\t0\n4\t0\n"
	var sigterm atomic.Int64 // UnixNano of the SIGTERM; 0 before
	since := func(t0 time.Time) time.Duration {
		if s := sigterm.Load(); s != 0 {
			return t0.Sub(time.Unix(0, s))
		}
		return -time.Hour
	}
	type outcome struct {
		started time.Duration // since SIGTERM; negative before
		status  int
		err     error
		cut     bool // an answer began and did not end well
	}
	var mu sync.Mutex
	var outcomes []outcome
	var wg sync.WaitGroup
	for w := range workers {
		tok := iss.token(t, fmt.Sprintf("stream-%d@example.com", w), "ch-analyst")
		wg.Go(func() {
			// Staggered: some query starts every 0.3 s, before the SIGTERM,
			// within the grace and at its end.
			time.Sleep(time.Duration(w) * 2500 * time.Millisecond / workers)
			c := &http.Client{}
			for {
				t0 := time.Now()
				o := outcome{started: since(t0)}
				req, _ := http.NewRequest(http.MethodGet, p.base+"/?query="+url.QueryEscape(stream), nil)
				req.Header.Set("Authorization", "Bearer "+tok)
				resp, err := c.Do(req)
				if err != nil {
					o.err = err // not answered: refused at connect after the grace
				} else {
					b, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					o.status = resp.StatusCode
					if err != nil || resp.StatusCode != http.StatusOK || string(b) != wantBody {
						o.cut, o.err = true, fmt.Errorf("HTTP %d, %d bytes %q: %v", resp.StatusCode, len(b), b, err)
					}
				}
				mu.Lock()
				outcomes = append(outcomes, o)
				mu.Unlock()
				if o.err != nil && !o.cut {
					return
				}
			}
		})
	}

	// /readyz, every 50 ms on a new connection, until it is refused.
	type probe struct {
		at     time.Duration
		status int
	}
	var probes []probe
	readyDone := make(chan struct{})
	go func() {
		defer close(readyDone)
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
		for {
			at := time.Now()
			resp, err := c.Get(p.base + "/readyz")
			if err != nil {
				if sigterm.Load() != 0 {
					return
				}
				t.Errorf("/readyz before SIGTERM: %v", err)
				return
			}
			resp.Body.Close()
			probes = append(probes, probe{since(at), resp.StatusCode})
			time.Sleep(50 * time.Millisecond)
		}
	}()

	time.Sleep(3 * time.Second) // every connection has a query in flight
	term := time.Now()
	sigterm.Store(term.UnixNano())
	p.signal(t, syscall.SIGTERM)
	err := <-p.done
	exited := time.Since(term)
	wg.Wait()
	<-readyDone
	if err != nil {
		t.Errorf("clickgate serve after SIGTERM: %v (want exit status 0)", err)
	}

	var before, during, after, notAnswered, cut int
	for _, o := range outcomes {
		switch {
		case o.cut:
			cut++
			t.Errorf("request started %v after SIGTERM cut mid-answer: %v", o.started.Round(time.Millisecond), o.err)
		case o.err != nil:
			notAnswered++
			if o.started < grace-100*time.Millisecond {
				t.Errorf("request started %v after SIGTERM, within the grace, not answered: %v", o.started.Round(time.Millisecond), o.err)
			} else if !strings.Contains(o.err.Error(), "connection refused") && !strings.Contains(o.err.Error(), "reset") && !strings.Contains(o.err.Error(), "EOF") {
				t.Errorf("request started %v after SIGTERM failed oddly: %v", o.started.Round(time.Millisecond), o.err)
			}
		case o.started < 0:
			before++
		case o.started < grace+250*time.Millisecond: // the listener closes at the grace's end, give or take
			during++
		default:
			after++
		}
	}
	var ready200, ready503 int
	first503 := time.Duration(-1)
	for _, pr := range probes {
		if pr.at < 0 {
			if pr.status != http.StatusOK {
				t.Errorf("/readyz %d before SIGTERM", pr.status)
			}
			continue
		}
		if pr.status == http.StatusServiceUnavailable {
			ready503++
			if first503 < 0 {
				first503 = pr.at
			}
		} else if pr.at > 100*time.Millisecond {
			ready200++
		}
	}
	t.Logf("SIGTERM with %d streaming queries (2.5 s) in flight: /readyz 503 from %v after it (%d probes with 503 during the grace, %d with 200 later than 100 ms); "+
		"%d queries answered in full that started before, %d started during the %v grace, %d after it; %d not answered (sent after the grace), %d cut; exit after %v",
		workers, first503.Round(time.Millisecond), ready503, ready200, before, during, grace, after, notAnswered, cut, exited.Round(time.Millisecond))
	if first503 < 0 || first503 > 200*time.Millisecond {
		t.Errorf("/readyz first answered 503 %v after SIGTERM; want at once", first503)
	}
	if ready200 > 0 {
		t.Errorf("/readyz answered 200 %d times after SIGTERM", ready200)
	}
	if ready503 < int(grace/(100*time.Millisecond)) {
		t.Errorf("/readyz answered only %d times with 503 during the %v grace: the listener closed early?", ready503, grace)
	}
	// A 2.5 s query per connection, staggered: 2 s of grace see about
	// 8 × 2 / 2.5 of them start.
	if during < workers/2 {
		t.Errorf("only %d queries started during the grace and were answered; want one on most connections", during)
	}
	if after > 0 {
		t.Errorf("%d queries started after the grace and were answered: the listener stayed open", after)
	}
	// The trail was flushed and closed: every answered query is in it.
	if b, err := os.ReadFile(auditFile); err != nil || strings.Count(string(b), `"type":"Query"`) < before+during {
		t.Errorf("audit file: %d Query events (%v); want the %d answered queries", strings.Count(string(b), `"type":"Query"`), err, before+during)
	}
	if exited < grace || exited > grace+timeout {
		t.Errorf("exited %v after SIGTERM; want between the grace %v and grace + timeout", exited, grace)
	}
}
