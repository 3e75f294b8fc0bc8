package httpauth

import (
	"bufio"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/testkit"
)

// ClickHouse's options for an http_authentication server and their
// defaults (src/Access/ExternalAuthenticators.cpp, parseHTTPAuthParams;
// the retry loop is src/Access/HTTPAuthClient.h): every attempt may take
// connection_timeout_ms, send_timeout_ms and receive_timeout_ms (1000 ms
// each); an attempt that fails with a network error or a timeout is tried
// again up to max_tries (3) in all, after retry_initial_backoff_ms (50),
// doubling up to retry_max_backoff_ms (1000). Any HTTP answer is final.
const (
	defaultTimeout  = time.Second
	defaultMaxTries = 3
)

// shortOptions bound the auth call to 250 ms and one attempt.
var shortOptions = map[string]int{"connection_timeout_ms": 250, "send_timeout_ms": 250, "receive_timeout_ms": 250, "max_tries": 1}

// hung accepts connections and never answers: an auth endpoint that is up
// but stuck.
type hung struct {
	net.Listener
	accepted atomic.Int32
	mu       sync.Mutex
	conns    []net.Conn
}

func newHung(t *testing.T) *hung {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hung{Listener: l}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			h.accepted.Add(1)
			h.mu.Lock()
			h.conns = append(h.conns, c)
			h.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, c := range h.conns {
			c.Close()
		}
	})
	return h
}

// What ClickHouse does when /clickhouse/auth is slow, stuck or down: it
// refuses the login (Code: 516, the same words as for a wrong password)
// once its timeouts and retries are spent; it never hangs on it. The
// figures (how long until ClickHouse answered, how many attempts clickgate
// saw) are logged, not asserted: with the defaults clickgate must answer
// well within a second.
func TestSlowOrDownAuthEndpoint(t *testing.T) {
	f := newFront(t)
	stuck := newHung(t)
	closed := "http://" + testkit.FreeAddr(t) + authPath
	servers := []authServer{
		{name: "clickgate", uri: authURI(f)},
		{name: "clickgate_short", uri: authURI(f), options: shortOptions},
		{name: "closed", uri: closed},
		{name: "stuck", uri: "http://" + stuck.Addr().String() + authPath},
		{name: "stuck_short", uri: "http://" + stuck.Addr().String() + authPath, options: shortOptions},
	}
	type outcome int
	const (
		admitted outcome = iota
		refused
		either // at the timeout itself: a race, logged only
	)
	cases := []struct {
		user, server string
		delay        time.Duration
		want         outcome
		attempts     int // calls that reach /clickhouse/auth (the front); -1: not counted there
	}{
		{"default_0s", "clickgate", 0, admitted, 1},
		{"default_300ms", "clickgate", 300 * time.Millisecond, admitted, 1},
		{"default_1s", "clickgate", time.Second, either, -1},
		{"default_5s", "clickgate", 5 * time.Second, refused, defaultMaxTries},
		{"short_0s", "clickgate_short", 0, admitted, 1},
		{"short_1s", "clickgate_short", time.Second, refused, 1},
		{"short_5s", "clickgate_short", 5 * time.Second, refused, 1},
		{"closed_port", "closed", 0, refused, 0},
		{"stuck_default", "stuck", 0, refused, -1},
		{"stuck_short", "stuck_short", 0, refused, -1},
	}
	var accounts []account
	for _, c := range cases {
		accounts = append(accounts, account{name: c.user, server: c.server})
		f.delay(c.user, c.delay)
	}
	ch := startClickHouse(t, servers, accounts...)
	key := newKey(t)
	newGate(t, f, key, ch.HTTPURL, gateOptions{})

	// All logins at once (the slow ones take seconds whatever -parallel
	// is), then each judged.
	type result struct {
		status int
		body   string
		took   time.Duration
		calls  []authCall
	}
	results := make([]result, len(cases))
	var wg sync.WaitGroup
	for i, c := range cases {
		tok := token(t, key, "clickhouse", c.user)
		wg.Go(func() {
			t0 := time.Now()
			status, body, err := tryDirect(ch, c.user, tok, "SELECT currentUser()")
			if err != nil {
				body = err.Error()
			}
			results[i] = result{status: status, body: body, took: time.Since(t0)}
			results[i].calls = f.waitUser(c.user, max(c.attempts, 0))
		})
	}
	wg.Wait()
	for i, c := range cases {
		t.Run(c.user, func(t *testing.T) {
			r := results[i]
			var seen []string
			for _, call := range r.calls {
				s := "abandoned"
				if call.status != 0 {
					s = http.StatusText(call.status)
				}
				seen = append(seen, s)
			}
			t.Logf("%-14s delay %-5v: ClickHouse answered after %8v: %d %.60q…; clickgate saw %d attempt(s) %v; ClickHouse's log: %s",
				c.user, c.delay, r.took.Round(time.Millisecond), r.status, r.body, len(r.calls), seen, chReason(t, ch, c.user))
			switch c.want {
			case admitted:
				if r.status != 200 || r.body != c.user {
					t.Errorf("not admitted: %d %q", r.status, r.body)
				}
			case refused:
				if code(r.body) != 516 {
					t.Errorf("not refused with Code: 516: %d %q", r.status, r.body)
				}
			}
			if c.attempts >= 0 && len(r.calls) != c.attempts {
				t.Errorf("%d attempts reached clickgate, want %d", len(r.calls), c.attempts)
			}
		})
	}
	t.Logf("the stuck endpoint accepted %d connections (default: up to %d per login, short: 1)", stuck.accepted.Load(), defaultMaxTries)
}

// waitUser collects user's calls until there are n (ClickHouse may answer
// its client before clickgate's side notices that an abandoned attempt's
// connection closed), for at most 10 s; then it returns what came.
func (f *front) waitUser(user string, n int) []authCall {
	var got []authCall
	for deadline := time.Now().Add(10 * time.Second); ; {
		got = append(got, f.takeUser(user)...)
		if len(got) >= n || time.Now().After(deadline) {
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// chReason is the reason ClickHouse's own log (server.log) gives for
// refusing user: what an operator can find, since the client sees only
// "password is incorrect, or there is no user with such name".
func chReason(t *testing.T, ch *chtest.Server, user string) string {
	t.Helper()
	file, err := os.Open(filepath.Join(ch.Dir, "log", "server.log"))
	if err != nil {
		return err.Error()
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	marker := "user: " + user + ": Authentication failed: "
	for sc.Scan() {
		if _, reason, ok := strings.Cut(sc.Text(), marker); ok {
			reason, _, _ = strings.Cut(reason, ", Stack trace")
			return reason
		}
	}
	return "-"
}
