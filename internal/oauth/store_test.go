package oauth

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
)

// Several FileStores on one file behave as one store: as replicas on one
// host (or processes sharing a volume) do.
func TestFileStoreSharedByInstances(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	ctx := context.Background()
	exp := time.Now().Add(time.Minute)
	const n = 20
	stores := make([]*FileStore, n)
	for i := range stores {
		s, err := OpenFileStore(path, nil)
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
			case errors.Is(err, ErrReplay), errors.Is(err, ErrRevoked):
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
	if err := stores[0].Rotate(ctx, "fam", 1); !errors.Is(err, ErrRevoked) {
		t.Fatalf("after replays: %v, want ErrRevoked", err)
	}
}

func TestFileStoreDropsExpiredRecords(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	s, err := OpenFileStore(filepath.Join(t.TempDir(), "state.json"), clock)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Use(ctx, "a", now.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := s.Use(ctx, "a", now.Add(time.Minute)); !errors.Is(err, ErrReplay) {
		t.Fatalf("second use: %v", err)
	}
	now = now.Add(2 * time.Minute)
	// Expired: the value itself has expired too, so a reuse is no longer
	// a replay the store must remember.
	if err := s.Use(ctx, "a", now.Add(time.Minute)); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
}

func TestFileStoreRefusesDamagedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	if err := os.WriteFile(path, []byte("{not json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenFileStore(path, nil); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("got %v", err)
	}
}

// BenchmarkFileStoreUse measures one Use with n records already in the
// file: the file is read and rewritten whole on every change.
func BenchmarkFileStoreUse(b *testing.B) {
	for _, n := range []int{100, 10000} {
		b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) {
			s, err := OpenFileStore(filepath.Join(b.TempDir(), "state.json"), nil)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			exp := time.Now().Add(time.Hour)
			if err := s.update(func(recs map[string]*record) error {
				for i := 0; i < n; i++ {
					recs[fmt.Sprintf("use:seed-%d", i)] = &record{Exp: exp.Unix()}
				}
				return nil
			}); err != nil {
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
