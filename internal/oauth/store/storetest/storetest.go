// Package storetest is the contract every broker store (store.Store)
// keeps, as a suite its implementations run from their tests: Run, with a
// function that opens instances of the implementation on fresh state.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clickgate/clickgate/internal/oauth/store"
	"github.com/clickgate/clickgate/internal/testkit"
)

// NewClock returns the clock the instances of one test share: it stands
// at a fixed time until the test advances it.
func NewClock() *testkit.Clock { return testkit.NewClock(time.Unix(1_800_000_000, 0)) }

// clause is one clause of the Store contract. open returns another
// instance on the same state each time it is called, as another replica
// would hold.
type clause struct {
	name string
	run  func(t *testing.T, open func() store.Store, c *testkit.Clock)
}

// Want fails the test unless err is target (nil for success).
func Want(t *testing.T, what string, err, target error) {
	t.Helper()
	if target == nil && err != nil || target != nil && !errors.Is(err, target) {
		t.Fatalf("%s = %v, want %v", what, err, target)
	}
}

var contract = []clause{
	{"use once", func(t *testing.T, open func() store.Store, c *testkit.Clock) {
		ctx, a, b := context.Background(), open(), open()
		exp := c.Now().Add(time.Minute)
		Want(t, "Use", a.Use(ctx, "code:1", exp), nil)
		Want(t, "Use again", a.Use(ctx, "code:1", exp), store.ErrReplay)
		Want(t, "Use at another replica", b.Use(ctx, "code:1", exp), store.ErrReplay)
		Want(t, "Use of another id", b.Use(ctx, "code:2", exp), nil)
	}},
	{"use with hostile ids", func(t *testing.T, open func() store.Store, c *testkit.Clock) {
		ctx, s := context.Background(), open()
		exp := c.Now().Add(time.Minute)
		ids := []string{"a'", `a\'`, "a\\", "a`", "a\nb", "a\tb", "a\x00b", "a'); DROP TABLE x; --", "ünïcödé", strings.Repeat("é", 1000)}
		for _, id := range ids {
			Want(t, fmt.Sprintf("Use(%q)", id), s.Use(ctx, id, exp), nil)
		}
		for _, id := range ids {
			Want(t, fmt.Sprintf("Use(%q) again", id), s.Use(ctx, id, exp), store.ErrReplay)
		}
	}},
	{"use expires", func(t *testing.T, open func() store.Store, c *testkit.Clock) {
		ctx, s := context.Background(), open()
		Want(t, "Use", s.Use(ctx, "state:1", c.Now().Add(time.Minute)), nil)
		c.Advance(2 * time.Minute)
		Want(t, "Use after expiry", s.Use(ctx, "state:1", c.Now().Add(time.Minute)), nil)
		Want(t, "Use again", s.Use(ctx, "state:1", c.Now().Add(time.Minute)), store.ErrReplay)
	}},
	{"use already expired", func(t *testing.T, open func() store.Store, c *testkit.Clock) {
		ctx, s := context.Background(), open()
		Want(t, "Use", s.Use(ctx, "state:1", c.Now().Add(-time.Second)), nil)
		Want(t, "Use again", s.Use(ctx, "state:1", c.Now().Add(-time.Second)), nil)
	}},
	{"rotation", func(t *testing.T, open func() store.Store, c *testkit.Clock) {
		ctx, a, b := context.Background(), open(), open()
		Want(t, "StartFamily", a.StartFamily(ctx, "f", c.Now().Add(time.Hour)), nil)
		for gen := range 4 {
			s := []store.Store{a, b}[gen%2]
			Want(t, fmt.Sprintf("Rotate(%d)", gen), s.Rotate(ctx, "f", gen), nil)
		}
	}},
	{"replayed refresh token revokes the family", func(t *testing.T, open func() store.Store, c *testkit.Clock) {
		ctx, a, b := context.Background(), open(), open()
		Want(t, "StartFamily", a.StartFamily(ctx, "f", c.Now().Add(time.Hour)), nil)
		Want(t, "Rotate(0)", a.Rotate(ctx, "f", 0), nil)
		Want(t, "Rotate(1)", a.Rotate(ctx, "f", 1), nil)
		Want(t, "Rotate(0) replayed", b.Rotate(ctx, "f", 0), store.ErrReplay)
		Want(t, "Rotate(2) of the revoked family", a.Rotate(ctx, "f", 2), store.ErrRevoked)
	}},
	{"generation never issued revokes the family", func(t *testing.T, open func() store.Store, c *testkit.Clock) {
		ctx, s := context.Background(), open()
		Want(t, "StartFamily", s.StartFamily(ctx, "f", c.Now().Add(time.Hour)), nil)
		Want(t, "Rotate(3)", s.Rotate(ctx, "f", 3), store.ErrReplay)
		Want(t, "Rotate(0)", s.Rotate(ctx, "f", 0), store.ErrRevoked)
	}},
	{"unknown family", func(t *testing.T, open func() store.Store, c *testkit.Clock) {
		Want(t, "Rotate(0)", open().Rotate(context.Background(), "nobody", 0), store.ErrRevoked)
	}},
	{"start twice", func(t *testing.T, open func() store.Store, c *testkit.Clock) {
		ctx, a, b := context.Background(), open(), open()
		Want(t, "StartFamily", a.StartFamily(ctx, "f", c.Now().Add(time.Hour)), nil)
		Want(t, "StartFamily again", b.StartFamily(ctx, "f", c.Now().Add(time.Hour)), nil)
		Want(t, "Rotate(0)", a.Rotate(ctx, "f", 0), nil)
	}},
	{"revoke", func(t *testing.T, open func() store.Store, c *testkit.Clock) {
		ctx, a, b := context.Background(), open(), open()
		Want(t, "StartFamily", a.StartFamily(ctx, "f", c.Now().Add(time.Hour)), nil)
		Want(t, "Rotate(0)", a.Rotate(ctx, "f", 0), nil)
		Want(t, "Revoke", b.Revoke(ctx, "f", c.Now().Add(time.Hour)), nil)
		Want(t, "Rotate(1)", a.Rotate(ctx, "f", 1), store.ErrRevoked)
		Want(t, "StartFamily", a.StartFamily(ctx, "f", c.Now().Add(time.Hour)), store.ErrRevoked)
	}},
	{"revoke before start (a replayed code)", func(t *testing.T, open func() store.Store, c *testkit.Clock) {
		ctx, a, b := context.Background(), open(), open()
		Want(t, "Revoke", b.Revoke(ctx, "f", c.Now().Add(time.Hour)), nil)
		Want(t, "StartFamily", a.StartFamily(ctx, "f", c.Now().Add(time.Hour)), store.ErrRevoked)
		Want(t, "Rotate(0)", a.Rotate(ctx, "f", 0), store.ErrRevoked)
	}},
	{"revocation lasts as long as the family", func(t *testing.T, open func() store.Store, c *testkit.Clock) {
		ctx, s := context.Background(), open()
		Want(t, "StartFamily", s.StartFamily(ctx, "f", c.Now().Add(2*time.Hour)), nil)
		Want(t, "Revoke", s.Revoke(ctx, "f", c.Now().Add(time.Hour)), nil)
		c.Advance(90 * time.Minute)
		Want(t, "Rotate(0)", s.Rotate(ctx, "f", 0), store.ErrRevoked)
		Want(t, "StartFamily", s.StartFamily(ctx, "f", c.Now().Add(time.Hour)), store.ErrRevoked)
	}},
	{"revoked family stays revoked past a later start", func(t *testing.T, open func() store.Store, c *testkit.Clock) {
		ctx, a, b := context.Background(), open(), open()
		Want(t, "Revoke", b.Revoke(ctx, "f", c.Now().Add(time.Hour)), nil)
		Want(t, "StartFamily", a.StartFamily(ctx, "f", c.Now().Add(2*time.Hour)), store.ErrRevoked)
		c.Advance(90 * time.Minute)
		Want(t, "Rotate(0)", a.Rotate(ctx, "f", 0), store.ErrRevoked)
	}},
	{"revocation of an unknown family ends", func(t *testing.T, open func() store.Store, c *testkit.Clock) {
		ctx, s := context.Background(), open()
		Want(t, "Revoke", s.Revoke(ctx, "f", c.Now().Add(time.Hour)), nil)
		c.Advance(2 * time.Hour)
		Want(t, "StartFamily", s.StartFamily(ctx, "f", c.Now().Add(time.Hour)), nil)
	}},
	{"family expires", func(t *testing.T, open func() store.Store, c *testkit.Clock) {
		ctx, s := context.Background(), open()
		Want(t, "StartFamily", s.StartFamily(ctx, "f", c.Now().Add(time.Hour)), nil)
		Want(t, "Rotate(0)", s.Rotate(ctx, "f", 0), nil)
		c.Advance(2 * time.Hour)
		Want(t, "Rotate(1) after expiry", s.Rotate(ctx, "f", 1), store.ErrRevoked)
		Want(t, "StartFamily anew", s.StartFamily(ctx, "f", c.Now().Add(time.Hour)), nil)
		Want(t, "Rotate(0) anew", s.Rotate(ctx, "f", 0), nil)
	}},
	{"concurrent use at 20 replicas", func(t *testing.T, open func() store.Store, c *testkit.Clock) {
		errs := race(open, func(s store.Store) error {
			return s.Use(context.Background(), "code:raced", c.Now().Add(time.Minute))
		})
		if n := count(errs, nil); n != 1 {
			t.Fatalf("%d calls succeeded, want 1: %v", n, errs)
		}
		if n := count(errs, store.ErrReplay); n != len(errs)-1 {
			t.Fatalf("%d calls were replays, want %d: %v", n, len(errs)-1, errs)
		}
	}},
	{"concurrent rotation at 20 replicas", func(t *testing.T, open func() store.Store, c *testkit.Clock) {
		ctx := context.Background()
		Want(t, "StartFamily", open().StartFamily(ctx, "f", c.Now().Add(time.Hour)), nil)
		errs := race(open, func(s store.Store) error { return s.Rotate(ctx, "f", 0) })
		// filestore, serializing, says ErrReplay to the second call and
		// ErrRevoked to the later ones; chstore says ErrReplay.
		if n := count(errs, nil); n != 1 {
			t.Fatalf("%d calls succeeded, want 1: %v", n, errs)
		}
		if n, m := count(errs, store.ErrReplay), count(errs, store.ErrRevoked); n == 0 || n+m != len(errs)-1 {
			t.Fatalf("%d replays and %d revoked, want at least one replay and %d in all: %v", n, m, len(errs)-1, errs)
		}
		s := open()
		Want(t, "Rotate(1) by the winner", s.Rotate(ctx, "f", 1), store.ErrRevoked)
		if err := s.Rotate(ctx, "f", 0); !errors.Is(err, store.ErrReplay) && !errors.Is(err, store.ErrRevoked) {
			t.Fatalf("Rotate(0) once more = %v, want a refusal", err)
		}
	}},
}

const racers = 20

// race runs call at racers instances of one store at once.
func race(open func() store.Store, call func(store.Store) error) []error {
	stores := make([]store.Store, racers)
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

// Run runs the store.Store contract, a subtest per clause. newStore
// makes fresh state for one clause, reading the clock now, and returns how
// to open an instance on it: each call another instance on the same
// state, as another replica would hold.
func Run(t *testing.T, newStore func(t *testing.T, now func() time.Time) (open func() store.Store)) {
	for _, tc := range contract {
		t.Run(tc.name, func(t *testing.T) {
			c := NewClock()
			tc.run(t, newStore(t, c.Now), c)
		})
	}
}
