package chtest

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/clickgate/clickgate/internal/chproc"
)

// codeOf returns the ClickHouse error code of err, failing when err is not a
// *QueryError.
func codeOf(t *testing.T, err error) int {
	t.Helper()
	var qe *QueryError
	if !errors.As(err, &qe) {
		t.Fatalf("want a ClickHouse error, got %v", err)
	}
	return qe.Code
}

func wantCode(t *testing.T, err error, code int, contains string) {
	t.Helper()
	if got := codeOf(t, err); got != code {
		t.Fatalf("want Code: %d, got %v", code, err)
	}
	if !strings.Contains(err.Error(), contains) {
		t.Fatalf("want an error containing %q, got %v", contains, err)
	}
}

// fakeTB records Fatalf instead of ending the test, so that failures of Start
// and Query can be checked.
type fakeTB struct {
	testing.TB
	mu       sync.Mutex
	fatal    string
	cleanups []func()
}

type fatalPanic struct{}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatal = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	panic(fatalPanic{})
}
func (f *fakeTB) Fatal(args ...any)                 { f.Fatalf("%s", fmt.Sprint(args...)) }
func (f *fakeTB) Errorf(format string, args ...any) { f.Fatalf(format, args...) }
func (f *fakeTB) Cleanup(fn func())                 { f.cleanups = append(f.cleanups, fn) }

// catchFatal runs fn with a fakeTB, runs its cleanups and returns the Fatalf
// message ("" when fn did not fail).
func catchFatal(t *testing.T, fn func(tb testing.TB)) (msg string) {
	t.Helper()
	f := &fakeTB{TB: t}
	defer func() {
		for i := len(f.cleanups) - 1; i >= 0; i-- {
			f.cleanups[i]()
		}
	}()
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(fatalPanic); !ok {
				panic(r)
			}
			msg = f.fatal
		}
	}()
	fn(f)
	return ""
}

// do sends a raw request to the server and returns status, headers and body.
func do(t *testing.T, req *http.Request) (int, http.Header, string) {
	t.Helper()
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(body)
}

func post(t *testing.T, s *Server, query url.Values, sql string) *http.Request {
	t.Helper()
	u := s.HTTPURL + "/"
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequest(http.MethodPost, u, strings.NewReader(sql))
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// waitForQuery polls system.processes until the query with id appears; done
// reports the end of the query.
func waitForQuery(t *testing.T, s *Server, id string, done chan error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("query %s ended before it could be seen: %v", id, err)
		default:
		}
		n := s.Query(t, AdminUser, AdminPassword, fmt.Sprintf("SELECT count() FROM system.processes WHERE query_id = '%s'", id))
		if n == "1" {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("query %s never showed in system.processes", id)
}

// A query that runs for about as long as its limit lets it; interruptible.
// system.numbers, not numbers(): readonly=1 forbids table functions.
const longQuery = "SELECT count() FROM (SELECT number FROM system.numbers LIMIT 100000000000) WHERE NOT ignore(sipHash64(number))"

func TestServer(t *testing.T) {
	s := Start(t, Options{})
	t.Logf("ClickHouse %s ready in %v at %s (native %s, dir %s)", s.Version, s.StartDuration, s.HTTPURL, s.TCPAddr, s.Dir)
	if s.StartDuration > 2*time.Second {
		t.Errorf("start took %v, want < 2 s", s.StartDuration)
	}

	t.Run("version", func(t *testing.T) {
		if !strings.HasPrefix(s.Version, "18.16") {
			t.Fatalf("Version = %q, want 18.16.*", s.Version)
		}
		if v := s.Query(t, "default", "", "SELECT version()"); v != s.Version {
			t.Fatalf("SELECT version() = %q, want %q", v, s.Version)
		}
	})

	t.Run("listeners", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, s.HTTPURL+"/ping", nil)
		if code, _, body := do(t, req); code != 200 || body != "Ok.\n" {
			t.Fatalf("GET /ping = %d %q", code, body)
		}
		if !strings.HasPrefix(s.HTTPURL, "http://127.0.0.1:") || !strings.HasPrefix(s.TCPAddr, "127.0.0.1:") {
			t.Fatalf("addresses not on loopback: %s %s", s.HTTPURL, s.TCPAddr)
		}
		c, err := net.DialTimeout("tcp", s.TCPAddr, time.Second)
		if err != nil {
			t.Fatalf("native port: %v", err)
		}
		c.Close()
		for _, f := range []string{"config.xml", "users.xml", "log", "data", "tmp", "user_files", "format_schemas"} {
			if _, err := os.Stat(s.Dir + "/" + f); err != nil {
				t.Errorf("server dir: %v", err)
			}
		}
	})

	t.Run("reader is readonly", func(t *testing.T) {
		_, err := s.QueryErr(ReaderUser, ReaderPassword, "CREATE TABLE reader_t (x UInt8) ENGINE = Memory")
		wantCode(t, err, 164, "readonly")
		if got := s.Query(t, ReaderUser, ReaderPassword, "SELECT 1 + 1"); got != "2" {
			t.Fatalf("reader SELECT = %q", got)
		}
	})

	t.Run("admin writes", func(t *testing.T) {
		s.Query(t, AdminUser, AdminPassword, "CREATE TABLE admin_t (id UInt32, name String) ENGINE = MergeTree ORDER BY id")
		s.Query(t, AdminUser, AdminPassword, "INSERT INTO admin_t VALUES (1, 'a'), (2, 'b')")
		if got := s.Query(t, ReaderUser, ReaderPassword, "SELECT id, name FROM admin_t ORDER BY id"); got != "1\ta\n2\tb" {
			t.Fatalf("rows = %q", got)
		}
		_, err := s.QueryErr(ReaderUser, ReaderPassword, "INSERT INTO admin_t VALUES (3, 'c')")
		wantCode(t, err, 164, "readonly")
	})

	t.Run("who am i", func(t *testing.T) {
		for _, c := range [][2]string{{"default", ""}, {ReaderUser, ReaderPassword}, {AdminUser, AdminPassword}} {
			if got := s.WhoAmI(t, c[0], c[1]); got != c[0] {
				t.Errorf("WhoAmI(%s) = %q", c[0], got)
			}
		}
		if a, b := CurrentUserSQL(), CurrentUserSQL(); a == b {
			t.Errorf("CurrentUserSQL repeats its marker: %s", a)
		}
		got := s.Query(t, AdminUser, AdminPassword, SelfSQL("user, query_id != '', quota_key"))
		if got != "ch_admin\t1\t" {
			t.Errorf("SelfSQL = %q", got)
		}
		// Concurrent callers of different users each see only themselves.
		var wg sync.WaitGroup
		for i := 0; i < 8; i++ {
			user, pw := ReaderUser, ReaderPassword
			if i%2 == 0 {
				user, pw = AdminUser, AdminPassword
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, err := s.QueryErr(user, pw, CurrentUserSQL())
				if err != nil || got != user {
					t.Errorf("concurrent WhoAmI(%s) = %q, %v", user, got, err)
				}
			}()
		}
		wg.Wait()
	})

	t.Run("authentication errors", func(t *testing.T) {
		_, err := s.QueryErr(ReaderUser, "wrong", "SELECT 1")
		wantCode(t, err, 193, "Wrong password")
		if qe := err.(*QueryError); qe.Status != 401 {
			t.Errorf("wrong password: HTTP %d, want 401", qe.Status)
		}
		_, err = s.QueryErr("nobody", "x", "SELECT 1")
		wantCode(t, err, 192, "Unknown user")
	})

	t.Run("Query fails the test with the ClickHouse error", func(t *testing.T) {
		msg := catchFatal(t, func(tb testing.TB) {
			s.Query(tb, ReaderUser, ReaderPassword, "CREATE TABLE q_t (x UInt8) ENGINE = Memory")
		})
		if !strings.Contains(msg, "Code: 164") || !strings.Contains(msg, "ch_reader") {
			t.Fatalf("Fatalf message = %q", msg)
		}
	})

	// The findings listed in the package comment.
	t.Run("18.16", func(t *testing.T) {
		t.Run("X-ClickHouse-User and X-ClickHouse-Key headers", func(t *testing.T) {
			t.Parallel()
			req := post(t, s, nil, CurrentUserSQL())
			req.Header.Set("X-ClickHouse-User", AdminUser)
			req.Header.Set("X-ClickHouse-Key", AdminPassword)
			if code, _, body := do(t, req); code != 200 || body != "ch_admin\n" {
				t.Fatalf("headers: %d %q", code, body)
			}
			req = post(t, s, nil, "SELECT 1")
			req.Header.Set("X-ClickHouse-User", AdminUser)
			req.Header.Set("X-ClickHouse-Key", AdminPassword)
			req.SetBasicAuth(ReaderUser, ReaderPassword)
			if code, _, body := do(t, req); code == 200 || !strings.Contains(body, "Code: 194") {
				t.Fatalf("headers with Basic: %d %q, want Code: 194", code, body)
			}
		})
		t.Run("URL user and password", func(t *testing.T) {
			t.Parallel()
			req := post(t, s, url.Values{"user": {ReaderUser}, "password": {ReaderPassword}}, CurrentUserSQL())
			if code, _, body := do(t, req); code != 200 || body != "ch_reader\n" {
				t.Fatalf("URL credentials: %d %q", code, body)
			}
			// Basic auth wins silently over URL credentials on 18.16.
			req = post(t, s, url.Values{"user": {AdminUser}, "password": {AdminPassword}}, CurrentUserSQL())
			req.SetBasicAuth(ReaderUser, ReaderPassword)
			if code, _, body := do(t, req); code != 200 || body != "ch_reader\n" {
				t.Fatalf("Basic with URL credentials: %d %q, want ch_reader", code, body)
			}
		})
		t.Run("quota_key needs a keyed quota", func(t *testing.T) {
			t.Parallel()
			_, err := s.QueryParams(AdminUser, AdminPassword, "SELECT 1", url.Values{"quota_key": {"alice"}})
			wantCode(t, err, 200, "doesn't allow client supplied keys")
		})
		t.Run("log_comment is unknown", func(t *testing.T) {
			t.Parallel()
			_, err := s.QueryParams(AdminUser, AdminPassword, "SELECT 1", url.Values{"log_comment": {"alice"}})
			wantCode(t, err, 115, "Unknown setting log_comment")
		})
		t.Run("session_id", func(t *testing.T) {
			t.Parallel()
			sess := url.Values{"session_id": {"chtest-s1"}, "session_timeout": {"60"}}
			if _, err := s.QueryParams(AdminUser, AdminPassword, "CREATE TEMPORARY TABLE sess_t (x UInt8)", sess); err != nil {
				t.Fatal(err)
			}
			if _, err := s.QueryParams(AdminUser, AdminPassword, "INSERT INTO sess_t VALUES (7)", sess); err != nil {
				t.Fatal(err)
			}
			if got, err := s.QueryParams(AdminUser, AdminPassword, "SELECT x FROM sess_t", url.Values{"session_id": {"chtest-s1"}}); err != nil || got != "7" {
				t.Fatalf("same session: %q %v", got, err)
			}
			_, err := s.QueryErr(AdminUser, AdminPassword, "SELECT x FROM sess_t")
			wantCode(t, err, 60, "doesn't exist")
			// The same session id of another user is another session.
			_, err = s.QueryParams("default", "", "SELECT x FROM sess_t", url.Values{"session_id": {"chtest-s1"}})
			wantCode(t, err, 60, "doesn't exist")
			_, err = s.QueryParams(AdminUser, AdminPassword, "SELECT 1", url.Values{"session_id": {"chtest-s2"}, "session_timeout": {"100000"}})
			wantCode(t, err, 374, "max_session_timeout")
			_, err = s.QueryParams(AdminUser, AdminPassword, "SELECT 1", url.Values{"session_id": {"chtest-s3"}, "session_check": {"1"}})
			wantCode(t, err, 372, "Session not found")
		})
		t.Run("no progress headers", func(t *testing.T) {
			t.Parallel()
			q := url.Values{
				"send_progress_in_http_headers":     {"1"},
				"http_headers_progress_interval_ms": {"10"},
				"max_execution_time":                {"1"},
				"timeout_overflow_mode":             {"break"},
				"max_threads":                       {"1"},
			}
			req := post(t, s, q, longQuery)
			req.SetBasicAuth(AdminUser, AdminPassword)
			code, h, body := do(t, req)
			if code != 200 {
				t.Fatalf("%d %q", code, body)
			}
			for k := range h {
				if strings.HasPrefix(strings.ToLower(k), "x-clickhouse-") && k != "X-Clickhouse-Server-Display-Name" {
					t.Errorf("unexpected header %s: %q (update the package comment)", k, h[k])
				}
			}
		})
		t.Run("query_id parameter", func(t *testing.T) {
			t.Parallel()
			got, err := s.QueryParams(AdminUser, AdminPassword, SelfSQL("query_id"), url.Values{"query_id": {"chtest-qid-1"}})
			if err != nil || got != "chtest-qid-1" {
				t.Fatalf("query_id: %q %v", got, err)
			}
		})
		t.Run("readonly settings", func(t *testing.T) {
			t.Parallel()
			for _, ro := range []string{"1", "2"} {
				_, err := s.QueryParams(AdminUser, AdminPassword, "CREATE TABLE ro_t (x UInt8) ENGINE = Memory", url.Values{"readonly": {ro}})
				wantCode(t, err, 164, "readonly mode")
			}
			_, err := s.QueryParams(ReaderUser, ReaderPassword, "SELECT 1", url.Values{"max_execution_time": {"5"}})
			wantCode(t, err, 164, "Cannot override setting (max_execution_time)")
			_, err = s.QueryParams(ReaderUser, ReaderPassword, "SELECT 1", url.Values{"readonly": {"0"}})
			wantCode(t, err, 164, "Cannot override setting (readonly)")
			if _, err := s.QueryParams(ReaderUser, ReaderPassword, "SELECT 1", url.Values{"readonly": {"1"}}); err != nil {
				t.Fatalf("reader readonly=1: %v", err)
			}
			_, err = s.QueryErr(ReaderUser, ReaderPassword, "SELECT count() FROM numbers(3)")
			wantCode(t, err, 164, "Table functions are forbidden in readonly mode")
			if got := s.Query(t, ReaderUser, ReaderPassword, "SELECT count() FROM (SELECT number FROM system.numbers LIMIT 3)"); got != "3" {
				t.Fatalf("system.numbers: %q", got)
			}
		})
		t.Run("max_execution_time", func(t *testing.T) {
			t.Parallel()
			_, err := s.QueryParams(AdminUser, AdminPassword, longQuery, url.Values{"max_execution_time": {"1"}, "max_threads": {"1"}})
			wantCode(t, err, 159, "Timeout exceeded")
		})
		t.Run("KILL QUERY", func(t *testing.T) {
			t.Parallel()
			run := func(user, pw, id string) chan error {
				params := url.Values{"query_id": {id}}
				if user != ReaderUser { // a readonly=1 profile may not change settings
					params.Set("max_threads", "1")
					params.Set("max_execution_time", "20")
				}
				done := make(chan error, 1)
				go func() {
					_, err := s.QueryParams(user, pw, longQuery, params)
					done <- err
				}()
				waitForQuery(t, s, id, done)
				return done
			}
			// A readonly user may kill its own query only.
			done := run(AdminUser, AdminPassword, "chtest-kill-1")
			_, err := s.QueryErr(ReaderUser, ReaderPassword, "KILL QUERY WHERE query_id = 'chtest-kill-1'")
			wantCode(t, err, 164, "attempts to kill query created by ch_admin")
			// Anyone else may kill any query.
			if got := s.Query(t, "default", "", "KILL QUERY WHERE query_id = 'chtest-kill-1' SYNC"); !strings.HasPrefix(got, "finished\tchtest-kill-1\tch_admin") {
				t.Fatalf("KILL QUERY = %q", got)
			}
			wantCode(t, <-done, 394, "cancelled")

			done = run(ReaderUser, ReaderPassword, "chtest-kill-2")
			s.Query(t, ReaderUser, ReaderPassword, "KILL QUERY WHERE query_id = 'chtest-kill-2' SYNC")
			wantCode(t, <-done, 394, "cancelled")
		})
		t.Run("gzip", func(t *testing.T) {
			t.Parallel()
			req := post(t, s, url.Values{"enable_http_compression": {"1"}}, "SELECT number FROM numbers(3)")
			req.Header.Set("Accept-Encoding", "gzip")
			code, h, body := do(t, req)
			if code != 200 || h.Get("Content-Encoding") != "gzip" {
				t.Fatalf("%d %v", code, h)
			}
			zr, err := gzip.NewReader(strings.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			plain, err := io.ReadAll(zr)
			if err != nil || string(plain) != "0\n1\n2\n" {
				t.Fatalf("gunzip: %q %v", plain, err)
			}
			// Without the setting, the answer is plain.
			req = post(t, s, nil, "SELECT 1")
			req.Header.Set("Accept-Encoding", "gzip")
			if code, h, body := do(t, req); code != 200 || h.Get("Content-Encoding") != "" || body != "1\n" {
				t.Fatalf("%d %v %q", code, h, body)
			}
		})
		t.Run("database and format", func(t *testing.T) {
			t.Parallel()
			req := post(t, s, nil, "SELECT currentDatabase()")
			req.Header.Set("X-ClickHouse-Database", "system")
			req.Header.Set("X-ClickHouse-Format", "JSONEachRow")
			if code, _, body := do(t, req); code != 200 || body != "default\n" {
				t.Fatalf("headers: %d %q (want them ignored)", code, body)
			}
			got, err := s.QueryParams("default", "", "SELECT currentDatabase() AS db", url.Values{"database": {"system"}, "default_format": {"JSONEachRow"}})
			if err != nil || got != `{"db":"system"}` {
				t.Fatalf("URL parameters: %q %v", got, err)
			}
		})
	})
}

func TestExtraUsers(t *testing.T) {
	const tricky = `p&<"'>w`
	s := Start(t, Options{
		ExtraUsers: []User{
			{Name: "clickgate_svc", Password: "svc-pw", Quota: KeyedQuota},
			{Name: "tricky-user_1", Password: tricky, Profile: "readonly"},
			{Name: "limited", Password: "", Quota: "three", Profile: "slow"},
		},
		ExtraProfiles: `<slow><max_execution_time>7</max_execution_time></slow>`,
		ExtraQuotas:   `<three><keyed>1</keyed><interval><duration>3600</duration><queries>3</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></three>`,
	})
	if got := s.WhoAmI(t, "clickgate_svc", "svc-pw"); got != "clickgate_svc" {
		t.Fatalf("WhoAmI = %q", got)
	}
	// The default accounts are still there.
	if got := s.WhoAmI(t, ReaderUser, ReaderPassword); got != ReaderUser {
		t.Fatalf("WhoAmI = %q", got)
	}
	// quota_key is accepted with the keyed quota and visible while the query runs.
	got, err := s.QueryParams("clickgate_svc", "svc-pw", SelfSQL("user, quota_key"), url.Values{"quota_key": {"alice@example.com"}})
	if err != nil || got != "clickgate_svc\talice@example.com" {
		t.Fatalf("quota_key: %q %v", got, err)
	}
	// Passwords are XML-escaped; profiles apply.
	_, err = s.QueryErr("tricky-user_1", tricky, "CREATE TABLE t (x UInt8) ENGINE = Memory")
	wantCode(t, err, 164, "readonly")
	if got := s.Query(t, "limited", "", "SELECT value FROM system.settings WHERE name = 'max_execution_time'"); got != "7" {
		t.Fatalf("profile setting = %q", got)
	}
	// Limits of a keyed quota are counted per key.
	for i := 0; i < 4; i++ { // 18.16 lets the query that reaches the limit through
		if _, err := s.QueryParams("limited", "", "SELECT 1", url.Values{"quota_key": {"alice"}}); err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
	}
	_, err = s.QueryParams("limited", "", "SELECT 1", url.Values{"quota_key": {"alice"}})
	wantCode(t, err, 201, "has been exceeded")
	if _, err := s.QueryParams("limited", "", "SELECT 1", url.Values{"quota_key": {"bob"}}); err != nil {
		t.Fatalf("another key: %v", err)
	}
}

func TestUsersXMLReplaces(t *testing.T) {
	s := Start(t, Options{
		UsersXML: `<?xml version="1.0"?>
<yandex>
  <profiles><default></default></profiles>
  <users>
    <only><password>only-pw</password><networks><ip>127.0.0.1</ip></networks><profile>default</profile><quota>default</quota></only>
  </users>
  <quotas><default></default></quotas>
</yandex>`,
		ProbeUser:     "only",
		ProbePassword: "only-pw",
	})
	if !strings.HasPrefix(s.Version, "18.16") {
		t.Fatalf("Version = %q", s.Version)
	}
	if got := s.WhoAmI(t, "only", "only-pw"); got != "only" {
		t.Fatalf("WhoAmI = %q", got)
	}
	_, err := s.QueryErr("default", "", "SELECT 1")
	wantCode(t, err, 192, "Unknown user default")
}

func TestStopAndCleanup(t *testing.T) {
	var dir, httpURL string
	var pid int
	t.Run("server", func(t *testing.T) {
		s := Start(t, Options{})
		dir, pid, httpURL = s.Dir, s.PID, s.HTTPURL
		if err := syscall.Kill(pid, 0); err != nil {
			t.Fatalf("server process: %v", err)
		}
	})
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("dir %s still there after the test: %v", dir, err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("server process %d still there after the test: %v", pid, err)
	}
	if resp, err := http.Get(httpURL + "/ping"); err == nil {
		resp.Body.Close()
		t.Errorf("server still answers at %s", httpURL)
	}

	// Stop may be called early, e.g. to test an outage; it is idempotent.
	s := Start(t, Options{})
	t0 := time.Now()
	s.Stop()
	t.Logf("stopped in %v", time.Since(t0))
	s.Stop()
	if !s.Exited() {
		t.Fatal("Exited() = false after Stop")
	}
	if _, err := s.QueryErr("default", "", "SELECT 1"); err == nil {
		t.Fatal("query after Stop succeeded")
	}
}

func TestManyServers(t *testing.T) {
	// Several servers at once (as parallel test packages do) get distinct ports.
	const n = 4
	servers := make([]*Server, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := catchFatal(t, func(tb testing.TB) {
				s := Start(tb, Options{})
				mu.Lock()
				servers[i] = s
				mu.Unlock()
				s.Query(tb, AdminUser, AdminPassword, fmt.Sprintf("CREATE TABLE mark_%d (x UInt8) ENGINE = Memory", i))
			})
			if msg != "" {
				t.Errorf("server %d: %s", i, msg)
			}
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for i, s := range servers {
		if s == nil {
			continue
		}
		if seen[s.HTTPURL] || seen[s.TCPAddr] {
			t.Errorf("server %d reuses an address: %s %s", i, s.HTTPURL, s.TCPAddr)
		}
		seen[s.HTTPURL], seen[s.TCPAddr] = true, true
		if !s.Exited() {
			t.Errorf("server %d not stopped by its cleanup", i)
		}
	}
}

func TestStartFailures(t *testing.T) {
	t.Run("missing binary", func(t *testing.T) {
		msg := catchFatal(t, func(tb testing.TB) { Start(tb, Options{Binary: "/nonexistent/clickhouse-server"}) })
		if msg != missingBinary {
			t.Fatalf("Fatalf(%q), want %q", msg, missingBinary)
		}
	})
	t.Run("bad user names", func(t *testing.T) {
		for _, name := range []string{"alice@example.com", "a.b", "", "1x", "x y", "<x>"} {
			msg := catchFatal(t, func(tb testing.TB) {
				Start(tb, Options{ExtraUsers: []User{{Name: name}}})
			})
			if !strings.Contains(msg, "not usable in users.xml") {
				t.Errorf("%q: Fatalf(%q)", name, msg)
			}
		}
	})
	t.Run("UsersXML with extras", func(t *testing.T) {
		msg := catchFatal(t, func(tb testing.TB) {
			Start(tb, Options{UsersXML: "<yandex/>", ExtraUsers: []User{{Name: "x"}}})
		})
		if !strings.Contains(msg, "must be empty") {
			t.Fatalf("Fatalf(%q)", msg)
		}
	})
	t.Run("server exits: its log in the message", func(t *testing.T) {
		msg := catchFatal(t, func(tb testing.TB) {
			Start(tb, Options{ExtraConfig: "<unclosed>"}) // config.xml no longer parses
		})
		if !strings.Contains(msg, "exited before it was ready") || !strings.Contains(msg, "--- tail of ") {
			t.Fatalf("Fatalf message:\n%s", msg)
		}
		t.Logf("failure message:\n%s", msg)
	})
	t.Run("start timeout", func(t *testing.T) {
		msg := catchFatal(t, func(tb testing.TB) {
			Start(tb, Options{StartTimeout: time.Millisecond})
		})
		if !strings.Contains(msg, "did not answer GET /ping within 1ms") {
			t.Fatalf("Fatalf message:\n%s", msg)
		}
	})
}

func TestRetryWhenPortTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := taken.Addr().(*net.TCPAddr).Port
	calls := 0
	pickPort = func() (int, error) {
		calls++
		if calls == 1 {
			return port, nil // the HTTP port of the first attempt is in use
		}
		return chproc.FreePort()
	}
	defer func() { pickPort = chproc.FreePort }()
	s := Start(t, Options{})
	if strings.HasSuffix(s.HTTPURL, fmt.Sprintf(":%d", port)) {
		t.Fatalf("server on the taken port %d", port)
	}
	if calls < 4 {
		t.Fatalf("pickPort called %d times, want a second attempt", calls)
	}
	if got := s.WhoAmI(t, AdminUser, AdminPassword); got != AdminUser {
		t.Fatalf("WhoAmI = %q", got)
	}
}

// A test binary that dies without its cleanups (a panic, a timeout) takes its
// servers with it.
func TestOrphanedServerDies(t *testing.T) {
	if os.Getenv("CHTEST_ORPHAN_HELPER") == "1" {
		s := Start(t, Options{})
		fmt.Printf("PID=%d DIR=%s\n", s.PID, s.Dir)
		os.Exit(3)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestOrphanedServerDies$", "-test.count=1")
	cmd.Env = append(os.Environ(), "CHTEST_ORPHAN_HELPER=1")
	out, _ := cmd.Output()
	var pid int
	var dir string
	if _, err := fmt.Sscanf(strings.TrimSpace(string(out)), "PID=%d DIR=%s", &pid, &dir); err != nil || pid <= 0 {
		t.Fatalf("helper output %q: %v", out, err)
	}
	defer os.RemoveAll(dir)
	deadline := time.Now().Add(5 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("server %d outlived its test binary", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
