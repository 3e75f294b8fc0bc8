package native_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/clickgate/clickgate/internal/chtest"
)

// The current protocol (settings as strings, the addendum, query
// parameters, ProfileEvents) against ClickHouse 26.7 (chDB's server),
// with clickhouse-go v2. Skipped, saying why, where chDB is not
// installed.
func TestModernServer(t *testing.T) {
	s := newStack(t, chtest.Options{Release: chtest.ChDB267, ExtraUsers: []chtest.User{
		{Name: "ch_reader", Password: "reader-pw", Profile: "readonly"},
		{Name: "ch_admin", Password: "admin-pw"},
	}}, mappedYAML+`  settings: {max_execution_time: "60"}
`)
	ctx := context.Background()
	bob := s.goClient(t, s.token(t, "bob@example.com", "ch-admin"), nil)
	got, err := queryOne(ctx, bob, "SELECT currentUser()")
	if err != nil || got != "ch_admin" {
		t.Fatalf("currentUser() = %q %v", got, err)
	}
	got, err = queryOne(clickhouse.Context(ctx, clickhouse.WithParameters(clickhouse.Parameters{"x": "41"})), bob, "SELECT toString({x:UInt8} + 1)")
	if err != nil || got != "42" {
		t.Fatalf("a query parameter: %q %v", got, err)
	}
	got, err = queryOne(ctx, bob, "SELECT getSetting('max_execution_time')::String")
	if err != nil || got != "60" {
		t.Fatalf("max_execution_time: %q %v", got, err)
	}
	if _, err := queryOne(clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"max_execution_time": 1})), bob, "SELECT 'x'"); err == nil || !strings.Contains(err.Error(), "452") {
		t.Fatalf("max_execution_time = 1: %v, want refused", err)
	}
	if _, err := queryOne(ctx, bob, "SELECT 'x' SETTINGS max_execution_time = 1"); err == nil {
		t.Fatal("SETTINGS max_execution_time = 1 passed")
	}
	// Types of today, both ways.
	if err := bob.Exec(ctx, "CREATE TABLE default.modern (n UInt64, m Map(String, UInt64), lc LowCardinality(Nullable(String)), t Tuple(a Int128, b Decimal(20, 4)), d DateTime64(3), b Bool, u UUID, ip IPv6) ENGINE = Memory"); err != nil {
		t.Fatal(err)
	}
	if err := bob.Exec(ctx, "INSERT INTO default.modern SELECT number, map('k', number), if(number % 2 = 0, NULL, toString(number % 7)), (number, number / 3), now64(3), number % 2, generateUUIDv4(), toIPv6('::1') FROM numbers(100000)"); err != nil {
		t.Fatal(err)
	}
	batch, err := bob.PrepareBatch(ctx, "INSERT INTO default.modern (n, lc)")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1000 {
		v := fmt.Sprint(i % 3)
		if err := batch.Append(uint64(1_000_000+i), &v); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
	rows, err := bob.Query(ctx, "SELECT n, m, lc, t.a, d, b, u, ip FROM default.modern ORDER BY n")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rows.Next() {
		n++
	}
	if err := rows.Err(); err != nil || n != 101_000 {
		t.Fatalf("read %d rows: %v", n, err)
	}
	got, err = queryOne(ctx, bob, "SELECT toString(count()) FROM default.modern WHERE lc IS NULL")
	if err != nil || got != "50000" {
		t.Fatalf("NULLs: %q %v", got, err)
	}
}
