package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Store errors.
var (
	// ErrReplay reports a one-time value (code, state, refresh token)
	// presented a second time.
	ErrReplay = errors.New("oauth: already used")
	// ErrRevoked reports a refresh-token family that was revoked or is
	// unknown.
	ErrRevoked = errors.New("oauth: revoked")
)

// Store remembers what sealing cannot: which one-time values were used,
// and the generation of each refresh-token family. Replicas share one.
type Store interface {
	// Use marks id as used until exp; ErrReplay if it was used before.
	Use(ctx context.Context, id string, exp time.Time) error
	// StartFamily records a new refresh-token family at generation 0,
	// unless the family was revoked already (a replayed code).
	StartFamily(ctx context.Context, family string, exp time.Time) error
	// Rotate advances family from gen to gen+1. If gen is not the current
	// generation, the family is revoked and ErrReplay returned; a revoked
	// or unknown family gives ErrRevoked.
	Rotate(ctx context.Context, family string, gen int) error
	// Revoke ends family (recording it until exp if it is unknown).
	Revoke(ctx context.Context, family string, exp time.Time) error
}

// record is one entry of a FileStore.
type record struct {
	Exp     int64 `json:"exp"`
	Gen     int   `json:"gen,omitempty"`
	Revoked bool  `json:"revoked,omitempty"`
}

// FileStore keeps its records in one JSON file, locked with flock(2) for
// every change, so that several processes on one host (or on a shared
// volume with working locks) may share it. Expired records are dropped on
// every write.
type FileStore struct {
	path string
	now  func() time.Time
	mu   sync.Mutex
}

// OpenFileStore opens (creating when missing, mode 0600) the store at path.
func OpenFileStore(path string, now func() time.Time) (*FileStore, error) {
	if now == nil {
		now = time.Now
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("oauth: store directory: %w", err)
	}
	s := &FileStore{path: path, now: now}
	// One read checks that the file is usable before the first sign-in.
	err := s.update(func(map[string]*record) error { return nil })
	return s, err
}

// update runs fn on the records under the file lock and writes them back.
func (s *FileStore) update(fn func(map[string]*record) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	lock, err := os.OpenFile(s.path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("oauth: store lock: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("oauth: store lock: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)

	recs := map[string]*record{}
	data, err := os.ReadFile(s.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("oauth: store: %w", err)
	case len(data) > 0:
		if err := json.Unmarshal(data, &recs); err != nil {
			return fmt.Errorf("oauth: store %s is damaged (%v); remove it to start afresh (everyone signs in again)", s.path, err)
		}
	}
	now := s.now().Unix()
	for k, r := range recs {
		if r == nil || r.Exp <= now {
			delete(recs, k)
		}
	}
	// A replay may revoke a family: that change is written before the
	// replay is reported.
	ferr := fn(recs)
	if ferr != nil && !errors.Is(ferr, ErrReplay) {
		return ferr
	}
	if err := s.write(recs); err != nil {
		return err
	}
	return ferr
}

func (s *FileStore) write(recs map[string]*record) error {
	data, err := json.Marshal(recs)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.path), ".broker-state-*")
	if err != nil {
		return fmt.Errorf("oauth: store: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("oauth: store: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("oauth: store: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("oauth: store: %w", err)
	}
	return nil
}

// Use implements Store.
func (s *FileStore) Use(_ context.Context, id string, exp time.Time) error {
	return s.update(func(recs map[string]*record) error {
		if recs["use:"+id] != nil {
			return ErrReplay
		}
		recs["use:"+id] = &record{Exp: exp.Unix()}
		return nil
	})
}

// StartFamily implements Store.
func (s *FileStore) StartFamily(_ context.Context, family string, exp time.Time) error {
	return s.update(func(recs map[string]*record) error {
		if r := recs["family:"+family]; r != nil {
			if r.Revoked {
				return ErrRevoked
			}
			return nil
		}
		recs["family:"+family] = &record{Exp: exp.Unix()}
		return nil
	})
}

// Rotate implements Store.
func (s *FileStore) Rotate(_ context.Context, family string, gen int) error {
	return s.update(func(recs map[string]*record) error {
		r := recs["family:"+family]
		switch {
		case r == nil || r.Revoked:
			return ErrRevoked
		case r.Gen != gen:
			r.Revoked = true
			return ErrReplay
		}
		r.Gen++
		return nil
	})
}

// Revoke implements Store.
func (s *FileStore) Revoke(_ context.Context, family string, exp time.Time) error {
	return s.update(func(recs map[string]*record) error {
		if r := recs["family:"+family]; r != nil {
			r.Revoked = true
			return nil
		}
		recs["family:"+family] = &record{Exp: exp.Unix(), Revoked: true}
		return nil
	})
}
