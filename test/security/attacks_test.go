// Package security is the attack catalogue of the trust boundary: each
// case is tried against real ClickHouse servers (18.16 and 26.7) behind
// clickgate in service mode (one account shared by everyone, fixed settings), and
// judged by what ClickHouse actually did — tables created or not, the
// settings in effect (system.settings), the executing user and quota key
// (system.processes), the queries it logged (system.query_log) — not by
// clickgate's status code alone.
package security

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"mime/multipart"
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

// fixedSettings are what the operator fixes; wantSettings is how
// system.settings shows them when they hold.
const fixedSettings = `{max_result_rows: "100", max_execution_time: "30", readonly: "2"}`
const wantSettings = "max_execution_time\t30\nmax_result_rows\t100\nreadonly\t2"

// settingsSQL shows the settings in effect for the query itself.
// MARK becomes a marker per case, in a string literal: ClickHouse 18.16
// drops trailing comments from the text it logs.
const settingsSQL = "SELECT name, value FROM system.settings WHERE name IN ('readonly', 'max_result_rows', 'max_execution_time') AND 'MARK' != '' ORDER BY name"

type stack struct {
	ch  *chtest.Server
	cg  *httptest.Server
	iss servertest.Issuer
}

// servers are the ClickHouse releases every attack is tried against.
var servers = []chtest.Release{chtest.Debian1816, chtest.ChDB267}

// eachServer runs test once per release, each with its own stack:
// ClickHouse with a service account whose queries are logged, and
// clickgate in service mode in front of it.
func eachServer(t *testing.T, test func(t *testing.T, s *stack)) {
	for _, release := range servers {
		t.Run(release.String(), func(t *testing.T) { test(t, newStack(t, release)) })
	}
}

func newStack(t *testing.T, release chtest.Release) *stack {
	ch := chtest.Start(t, chtest.Options{
		Release:       release,
		ExtraConfig:   chtest.QueryLogConfig,
		ExtraProfiles: `<logged><log_queries>1</log_queries></logged>`,
		ExtraUsers:    []chtest.User{{Name: "svc", Password: "svc-pw", Profile: "logged", Quota: chtest.KeyedQuota}},
	})
	iss := servertest.NewIssuer(t)
	cg := servertest.Start(t, fmt.Sprintf(`
token_processors:
  corp: %s
clickhouse:
  url: %s
  mode: service
  user: svc
  password: svc-pw
  quota_key: true
  settings: %s
`, iss.Processor(), ch.HTTPURL, fixedSettings), server.Options{})
	return &stack{ch: ch, cg: cg, iss: iss}
}

func (s *stack) token(t *testing.T, email string) string {
	return s.iss.Token(t, "clickhouse", email)
}

// send sends a raw request through clickgate: the path and query as
// given (not re-encoded), headers, body.
func (s *stack) send(t *testing.T, method, pathAndQuery string, header http.Header, body io.Reader) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, s.cg.URL+"/", body)
	if err != nil {
		t.Fatal(err)
	}
	path, query, _ := strings.Cut(pathAndQuery, "?")
	req.URL.Opaque = "//" + req.URL.Host + path // the path exactly as written
	req.URL.RawQuery = query
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

func marker() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "atk_" + hex.EncodeToString(b[:])
}

// tableExists asks ClickHouse directly, as its admin.
func (s *stack) tableExists(t *testing.T, name string) bool {
	t.Helper()
	return s.ch.Query(t, chtest.AdminUser, chtest.AdminPassword, "EXISTS TABLE default."+name) == "1"
}

// logged returns how many queries containing m ClickHouse logged (the
// service account's profile logs every query it runs). SYSTEM FLUSH LOGS
// alone does not make query_log complete (18.16 writes only what its log
// thread has taken; 26.7 may add entries after the answer), so a sentinel
// query runs after the case and the count is read once the sentinel's
// entry is there: any entry of the case came before it.
func (s *stack) logged(t *testing.T, m string) string {
	t.Helper()
	sentinel := marker()
	s.ch.Query(t, "svc", "svc-pw", "SELECT '"+sentinel+"'")
	count := func(m string) (string, error) {
		return s.ch.QueryErr(chtest.AdminUser, chtest.AdminPassword,
			"SELECT count() FROM system.query_log WHERE query LIKE '%"+m+"%' AND query NOT LIKE '%query_log%'")
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		s.ch.Query(t, chtest.AdminUser, chtest.AdminPassword, "SYSTEM FLUSH LOGS")
		if n, err := count(sentinel); err == nil && n != "0" { // before its first flush 18.16 has no query_log
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ClickHouse's query_log never showed the sentinel query %s", sentinel)
		}
	}
	n, err := count(m)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Nothing reaches ClickHouse without a verified person: every path other
// than "/" is answered by clickgate, /ping included, and a request without
// valid credentials never leaves clickgate. Each attack tries to create a
// table as ClickHouse's password-less default user; none may exist after.
func TestUnauthenticatedRequestsNeverReachClickHouse(t *testing.T) {
	eachServer(t, testUnauthenticatedRequestsNeverReachClickHouse)
}

func testUnauthenticatedRequestsNeverReachClickHouse(t *testing.T, s *stack) {
	alice := s.token(t, "alice@example.com")
	type attack struct {
		name, method, path string
		header             http.Header
		wantStatus         int
	}
	var attacks []attack
	for _, p := range []string{"/ping", "/ping/", "/%70ing", "/PING", "/ping%3Fquery=", "//ping", "/./ping", "/play", "/dashboard", "/replicas_status",
		"/query", "/binary", "/merges", "/js/uplot.js", "/jemalloc", "/replicas_status?verbose=1", "/%2F", "/?", "/clickhouse/auth/../../"} {
		for _, m := range []string{"GET", "POST", "PUT"} {
			attacks = append(attacks, attack{"no token " + m + " " + p, m, p, nil, 0})
		}
	}
	attacks = append(attacks,
		attack{"no token POST /", "POST", "/", nil, 401},
		attack{"no token GET /", "GET", "/", nil, 401},
		attack{"garbage password param", "POST", "/?user=default&password=x", nil, 401},
		attack{"default user, empty password", "POST", "/?user=default", nil, 401},
		attack{"X-ClickHouse-User default alone", "POST", "/", http.Header{"X-Clickhouse-User": {"default"}}, 401},
		attack{"Basic default:", "POST", "/", http.Header{"Authorization": {"Basic ZGVmYXVsdDo="}}, 401},
		attack{"Bearer garbage", "POST", "/", bearer("x.y.z"), 401},
		attack{"valid token, PUT", "PUT", "/", bearer(alice), 405},
		attack{"valid token, DELETE", "DELETE", "/", bearer(alice), 405},
		attack{"valid token, PATCH", "PATCH", "/", bearer(alice), 405},
		attack{"valid token, OPTIONS", "OPTIONS", "/", bearer(alice), 405},
		attack{"valid token, /ping", "POST", "/ping", bearer(alice), 405},
		attack{"valid token, /%70ing", "POST", "/%70ing", bearer(alice), 404},
		attack{"valid token, //", "POST", "//", bearer(alice), 0},
		attack{"valid token, /play", "POST", "/play", bearer(alice), 404},
	)
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			table := marker()
			sql := "CREATE TABLE default." + table + " (x UInt8) ENGINE = Memory"
			path := a.path
			sep := "?"
			if strings.Contains(path, "?") {
				sep = "&"
			}
			path += sep + "query=" + url.QueryEscape(sql)
			status, _, body := s.send(t, a.method, path, a.header, strings.NewReader(sql))
			if a.wantStatus != 0 && status != a.wantStatus {
				t.Errorf("status %d, want %d: %s", status, a.wantStatus, body)
			}
			if status == 200 && body != "Ok.\n" && a.method != "GET" {
				t.Errorf("answered 200 with %q", body)
			}
			if s.tableExists(t, table) {
				t.Fatalf("ClickHouse created %s: the request reached it", table)
			}
		})
	}
	// /ping itself still answers load balancers, from clickgate.
	if status, _, body := s.send(t, "GET", "/ping", nil, nil); status != 200 || body != "Ok.\n" {
		t.Errorf("GET /ping: %d %q", status, body)
	}
	if status, _, _ := s.send(t, "HEAD", "/ping", nil, nil); status != 200 {
		t.Errorf("HEAD /ping: %d", status)
	}
}

// No channel loosens a fixed setting. Each case sends the settings probe
// with an attempt to loosen through one channel and must either be
// refused (400, and ClickHouse never ran the query) or run with every
// fixed setting as the operator set it, as system.settings shows.
func TestFixedSettingsHoldOnEveryChannel(t *testing.T) {
	eachServer(t, testFixedSettingsHoldOnEveryChannel)
}

func testFixedSettingsHoldOnEveryChannel(t *testing.T, s *stack) {
	alice := s.token(t, "alice@example.com")
	form := func(fields map[string]string, files map[string]string) (http.Header, io.Reader) {
		var b bytes.Buffer
		w := multipart.NewWriter(&b)
		for k, v := range fields {
			_ = w.WriteField(k, v)
		}
		for k, v := range files {
			fw, _ := w.CreateFormFile(k, k+".tsv")
			_, _ = io.WriteString(fw, v)
		}
		_ = w.Close()
		h := bearer(alice)
		h.Set("Content-Type", w.FormDataContentType())
		return h, &b
	}
	gz := func(s string) io.Reader {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		_, _ = io.WriteString(w, s)
		_ = w.Close()
		return &b
	}
	q := func(sql string) string { return "query=" + url.QueryEscape(sql) }
	type attack struct {
		name   string
		params string // raw query string; MARK is replaced with the case's marker
		header http.Header
		body   func(m string) io.Reader
		refuse bool // else: runs, with the settings fixed
	}
	plain := func(sql string) func(string) io.Reader {
		return func(m string) io.Reader { return strings.NewReader(strings.ReplaceAll(sql, "MARK", m)) }
	}
	probe := settingsSQL
	attacks := []attack{
		{name: "URL parameters", params: "readonly=0&max_result_rows=0&max_execution_time=0", body: plain(probe)},
		{name: "URL parameters, other case", params: "READONLY=0&Max_Result_Rows=0", body: plain(probe)},
		{name: "URL parameters, percent-encoded names", params: "read%6Fnly=0&max%5Fresult%5Frows=0", body: plain(probe)},
		{name: "URL parameter twice", params: "max_threads=1&max_threads=2", body: plain(probe), refuse: true},
		{name: "URL parameter and its case twin", params: "readonly=0&READONLY=0", body: plain(probe), refuse: true},
		{name: "query twice, encoded alike", params: q(probe) + "&quer%79=" + url.QueryEscape("SELECT 1"), refuse: true},
		{name: "profile switch in the URL", params: "profile=default", body: plain(probe)},
		{name: "SETTINGS clause", body: plain(probe + " SETTINGS max_result_rows = 0"), refuse: true},
		{name: "SETTINGS clause, quoted name", body: plain(probe + " SETTINGS `max_result_rows` = 0"), refuse: true},
		{name: "SETTINGS clause, escaped name", body: plain(probe + ` SETTINGS "max_result\x5frows" = 0`), refuse: true},
		{name: "SETTINGS clause, comment between", body: plain(probe + " SETTINGS max_execution_time/**/=/**/0"), refuse: true},
		{name: "SETTINGS clause split between query parameter and body", params: q(settingsSQL + " SETTINGS"), body: plain("readonly=0"), refuse: true},
		{name: "SETTINGS profile", body: plain(probe + " SETTINGS profile = 'default'"), refuse: true},
		{name: "SET in a session", params: "session_id=s1", body: plain("SET max_result_rows = 0"), refuse: true},
		{name: "multipart field", params: q(probe), body: nil, refuse: true},
		{name: "multipart field beside a file", params: q(probe), refuse: true},
		{name: "form-urlencoded body", header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}, body: plain("query=" + url.QueryEscape(probe) + "&readonly=0"), refuse: true},
		{name: "gzip body holding the query", header: http.Header{"Content-Encoding": {"gzip"}}, body: func(m string) io.Reader { return gz(strings.ReplaceAll(probe, "MARK", m) + " SETTINGS readonly=0") }, refuse: true},
		{name: "decompress=1 without an INSERT", params: "decompress=1", body: plain(probe), refuse: true},
		{name: "X-ClickHouse header other than Database and Format", header: http.Header{"X-Clickhouse-Setting-Readonly": {"0"}}, body: plain(probe), refuse: true},
		{name: "two Authorization headers", header: http.Header{"Authorization": {"Bearer " + alice, "Basic ZGVmYXVsdDo="}}, body: plain(probe), refuse: true},
		{name: "token and password parameter", params: "password=x", body: plain(probe), refuse: true},
		{name: "allow_settings_after_format_in_insert", params: "allow_settings_after_format_in_insert=1", body: plain(probe), refuse: true},
		{name: "another dialect in the URL", params: "dialect=prql", body: plain(probe), refuse: true},
		{name: "SET dialect in a session", params: "session_id=s2", body: plain("SET dialect = 'kusto'"), refuse: true},
		{name: "gzip INSERT data starting with SETTINGS (read so by 19.1-22.3)", params: q("INSERT INTO default.nowhere FORMAT TSV"), header: http.Header{"Content-Encoding": {"gzip"}},
			body: func(m string) io.Reader { return gz("SETTINGS max_result_rows = 0\n'" + m + "'\n") }, refuse: true},
		{name: "zstd INSERT data, not opened", params: q("INSERT INTO default.nowhere FORMAT TSV"), header: http.Header{"Content-Encoding": {"zstd"}}, body: plain("MARK"), refuse: true},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			m := marker()
			header := bearer(alice)
			var body io.Reader
			switch a.name {
			case "multipart field":
				header, body = form(map[string]string{"readonly": "0", "max_result_rows": "0"}, nil)
			case "multipart field beside a file":
				header, body = form(map[string]string{"max_execution_time": "0"}, map[string]string{"ext": "1\n"})
			default:
				if a.body != nil {
					body = a.body(m)
				}
			}
			for k, v := range a.header {
				header[k] = v
			}
			params := strings.ReplaceAll(a.params, "MARK", m)
			params = strings.ReplaceAll(params, url.QueryEscape("MARK"), m)
			if strings.Contains(header.Get("Content-Type"), "multipart") {
				params = q(strings.ReplaceAll(settingsSQL, "MARK", m))
			}
			status, _, got := s.send(t, "POST", "/?"+params, header, body)
			if a.refuse {
				if status != 400 {
					t.Fatalf("status %d (%s), want 400", status, got)
				}
				if !strings.Contains(got, "clickgate:") || strings.Contains(got, alice) {
					t.Errorf("refusal %q should be clickgate's, without the token", got)
				}
				if n := s.logged(t, m); n != "0" {
					t.Fatalf("ClickHouse ran the refused query (%s times in query_log)", n)
				}
				if a.name == "SET in a session" { // and the session keeps the fixed value
					status, _, got := s.send(t, "POST", "/?session_id=s1", bearer(alice), strings.NewReader(strings.ReplaceAll(settingsSQL, "MARK", m)))
					if status != 200 || strings.TrimSpace(got) != wantSettings {
						t.Fatalf("in the session afterwards: %d\n%s", status, got)
					}
				}
				return
			}
			if status != 200 || strings.TrimSpace(got) != wantSettings {
				t.Fatalf("status %d, settings in effect:\n%s\nwant:\n%s", status, got, wantSettings)
			}
			if n := s.logged(t, m); n == "0" {
				t.Fatal("query_log does not show the query that ran: the refusal checks above would be blind")
			}
		})
	}
	// External data (multipart file fields) still works.
	h, body := form(nil, map[string]string{"ext": "1\n2\n3\n"})
	status, _, got := s.send(t, "POST", "/?"+q("SELECT sum(x) FROM ext")+"&ext_structure=x+UInt8", h, body)
	if status != 200 || strings.TrimSpace(got) != "6" {
		t.Errorf("external data: %d %q", status, got)
	}
	// A gzip-compressed INSERT with its query in the parameter reaches
	// ClickHouse, which refuses it under the fixed readonly = 2.
	table := marker()
	s.ch.Query(t, chtest.AdminUser, chtest.AdminPassword, "CREATE TABLE default."+table+" (x UInt8) ENGINE = Memory")
	h = bearer(alice)
	h.Set("Content-Encoding", "gzip")
	status, _, got = s.send(t, "POST", "/?"+q("INSERT INTO default."+table+" FORMAT TSV"), h, gz("1\n2\n"))
	if status == 200 || !strings.Contains(got, "Code: 164") || strings.Contains(got, "clickgate:") {
		t.Errorf("gzip INSERT: %d %q, want ClickHouse's readonly refusal", status, got)
	}
	// A column named like a fixed setting is reachable as table.column.
	status, _, got = s.send(t, "POST", "/", bearer(alice), strings.NewReader("SELECT s.readonly FROM (SELECT 7 AS readonly) AS s WHERE s.readonly = 7"))
	if status != 200 || strings.TrimSpace(got) != "7" {
		t.Errorf("column named like a setting: %d %q", status, got)
	}
}

// Identity cannot be changed by the client: the executing account and
// the quota key (the person, in service mode) are clickgate's.
func TestIdentityHolds(t *testing.T) { eachServer(t, testIdentityHolds) }

func testIdentityHolds(t *testing.T, s *stack) {
	alice := s.token(t, "alice@example.com")
	who := chtest.SelfSQL("user, quota_key")
	for name, c := range map[string]struct {
		params string
		header http.Header
		want   int
	}{
		"quota_key parameter":              {"quota_key=bob%40example.com", nil, 200},
		"QUOTA_KEY parameter":              {"QUOTA_KEY=bob%40example.com", nil, 200},
		"X-ClickHouse-Quota header":        {"", http.Header{"X-Clickhouse-Quota": {"bob@example.com"}}, 200},
		"user parameter naming another":    {"user=ch_admin", nil, 403},
		"X-ClickHouse-User naming another": {"", http.Header{"X-Clickhouse-User": {"ch_admin"}}, 403},
		"Forwarded header":                 {"", http.Header{"Forwarded": {"for=10.0.0.1"}, "X-Forwarded-For": {"10.0.0.1"}}, 200},
	} {
		t.Run(name, func(t *testing.T) {
			h := bearer(alice)
			for k, v := range c.header {
				h[k] = v
			}
			status, _, got := s.send(t, "POST", "/?"+c.params, h, strings.NewReader(who))
			if status != c.want {
				t.Fatalf("status %d (%s), want %d", status, got, c.want)
			}
			if status == 200 && strings.TrimSpace(got) != "svc\talice@example.com" {
				t.Fatalf("ClickHouse ran it as %q, want svc with quota key alice@example.com", got)
			}
		})
	}
}

// People who share the service account cannot reach each other's
// queries or sessions.
func TestSharedAccountIsolation(t *testing.T) { eachServer(t, testSharedAccountIsolation) }

func testSharedAccountIsolation(t *testing.T, s *stack) {
	alice, bob := s.token(t, "alice@example.com"), s.token(t, "bob@example.com")
	victimID := marker()
	long := "SELECT sleepEachRow(0.25), '" + victimID + "' FROM numbers(12) SETTINGS max_block_size = 1"

	done := make(chan string, 1)
	go func() {
		req, _ := http.NewRequest("POST", s.cg.URL+"/?query_id="+victimID, strings.NewReader(long))
		req.Header.Set("Authorization", "Bearer "+alice)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		// ClickHouse 18.16 does not echo the query id; newer ones do, and
		// clickgate gives the client back its own.
		echo := resp.Header.Get("X-ClickHouse-Query-Id")
		if echo == "" {
			echo = victimID
		}
		done <- fmt.Sprintf("%d %s %d", resp.StatusCode, echo, strings.Count(string(b), "\n"))
	}()
	// Wait until ClickHouse runs alice's query, and learn its id there.
	var runningID string
	for range 100 {
		runningID = s.ch.Query(t, chtest.AdminUser, chtest.AdminPassword,
			"SELECT query_id FROM system.processes WHERE query LIKE '%"+victimID+"%' AND query NOT LIKE '%system.processes%'")
		if runningID != "" {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if runningID == "" || runningID == victimID || !strings.HasSuffix(runningID, "_"+victimID) {
		t.Fatalf("alice's query runs with query_id %q, want her id in her namespace (it ended: %s)", runningID, <-done)
	}
	for _, id := range []string{victimID, runningID} {
		status, _, got := s.send(t, "POST", "/?replace_running_query=1&query_id="+url.QueryEscape(id), bearer(bob), strings.NewReader("SELECT 1"))
		if status != 200 {
			t.Errorf("bob's replace with query_id %s: %d %s", id, status, got)
		}
	}
	for _, kill := range []string{
		"KILL QUERY WHERE query_id = '" + runningID + "'",
		"/* hello */ kill query where 1",
		"KILL QUERY WHERE query LIKE '%" + victimID + "%' SYNC",
	} {
		status, _, got := s.send(t, "POST", "/", bearer(bob), strings.NewReader(kill))
		if status != 403 || !strings.Contains(got, "KILL is refused") {
			t.Errorf("bob's %q: %d %s, want 403", kill, status, got)
		}
	}
	select {
	case res := <-done:
		if res != "200 "+victimID+" 12" {
			t.Errorf("alice's query ended %q, want \"200 %s 12\" (all 12 rows, her own id echoed)", res, victimID)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("alice's query did not finish")
	}

	// An empty session_id is a session of one person, not a shared one.
	tmp := marker()
	if status, _, got := s.send(t, "POST", "/?session_id=", bearer(alice), strings.NewReader("CREATE TEMPORARY TABLE "+tmp+" (x UInt8)")); status != 200 {
		t.Fatalf("alice's temporary table: %d %s", status, got)
	}
	for who, tok := range map[string]string{"alice": alice, "bob": bob} {
		status, _, got := s.send(t, "POST", "/?session_id=", bearer(tok), strings.NewReader("EXISTS TEMPORARY TABLE "+tmp))
		want := map[string]string{"alice": "1", "bob": "0"}[who]
		if status != 200 || strings.TrimSpace(got) != want {
			t.Errorf("%s sees alice's temporary table: %d %q, want %s", who, status, got, want)
		}
	}
}
