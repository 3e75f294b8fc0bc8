package httpauth

import (
	"strings"
	"testing"
	"time"

	"github.com/clickgate/clickgate/internal/clickhouse"
	"github.com/clickgate/clickgate/internal/testkit"
)

// ticketTTL and ticketLeeway are those of internal/clickhouse/tickets.go:
// a ticket is valid for DefaultTicketTTL, reused until a third of that is
// left, and accepted up to 5 s past its expiry.
const (
	ticketTTL    = clickhouse.DefaultTicketTTL
	ticketLeeway = 5 * time.Second
)

// A person's requests share one ticket while it has more than a third of
// its life left; then clickgate signs a new one. The old ticket stays good
// until it expires, and after that ClickHouse refuses it, because
// /clickhouse/auth does. Time is clickgate's fake clock; ClickHouse is
// real.
func TestTicketsAreReusedRenewedAndExpire(t *testing.T) {
	f := newFront(t)
	ch := startClickHouse(t, []authServer{{name: "clickgate", uri: authURI(f)}}, dave)
	key := newKey(t)
	clk := testkit.RealClock()
	g := newGate(t, f, key, ch.HTTPURL, gateOptions{now: clk.Now})
	tok := token(t, key, "clickhouse", "dave")

	// viaGateway runs a query as dave and returns the ticket ClickHouse
	// checked.
	viaGateway := func(t *testing.T) string {
		t.Helper()
		if status, body := g.query(t, tok, "SELECT currentUser()"); status != 200 || body != "dave" {
			t.Fatalf("through the gateway: %d %q", status, body)
		}
		calls := f.take()
		if len(calls) != 1 || calls[0].user != "dave" || calls[0].status != 200 {
			t.Fatalf("calls to /clickhouse/auth: %+v", calls)
		}
		return calls[0].password
	}
	// straight sends a ticket to ClickHouse itself, as dave, and returns
	// what ClickHouse answered and what clickgate told it.
	straight := func(t *testing.T, ticket string) (body string, authStatus int) {
		t.Helper()
		_, body = direct(t, ch, "dave", ticket, "SELECT currentUser()")
		calls := f.take()
		if len(calls) != 1 || calls[0].user != "dave" || calls[0].password != ticket {
			t.Fatalf("ClickHouse did not ask /clickhouse/auth about the ticket: %+v", calls)
		}
		return body, calls[0].status
	}

	first := viaGateway(t)
	for i := range 4 {
		if got := viaGateway(t); got != first {
			t.Fatalf("request %d within the ticket's life got a new ticket", i+2)
		}
	}
	if body, st := straight(t, first); body != "dave" || st != 200 {
		t.Fatalf("the ticket straight at ClickHouse: %q (clickgate %d)", body, st)
	}

	// Less than a third of the life left: a new ticket; the old one works
	// until it expires.
	clk.Advance(ticketTTL - ticketTTL/3 + time.Second)
	second := viaGateway(t)
	if second == first {
		t.Fatal("no new ticket with less than a third of the old one's life left")
	}
	if got := viaGateway(t); got != second {
		t.Fatal("the renewed ticket is not reused")
	}
	if body, st := straight(t, first); body != "dave" || st != 200 {
		t.Fatalf("the old ticket before its expiry: %q (clickgate %d)", body, st)
	}

	// Past the first ticket's expiry (and the leeway).
	clk.Advance(ticketTTL/3 + ticketLeeway + time.Second)
	body, st := straight(t, first)
	if code(body) != 516 || st != 403 {
		t.Fatalf("an expired ticket: ClickHouse %q, clickgate %d; want 516 after clickgate's 403", body, st)
	}
	if body, st := straight(t, second); body != "dave" || st != 200 {
		t.Fatalf("the renewed ticket: %q (clickgate %d)", body, st)
	}
	if got := viaGateway(t); got != second {
		t.Fatal("the gateway stopped reusing a ticket with more than a third of its life left")
	}
}

// A ticket names one ClickHouse user and is signed with ticket_secret:
// presented for anyone else, forged with another secret or expired,
// ClickHouse refuses it because clickgate's /clickhouse/auth does. Every
// request goes straight to ClickHouse.
func TestTicketsAreBoundToUserSecretAndTime(t *testing.T) {
	f := newFront(t)
	ch := startClickHouse(t, []authServer{{name: "clickgate", uri: authURI(f)}}, carol, dave)
	key := newKey(t)
	g := newGate(t, f, key, ch.HTTPURL, gateOptions{})

	// carol's ticket, as the gateway issued it to ClickHouse.
	if status, body := g.query(t, token(t, key, "clickhouse", "carol"), "SELECT 1"); status != 200 || body != "1" {
		t.Fatalf("carol through the gateway: %d %q", status, body)
	}
	calls := f.take()
	if len(calls) != 1 {
		t.Fatalf("calls: %+v", calls)
	}
	carolTicket := calls[0].password

	mint := func(secret string, now func() time.Time, user string) string {
		tk, err := clickhouse.NewTickets([]byte(secret), ticketTTL, now)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := tk.Issue(user)
		if err != nil {
			t.Fatal(err)
		}
		return raw
	}
	hourAgo := func() time.Time { return time.Now().Add(-time.Hour) }

	cases := []struct {
		name, user, password string
		want                 string // ClickHouse's answer; else Code: 516
		authStatus           int    // what clickgate answered ClickHouse; 0: ClickHouse did not ask
	}{
		{"carol's ticket as carol", "carol", carolTicket, "carol", 200},
		{"carol's ticket as dave", "dave", carolTicket, "", 403},
		{"dave's ticket from a replica with the same secret", "dave", mint(secret, nil, "dave"), "dave", 200},
		{"dave's ticket signed with another secret", "dave", mint("another-secret-0123456789abcdefghijkl", nil, "dave"), "", 403},
		{"dave's ticket, expired an hour ago", "dave", mint(secret, hourAgo, "dave"), "", 403},
		{"dave's ticket with a character changed", "dave", tamper(mint(secret, nil, "dave")), "", 403},
		{"carol's ticket as a user ClickHouse does not have", "erin", carolTicket, "", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, body := direct(t, ch, c.user, c.password, "SELECT currentUser()")
			if c.want != "" && body != c.want {
				t.Errorf("ClickHouse answered %q, want %q", body, c.want)
			}
			if c.want == "" && code(body) != 516 {
				t.Errorf("ClickHouse answered %q, want Code: 516", body)
			}
			calls := f.take()
			switch {
			case c.authStatus == 0 && len(calls) != 0:
				t.Errorf("ClickHouse asked /clickhouse/auth: %+v", calls)
			case c.authStatus != 0 && (len(calls) != 1 || calls[0].user != c.user || calls[0].status != c.authStatus):
				t.Errorf("calls to /clickhouse/auth: %+v, want one for %s answered %d", calls, c.user, c.authStatus)
			}
		})
	}

	// A ticket is a password for ClickHouse only: clickgate's gateway does
	// not take it as a token, so nothing reaches ClickHouse.
	t.Run("a ticket is no token at the gateway", func(t *testing.T) {
		status, body := g.query(t, mint(secret, nil, "dave"), "SELECT currentUser()")
		if status != 401 || code(body) != 516 {
			t.Errorf("gateway: %d %q, want clickgate's 401", status, body)
		}
		if calls := f.take(); len(calls) != 0 {
			t.Errorf("the request reached ClickHouse: %+v", calls)
		}
	})
}

// tamper changes the first character of a ticket's signature (the last
// one may carry only padding bits).
func tamper(s string) string {
	b := []byte(s)
	i := strings.LastIndexByte(s, '.') + 1
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}
