package servers

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/clickgate/clickgate/internal/chtest"
)

// Service mode: everyone runs as the service account, and the person
// reaches ClickHouse in the user agent and (with clickhouse.quota_key) as
// quota_key on both releases and, on 26.7, as log_comment {"user",
// "roles", "via", "event_id"} (log_comment arrived in 20.12: 18.16 would
// refuse the whole query with "Unknown setting log_comment", so clickgate
// must not send it there). Through the gateway and MCP alike.
func testServiceIdentity(t *testing.T, e *env) {
	// Each entry point runs sql as p and returns the result's rows, cells
	// joined by tabs.
	type entryPoint func(t *testing.T, p person, sql string) []string
	gateway := func(t *testing.T, p person, sql string) []string {
		return strings.Split(e.service.query(t, e.token(t, p), sql), "\n")
	}
	viaMCP := func(t *testing.T, p person, sql string) []string {
		r := call(t, e.connect(t, e.service, p), "run_query", map[string]any{"query": sql})
		if r.isError {
			t.Fatalf("run_query: %s", r.text)
		}
		return rows(r.structured)
	}
	for _, entry := range []struct {
		name string
		run  entryPoint
	}{{"gateway", gateway}, {"MCP", viaMCP}} {
		for _, tc := range []struct {
			p     person
			roles []string
		}{
			{alice, []string{"analysts", "data_eng"}},
			{carol, []string{"guests"}},
			{erin, nil}, // log_comment says "roles":[]
		} {
			t.Run(entry.name+"/"+tc.p.email, func(t *testing.T) {
				// While the query runs: system.processes.
				if got := entry.run(t, tc.p, chtest.SelfSQL("user, quota_key")); !slices.Equal(got, []string{svcUser + "\t" + tc.p.email}) {
					t.Fatalf("system.processes shows user, quota_key %q, want %s and %s", got, svcUser, tc.p.email)
				}
				// After it ran: system.query_log.
				m := marker()
				entry.run(t, tc.p, "SELECT '"+m+"' AS m")
				got := e.logged(t, m, "user, quota_key")
				if want := svcUser + "\t" + tc.p.email; !slices.Equal(got, []string{want}) {
					t.Fatalf("query_log user, quota_key = %q, want %q", got, want)
				}
				// query_log's user agent names the person on every release.
				if ua := e.logged(t, m, "http_user_agent"); len(ua) != 1 || !strings.HasSuffix(ua[0], " clickgate (user "+tc.p.email+")") {
					t.Errorf("query_log http_user_agent = %q, want it to name %s", ua, tc.p.email)
				}
				if !modern(e.release) {
					// 18.16's query_log has no log_comment, and that the
					// query ran at all shows that clickgate did not send
					// one (18.16 refuses an unknown setting, Code 115).
					if e.queryLogHas(t, "log_comment") {
						t.Errorf("18.16's query_log has log_comment")
					}
					return
				}
				comments := e.logged(t, m, "log_comment")
				var comment struct {
					User    string   `json:"user"`
					Roles   []string `json:"roles"`
					Via     string   `json:"via"`
					EventID string   `json:"event_id"`
				}
				if err := json.Unmarshal([]byte(comments[0]), &comment); err != nil {
					t.Fatalf("log_comment %q is not JSON: %v", comments[0], err)
				}
				if comment.User != tc.p.email || !slices.Equal(comment.Roles, tc.roles) || comment.Via != "clickgate" {
					t.Errorf("log_comment %s, want user %s and roles %q via clickgate", comments[0], tc.p.email, tc.roles)
				}
			})
		}
	}

	// A client cannot name someone else: its quota_key is replaced, and on
	// 26.7 so is its log_comment. On 18.16 clickgate sets no log_comment,
	// so the client's goes on and 18.16 refuses the query itself (Code
	// 115, unknown setting): there is nothing there to forge.
	t.Run("forged quota_key and log_comment", func(t *testing.T) {
		m := marker()
		r := e.service.send(t, e.token(t, alice), request{
			params: url.Values{"quota_key": {bob.email}, "log_comment": {`{"user":"bob@example.com"}`}},
			body:   "SELECT '" + m + "'",
		})
		if !modern(e.release) {
			if r.status == http.StatusOK || !strings.Contains(r.body, "Code: 115") || strings.Contains(r.body, "clickgate:") {
				t.Fatalf("18.16: %d %s, want ClickHouse's Code: 115 (unknown setting log_comment)", r.status, r.body)
			}
			return
		}
		if r.status != http.StatusOK {
			t.Fatalf("%d %s", r.status, r.body)
		}
		got := e.logged(t, m, "quota_key, JSONExtractString(log_comment, 'user')")
		if want := alice.email + "\t" + alice.email; !slices.Equal(got, []string{want}) {
			t.Fatalf("query_log quota_key, log_comment's user = %q, want %q", got, want)
		}
	})

	// SETTINGS log_comment in the query text: on 26.7 it would override
	// clickgate's, so clickgate refuses it before ClickHouse sees it.
	t.Run("log_comment in SETTINGS", func(t *testing.T) {
		m := marker()
		r := e.service.send(t, e.token(t, alice), request{body: "SELECT '" + m + "' SETTINGS log_comment = 'bob'"})
		if modern(e.release) {
			if r.status != http.StatusBadRequest || !strings.Contains(r.body, "clickgate:") {
				t.Fatalf("26.7: %d %s, want clickgate's refusal", r.status, r.body)
			}
			if got := e.logged(t, m, "query_id"); len(got) != 0 {
				t.Fatalf("ClickHouse ran the refused query: %q", got)
			}
			return
		}
		if r.status == http.StatusOK || !strings.Contains(r.body, "Code: 115") {
			t.Fatalf("18.16: %d %s, want ClickHouse's Code: 115", r.status, r.body)
		}
	})
}

// Service mode on an account whose quota is the stock one: ClickHouse
// refuses client-supplied quota keys there ("doesn't allow client supplied
// keys"), so without clickhouse.quota_key clickgate sends none, and every
// query runs; the user agent (and log_comment on 26.7) still names the
// person.
func testServiceStockQuota(t *testing.T, e *env) {
	m := marker()
	if got := e.stock.query(t, e.token(t, alice), chtest.SelfSQL("user, quota_key, '"+m+"'")); got != stockUser+"\t\t"+m {
		t.Fatalf("system.processes shows %q, want %s without a quota key", got, stockUser)
	}
	cols, want := "user, endsWith(http_user_agent, ' clickgate (user "+alice.email+")')", stockUser+"\t1"
	if modern(e.release) {
		cols, want = cols+", JSONExtractString(log_comment, 'user')", want+"\t"+alice.email
	}
	if got := e.logged(t, m, cols); !slices.Equal(got, []string{want}) {
		t.Errorf("query_log %s = %q, want %q", cols, got, want)
	}
}

// Quotas count per person under the shared service account: the
// account's keyed quota allows each quota key personQuota queries an hour,
// and another person's key has its own count. The releases differ in the
// count: 18.16 checks it before adding the current query, so a key gets
// personQuota+1 answers; 26.7 refuses query personQuota+1 (QUOTA_EXCEEDED).
// The query reads a table: 26.7 counts no queries without one (SELECT 1).
func testServiceQuotaPerPerson(t *testing.T, e *env) {
	const sql = "SELECT count() FROM numbers(10)"
	want := personQuota + 1 // 18.16
	if modern(e.release) {
		want = personQuota
	}
	for _, p := range []person{alice, bob} {
		tok := e.token(t, p)
		answered := 0
		var refusal response
		for range personQuota + 3 {
			r := e.quota.send(t, tok, request{body: sql})
			if r.status != http.StatusOK {
				refusal = r
				break
			}
			answered++
		}
		if answered != want || !strings.Contains(refusal.body, "Code: 201") || strings.Contains(refusal.body, "clickgate:") {
			t.Fatalf("%s: %d answered, then %d %s; want %d, then ClickHouse's Code: 201", p.email, answered, refusal.status, refusal.body, want)
		}
		if !strings.Contains(refusal.body, "Quota for user") || !strings.Contains(refusal.body, quotaUser) {
			t.Errorf("%s: refusal %q does not name the quota of %s", p.email, refusal.body, quotaUser)
		}
	}
	if modern(e.release) { // 26.7 lists the usage per key, the refused query included
		got := e.admin(t, "SELECT quota_key, queries FROM system.quotas_usage WHERE quota_name = 'per_person' AND queries > 0 ORDER BY quota_key")
		if want := fmt.Sprintf("%s\t%d\n%s\t%d", alice.email, personQuota+1, bob.email, personQuota+1); got != want {
			t.Errorf("quotas_usage:\n%s\nwant:\n%s", got, want)
		}
	}
}

// Mapped mode: each person runs as the account of the first configured
// account whose role they hold; the readonly account cannot write; a
// person without such a role never reaches ClickHouse.
func testMappedAccounts(t *testing.T, e *env) {
	for _, tc := range []struct {
		p       person
		account string // "" = refused
	}{
		{alice, readerUser},
		{bob, writerUser},
		{dave, writerUser}, // analysts and admin: admin's account is listed first
		{carol, ""},
		{erin, ""},
	} {
		t.Run(tc.p.email, func(t *testing.T) {
			tok := e.token(t, tc.p)
			m := marker()
			if tc.account == "" {
				r := e.mapped.send(t, tok, request{body: "SELECT '" + m + "'"})
				if r.status != http.StatusForbidden || !strings.Contains(r.body, "Code: 497") || !strings.Contains(r.body, "none of the roles") {
					t.Fatalf("%d %s, want clickgate's 403 (Code: 497)", r.status, r.body)
				}
				res := call(t, e.connect(t, e.mapped, tc.p), "run_query", map[string]any{"query": "SELECT '" + m + "'"})
				if !res.isError || !strings.Contains(res.text, "none of the roles") {
					t.Fatalf("MCP: %v %s", res.isError, res.text)
				}
				if got := e.logged(t, m, "user"); len(got) != 0 {
					t.Fatalf("ClickHouse ran a query for %s: %q", tc.p.email, got)
				}
				return
			}
			// The executing account, as ClickHouse reports it.
			if modern(e.release) {
				if got := e.mapped.query(t, tok, "SELECT currentUser(), '"+m+"'"); got != tc.account+"\t"+m {
					t.Errorf("currentUser() = %q, want %s", got, tc.account)
				}
			} else {
				// 18.16 has no currentUser(); system.processes tells.
				r := e.mapped.send(t, tok, request{body: "SELECT currentUser(), '" + m + "'"})
				if r.status == http.StatusOK || !strings.Contains(r.body, "Code: 46") {
					t.Errorf("18.16 currentUser(): %d %s, want Code: 46 (unknown function)", r.status, r.body)
				}
				m = marker()
				if got := e.mapped.query(t, tok, strings.Replace(chtest.CurrentUserSQL(), "WHERE", "WHERE '"+m+"' != '' AND", 1)); got != tc.account {
					t.Errorf("system.processes user = %q, want %s", got, tc.account)
				}
			}
			// query_log: the account ran it, for the person the user agent
			// names; on 26.7 log_comment names them too, except on the
			// readonly = 1 account, which may set no setting.
			cols := "user, endsWith(http_user_agent, ' clickgate (user " + tc.p.email + ")')"
			want := tc.account + "\t1"
			if modern(e.release) {
				cols += ", quota_key, JSONExtractString(log_comment, 'user')"
				if tc.account == readerUser {
					want += "\t\t"
				} else {
					want += "\t\t" + tc.p.email
				}
			}
			if got := e.logged(t, m, cols); !slices.Equal(got, []string{want}) {
				t.Errorf("query_log %s = %q, want %q", cols, got, want)
			}
			// The same account through MCP.
			res := call(t, e.connect(t, e.mapped, tc.p), "run_query", map[string]any{"query": chtest.CurrentUserSQL()})
			if got := rows(res.structured); !slices.Equal(got, []string{tc.account}) {
				t.Errorf("MCP runs as %v (%s), want %s", got, res.text, tc.account)
			}
			// Writes: ClickHouse refuses the readonly account (164).
			table := marker()
			r := e.mapped.send(t, tok, request{body: "CREATE TABLE default." + table + " (x UInt8) ENGINE = Memory"})
			exists := e.admin(t, "EXISTS TABLE default."+table) == "1"
			if tc.account == readerUser {
				if r.status == http.StatusOK || !strings.Contains(r.body, "Code: 164") || strings.Contains(r.body, "clickgate:") || exists {
					t.Errorf("reader's CREATE TABLE: %d %s (exists: %v), want ClickHouse's Code: 164", r.status, r.body, exists)
				}
			} else if r.status != http.StatusOK || !exists {
				t.Errorf("writer's CREATE TABLE: %d %s (exists: %v)", r.status, r.body, exists)
			}
		})
	}
}
