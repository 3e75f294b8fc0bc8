package httpauth

import (
	"strings"
	"testing"
)

// Replicas: ClickHouse's auth server is replica B, while the gateway
// request goes through another clickgate, A. With the same ticket_secret B
// accepts A's ticket; with another secret, or none (a random key per
// process), it refuses it, and so does ClickHouse. The person sees only
// ClickHouse's 516; B's session log says why.
func TestReplicasShareTicketSecret(t *testing.T) {
	bf := newFront(t)
	ch := startClickHouse(t, []authServer{{name: "clickgate", uri: authURI(bf)}}, dave)
	key := newKey(t)
	b := newGate(t, bf, key, ch.HTTPURL, gateOptions{})
	tok := token(t, key, "clickhouse", "dave")

	cases := []struct {
		name       string
		a          gateOptions
		want       string // the answer; else Code: 516
		authStatus int    // what B answered ClickHouse
	}{
		{"same ticket_secret", gateOptions{secret: secret}, "dave", 200},
		{"another ticket_secret", gateOptions{secret: "another-secret-0123456789abcdefghijkl"}, "", 403},
		{"no ticket_secret on A", gateOptions{randomSecret: true}, "", 403},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := newGate(t, newFront(t), key, ch.HTTPURL, c.a)
			status, body := a.query(t, tok, "SELECT currentUser()")
			if c.want != "" && (status != 200 || body != c.want) {
				t.Errorf("through replica A: %d %q, want %q", status, body, c.want)
			}
			if c.want == "" && code(body) != 516 {
				t.Errorf("through replica A: %d %q, want ClickHouse's Code: 516", status, body)
			}
			if calls := a.take(); len(calls) != 0 {
				t.Errorf("ClickHouse asked replica A, which its configuration does not name: %+v", calls)
			}
			calls := b.take()
			if len(calls) != 1 || calls[0].user != "dave" || calls[0].status != c.authStatus {
				t.Fatalf("ClickHouse's calls to replica B: %+v, want one for dave answered %d", calls, c.authStatus)
			}
			if c.authStatus == 200 && ticketUser(t, calls[0].password) != "dave" {
				t.Error("replica A did not send a ticket")
			}
			recs := b.audit(t)
			last := recs[len(recs)-1]
			if c.authStatus == 200 && (last.Type != "LoginSuccess" || last.User != "dave") {
				t.Errorf("B's session log: %+v", last)
			}
			if c.authStatus != 200 && (last.Type != "LoginFailure" || last.User != "dave" || !strings.Contains(last.FailureReason, "ticket_secret")) {
				t.Errorf("B's session log does not say why: %+v", last)
			}
		})
	}
}
