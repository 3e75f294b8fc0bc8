package oauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clickgate/clickgate/internal/chtest"
	"github.com/clickgate/clickgate/internal/clickhouse"
)

// clock is a settable clock shared by the instances of one test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1_800_000_000, 0)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// storeCase is one clause of the Store contract. open returns another
// instance on the same state each time it is called, as another replica
// would hold.
type storeCase struct {
	name string
	run  func(t *testing.T, open func() Store, c *clock)
}

// want fails the test unless err is target (nil for success).
func want(t *testing.T, what string, err, target error) {
	t.Helper()
	if target == nil && err != nil || target != nil && !errors.Is(err, target) {
		t.Fatalf("%s = %v, want %v", what, err, target)
	}
}

var storeContract = []storeCase{
	{"use once", func(t *testing.T, open func() Store, c *clock) {
		ctx, a, b := context.Background(), open(), open()
		exp := c.now().Add(time.Minute)
		want(t, "Use", a.Use(ctx, "code:1", exp), nil)
		want(t, "Use again", a.Use(ctx, "code:1", exp), ErrReplay)
		want(t, "Use at another replica", b.Use(ctx, "code:1", exp), ErrReplay)
		want(t, "Use of another id", b.Use(ctx, "code:2", exp), nil)
	}},
	{"use with hostile ids", func(t *testing.T, open func() Store, c *clock) {
		ctx, s := context.Background(), open()
		exp := c.now().Add(time.Minute)
		ids := []string{"a'", `a\'`, "a\\", "a`", "a\nb", "a\tb", "a\x00b", "a'); DROP TABLE x; --", "ünïcödé", strings.Repeat("é", 1000)}
		for _, id := range ids {
			want(t, fmt.Sprintf("Use(%q)", id), s.Use(ctx, id, exp), nil)
		}
		for _, id := range ids {
			want(t, fmt.Sprintf("Use(%q) again", id), s.Use(ctx, id, exp), ErrReplay)
		}
	}},
	{"use expires", func(t *testing.T, open func() Store, c *clock) {
		ctx, s := context.Background(), open()
		want(t, "Use", s.Use(ctx, "state:1", c.now().Add(time.Minute)), nil)
		c.add(2 * time.Minute)
		want(t, "Use after expiry", s.Use(ctx, "state:1", c.now().Add(time.Minute)), nil)
		want(t, "Use again", s.Use(ctx, "state:1", c.now().Add(time.Minute)), ErrReplay)
	}},
	{"use already expired", func(t *testing.T, open func() Store, c *clock) {
		ctx, s := context.Background(), open()
		want(t, "Use", s.Use(ctx, "state:1", c.now().Add(-time.Second)), nil)
		want(t, "Use again", s.Use(ctx, "state:1", c.now().Add(-time.Second)), nil)
	}},
	{"rotation", func(t *testing.T, open func() Store, c *clock) {
		ctx, a, b := context.Background(), open(), open()
		want(t, "StartFamily", a.StartFamily(ctx, "f", c.now().Add(time.Hour)), nil)
		for gen := range 4 {
			s := []Store{a, b}[gen%2]
			want(t, fmt.Sprintf("Rotate(%d)", gen), s.Rotate(ctx, "f", gen), nil)
		}
	}},
	{"replayed refresh token revokes the family", func(t *testing.T, open func() Store, c *clock) {
		ctx, a, b := context.Background(), open(), open()
		want(t, "StartFamily", a.StartFamily(ctx, "f", c.now().Add(time.Hour)), nil)
		want(t, "Rotate(0)", a.Rotate(ctx, "f", 0), nil)
		want(t, "Rotate(1)", a.Rotate(ctx, "f", 1), nil)
		want(t, "Rotate(0) replayed", b.Rotate(ctx, "f", 0), ErrReplay)
		want(t, "Rotate(2) of the revoked family", a.Rotate(ctx, "f", 2), ErrRevoked)
	}},
	{"generation never issued revokes the family", func(t *testing.T, open func() Store, c *clock) {
		ctx, s := context.Background(), open()
		want(t, "StartFamily", s.StartFamily(ctx, "f", c.now().Add(time.Hour)), nil)
		want(t, "Rotate(3)", s.Rotate(ctx, "f", 3), ErrReplay)
		want(t, "Rotate(0)", s.Rotate(ctx, "f", 0), ErrRevoked)
	}},
	{"unknown family", func(t *testing.T, open func() Store, c *clock) {
		want(t, "Rotate(0)", open().Rotate(context.Background(), "nobody", 0), ErrRevoked)
	}},
	{"start twice", func(t *testing.T, open func() Store, c *clock) {
		ctx, a, b := context.Background(), open(), open()
		want(t, "StartFamily", a.StartFamily(ctx, "f", c.now().Add(time.Hour)), nil)
		want(t, "StartFamily again", b.StartFamily(ctx, "f", c.now().Add(time.Hour)), nil)
		want(t, "Rotate(0)", a.Rotate(ctx, "f", 0), nil)
	}},
	{"revoke", func(t *testing.T, open func() Store, c *clock) {
		ctx, a, b := context.Background(), open(), open()
		want(t, "StartFamily", a.StartFamily(ctx, "f", c.now().Add(time.Hour)), nil)
		want(t, "Rotate(0)", a.Rotate(ctx, "f", 0), nil)
		want(t, "Revoke", b.Revoke(ctx, "f", c.now().Add(time.Hour)), nil)
		want(t, "Rotate(1)", a.Rotate(ctx, "f", 1), ErrRevoked)
		want(t, "StartFamily", a.StartFamily(ctx, "f", c.now().Add(time.Hour)), ErrRevoked)
	}},
	{"revoke before start (a replayed code)", func(t *testing.T, open func() Store, c *clock) {
		ctx, a, b := context.Background(), open(), open()
		want(t, "Revoke", b.Revoke(ctx, "f", c.now().Add(time.Hour)), nil)
		want(t, "StartFamily", a.StartFamily(ctx, "f", c.now().Add(time.Hour)), ErrRevoked)
		want(t, "Rotate(0)", a.Rotate(ctx, "f", 0), ErrRevoked)
	}},
	{"revocation lasts as long as the family", func(t *testing.T, open func() Store, c *clock) {
		ctx, s := context.Background(), open()
		want(t, "StartFamily", s.StartFamily(ctx, "f", c.now().Add(2*time.Hour)), nil)
		want(t, "Revoke", s.Revoke(ctx, "f", c.now().Add(time.Hour)), nil)
		c.add(90 * time.Minute)
		want(t, "Rotate(0)", s.Rotate(ctx, "f", 0), ErrRevoked)
		want(t, "StartFamily", s.StartFamily(ctx, "f", c.now().Add(time.Hour)), ErrRevoked)
	}},
	{"revoked family stays revoked past a later start", func(t *testing.T, open func() Store, c *clock) {
		ctx, a, b := context.Background(), open(), open()
		want(t, "Revoke", b.Revoke(ctx, "f", c.now().Add(time.Hour)), nil)
		want(t, "StartFamily", a.StartFamily(ctx, "f", c.now().Add(2*time.Hour)), ErrRevoked)
		c.add(90 * time.Minute)
		want(t, "Rotate(0)", a.Rotate(ctx, "f", 0), ErrRevoked)
	}},
	{"revocation of an unknown family ends", func(t *testing.T, open func() Store, c *clock) {
		ctx, s := context.Background(), open()
		want(t, "Revoke", s.Revoke(ctx, "f", c.now().Add(time.Hour)), nil)
		c.add(2 * time.Hour)
		want(t, "StartFamily", s.StartFamily(ctx, "f", c.now().Add(time.Hour)), nil)
	}},
	{"family expires", func(t *testing.T, open func() Store, c *clock) {
		ctx, s := context.Background(), open()
		want(t, "StartFamily", s.StartFamily(ctx, "f", c.now().Add(time.Hour)), nil)
		want(t, "Rotate(0)", s.Rotate(ctx, "f", 0), nil)
		c.add(2 * time.Hour)
		want(t, "Rotate(1) after expiry", s.Rotate(ctx, "f", 1), ErrRevoked)
		want(t, "StartFamily anew", s.StartFamily(ctx, "f", c.now().Add(time.Hour)), nil)
		want(t, "Rotate(0) anew", s.Rotate(ctx, "f", 0), nil)
	}},
	{"concurrent use at 20 replicas", func(t *testing.T, open func() Store, c *clock) {
		errs := race(open, func(s Store) error {
			return s.Use(context.Background(), "code:raced", c.now().Add(time.Minute))
		})
		if n := count(errs, nil); n != 1 {
			t.Fatalf("%d calls succeeded, want 1: %v", n, errs)
		}
		if n := count(errs, ErrReplay); n != len(errs)-1 {
			t.Fatalf("%d calls were replays, want %d: %v", n, len(errs)-1, errs)
		}
	}},
	{"concurrent rotation at 20 replicas", func(t *testing.T, open func() Store, c *clock) {
		ctx := context.Background()
		want(t, "StartFamily", open().StartFamily(ctx, "f", c.now().Add(time.Hour)), nil)
		errs := race(open, func(s Store) error { return s.Rotate(ctx, "f", 0) })
		// FileStore, serializing, says ErrReplay to the second call and
		// ErrRevoked to the later ones; ClickHouseStore says ErrReplay.
		if n := count(errs, nil); n != 1 {
			t.Fatalf("%d calls succeeded, want 1: %v", n, errs)
		}
		if n, m := count(errs, ErrReplay), count(errs, ErrRevoked); n == 0 || n+m != len(errs)-1 {
			t.Fatalf("%d replays and %d revoked, want at least one replay and %d in all: %v", n, m, len(errs)-1, errs)
		}
		s := open()
		want(t, "Rotate(1) by the winner", s.Rotate(ctx, "f", 1), ErrRevoked)
		if err := s.Rotate(ctx, "f", 0); !errors.Is(err, ErrReplay) && !errors.Is(err, ErrRevoked) {
			t.Fatalf("Rotate(0) once more = %v, want a refusal", err)
		}
	}},
}

const racers = 20

// race runs call at racers instances of one store at once.
func race(open func() Store, call func(Store) error) []error {
	stores := make([]Store, racers)
	for i := range stores {
		stores[i] = open()
	}
	errs := make([]error, racers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Go(func() {
			<-start
			errs[i] = call(s)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// count returns how many of errs are target (nil for success).
func count(errs []error, target error) int {
	n := 0
	for _, err := range errs {
		if err == nil && target == nil || target != nil && errors.Is(err, target) {
			n++
		}
	}
	return n
}

// testStore runs the Store contract. newStore makes fresh state for one
// case, reading the clock now, and returns how to open an instance on it.
func testStore(t *testing.T, newStore func(t *testing.T, now func() time.Time) (open func() Store)) {
	for _, tc := range storeContract {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			tc.run(t, newStore(t, c.now), c)
		})
	}
}

func TestFileStoreContract(t *testing.T) {
	testStore(t, func(t *testing.T, now func() time.Time) func() Store {
		path := filepath.Join(t.TempDir(), "broker-state.json")
		return func() Store {
			s, err := OpenFileStore(path, now)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
	})
}

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

func openCH(t *testing.T, db Exec, table string, now func() time.Time) *ClickHouseStore {
	t.Helper()
	s, err := NewClickHouseStore(context.Background(), db, table, now)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestClickHouseStore(t *testing.T) {
	db := chServer(t)
	testStore(t, func(t *testing.T, now func() time.Time) func() Store {
		table := newTable()
		return func() Store { return openCH(t, db, table, now) }
	})

	t.Run("table names", func(t *testing.T) {
		ctx, c := context.Background(), newClock()
		for _, table := range []string{"oauth state `x`", "default.oauth'state"} {
			s := openCH(t, db, table, c.now)
			want(t, "Use", s.Use(ctx, "a", c.now().Add(time.Minute)), nil)
			want(t, "Use again", openCH(t, db, table, c.now).Use(ctx, "a", c.now().Add(time.Minute)), ErrReplay)
		}
		if _, err := db.Exec(ctx, "CREATE TABLE default.oauth_log (key String) ENGINE = Log"); err != nil {
			t.Fatal(err)
		}
		if _, err := NewClickHouseStore(ctx, db, "default.oauth_log", c.now); err == nil || !strings.Contains(err.Error(), "is a Log") {
			t.Fatalf("NewClickHouseStore on a Log table: %v", err)
		}
	})

	t.Run("silent claimant", func(t *testing.T) {
		// A replica that claimed and stopped before publishing its view
		// may have won: the others lose, after viewWait if its id is
		// larger than theirs.
		ctx, c, table := context.Background(), newClock(), newTable()
		s := openCH(t, db, table, c.now)
		for _, w := range []uint64{0, 1<<64 - 1} {
			id := fmt.Sprintf("code:%d", w)
			if err := s.insert(ctx, "use:"+id, kindClaim, 0, w, nil, fmt.Sprintf("toDateTime(%d)", c.now().Add(time.Minute).Unix())); err != nil {
				t.Fatal(err)
			}
			t0 := time.Now()
			want(t, "Use after a silent claim by "+id, s.Use(ctx, id, c.now().Add(time.Minute)), ErrReplay)
			if w != 0 && time.Since(t0) < viewWait-pollMax {
				t.Errorf("lost after %v, before viewWait", time.Since(t0))
			}
		}
	})

	t.Run("rows and purge", func(t *testing.T) {
		ctx, c, table := context.Background(), newClock(), newTable()
		s := openCH(t, db, table, c.now)
		rows := func() string {
			t.Helper()
			n, err := db.Exec(ctx, "SELECT count() FROM "+table)
			if err != nil {
				t.Fatal(err)
			}
			return strings.TrimSpace(n)
		}
		// A sign-in and a refresh, as the broker makes them.
		want(t, "Use(state)", s.Use(ctx, "state:s", c.now().Add(10*time.Minute)), nil)
		want(t, "Use(code)", s.Use(ctx, "code:c", c.now().Add(time.Minute)), nil)
		want(t, "StartFamily", s.StartFamily(ctx, "c", c.now().Add(24*time.Hour)), nil)
		if n := rows(); n != "5" {
			t.Errorf("a sign-in wrote %s rows, want 5", n)
		}
		want(t, "Rotate(0)", s.Rotate(ctx, "c", 0), nil)
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
		c.add(24*time.Hour + purgeMargin)
		if err := s.Purge(ctx); err != nil {
			t.Fatal(err)
		}
		done()
		// The Use rows expired over an hour ago, the family's just an hour ago.
		if n := rows(); n != "3" {
			t.Fatalf("%s rows after the first purge, want the family's 3", n)
		}
		c.add(time.Second)
		if err := s.Purge(ctx); err != nil {
			t.Fatal(err)
		}
		done()
		if n := rows(); n != "0" {
			t.Fatalf("%s rows after Purge, want 0", n)
		}
	})
}

// fakeDB answers the statements of NewClickHouseStore.
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

func TestClickHouseStoreEngines(t *testing.T) {
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
		_, err := NewClickHouseStore(context.Background(), fakeDB{tc.engine, tc.settings}, "t", nil)
		if (err == nil) != tc.ok {
			t.Errorf("%s with %q: %v, want ok=%v", tc.engine, tc.settings, err, tc.ok)
		}
	}
}

// TestClickHouseStoreVerdict checks the contest rule on every interleaving
// of the claims and reads of up to five writers: exactly one wins once all
// views are published, and none waits then.
func TestClickHouseStoreVerdict(t *testing.T) {
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
