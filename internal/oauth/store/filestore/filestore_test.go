package filestore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clickgate/clickgate/internal/oauth/store"
	"github.com/clickgate/clickgate/internal/oauth/store/storetest"
)

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T, now func() time.Time) func() store.Store {
		path := filepath.Join(t.TempDir(), "broker-state.json")
		return func() store.Store {
			s, err := Open(path, now)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
	})
}

// Several Stores on one file behave as one store: as replicas on one
// host (or processes sharing a volume) do.
func TestSharedByInstances(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	ctx := context.Background()
	exp := time.Now().Add(time.Minute)
	const n = 20
	stores := make([]*Store, n)
	for i := range stores {
		s, err := Open(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		stores[i] = s
	}
	if err := stores[0].StartFamily(ctx, "fam", exp); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	useErrs := make([]error, n)
	rotateErrs := make([]error, n)
	for i := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			useErrs[i] = stores[i].Use(ctx, "code", exp)
			rotateErrs[i] = stores[i].Rotate(ctx, "fam", 0)
		}()
	}
	wg.Wait()
	count := func(errs []error) (ok, replay int) {
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, store.ErrReplay), errors.Is(err, store.ErrRevoked):
				replay++
			default:
				t.Fatalf("unexpected error %v", err)
			}
		}
		return
	}
	if ok, replay := count(useErrs); ok != 1 || replay != n-1 {
		t.Fatalf("Use: %d first, %d replays; want 1 and %d", ok, replay, n-1)
	}
	if ok, _ := count(rotateErrs); ok != 1 {
		t.Fatalf("Rotate(0): %d succeeded, want 1", ok)
	}
	// The concurrent replays revoked the family.
	if err := stores[0].Rotate(ctx, "fam", 1); !errors.Is(err, store.ErrRevoked) {
		t.Fatalf("after replays: %v, want store.ErrRevoked", err)
	}
}

func TestDropsExpiredRecords(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	s, err := Open(filepath.Join(t.TempDir(), "state.json"), clock)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Use(ctx, "a", now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.Use(ctx, "a", now.Add(time.Minute)); !errors.Is(err, store.ErrReplay) {
		t.Fatalf("second use: %v", err)
	}
	now = now.Add(2 * time.Minute)
	// Expired: the value itself has expired too, so a reuse is no longer
	// a replay the store must remember.
	if err := s.Use(ctx, "a", now.Add(time.Minute)); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
}

func TestRefusesDamagedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	if err := os.WriteFile(path, []byte(`{"use:x":{"exp":1}}`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(path, nil); err == nil || !strings.Contains(err.Error(), "remove it to start afresh") {
		t.Fatalf("got %v", err)
	}
}

// A line cut short by a crash is not read, and the next append ends it
// first.
func TestToleratesACutLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	exp := time.Now().Add(time.Hour).Unix()
	if err := os.WriteFile(path, []byte(fmt.Sprintf(`{"k":"use:a","x":%d}`+"\n"+`{"k":"use:b","x":`, exp)), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Use(ctx, "a", time.Unix(exp, 0)); !errors.Is(err, store.ErrReplay) {
		t.Fatalf("a: %v", err)
	}
	if err := s.Use(ctx, "b", time.Unix(exp, 0)); err != nil {
		t.Fatalf("b: %v", err)
	}
	other, err := Open(path, nil)
	if err != nil {
		t.Fatalf("reopening after the cut line was ended: %v", err)
	}
	if err := other.Use(ctx, "b", time.Unix(exp, 0)); !errors.Is(err, store.ErrReplay) {
		t.Fatalf("b seen by another instance: %v", err)
	}
}

// Dead lines are compacted away; other instances notice the new file.
func TestCompacts(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	path := filepath.Join(t.TempDir(), "state.json")
	a, _ := Open(path, clock)
	b, _ := Open(path, clock)
	ctx := context.Background()
	for i := 0; i < 5000; i++ { // ~250 KiB of lines that expire
		if err := a.Use(ctx, fmt.Sprintf("short-%d", i), now.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Use(ctx, "kept", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Minute)
	for i := 0; i < 1000; i++ {
		if err := a.Use(ctx, fmt.Sprintf("later-%d", i), now.Add(time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	info, _ := os.Stat(path)
	if info.Size() >= compactAfter {
		t.Fatalf("file is %d bytes: not compacted", info.Size())
	}
	if err := b.Use(ctx, "kept", now.Add(time.Hour)); !errors.Is(err, store.ErrReplay) {
		t.Fatalf("after compaction another instance lost a live record: %v", err)
	}
	if err := b.Use(ctx, "short-1", now.Add(time.Hour)); err != nil {
		t.Fatalf("an expired record survived: %v", err)
	}
}

// BenchmarkUse measures one Use with n records already in the
// file (a Use appends one line; the index is in memory).
func BenchmarkUse(b *testing.B) {
	for _, n := range []int{100, 10000} {
		b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) {
			s, err := Open(filepath.Join(b.TempDir(), "state.json"), nil)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			exp := time.Now().Add(time.Hour)
			seed := make([]*record, n)
			for i := range seed {
				seed[i] = &record{Key: fmt.Sprintf("use:seed-%d", i), Exp: exp.Unix()}
			}
			if err := s.update(func(func(string) *record) ([]*record, error) { return seed, nil }); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := s.Use(ctx, fmt.Sprintf("bench-%d", i), exp); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
