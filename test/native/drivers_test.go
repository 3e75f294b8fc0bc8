package native_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/clickgate/clickgate/internal/chtest"
)

func (s *stack) goClient(t *testing.T, token string, settings clickhouse.Settings) driver.Conn {
	t.Helper()
	c, err := clickhouse.Open(&clickhouse.Options{
		Addr: []string{s.addr}, Auth: clickhouse.Auth{Password: token}, Settings: settings,
		DialTimeout: 5 * time.Second, MaxOpenConns: 4,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func queryOne(ctx context.Context, c driver.Conn, sql string) (string, error) {
	var out string
	err := c.QueryRow(ctx, sql).Scan(&out)
	return out, err
}

// clickhouse-go v2 over the native protocol with a token as password:
// queries, batch inserts, a spoofed quota key and settings, cancellation.
func TestClickHouseGo(t *testing.T) {
	s := newStack(t, chtest.Options{ExtraUsers: []chtest.User{{Name: "ch_keyed", Password: "keyed-pw", Quota: chtest.KeyedQuota}}}, `  mode: mapped
  quota_key: true
  accounts:
    - {role: keyed, user: ch_keyed, password: keyed-pw}
  settings: {max_execution_time: "60"}
`)
	ctx := context.Background()
	dave := s.goClient(t, s.token(t, "dave@example.com", "ch-keyed"), nil)
	if err := dave.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	var user, key string
	if err := dave.QueryRow(clickhouse.Context(ctx, clickhouse.WithQuotaKey("spoofed")), chtest.SelfSQL("user, quota_key")).Scan(&user, &key); err != nil {
		t.Fatal(err)
	}
	if user != "ch_keyed" || key != "dave@example.com" {
		t.Fatalf("ClickHouse saw user %q quota key %q, want ch_keyed and dave's", user, key)
	}
	// Settings: fixed ones cannot be changed; others pass.
	if _, err := queryOne(clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"max_execution_time": 0})), dave, "SELECT 'x'"); err == nil || !strings.Contains(err.Error(), "452") {
		t.Fatalf("max_execution_time = 0: %v, want refused", err)
	}
	got, err := queryOne(clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{"max_threads": 3})), dave, "SELECT value FROM system.settings WHERE name = 'max_threads'")
	if err != nil || got != "3" {
		t.Fatalf("max_threads: %q %v", got, err)
	}
	// The connection goes on after a refusal.
	if got, err := queryOne(ctx, dave, "SELECT toString(count()) FROM numbers(1000)"); err != nil {
		t.Fatal(got, err)
	}

	// Batch insert.
	if _, err := s.ch.QueryParams(chtest.AdminUser, chtest.AdminPassword, "CREATE TABLE default.go_batch (n UInt64, s String, ls LowCardinality(String), a Array(UInt32), d DateTime, f Nullable(Float64)) ENGINE = MergeTree ORDER BY n SETTINGS index_granularity = 8192", url.Values{"allow_experimental_low_cardinality_type": {"1"}}); err != nil {
		t.Fatal(err)
	}
	batch, err := dave.PrepareBatch(ctx, "INSERT INTO default.go_batch (n, s, ls, a, d, f) VALUES") // 18.16 needs the columns named
	if err != nil {
		t.Fatal(err)
	}
	const rows = 100_000
	for i := range rows {
		var f *float64
		if i%3 == 0 {
			v := float64(i) / 2
			f = &v
		}
		if err := batch.Append(uint64(i), fmt.Sprintf("row %d", i), fmt.Sprintf("k%d", i%10), []uint32{uint32(i), 7}, time.Unix(int64(1_600_000_000+i), 0), f); err != nil {
			t.Fatal(err)
		}
	}
	if err := batch.Send(); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%d\t%d\t10\t%d", rows, rows*(rows-1)/2, rows*2)
	if got := s.ch.Query(t, chtest.AdminUser, chtest.AdminPassword, "SELECT count(), sum(n), uniqExact(ls), sum(length(a)) FROM default.go_batch"); got != want {
		t.Fatalf("ClickHouse holds %q, want %q", got, want)
	}
	// Reading it back through clickgate.
	rs, err := dave.Query(ctx, "SELECT n, s, ls, a, f FROM default.go_batch ORDER BY n")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for rs.Next() {
		var (
			id     uint64
			str, l string
			a      []uint32
			f      *float64
		)
		if err := rs.Scan(&id, &str, &l, &a, &f); err != nil {
			t.Fatal(err)
		}
		if id != uint64(n) || str != fmt.Sprintf("row %d", n) || l != fmt.Sprintf("k%d", n%10) || len(a) != 2 || (f != nil) != (n%3 == 0) {
			t.Fatalf("row %d: %v %q %q %v %v", n, id, str, l, a, f)
		}
		n++
	}
	if err := rs.Err(); err != nil || n != rows {
		t.Fatalf("read %d rows: %v", n, err)
	}

	// Cancellation by context: the query disappears from system.processes.
	const marker = "cancel-me-7f3a"
	qctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	start := time.Now()
	_, err = queryOne(qctx, dave, "SELECT toString(count()) FROM system.numbers WHERE number % 1000000 = 1 AND '"+marker+"' != ''")
	if err == nil || !errors.Is(err, context.DeadlineExceeded) && !strings.Contains(err.Error(), "deadline") && !strings.Contains(err.Error(), "cancel") && !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("the endless query ended with %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("cancelling took %s", time.Since(start))
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := s.ch.Query(t, chtest.AdminUser, chtest.AdminPassword, "SELECT count() FROM system.processes WHERE query LIKE '%"+marker+"%' AND query NOT LIKE '%system.processes%'")
		if left == "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cancelled query still runs in ClickHouse")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The pool goes on with a fresh connection.
	if got, err := queryOne(ctx, dave, "SELECT 'after'"); err != nil || got != "after" {
		t.Fatalf("after cancelling: %q %v", got, err)
	}
}

// An INSERT that ClickHouse fails as its data arrives leaves the
// connection usable: the rest of the data still reaches ClickHouse,
// which reads it before the next query.
func TestFailedInsertThenQuery(t *testing.T) {
	s := newStack(t, chtest.Options{}, mappedYAML)
	s.ch.Query(t, chtest.AdminUser, chtest.AdminPassword, "CREATE TABLE default.fails (x UInt64, y UInt8 MATERIALIZED throwIf(x = 5)) ENGINE = Memory")
	c, err := clickhouse.Open(&clickhouse.Options{Addr: []string{s.addr}, Auth: clickhouse.Auth{Password: s.token(t, "bob@example.com", "ch-admin")}, MaxOpenConns: 1, MaxIdleConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	for round := range 3 {
		batch, err := c.PrepareBatch(ctx, "INSERT INTO default.fails (x) VALUES")
		if err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			if err := batch.Append(uint64(i)); err != nil {
				t.Fatal(err)
			}
		}
		if err := batch.Send(); err == nil || !strings.Contains(err.Error(), "throwIf") && !strings.Contains(err.Error(), "395") {
			t.Fatalf("round %d: the failing insert: %v", round, err)
		}
		if got, err := queryOne(ctx, c, "SELECT 'next'"); err != nil || got != "next" {
			t.Fatalf("round %d: the query after a failed insert: %q %v", round, got, err)
		}
	}
}
