package native_test

import (
	"context"
	"testing"

	"github.com/ClickHouse/ch-go"
	"github.com/ClickHouse/ch-go/proto"

	"github.com/clickgate/clickgate/internal/chtest"
)

// ch-go, with the token as password, against ClickHouse 26.7 (chDB's
// server; ch-go does not speak 18.16's revision): a query, an insert, a
// query id and quota key of its own that do not pass. Skipped, saying
// why, where chDB is not installed.
func TestChGo(t *testing.T) {
	s := newStack(t, chtest.Options{Release: chtest.ChDB267, ExtraUsers: []chtest.User{
		{Name: "ch_reader", Password: "reader-pw", Profile: "readonly"},
		{Name: "ch_admin", Password: "admin-pw"},
	}}, mappedYAML)
	ctx := context.Background()
	c, err := ch.Dial(ctx, ch.Options{Address: s.addr, Password: s.token(t, "bob@example.com", "ch-admin"), QuotaKey: "spoofed"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Do(ctx, ch.Query{Body: "CREATE TABLE default.chgo (n UInt64, s String) ENGINE = Memory"}); err != nil {
		t.Fatal(err)
	}
	n, str := new(proto.ColUInt64), new(proto.ColStr)
	for i := range 100_000 {
		n.Append(uint64(i))
		str.Append("x")
	}
	if err := c.Do(ctx, ch.Query{Body: "INSERT INTO default.chgo VALUES", Input: proto.Input{{Name: "n", Data: n}, {Name: "s", Data: str}}}); err != nil {
		t.Fatal(err)
	}
	var user, id, key proto.ColStr
	var count proto.ColUInt64
	if err := c.Do(ctx, ch.Query{Body: "SELECT currentUser() AS u, queryID() AS i, ifNull((SELECT quota_key FROM system.processes WHERE query_id = queryID()), '') AS k, ifNull((SELECT count() FROM default.chgo), 0) AS c", QueryID: "mine",
		Result: proto.Results{{Name: "u", Data: &user}, {Name: "i", Data: &id}, {Name: "k", Data: &key}, {Name: "c", Data: &count}}}); err != nil {
		t.Fatal(err)
	}
	if user.Row(0) != "ch_admin" || id.Row(0) == "mine" || count.Row(0) != 100_000 {
		t.Fatalf("user %q, query id %q, rows %d", user.Row(0), id.Row(0), count.Row(0))
	}
	if key.Row(0) == "spoofed" {
		t.Fatal("the client's quota key reached ClickHouse")
	}
}
