// Package httpauth proves clickgate's http_auth mode against a real
// ClickHouse 26.7 server (chtest.ChDB267): each person is their own
// ClickHouse user declared in users.xml with <http_authentication>, and
// ClickHouse itself calls clickgate's /clickhouse/auth to check the
// password clickgate sent (a ticket) or the person sent (a raw token).
// Every test judges by what ClickHouse did — currentUser(), the settings in
// effect, its error codes, system.query_log and system.session_log — and
// by the calls it made to /clickhouse/auth, counted on clickgate's side.
//
// clickgate runs in process (servertest.Handler) behind a front
// handler on a listener opened first, because ClickHouse's configuration
// must name the auth endpoint before ClickHouse starts. The 26.7 server has
// no SQL-driven users, so provisioning is off and the people are
// users.xml's. It aborts after refusing a native-protocol login, so every
// native case has a server of its own (see native_test.go).
package httpauth

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/clickhouse"
	"github.com/clickgate/clickgate/internal/server"
	"github.com/clickgate/clickgate/internal/servertest"
	"github.com/clickgate/clickgate/internal/testkit"
)

const (
	issuer = "https://idp.test/realms/corp"
	// secret is the clickhouse.ticket_secret replicas share.
	secret = "shared-ticket-secret-0123456789abcdef"
	// authPath is clickgate's auth endpoint (DESIGN.md, "Auth endpoint contract").
	authPath = "/clickhouse/auth"
)

// front serves clickgate on a listener that exists before clickgate does:
// ClickHouse's configuration must name the auth endpoint's address before
// ClickHouse starts, and clickgate's configuration ClickHouse's address.
// It records every call to /clickhouse/auth (who, with which password,
// what clickgate answered, how long clickgate took) and can delay them.
type front struct {
	*httptest.Server
	next atomic.Pointer[http.Handler]

	mu     sync.Mutex
	calls  []authCall
	delays map[string]time.Duration // per Basic user: wait before clickgate sees the call
}

// authCall is one request ClickHouse made to /clickhouse/auth.
type authCall struct {
	user, password string
	status         int           // clickgate's answer; 0 when the caller left during the delay
	took           time.Duration // clickgate's handler alone, without the delay
}

func newFront(t *testing.T) *front {
	f := &front{}
	f.Server = httptest.NewServer(f)
	t.Cleanup(f.Close)
	return f
}

// serve makes h (clickgate's handler) answer behind f.
func (f *front) serve(h http.Handler) { f.next.Store(&h) }

func (f *front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := f.next.Load()
	if h == nil {
		http.Error(w, "front: no handler yet", http.StatusServiceUnavailable)
		return
	}
	if r.URL.Path != authPath {
		(*h).ServeHTTP(w, r)
		return
	}
	c := authCall{}
	c.user, c.password, _ = r.BasicAuth()
	f.mu.Lock()
	d := f.delays[c.user]
	f.mu.Unlock()
	if d > 0 {
		select {
		case <-time.After(d):
		case <-r.Context().Done(): // ClickHouse gave up
			f.record(c)
			return
		}
	}
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	t0 := time.Now()
	(*h).ServeHTTP(rec, r)
	c.took, c.status = time.Since(t0), rec.status
	f.record(c)
}

// delay makes calls to /clickhouse/auth for user wait d before they reach
// clickgate (or until ClickHouse gives up on them).
func (f *front) delay(user string, d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.delays == nil {
		f.delays = map[string]time.Duration{}
	}
	f.delays[user] = d
}

func (f *front) record(c authCall) {
	f.mu.Lock()
	f.calls = append(f.calls, c)
	f.mu.Unlock()
}

// takeUser returns the calls for user recorded since the last take and
// forgets them.
func (f *front) takeUser(user string) []authCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	var mine, rest []authCall
	for _, c := range f.calls {
		if c.user == user {
			mine = append(mine, c)
		} else {
			rest = append(rest, c)
		}
	}
	f.calls = rest
	return mine
}

// take returns the calls recorded since the last take and forgets them.
func (f *front) take() []authCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = nil
	return c
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// account is a users.xml user of ClickHouse.
type account struct {
	name    string
	server  string // <http_authentication><server>; empty: password below
	passwd  string
	profile string // default when empty
}

// The people of these tests: carol and dave sign in through clickgate's
// auth endpoint; carol's profile is readonly. ch_admin reads system tables.
var (
	carol = account{name: "carol", server: "clickgate", profile: "readonly"}
	dave  = account{name: "dave", server: "clickgate"}
	admin = account{name: chtest.AdminUser, passwd: chtest.AdminPassword}
)

// usersXML declares the users (and "default", which chtest's 26.7 server
// needs to start its listeners). A users.xml user has either a password or
// <http_authentication>, never both, which is why chtest.User (always a
// <password>) does not fit.
func usersXML(accounts ...account) string {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0"?>
<yandex>
  <profiles>
    <default><max_memory_usage>4000000000</max_memory_usage></default>
    <readonly><readonly>1</readonly></readonly>
  </profiles>
  <users>
    <default><password></password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></default>
`)
	for _, a := range accounts {
		auth := "<password>" + a.passwd + "</password>"
		if a.server != "" {
			auth = "<http_authentication><server>" + a.server + "</server><scheme>basic</scheme></http_authentication>"
		}
		profile := a.profile
		if profile == "" {
			profile = "default"
		}
		fmt.Fprintf(&b, "    <%[1]s>%[2]s<networks><ip>127.0.0.1</ip></networks><profile>%[3]s</profile><quota>default</quota></%[1]s>\n", a.name, auth, profile)
	}
	b.WriteString(`  </users>
  <quotas>
    <default><interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default>
  </quotas>
</yandex>
`)
	return b.String()
}

// authServer is one entry of <http_authentication_servers>: its URI and
// any of ClickHouse's options for it (connection_timeout_ms,
// receive_timeout_ms, send_timeout_ms, max_tries, retry_initial_backoff_ms,
// retry_max_backoff_ms; src/Access/ExternalAuthenticators.cpp).
type authServer struct {
	name, uri string
	options   map[string]int
}

// logsConfig turns on system.query_log and system.session_log.
const logsConfig = chtest.QueryLogConfig +
	`<session_log><database>system</database><table>session_log</table><flush_interval_milliseconds>500</flush_interval_milliseconds></session_log>`

// startClickHouse runs ClickHouse 26.7 with these auth servers and users
// (ch_admin, with a password, is always there).
func startClickHouse(t *testing.T, servers []authServer, accounts ...account) *chtest.Server {
	t.Helper()
	var cfg strings.Builder
	cfg.WriteString("<http_authentication_servers>")
	for _, s := range servers {
		fmt.Fprintf(&cfg, "<%s><uri>%s</uri>", s.name, s.uri)
		for k, v := range s.options {
			fmt.Fprintf(&cfg, "<%s>%d</%s>", k, v, k)
		}
		fmt.Fprintf(&cfg, "</%s>", s.name)
	}
	cfg.WriteString("</http_authentication_servers>")
	cfg.WriteString(logsConfig)
	return chtest.Start(t, chtest.Options{
		Release:     chtest.ChDB267,
		UsersXML:    usersXML(append([]account{admin}, accounts...)...),
		ExtraConfig: cfg.String(),
	})
}

// gate is one clickgate server in http_auth mode.
type gate struct {
	*front
	key       *testkit.Key
	auditFile string // clickgate's session log
}

// gateOptions change a gate from the defaults: the shared secret, the real
// clock.
type gateOptions struct {
	secret       string
	randomSecret bool // no ticket_secret: a random key of this process
	now          func() time.Time
}

// newGate runs clickgate (http_auth mode, provisioning off: the users are
// users.xml's) in front of chURL, behind f. key signs the people's tokens.
func newGate(t *testing.T, f *front, key *testkit.Key, chURL string, o gateOptions) *gate {
	t.Helper()
	if o.secret == "" {
		o.secret = secret
	}
	if o.randomSecret {
		o.secret = ""
	}
	dir := t.TempDir()
	auditFile := filepath.Join(dir, "session.log")
	yaml := fmt.Sprintf(`
server: {public_url: %s}
token_processors:
  corp: {type: jwt, issuer: %s, jwks_file: %s, audiences: [clickhouse], username_claim: preferred_username}
clickhouse:
  url: %s
  mode: http_auth
  auth_server: clickgate
  ticket_secret: %q
  provisioning: {create_users: false, sync_roles: false}
mcp: {read_only: true}
audit: {file: %s}
`, f.URL, issuer, testkit.WriteJWKS(t, dir, key), chURL, o.secret, auditFile)
	f.serve(servertest.Handler(t, yaml, server.Options{Now: o.now}))
	return &gate{front: f, key: key, auditFile: auditFile}
}

// auditRecord is a line of clickgate's session log.
type auditRecord struct {
	Type, User, Processor, Interface string
	FailureReason                    string `json:"failure_reason"`
}

// audit returns clickgate's session log records for /clickhouse/auth.
func (g *gate) audit(t *testing.T) []auditRecord {
	t.Helper()
	data, err := os.ReadFile(g.auditFile)
	if err != nil {
		t.Fatal(err)
	}
	var out []auditRecord
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var r auditRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("session log line %q: %v", line, err)
		}
		if r.Interface == "auth_endpoint" {
			out = append(out, r)
		}
	}
	return out
}

// token is a person's token for audience aud: ClickHouse user name in
// preferred_username, valid for an hour.
func token(t *testing.T, key *testkit.Key, aud, user string) string {
	return key.Sign(t, testClaims(user, aud))
}

// testClaims are the claims of token, to change before signing.
func testClaims(user, aud string) map[string]any {
	c := testkit.Claims(issuer, aud, user+"@example.com")
	c["preferred_username"] = user
	return c
}

// ticketFor is a ticket for user signed with the shared secret, as any
// clickgate replica would issue it.
func ticketFor(t *testing.T, user string) string {
	t.Helper()
	tk, err := clickhouse.NewTickets([]byte(secret), clickhouse.DefaultTicketTTL, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := tk.Issue(user)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func newKey(t *testing.T) *testkit.Key { return testkit.NewKey(t, jose.ES256, "k1") }

// authURI is the auth endpoint of f as ClickHouse's configuration names it.
func authURI(f *front) string { return f.URL + authPath }

// query sends sql through the gateway with tok as Bearer token and returns
// the status and body (without its final newline).
func (g *gate) query(t *testing.T, tok, sql string) (int, string) {
	t.Helper()
	req, err := g.request(tok, sql)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, req)
}

// direct sends sql straight to ClickHouse as user with password.
func direct(t *testing.T, ch *chtest.Server, user, password, sql string) (int, string) {
	t.Helper()
	status, body, err := tryDirect(ch, user, password, sql)
	if err != nil {
		t.Fatal(err)
	}
	return status, body
}

// tryDirect is direct for any goroutine.
func tryDirect(ch *chtest.Server, user, password, sql string) (int, string, error) {
	req, err := http.NewRequest(http.MethodPost, ch.HTTPURL+"/", strings.NewReader(sql))
	if err != nil {
		return 0, "", err
	}
	req.SetBasicAuth(user, password)
	return send(req)
}

// client bounds every request: nothing in these tests may hang.
var client = &http.Client{Timeout: 60 * time.Second}

func do(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	status, body, err := send(req)
	if err != nil {
		t.Fatal(err)
	}
	return status, body
}

// send returns the status and body (without its final newline).
func send(req *http.Request) (int, string, error) {
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", err
	}
	return resp.StatusCode, strings.TrimSuffix(string(b), "\n"), nil
}

var codeRE = regexp.MustCompile(`Code: (\d+)`)

// code is the ClickHouse error code in an error body, 0 if none.
func code(body string) int {
	m := codeRE.FindStringSubmatch(body)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// adminQuery runs sql as ch_admin straight on ClickHouse.
func adminQuery(t *testing.T, ch *chtest.Server, sql string) string {
	t.Helper()
	return ch.Query(t, admin.name, admin.passwd, sql)
}

// flushLogs writes ClickHouse's log tables.
func flushLogs(t *testing.T, ch *chtest.Server) { adminQuery(t, ch, "SYSTEM FLUSH LOGS") }

// ticketUser returns the user of a clickgate ticket signed with the shared
// secret, or "" when password is not one.
func ticketUser(t *testing.T, password string) string {
	t.Helper()
	tk, err := clickhouse.NewTickets([]byte(secret), clickhouse.DefaultTicketTTL, nil)
	if err != nil {
		t.Fatal(err)
	}
	u, err := tk.Verify(password)
	if err != nil {
		return ""
	}
	return u
}
