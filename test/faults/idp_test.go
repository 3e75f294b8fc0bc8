// Package faults runs clickgate against parts that misbehave — identity
// providers, ClickHouse — and checks that it stays steady.
package faults

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/server"
	"github.com/clickgate/clickgate/internal/servertest"
	"github.com/clickgate/clickgate/internal/testkit"
	"github.com/clickgate/clickgate/internal/token"
)

// An identity provider that accepts connections and never answers, next
// to a real ClickHouse (Debian's 18.16): /readyz must answer within its
// deadline and its log must name the part that failed — the processor
// whose IdP hangs, not ClickHouse — and requests that need the IdP must
// fail fast as 503, not hang for the HTTP client's timeout.

// hangingIdP accepts connections and never says a word until the client
// hangs up.
type hangingIdP struct {
	URL   string
	conns atomic.Int32
}

func newHangingIdP(t *testing.T) *hangingIdP {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hangingIdP{URL: "http://" + l.Addr().String() + "/keys"}
	var mu sync.Mutex
	var held []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			h.conns.Add(1)
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
			go io.Copy(io.Discard, c)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	return h
}

// servingJWKS serves key's JWKS.
func servingJWKS(t *testing.T, key *testkit.Key) string {
	t.Helper()
	body, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{key.Public}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/keys"
}

// clickgateWithJWKS serves a configuration with jwt processor corp (keys from
// jwksURI) in front of ClickHouse at chURL, logging into logs.
func clickgateWithJWKS(t *testing.T, jwksURI, chURL string, logs *testkit.SyncBuffer) *httptest.Server {
	t.Helper()
	yaml := fmt.Sprintf(`
token_processors:
  corp: {type: jwt, issuer: %s, jwks_uri: %s, audiences: [clickhouse], username_claim: email}
directory:
  roles:
    mapping: {ch-analysts: reader}
clickhouse:
  url: %s
  mode: mapped
  accounts: [{role: reader, user: ch_reader, password: reader-pw}]
`, servertest.IssuerURL, jwksURI, chURL)
	return servertest.Start(t, yaml, server.Options{Logger: slog.New(slog.NewTextHandler(logs, nil))})
}

type readyzAnswer struct {
	status int
	checks map[string]string
	took   time.Duration
}

func probeReadyz(t *testing.T, cg *httptest.Server) readyzAnswer {
	t.Helper()
	start := time.Now()
	resp, err := http.Get(cg.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Checks map[string]string `json:"checks"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return readyzAnswer{resp.StatusCode, body.Checks, time.Since(start)}
}

// loggedNotReady returns the checks the log reported as not ready.
func loggedNotReady(logs string) []string {
	var out []string
	for _, line := range strings.Split(logs, "\n") {
		if !strings.Contains(line, "readyz: not ready") {
			continue
		}
		_, rest, _ := strings.Cut(line, "check=")
		if strings.HasPrefix(rest, `"`) {
			name, _, _ := strings.Cut(rest[1:], `"`)
			out = append(out, name)
		} else {
			name, _, _ := strings.Cut(rest, " ")
			out = append(out, name)
		}
	}
	return out
}

func TestReadyzHangingIdPHealthyClickHouse(t *testing.T) {
	ch := chtest.Start(t, chtest.Options{})
	idp := newHangingIdP(t)
	var logs testkit.SyncBuffer
	cg := clickgateWithJWKS(t, idp.URL, ch.HTTPURL, &logs)
	// The deadline of a check, with slack for a loaded machine; before,
	// the IdP took the whole 5 s and ClickHouse was blamed.
	limit := token.IdPFetchTimeout + 2*time.Second

	a := probeReadyz(t, cg)
	t.Logf("readyz with a hanging IdP: HTTP %d in %s, checks %v", a.status, a.took.Round(time.Millisecond), a.checks)
	if a.status != http.StatusServiceUnavailable || a.took > limit {
		t.Fatalf("readyz: HTTP %d after %s, want 503 within %s", a.status, a.took, limit)
	}
	if a.checks["clickhouse"] != "ok" || !strings.HasPrefix(a.checks["processor corp"], "unavailable") {
		t.Fatalf("readyz checks %v: want clickhouse ok and processor corp unavailable", a.checks)
	}
	if got := loggedNotReady(logs.String()); len(got) != 1 || got[0] != "processor corp" {
		t.Fatalf("the log blames %q, want the processor corp only:\n%s", got, logs.String())
	}
	if !strings.Contains(logs.String(), "jwks endpoint did not answer in time") {
		t.Errorf("the log does not say the IdP hung:\n%s", logs.String())
	}

	// A balancer probing again, and a request with a token, are answered
	// at once: no new fetch is due, and a hang is no verdict (503).
	a = probeReadyz(t, cg)
	if a.status != http.StatusServiceUnavailable || a.took > time.Second {
		t.Fatalf("second readyz: HTTP %d after %s, want 503 at once", a.status, a.took)
	}
	issuer := testkit.NewKey(t, jose.ES256, "k1")
	req, _ := http.NewRequest(http.MethodGet, cg.URL+"/?query=SELECT%201", nil)
	req.Header.Set("Authorization", "Bearer "+issuer.Sign(t, testkit.Claims(servertest.IssuerURL, "clickhouse", "alice@example.com", "ch-analysts")))
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if took := time.Since(start); resp.StatusCode != http.StatusServiceUnavailable || took > limit {
		t.Fatalf("query with a token, IdP hanging: HTTP %d after %s, want 503 within %s: %s", resp.StatusCode, took, limit, body)
	}
	if n := idp.conns.Load(); n != 1 {
		t.Fatalf("%d connections to the hanging IdP, want 1", n)
	}
}

func TestReadyzStoppedClickHouseHealthyIdP(t *testing.T) {
	ch := chtest.Start(t, chtest.Options{})
	key := testkit.NewKey(t, jose.ES256, "k1")
	var logs testkit.SyncBuffer
	cg := clickgateWithJWKS(t, servingJWKS(t, key), ch.HTTPURL, &logs)
	if a := probeReadyz(t, cg); a.status != http.StatusOK {
		t.Fatalf("readyz with both up: HTTP %d %v", a.status, a.checks)
	}
	ch.Stop()
	a := probeReadyz(t, cg)
	if a.status != http.StatusServiceUnavailable || a.took > token.IdPFetchTimeout+2*time.Second {
		t.Fatalf("readyz, ClickHouse stopped: HTTP %d after %s", a.status, a.took)
	}
	if a.checks["processor corp"] != "ok" || !strings.HasPrefix(a.checks["clickhouse"], "unavailable") {
		t.Fatalf("readyz checks %v: want processor corp ok and clickhouse unavailable", a.checks)
	}
	if got := loggedNotReady(logs.String()); len(got) != 1 || got[0] != "clickhouse" {
		t.Fatalf("the log blames %q, want clickhouse only:\n%s", got, logs.String())
	}
}
