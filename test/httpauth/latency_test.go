package httpauth

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// How long a login through /clickhouse/auth costs, as ClickHouse's client
// sees it: n sequential queries (one keep-alive connection) in each way,
// against the same server. ClickHouse calls the auth endpoint for every
// HTTP request — it does not cache the answer — so the auth endpoint is on
// the path of every query in http_auth mode. The figures are logged, not
// asserted; the call count is asserted.
func TestAuthEndpointLatency(t *testing.T) {
	n := 200
	if testing.Short() {
		n = 20
	}
	f := newFront(t)
	ch := startClickHouse(t, []authServer{{name: "clickgate", uri: authURI(f)}}, dave)
	key := newKey(t)
	g := newGate(t, f, key, ch.HTTPURL, gateOptions{})
	tok := token(t, key, "clickhouse", "dave")
	ticket := ticketFor(t, "dave")

	ways := []struct {
		name      string
		authCalls bool
		run       func() (int, string, error)
	}{
		{"password user, straight (no auth endpoint)", false, func() (int, string, error) {
			return tryDirect(ch, admin.name, admin.passwd, "SELECT 1")
		}},
		{"dave + ticket, straight", true, func() (int, string, error) {
			return tryDirect(ch, "dave", ticket, "SELECT 1")
		}},
		{"dave + raw token, straight", true, func() (int, string, error) {
			return tryDirect(ch, "dave", tok, "SELECT 1")
		}},
		{"dave's token through the gateway", true, func() (int, string, error) {
			req, err := g.request(tok, "SELECT 1")
			if err != nil {
				return 0, "", err
			}
			return send(req)
		}},
	}
	for _, w := range ways {
		for range 5 { // warm up connections and caches
			if _, _, err := w.run(); err != nil {
				t.Fatal(err)
			}
		}
		f.take()
		lat := make([]time.Duration, 0, n)
		for range n {
			t0 := time.Now()
			status, body, err := w.run()
			lat = append(lat, time.Since(t0))
			if err != nil || status != 200 || body != "1" {
				t.Fatalf("%s: %d %q %v", w.name, status, body, err)
			}
		}
		calls := f.take()
		var handler []time.Duration
		for _, c := range calls {
			handler = append(handler, c.took)
		}
		want := 0
		if w.authCalls {
			want = n
		}
		if len(calls) != want {
			t.Errorf("%s: %d calls to /clickhouse/auth for %d queries, want %d", w.name, len(calls), n, want)
		}
		t.Logf("%-44s %d queries: %s; clickgate's /clickhouse/auth handler: %s", w.name, n, stats(lat), stats(handler))
	}
}

// request is a gateway request for sql with tok as Bearer token.
func (g *gate) request(tok, sql string) (*http.Request, error) {
	req, err := http.NewRequest(http.MethodPost, g.URL+"/", strings.NewReader(sql))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	return req, nil
}

// stats summarises durations: mean, p50, p90, p99.
func stats(d []time.Duration) string {
	if len(d) == 0 {
		return "-"
	}
	s := slices.Clone(d)
	slices.Sort(s)
	var sum time.Duration
	for _, x := range s {
		sum += x
	}
	p := func(q float64) time.Duration { return s[min(len(s)-1, int(q*float64(len(s))))] }
	r := func(x time.Duration) time.Duration { return x.Round(time.Microsecond) }
	return fmt.Sprintf("mean %v p50 %v p90 %v p99 %v", r(sum/time.Duration(len(s))), r(p(0.5)), r(p(0.9)), r(p(0.99)))
}
