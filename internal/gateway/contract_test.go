package gateway_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/clickgate/clickgate/internal/chtest"
)

// modernClickHouse stands in for a ClickHouse server these machines cannot
// run (≥ 23.10 with http_authentication, ≥ 25.11 with EXECUTE AS, or a
// build with token processors). It checks the documented wire contract:
//   - the service account's requests are recorded (statement and
//     credentials) and answered "ok";
//   - any other user is checked the way src/Access/HTTPAuthClient.h does
//     it: GET <auth server uri> over HTTP/1.1 with Authorization: Basic
//     base64(user:password); only HTTP 200 lets the user in;
//   - Bearer credentials are recorded and let in.
type modernClickHouse struct {
	*httptest.Server
	authURI string // clickgate's /clickhouse/auth, set once clickgate runs

	mu       sync.Mutex
	requests []seen
}

type seen struct {
	header                 http.Header
	user, password, bearer string
	query                  string // query parameter, then body
	authStatus             int    // what /clickhouse/auth answered, for http users
}

func newModernClickHouse(t *testing.T) *modernClickHouse {
	m := &modernClickHouse{}
	m.Server = httptest.NewServer(http.HandlerFunc(m.serve))
	t.Cleanup(m.Close)
	return m
}

func (m *modernClickHouse) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/ping" { // the health check, as ClickHouse answers it
		io.WriteString(w, "Ok.\n")
		return
	}
	body, _ := io.ReadAll(r.Body)
	s := seen{query: r.URL.Query().Get("query") + string(body), header: r.Header.Clone()}
	if auth := r.Header.Get("Authorization"); strings.HasPrefix(auth, "Bearer ") {
		s.bearer = strings.TrimPrefix(auth, "Bearer ")
	} else {
		s.user, s.password, _ = r.BasicAuth()
	}
	if s.user != "" && s.user != "clickgate_svc" {
		req, _ := http.NewRequest(http.MethodGet, m.authURI, nil)
		req.SetBasicAuth(s.user, s.password)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		resp.Body.Close()
		s.authStatus = resp.StatusCode
	}
	m.mu.Lock()
	m.requests = append(m.requests, s)
	m.mu.Unlock()
	if s.authStatus != 0 && s.authStatus != http.StatusOK {
		w.Header().Set("X-ClickHouse-Exception-Code", "516")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, "Code: 516. DB::Exception: %s: Authentication failed. (AUTHENTICATION_FAILED)\n", s.user)
		return
	}
	fmt.Fprintln(w, "ok")
}

func (m *modernClickHouse) take() []seen {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := m.requests
	m.requests = nil
	return out
}

func TestHTTPAuthModeWireContract(t *testing.T) {
	ch := newModernClickHouse(t)
	s := newStack(t, &chtest.Server{HTTPURL: ch.URL}, `  mode: http_auth
  user: clickgate_svc
  password: svc-pw
  auth_server: clickgate
  provisioning: {create_users: true, sync_roles: true}
`)
	ch.authURI = s.cg.URL + "/clickhouse/auth"
	alice := s.token(t, "alice@example.com", "ch-analysts")

	if status, body := s.do(t, alice, "POST", "/", "SELECT 1", nil); status != 200 || body != "ok\n" {
		t.Fatalf("alice through http_auth: %d %q", status, body)
	}
	got := ch.take()
	var provisioning []string
	var query seen
	for _, r := range got {
		if r.user == "clickgate_svc" {
			provisioning = append(provisioning, r.query)
		} else {
			query = r
		}
	}
	wantSQL := []string{
		"CREATE USER IF NOT EXISTS `alice@example.com` IDENTIFIED WITH http SERVER 'clickgate'",
		"GRANT `analysts`, `mcp_reader` TO `alice@example.com`",
		"SELECT granted_role_name FROM system.role_grants WHERE user_name = 'alice@example.com' FORMAT TSVRaw",
	}
	if strings.Join(provisioning, "\n") != strings.Join(wantSQL, "\n") {
		t.Errorf("provisioning statements:\n%s", strings.Join(provisioning, "\n"))
	}
	if query.user != "alice@example.com" || query.authStatus != 200 || query.query != "SELECT 1" {
		t.Fatalf("ClickHouse saw %+v", query)
	}
	if query.password == alice || strings.Contains(query.password, alice) {
		t.Fatal("the caller's own token reached ClickHouse")
	}
	// Provisioning is not repeated per query; the ticket is reused.
	s.do(t, alice, "POST", "/", "SELECT 2", nil)
	again := ch.take()
	if len(again) != 1 || again[0].password != query.password {
		t.Fatalf("second query: %+v", again)
	}
	// A ticket is bound to its user: presented for someone else, refused.
	status, _ := s.do(t, "", "GET", "/clickhouse/auth", "", func(r *http.Request) { r.SetBasicAuth("bob@example.com", query.password) })
	if status != http.StatusForbidden {
		t.Fatalf("alice's ticket as bob: %d", status)
	}
}

func TestImpersonateModeWireContract(t *testing.T) {
	ch := newModernClickHouse(t)
	s := newStack(t, &chtest.Server{HTTPURL: ch.URL}, "  mode: impersonate\n  user: clickgate_svc\n  password: svc-pw\n")
	alice := s.token(t, "alice@example.com", "ch-analysts")
	for _, tc := range []struct {
		name, path, body, want string
	}{
		{"query in the body", "/", "SELECT 1", "EXECUTE AS `alice@example.com` SELECT 1"},
		{"query in the parameter, data in the body", "/?query=INSERT+INTO+t+FORMAT+TSV", "1\n2\n", "EXECUTE AS `alice@example.com` INSERT INTO t FORMAT TSV1\n2\n"},
	} {
		if status, body := s.do(t, alice, "POST", tc.path, tc.body, nil); status != 200 {
			t.Fatalf("%s: %d %s", tc.name, status, body)
		}
		got := ch.take()
		if len(got) != 1 || got[0].user != "clickgate_svc" || got[0].query != tc.want {
			t.Fatalf("%s: ClickHouse saw %+v, want %q", tc.name, got, tc.want)
		}
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("SELECT 1"))
	zw.Close()
	status, body := s.do(t, alice, "POST", "/", gz.String(), func(r *http.Request) { r.Header.Set("Content-Encoding", "gzip") })
	if status != 400 || !strings.Contains(body, "cannot put EXECUTE AS before a compressed request body") {
		t.Fatalf("compressed query body: %d %q", status, body)
	}
	if got := ch.take(); len(got) != 0 {
		t.Fatalf("an unwrappable query reached ClickHouse: %+v", got)
	}
}

func TestBearerModeWireContract(t *testing.T) {
	ch := newModernClickHouse(t)
	s := newStack(t, &chtest.Server{HTTPURL: ch.URL}, "  mode: bearer\n  audience: clickhouse\n")
	alice := s.token(t, "alice@example.com", "ch-analysts") // aud: clickhouse
	// Grafana forwards the viewer's ID token too; it must stop at clickgate.
	grafana := func(r *http.Request) {
		r.Header.Set("X-Id-Token", "an-id-token")
		r.Header.Set("Cookie", "grafana_session=secret")
	}
	if status, body := s.do(t, alice, "POST", "/", "SELECT 1", grafana); status != 200 {
		t.Fatalf("%d %s", status, body)
	}
	got := ch.take()
	if len(got) != 1 || got[0].bearer != alice {
		t.Fatalf("ClickHouse saw %+v", got)
	}
	for _, h := range []string{"X-Id-Token", "Cookie"} {
		if v := got[0].header.Get(h); v != "" {
			t.Errorf("%s reached ClickHouse: %q", h, v)
		}
	}
}
