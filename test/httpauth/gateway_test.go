package httpauth

import (
	"strings"
	"testing"
)

// Through the gateway each person runs as their own ClickHouse user, with
// that user's profile: ClickHouse asks clickgate's /clickhouse/auth once
// per request, with a clickgate ticket (never the person's token) as
// password. A person without a ClickHouse user gets ClickHouse's own 516,
// and ClickHouse never asks clickgate about them. A name that HTTP Basic
// authentication cannot carry (one with ':') is refused by clickgate
// itself: sent on, ClickHouse would try to sign in the part before the
// colon, a different user.
func TestGatewayRunsEachPersonAsTheirOwnUser(t *testing.T) {
	f := newFront(t)
	ch := startClickHouse(t, []authServer{{name: "clickgate", uri: authURI(f)}}, carol, dave)
	key := newKey(t)
	g := newGate(t, f, key, ch.HTTPURL, gateOptions{})

	cases := []struct {
		name, person, sql string
		want              string // the answer, when ClickHouse ran the query
		wantCode          int    // ClickHouse's error code otherwise
		wantAuthCall      bool   // ClickHouse asked /clickhouse/auth
	}{
		{name: "carol reads as carol, readonly", person: "carol", sql: "SELECT currentUser(), getSetting('readonly')", want: "carol\t1", wantAuthCall: true},
		{name: "dave reads as dave", person: "dave", sql: "SELECT currentUser(), getSetting('readonly')", want: "dave\t0", wantAuthCall: true},
		{name: "carol cannot write", person: "carol", sql: "CREATE TABLE default.by_carol (x UInt8) ENGINE = Memory", wantCode: 164, wantAuthCall: true},
		{name: "carol cannot lift readonly", person: "carol", sql: "SELECT 1 SETTINGS readonly = 0", wantCode: 164, wantAuthCall: true},
		{name: "dave writes", person: "dave", sql: "CREATE TABLE default.by_dave (x UInt8) ENGINE = Memory", want: "", wantAuthCall: true},
		{name: "erin has no ClickHouse user", person: "erin", sql: "SELECT currentUser()", wantCode: 516},
		{name: "a name with a colon is not sent as its prefix", person: "dave:x", sql: "SELECT currentUser()", wantCode: 497},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tok := token(t, key, "clickhouse", c.person)
			status, body := g.query(t, tok, c.sql+" /* gw_case */")
			if c.wantCode == 0 && (status != 200 || body != c.want) {
				t.Errorf("ClickHouse answered %d %q, want %q", status, body, c.want)
			}
			if c.wantCode != 0 && code(body) != c.wantCode {
				t.Errorf("ClickHouse answered %d %q, want Code: %d", status, body, c.wantCode)
			}
			calls := f.take()
			if !c.wantAuthCall {
				if len(calls) != 0 {
					t.Errorf("ClickHouse asked /clickhouse/auth about a user that is not this person's: %+v", calls)
				}
				return
			}
			if len(calls) != 1 || calls[0].user != c.person || calls[0].status != 200 {
				t.Fatalf("calls to /clickhouse/auth: %+v, want one for %s answered 200", calls, c.person)
			}
			// The password ClickHouse checked is a ticket for this person,
			// not the person's own token.
			if calls[0].password == tok {
				t.Fatal("the person's token reached ClickHouse")
			}
			if u := ticketUser(t, calls[0].password); u != c.person {
				t.Errorf("the password ClickHouse checked is not a ticket for %s (%q)", c.person, u)
			}
		})
	}

	if adminQuery(t, ch, "EXISTS TABLE default.by_carol") != "0" || adminQuery(t, ch, "EXISTS TABLE default.by_dave") != "1" {
		t.Error("tables: carol's write must have been refused, dave's done")
	}
	// ClickHouse's own records: who ran what, how they signed in.
	flushLogs(t, ch)
	if got := adminQuery(t, ch, "SELECT user, exception_code FROM system.query_log WHERE query LIKE '%gw\\_%' AND query NOT LIKE '%query_log%' AND type != 'QueryStart' ORDER BY event_time_microseconds"); got != "carol\t0\ndave\t0\ncarol\t164\ncarol\t164\ndave\t0" {
		t.Errorf("query_log:\n%s", got)
	}
	if got := adminQuery(t, ch, "SELECT type, user, auth_type FROM system.session_log WHERE user IN ('carol', 'dave', 'erin') AND type != 'Logout' ORDER BY event_time_microseconds"); got != strings.Join([]string{
		"LoginSuccess\tcarol\tHTTP", "LoginSuccess\tdave\tHTTP", "LoginSuccess\tcarol\tHTTP", "LoginSuccess\tcarol\tHTTP", "LoginSuccess\tdave\tHTTP", "LoginFailure\terin\tNO_PASSWORD",
	}, "\n") {
		t.Errorf("session_log:\n%s", got)
	}
}
