package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/identity"
)

func caller(user string, roles ...string) *Caller {
	return &Caller{
		Token:     "the-callers-token",
		Identity:  &identity.Identity{Username: user, Audience: []string{"clickgate"}},
		Principal: &identity.Principal{User: user, Roles: roles, Processor: "corp"},
	}
}

func basicUser(t *testing.T, h http.Header) (string, string) {
	t.Helper()
	r := http.Request{Header: h}
	u, p, ok := r.BasicAuth()
	if !ok {
		t.Fatalf("no Basic credentials in %v", h)
	}
	return u, p
}

func TestMappedMode(t *testing.T) {
	u, err := New(&config.ClickHouse{URL: "http://ch:8123", Mode: config.ModeMapped, Accounts: []config.Account{
		{Role: "admin", User: "ch_admin", Password: "a"},
		{Role: "mcp_reader", User: "ch_reader", Password: "r"},
	}}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		roles []string
		user  string
	}{
		{[]string{"mcp_reader", "admin"}, "ch_admin"}, // first account in config order wins
		{[]string{"analysts", "mcp_reader"}, "ch_reader"},
		{[]string{"analysts"}, ""},
	}
	for _, tc := range tests {
		up, err := u.Mode.Upstream(context.Background(), caller("alice", tc.roles...))
		if tc.user == "" {
			var e *Error
			if !errors.As(err, &e) || e.Status != http.StatusForbidden || !strings.Contains(e.Msg, "none of the roles") {
				t.Fatalf("roles %v: got %v, want 403 naming the roles", tc.roles, err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if got, _ := basicUser(t, up.Header); got != tc.user {
			t.Errorf("roles %v: account %s, want %s", tc.roles, got, tc.user)
		}
	}
}

func TestBearerModePassesOnlyTokensForClickHouse(t *testing.T) {
	u, err := New(&config.ClickHouse{URL: "http://ch:8123", Mode: config.ModeBearer, Audience: "clickhouse"}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	c := caller("alice")
	if _, err := u.Mode.Upstream(context.Background(), c); err == nil || strings.Contains(err.Error(), c.Token) {
		t.Fatalf("a token without ClickHouse's audience was passed on (or echoed): %v", err)
	}
	c.Identity.Audience = []string{"clickgate", "clickhouse"}
	up, err := u.Mode.Upstream(context.Background(), c)
	if err != nil || up.Header.Get("Authorization") != "Bearer "+c.Token {
		t.Fatalf("got %v, %v", up, err)
	}
}

// fakeClickHouse speaks the HTTP interface's wire contract for the
// statements clickgate sends (a modern server with SQL RBAC cannot run
// here): it records statements, answers version() and role_grants, and
// fails GRANTs of unknown roles with code 511 as ClickHouse does.
type fakeClickHouse struct {
	*httptest.Server
	mu        sync.Mutex
	version   string
	roles     []string            // existing roles
	granted   map[string][]string // user → roles
	statement []string
}

func newFakeClickHouse(t *testing.T, version string, roles ...string) *fakeClickHouse {
	f := &fakeClickHouse{version: version, roles: roles, granted: map[string][]string{}}
	f.Server = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeClickHouse) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	sql := string(body)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.statement = append(f.statement, sql)
	fail := func(code int, msg string) {
		w.Header().Set("X-ClickHouse-Exception-Code", fmt.Sprint(code))
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, "Code: %d. DB::Exception: %s", code, msg)
	}
	switch {
	case sql == "SELECT version()":
		fmt.Fprintln(w, f.version)
	case sql == "SELECT 1":
		if user, _, _ := r.BasicAuth(); strings.HasPrefix(user, "ro_") && r.URL.Query().Has("log_comment") {
			fail(codeReadonly, "Cannot modify 'log_comment' setting in readonly mode. (READONLY)")
			return
		}
		fmt.Fprintln(w, 1)
	case strings.HasPrefix(sql, "SELECT granted_role_name"):
		user := sql[strings.Index(sql, "'")+1 : strings.LastIndex(sql, "'")]
		fmt.Fprintln(w, strings.Join(f.granted[user], "\n"))
	case strings.HasPrefix(sql, "GRANT "), strings.HasPrefix(sql, "REVOKE "):
		verb, rest, _ := strings.Cut(sql, " ")
		sep := " TO "
		if verb == "REVOKE" {
			sep = " FROM "
		}
		rolesPart, userPart, _ := strings.Cut(rest, sep)
		user := strings.Trim(userPart, "`")
		var roles []string
		for _, r := range strings.Split(rolesPart, ", ") {
			roles = append(roles, strings.Trim(r, "`"))
		}
		for _, r := range roles {
			if !slices.Contains(f.roles, r) {
				fail(CodeUnknownRole, "There is no role `"+r+"` in user directories. (UNKNOWN_ROLE)")
				return
			}
		}
		for _, r := range roles {
			if verb == "GRANT" && !slices.Contains(f.granted[user], r) {
				f.granted[user] = append(f.granted[user], r)
			}
			if verb == "REVOKE" {
				f.granted[user] = slices.DeleteFunc(f.granted[user], func(g string) bool { return g == r })
			}
		}
	case strings.HasPrefix(sql, "CREATE USER IF NOT EXISTS "):
	default:
		fail(62, "Syntax error (fake): "+sql)
	}
}

func (f *fakeClickHouse) statements() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.statement
	f.statement = nil
	return out
}

// Shared accounts name the person: log_comment where the server has it
// (20.12), quota_key only when configured, and the user agent always.
func TestSharedAccountsNameThePerson(t *testing.T) {
	for _, tc := range []struct {
		mode, version, account string
		quotaKey               bool
		logComment             bool
	}{
		{config.ModeService, "18.16.1", "svc", false, false},
		{config.ModeService, "25.8.2.1", "svc", true, true},
		{config.ModeMapped, "18.16.1", "svc", true, false},
		{config.ModeMapped, "25.8.2.1", "svc", false, true},
		{config.ModeMapped, "25.8.2.1", "ro_svc", false, false}, // readonly = 1 may not set log_comment
	} {
		name := fmt.Sprintf("%s %s %s quota_key=%v", tc.mode, tc.version, tc.account, tc.quotaKey)
		ch := newFakeClickHouse(t, tc.version)
		cfg := &config.ClickHouse{URL: ch.URL, Mode: tc.mode, User: tc.account, Password: "pw", QuotaKey: tc.quotaKey,
			Accounts: []config.Account{{Role: "analysts", User: tc.account, Password: "pw"}}}
		u, err := New(cfg, Deps{HTTP: ch.Client()})
		if err != nil {
			t.Fatal(err)
		}
		c := caller("alice@example.com", "analysts")
		c.EventID = "e-1"
		up, err := u.Mode.Upstream(context.Background(), c)
		if err != nil {
			t.Fatal(err)
		}
		if user, pw := basicUser(t, up.Header); user != tc.account || pw != "pw" || up.Account != tc.account || !up.Shared {
			t.Fatalf("%s: credentials %s/%s, account %q, shared %v", name, user, pw, up.Account, up.Shared)
		}
		if got, want := up.Settings["quota_key"], map[bool]string{true: "alice@example.com"}[tc.quotaKey]; got != want {
			t.Errorf("%s: quota_key = %q, want %q", name, got, want)
		}
		lc := up.Settings["log_comment"]
		if want := `{"user":"alice@example.com","roles":["analysts"],"via":"clickgate","event_id":"e-1"}`; tc.logComment != (lc != "") || (lc != "" && lc != want) {
			t.Errorf("%s: log_comment = %q, want %q: %v", name, lc, want, tc.logComment)
		}
		if ua := up.UserAgent("grafana/11"); ua != "grafana/11 clickgate (user alice@example.com)" {
			t.Errorf("%s: user agent %q", name, ua)
		}
	}
}

func TestUserAgentNamesOnlySharedAccounts(t *testing.T) {
	for _, tc := range []struct{ person, client, want string }{
		{"", "curl/8", "curl/8"},
		{"bob", "", "clickgate (user bob)"},
		{"eve\r\nX-Evil: 1", "curl/8", "curl/8 clickgate (user eve??X-Evil: 1)"},
	} {
		if got := (&Upstream{Person: tc.person}).UserAgent(tc.client); got != tc.want {
			t.Errorf("%q %q: %q, want %q", tc.person, tc.client, got, tc.want)
		}
	}
}

func TestHTTPAuthModeProvisionsAndSignsTickets(t *testing.T) {
	ch := newFakeClickHouse(t, "25.8.1.1", "analysts", "mcp_reader", "old_team")
	ch.granted["alice@example.com"] = []string{"old_team", "granted_by_admin"}
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	u, err := New(&config.ClickHouse{
		URL: ch.URL, Mode: config.ModeHTTPAuth, User: "svc", AuthServer: "clickgate",
		Provisioning: config.Provisioning{CreateUsers: true, SyncRoles: true, ManagedRoles: "old_.*", Interval: time.Minute},
	}, Deps{HTTP: ch.Client(), Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c := caller("alice@example.com", "analysts", "mcp_reader", "not_in_clickhouse")
	up, err := u.Mode.Upstream(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	user, ticket := basicUser(t, up.Header)
	if user != "alice@example.com" || ticket == c.Token || strings.Contains(fmt.Sprint(up), c.Token) {
		t.Fatalf("upstream credentials: user %q; the caller's token must never be the password", user)
	}
	if got, err := u.Tickets.Verify(ticket); err != nil || got != "alice@example.com" {
		t.Fatalf("ticket verifies as %q, %v", got, err)
	}
	want := []string{
		"CREATE USER IF NOT EXISTS `alice@example.com` IDENTIFIED WITH http SERVER 'clickgate'",
		"GRANT `analysts`, `mcp_reader`, `not_in_clickhouse` TO `alice@example.com`", // fails: one role is missing
		"GRANT `analysts` TO `alice@example.com`",
		"GRANT `mcp_reader` TO `alice@example.com`",
		"GRANT `not_in_clickhouse` TO `alice@example.com`", // reported, not fatal
		"SELECT granted_role_name FROM system.role_grants WHERE user_name = 'alice@example.com' FORMAT TSVRaw",
		"REVOKE `old_team` FROM `alice@example.com`", // managed; granted_by_admin is left alone
	}
	if got := ch.statements(); !slices.Equal(got, want) {
		t.Fatalf("statements:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Within the interval and with the same roles: no SQL at all, same ticket.
	up2, err := u.Mode.Upstream(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if _, t2 := basicUser(t, up2.Header); t2 != ticket {
		t.Error("the ticket was not reused")
	}
	if got := ch.statements(); len(got) != 0 {
		t.Fatalf("provisioning ran again within the interval: %q", got)
	}
	// The IdP drops a role: clickgate revokes the role it granted.
	c.Principal.Roles = []string{"analysts"}
	if _, err := u.Mode.Upstream(ctx, c); err != nil {
		t.Fatal(err)
	}
	got := ch.statements()
	if last := got[len(got)-1]; last != "REVOKE `mcp_reader` FROM `alice@example.com`" {
		t.Fatalf("after the IdP dropped mcp_reader: %q", got)
	}
	if !slices.Contains(ch.granted["alice@example.com"], "granted_by_admin") {
		t.Fatal("a role the administrator granted was revoked")
	}
}

func TestImpersonateMode(t *testing.T) {
	ch := newFakeClickHouse(t, "25.11.1.1", "analysts")
	u, err := New(&config.ClickHouse{URL: ch.URL, Mode: config.ModeImpersonate, User: "svc", Password: "pw",
		Provisioning: config.Provisioning{CreateUsers: true, Interval: time.Minute}}, Deps{HTTP: ch.Client()})
	if err != nil {
		t.Fatal(err)
	}
	up, err := u.Mode.Upstream(context.Background(), caller("o'brien`x", "analysts"))
	if err != nil {
		t.Fatal(err)
	}
	if user, _ := basicUser(t, up.Header); user != "svc" || up.QueryPrefix != "EXECUTE AS `o'brien\\`x` " {
		t.Fatalf("user %s, prefix %q", user, up.QueryPrefix)
	}
	if got := ch.statements(); got[0] != "CREATE USER IF NOT EXISTS `o'brien\\`x` NOT IDENTIFIED" {
		t.Fatalf("statements %q", got)
	}
}

func TestTickets(t *testing.T) {
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	secret := []byte(strings.Repeat("k", 32))
	a, _ := NewTickets(secret, DefaultTicketTTL, clock)
	replica, _ := NewTickets(secret, DefaultTicketTTL, clock)
	stranger, _ := NewTickets(nil, DefaultTicketTTL, clock)
	tk, err := a.Issue("alice")
	if err != nil {
		t.Fatal(err)
	}
	if u, err := replica.Verify(tk); err != nil || u != "alice" {
		t.Fatalf("a replica with the same secret: %q %v", u, err)
	}
	if _, err := stranger.Verify(tk); err == nil || errors.Is(err, ErrNotTicket) {
		t.Fatalf("another key: %v", err)
	}
	for _, notTicket := range []string{"password", "a.b.c", "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln"} {
		if _, err := a.Verify(notTicket); !errors.Is(err, ErrNotTicket) {
			t.Errorf("%q: %v, want ErrNotTicket", notTicket, err)
		}
	}
	now = now.Add(DefaultTicketTTL + time.Minute)
	if _, err := a.Verify(tk); err == nil {
		t.Fatal("an expired ticket verified")
	}
	if _, err := NewTickets([]byte("short"), time.Minute, nil); err == nil {
		t.Fatal("a short secret was accepted")
	}
}
