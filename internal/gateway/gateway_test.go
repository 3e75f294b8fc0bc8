package gateway_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/server"
	"github.com/clickgate/clickgate/internal/servertest"
)

// stack is a real ClickHouse 18.16 server behind a clickgate server.
type stack struct {
	ch      *chtest.Server
	cg      *httptest.Server
	handler http.Handler
	iss     servertest.Issuer
}

func newStack(t *testing.T, ch *chtest.Server, clickhouseYAML string) *stack {
	t.Helper()
	iss := servertest.NewIssuer(t)
	cg := servertest.Start(t, fmt.Sprintf(`
token_processors:
  corp: %s
directory:
  roles: {filter: "^ch-.*$", transform: "s/^ch-//", common: [mcp_reader]}
clickhouse:
  url: %s
%s`, iss.Processor(), ch.HTTPURL, clickhouseYAML), server.Options{})
	return &stack{ch: ch, cg: cg, handler: cg.Config.Handler, iss: iss}
}

func (s *stack) token(t *testing.T, email string, groups ...string) string {
	return s.iss.Token(t, "clickhouse", email, groups...)
}

// do sends a request through clickgate with the token as Bearer.
func (s *stack) do(t *testing.T, tok, method, path, body string, set func(*http.Request)) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, s.cg.URL+path, strings.NewReader(body))
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if set != nil {
		set(req)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (s *stack) query(t *testing.T, tok, sql string) string {
	t.Helper()
	status, body := s.do(t, tok, "POST", "/", sql, nil)
	if status != 200 {
		t.Fatalf("%s: HTTP %d: %s", sql, status, body)
	}
	return strings.TrimSpace(body)
}

const mappedYAML = `  mode: mapped
  accounts:
    - {role: admin, user: ch_admin, password: admin-pw}
    - {role: mcp_reader, user: ch_reader, password: reader-pw}
`

func TestMappedMode(t *testing.T) {
	s := newStack(t, chtest.Start(t, chtest.Options{}), mappedYAML)
	alice := s.token(t, "alice@example.com", "ch-analysts")
	bob := s.token(t, "bob@example.com", "ch-admin")

	if got := s.query(t, alice, chtest.CurrentUserSQL()); got != "ch_reader" {
		t.Fatalf("alice runs as %q, want ch_reader", got)
	}
	if got := s.query(t, bob, chtest.CurrentUserSQL()); got != "ch_admin" {
		t.Fatalf("bob runs as %q, want ch_admin", got)
	}
	// The readonly account cannot write; ClickHouse's own error comes back.
	status, body := s.do(t, alice, "POST", "/", "CREATE TABLE t (x UInt8) ENGINE = Memory", nil)
	if status == 200 || !strings.Contains(body, "Code: 164") {
		t.Fatalf("readonly write: %d %s", status, body)
	}
	// Credentials beside the token are ambiguous: refused, never used.
	for name, set := range map[string]func(*http.Request){
		"user/password parameters": func(r *http.Request) {
			r.URL.RawQuery = url.Values{"user": {"ch_admin"}, "password": {"admin-pw"}}.Encode()
		},
		"X-ClickHouse headers": func(r *http.Request) {
			r.Header.Set("X-ClickHouse-User", "ch_admin")
			r.Header.Set("X-ClickHouse-Key", "admin-pw")
		},
	} {
		status, body := s.do(t, alice, "POST", "/", chtest.CurrentUserSQL(), set)
		if status != 400 || !strings.Contains(body, "more than one place") {
			t.Errorf("%s: %d %q, want 400 naming the ambiguity", name, status, body)
		}
	}
	// No account for the roles: 403 in ClickHouse's words.
	status, body = s.do(t, s.token(t, "carol@example.com", "ch-nothing"), "POST", "/", "SELECT 1", nil)
	if status != 200 { // carol still has the common role mcp_reader
		t.Fatalf("carol: %d %s", status, body)
	}
}

func TestGatewayRefusesWithoutAValidToken(t *testing.T) {
	s := newStack(t, chtest.Start(t, chtest.Options{}), mappedYAML)
	for _, tc := range []struct {
		name, tok string
		set       func(*http.Request)
	}{
		{"no credentials", "", nil},
		{"garbage", "garbage", nil},
		{"ClickHouse password instead of a token", "", func(r *http.Request) { r.SetBasicAuth("ch_admin", "admin-pw") }},
	} {
		status, body := s.do(t, tc.tok, "POST", "/", "SELECT 1", tc.set)
		if status != 401 || !strings.HasPrefix(body, "Code: 516. DB::Exception: clickgate:") || !strings.Contains(body, "(AUTHENTICATION_FAILED)") {
			t.Errorf("%s: %d %q", tc.name, status, body)
		}
	}
	// /ping needs no credentials, as on ClickHouse itself.
	if status, body := s.do(t, "", "GET", "/ping", "", nil); status != 200 || body != "Ok.\n" {
		t.Errorf("/ping: %d %q", status, body)
	}
}

func TestServiceModeSessionsAndQuotaKey(t *testing.T) {
	ch := chtest.Start(t, chtest.Options{ExtraUsers: []chtest.User{{Name: "clickgate_svc", Password: "svc-pw", Quota: chtest.KeyedQuota}}})
	s := newStack(t, ch, "  mode: service\n  user: clickgate_svc\n  password: svc-pw\n  quota_key: true\n")
	alice := s.token(t, "alice@example.com", "ch-analysts")
	carol := s.token(t, "carol@example.com", "ch-analysts")

	if got := s.query(t, alice, chtest.SelfSQL("user, quota_key")); got != "clickgate_svc\talice@example.com" {
		t.Fatalf("user and quota_key = %q", got)
	}
	// Both people share one ClickHouse account; their sessions must not.
	inSession := func(r *http.Request) { r.URL.RawQuery = "session_id=shared-name" }
	if status, body := s.do(t, alice, "POST", "/", "CREATE TEMPORARY TABLE secrets (x UInt8)", inSession); status != 200 {
		t.Fatalf("alice's temporary table: %d %s", status, body)
	}
	if status, body := s.do(t, alice, "POST", "/", "SELECT count() FROM secrets", inSession); status != 200 {
		t.Fatalf("alice's own session: %d %s", status, body)
	}
	status, body := s.do(t, carol, "POST", "/", "SELECT count() FROM secrets", inSession)
	if status == 200 || !strings.Contains(body, "secrets") {
		t.Fatalf("carol reached alice's session: %d %s", status, body)
	}
}

func TestStreamsAndBodiesPassIntact(t *testing.T) {
	s := newStack(t, chtest.Start(t, chtest.Options{}), mappedYAML)
	bob := s.token(t, "bob@example.com", "ch-admin")
	const rows = 20_000_000
	sql := fmt.Sprintf("SELECT number, toString(number * 7) FROM system.numbers LIMIT %d FORMAT TSV", rows)
	digest := func(resp *http.Response) (int, [32]byte) {
		defer resp.Body.Close()
		h := sha256.New()
		lines := 0
		sc := bufio.NewScanner(io.TeeReader(resp.Body, h))
		for sc.Scan() {
			lines++
		}
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
		var sum [32]byte
		copy(sum[:], h.Sum(nil))
		return lines, sum
	}
	direct, err := http.Post(s.ch.HTTPURL+"/?user=ch_admin&password=admin-pw", "text/plain", strings.NewReader(sql))
	if err != nil {
		t.Fatal(err)
	}
	directLines, directSum := digest(direct)
	req, _ := http.NewRequest("POST", s.cg.URL+"/", strings.NewReader(sql))
	req.Header.Set("Authorization", "Bearer "+bob)
	proxied, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	proxiedLines, proxiedSum := digest(proxied)
	if directLines != rows || proxiedLines != rows || directSum != proxiedSum {
		t.Fatalf("stream: direct %d rows, through clickgate %d rows, same bytes: %v", directLines, proxiedLines, directSum == proxiedSum)
	}

	// A large INSERT, gzip-compressed both ways.
	s.query(t, bob, "CREATE TABLE big (n UInt64, s String) ENGINE = MergeTree ORDER BY n")
	var body bytes.Buffer
	zw := gzip.NewWriter(&body)
	const inserted = 2_000_000
	for i := 0; i < inserted; i++ {
		fmt.Fprintf(zw, "%d\trow-%d\n", i, i)
	}
	zw.Close()
	status, out := s.do(t, bob, "POST", "/?query="+url.QueryEscape("INSERT INTO big FORMAT TSV"), body.String(), func(r *http.Request) {
		r.Header.Set("Content-Encoding", "gzip")
	})
	if status != 200 {
		t.Fatalf("insert: %d %s", status, out)
	}
	req, _ = http.NewRequest("POST", s.cg.URL+"/?enable_http_compression=1", strings.NewReader("SELECT count(), sum(n) FROM big"))
	req.Header.Set("Authorization", "Bearer "+bob)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := (&http.Client{Transport: &http.Transport{DisableCompression: true}}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("response not compressed: %v", resp.Header)
	}
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(zr)
	if want := fmt.Sprintf("%d\t%d\n", inserted, inserted*(inserted-1)/2); string(got) != want {
		t.Fatalf("after insert: %q, want %q", got, want)
	}
	// ClickHouse's errors pass through with their status and body.
	status, out = s.do(t, bob, "POST", "/", "SELEKT 1", nil)
	_, directErr := s.ch.QueryErr("ch_admin", "admin-pw", "SELEKT 1")
	qe, ok := directErr.(*chtest.QueryError)
	if !ok || status != qe.Status || strings.TrimSpace(out) != strings.TrimSpace(qe.Body) || !strings.Contains(out, "Code: 62") {
		t.Fatalf("syntax error through clickgate: %d %q; direct: %v", status, out, directErr)
	}
}

func TestClientGoneCancelsQuery(t *testing.T) {
	s := newStack(t, chtest.Start(t, chtest.Options{}), mappedYAML)
	bob := s.token(t, "bob@example.com", "ch-admin")
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", s.cg.URL+"/", strings.NewReader("SELECT number, 'cancel-marker-7' FROM system.numbers FORMAT TSV"))
	req.Header.Set("Authorization", "Bearer "+bob)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	running := func() string {
		return s.ch.Query(t, "ch_admin", "admin-pw", "SELECT count() FROM system.processes WHERE query LIKE '%cancel-marker-7%' AND query NOT LIKE '%system.processes%'")
	}
	if got := strings.TrimSpace(running()); got != "1" {
		t.Fatalf("the query is not running: %q", got)
	}
	cancel()
	resp.Body.Close()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if strings.TrimSpace(running()) == "0" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("ClickHouse still runs the query after the client went away")
		}
	}
}

// clickhouse.settings apply to every query and the client cannot
// override them: readonly fixed by clickgate holds even for an admin
// account and a client that asks for readonly=0.
func TestFixedSettingsCannotBeOverridden(t *testing.T) {
	s := newStack(t, chtest.Start(t, chtest.Options{}), mappedYAML+"  settings: {readonly: \"1\"}\n")
	bob := s.token(t, "bob@example.com", "ch-admin")
	status, body := s.do(t, bob, "POST", "/?readonly=0", "CREATE TABLE t (x UInt8) ENGINE = Memory", nil)
	if status == 200 || !strings.Contains(body, "Code: 164") {
		t.Fatalf("write with readonly fixed: %d %s", status, body)
	}
	if got := s.query(t, bob, "SELECT 1"); got != "1" {
		t.Fatalf("read: %q", got)
	}
}

// ClickHouse answers a refused INSERT … VALUES before reading its body;
// the next request, through the same pooled connections, must still get
// its whole answer (it was cut about once in 300 when the body was
// streamed from the client's connection).
func TestRefusedInsertDoesNotCutTheNextAnswer(t *testing.T) {
	s := newStack(t, chtest.Start(t, chtest.Options{}), mappedYAML)
	alice := s.token(t, "alice@example.com", "ch-analysts")
	bob := s.token(t, "bob@example.com", "ch-admin")
	s.query(t, bob, "CREATE TABLE default.u (date Date, team String) ENGINE = MergeTree ORDER BY team")
	for i := 0; i < 300; i++ {
		if status, _ := s.do(t, alice, "POST", "/", "INSERT INTO default.u (date, team) VALUES (today(), 'alice')", nil); status == 200 {
			t.Fatal("a readonly account inserted")
		}
		if got := s.query(t, bob, "SELECT count() FROM system.one"); got != "1" {
			t.Fatalf("round %d: answer %q", i, got)
		}
	}
}
