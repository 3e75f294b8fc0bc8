package chstore

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/clickhouse"
	"github.com/clickgate/clickgate/internal/oauth/store"
	"github.com/clickgate/clickgate/internal/oauth/store/storetest"
)

// chServer starts ClickHouse 18.16 and returns the admin's client.
func chServer(t *testing.T) *clickhouse.Client {
	ch := chtest.Start(t, chtest.Options{})
	u, err := url.Parse(ch.HTTPURL + "/")
	if err != nil {
		t.Fatal(err)
	}
	return &clickhouse.Client{URL: u, User: chtest.AdminUser, Password: chtest.AdminPassword, HTTP: &http.Client{Timeout: time.Minute}}
}

var tables atomic.Int64

// newTable returns a fresh table name in the default database.
func newTable() string { return fmt.Sprintf("default.oauth_state_%d", tables.Add(1)) }

func openCH(t *testing.T, db Exec, table string, now func() time.Time) *Store {
	t.Helper()
	s, err := New(context.Background(), db, table, now)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStore(t *testing.T) {
	db := chServer(t)
	storetest.Run(t, func(t *testing.T, now func() time.Time) func() store.Store {
		table := newTable()
		return func() store.Store { return openCH(t, db, table, now) }
	})

	t.Run("table names", func(t *testing.T) {
		ctx, c := context.Background(), storetest.NewClock()
		for _, table := range []string{"oauth state `x`", "default.oauth'state"} {
			s := openCH(t, db, table, c.Now)
			storetest.Want(t, "Use", s.Use(ctx, "a", c.Now().Add(time.Minute)), nil)
			storetest.Want(t, "Use again", openCH(t, db, table, c.Now).Use(ctx, "a", c.Now().Add(time.Minute)), store.ErrReplay)
		}
		if _, err := db.Exec(ctx, "CREATE TABLE default.oauth_log (key String) ENGINE = Log"); err != nil {
			t.Fatal(err)
		}
		if _, err := New(ctx, db, "default.oauth_log", c.Now); err == nil || !strings.Contains(err.Error(), "is a Log") {
			t.Fatalf("New on a Log table: %v", err)
		}
	})

	t.Run("silent claimant", func(t *testing.T) {
		// A replica that claimed and stopped before publishing its view
		// may have won: the others lose, after viewWait if its id is
		// larger than theirs.
		ctx, c, table := context.Background(), storetest.NewClock(), newTable()
		s := openCH(t, db, table, c.Now)
		for _, w := range []uint64{0, 1<<64 - 1} {
			id := fmt.Sprintf("code:%d", w)
			if err := s.insert(ctx, "use:"+id, kindClaim, 0, w, nil, fmt.Sprintf("toDateTime(%d)", c.Now().Add(time.Minute).Unix())); err != nil {
				t.Fatal(err)
			}
			t0 := time.Now()
			storetest.Want(t, "Use after a silent claim by "+id, s.Use(ctx, id, c.Now().Add(time.Minute)), store.ErrReplay)
			if w != 0 && time.Since(t0) < viewWait-pollMax {
				t.Errorf("lost after %v, before viewWait", time.Since(t0))
			}
		}
	})

	t.Run("rows and purge", func(t *testing.T) {
		ctx, c, table := context.Background(), storetest.NewClock(), newTable()
		s := openCH(t, db, table, c.Now)
		rows := func() string {
			t.Helper()
			n, err := db.Exec(ctx, "SELECT count() FROM "+table)
			if err != nil {
				t.Fatal(err)
			}
			return strings.TrimSpace(n)
		}
		// A sign-in and a refresh, as the broker makes them.
		storetest.Want(t, "Use(state)", s.Use(ctx, "state:s", c.Now().Add(10*time.Minute)), nil)
		storetest.Want(t, "Use(code)", s.Use(ctx, "code:c", c.Now().Add(time.Minute)), nil)
		storetest.Want(t, "StartFamily", s.StartFamily(ctx, "c", c.Now().Add(24*time.Hour)), nil)
		if n := rows(); n != "5" {
			t.Errorf("a sign-in wrote %s rows, want 5", n)
		}
		storetest.Want(t, "Rotate(0)", s.Rotate(ctx, "c", 0), nil)
		if n := rows(); n != "7" {
			t.Errorf("sign-in and refresh wrote %s rows, want 7", n)
		}

		// Purge starts a mutation; done waits for it.
		done := func() {
			t.Helper()
			name := strings.TrimPrefix(table, "default.")
			for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
				n, err := db.Exec(ctx, "SELECT count() FROM system.mutations WHERE database = 'default' AND table = '"+name+"' AND NOT is_done")
				if err != nil {
					t.Fatal(err)
				}
				if strings.TrimSpace(n) == "0" {
					return
				}
				if time.Now().After(deadline) {
					t.Fatal("Purge's mutation still runs after 20 s")
				}
			}
		}
		c.Advance(24*time.Hour + purgeMargin)
		if err := s.Purge(ctx); err != nil {
			t.Fatal(err)
		}
		done()
		// The Use rows expired over an hour ago, the family's just an hour ago.
		if n := rows(); n != "3" {
			t.Fatalf("%s rows after the first purge, want the family's 3", n)
		}
		c.Advance(time.Second)
		if err := s.Purge(ctx); err != nil {
			t.Fatal(err)
		}
		done()
		if n := rows(); n != "0" {
			t.Fatalf("%s rows after Purge, want 0", n)
		}
	})
}

// fakeDB answers the statements of New.
type fakeDB struct{ engine, settings string }

func (f fakeDB) Exec(_ context.Context, sql string) (string, error) {
	switch {
	case strings.HasPrefix(sql, "SELECT engine"):
		return f.engine + "\n", nil
	case strings.HasPrefix(sql, "SELECT name, value FROM system.settings"):
		return f.settings, nil
	}
	return "", fmt.Errorf("unexpected %q", sql)
}

func TestEngines(t *testing.T) {
	const consistent = "insert_quorum\t2\ninsert_quorum_parallel\t0\nselect_sequential_consistency\t1\n"
	for _, tc := range []struct {
		engine, settings string
		ok               bool
	}{
		{"MergeTree", "", true},
		{"ReplicatedMergeTree", consistent, true},
		{"ReplicatedMergeTree", "insert_quorum\tauto\ninsert_quorum_parallel\t0\nselect_sequential_consistency\t1\n", true},
		{"ReplicatedMergeTree", "insert_quorum\t2\nselect_sequential_consistency\t1\n", true}, // 18.16: no insert_quorum_parallel
		{"ReplicatedMergeTree", "insert_quorum\t0\ninsert_quorum_parallel\t1\nselect_sequential_consistency\t0\n", false},
		{"ReplicatedMergeTree", "insert_quorum\t1\ninsert_quorum_parallel\t0\nselect_sequential_consistency\t1\n", false},
		{"ReplicatedMergeTree", "insert_quorum\t2\ninsert_quorum_parallel\t1\nselect_sequential_consistency\t1\n", false},
		{"ReplicatedMergeTree", "insert_quorum\t2\ninsert_quorum_parallel\t0\nselect_sequential_consistency\t0\n", false},
		{"SharedMergeTree", "insert_quorum\t0\ninsert_quorum_parallel\t1\nselect_sequential_consistency\t1\n", true},
		{"SharedMergeTree", "insert_quorum\t0\ninsert_quorum_parallel\t1\nselect_sequential_consistency\t0\n", false},
		{"ReplacingMergeTree", "", false},
		{"Distributed", consistent, false},
		{"KeeperMap", consistent, false},
	} {
		_, err := New(context.Background(), fakeDB{tc.engine, tc.settings}, "t", nil)
		if (err == nil) != tc.ok {
			t.Errorf("%s with %q: %v, want ok=%v", tc.engine, tc.settings, err, tc.ok)
		}
	}
}

// TestVerdict checks the contest rule on every interleaving
// of the claims and reads of up to five writers: exactly one wins once all
// views are published, and none waits then.
func TestVerdict(t *testing.T) {
	for n := 1; n <= 5; n++ {
		schedules := 0
		// next[w] is 0 before w's claim, 1 before its read, 2 after.
		next := make([]int, n)
		var committed []uint64
		seen := make(map[uint64][]uint64)
		var walk func()
		walk = func() {
			progressed := false
			for i := range n {
				w := uint64(i + 1)
				switch next[i] {
				case 0:
					next[i], committed = 1, append(committed, w)
					walk()
					next[i], committed = 0, committed[:len(committed)-1]
					progressed = true
				case 1:
					view := slices.Sorted(slices.Values(committed))
					next[i], seen[w] = 2, view
					walk()
					next[i] = 1
					delete(seen, w)
					progressed = true
				}
			}
			if progressed {
				return
			}
			schedules++
			winners := 0
			for w, view := range seen {
				won, waiting := verdict(w, view, seen)
				if waiting {
					t.Fatalf("writer %d waits with every view published: %v", w, seen)
				}
				if won {
					winners++
				}
			}
			if winners != 1 {
				t.Fatalf("%d winners with views %v", winners, seen)
			}
		}
		walk()
		t.Logf("%d writers: %d schedules", n, schedules)
	}
}
