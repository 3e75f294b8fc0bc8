// Package filestore is a broker store (store.Store) in a file that the
// processes of one host share.
package filestore

import (
	"bytes"
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

	"github.com/clickgate/clickgate/internal/oauth/store"
)

// record is one entry of a Store: one line of its file.
type record struct {
	Key     string `json:"k"`
	Exp     int64  `json:"x"`
	Gen     int    `json:"g,omitempty"`
	Revoked bool   `json:"r,omitempty"`
}

// Store keeps its records as JSON lines appended to one file, locked
// with flock(2) for every change, so that several processes on one host
// (or on a shared volume with working locks) may share it. A later line
// for a key replaces the earlier ones. Each process keeps the records in
// memory and reads only what others appended since, so a change costs
// one short append however many records there are; the file is rewritten
// with the live records only when dead ones make up most of it.
type Store struct {
	path string
	now  func() time.Time

	mu     sync.Mutex
	recs   map[string]*record // as of offset
	info   os.FileInfo        // of the file as last read; nil before
	offset int64              // bytes read (whole lines)
}

// compactAfter is the file size from which a file mostly of dead records
// is rewritten.
const compactAfter = 256 << 10

// Open opens (creating when missing, mode 0600) the store at path.
func Open(path string, now func() time.Time) (*Store, error) {
	if now == nil {
		now = time.Now
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("oauth: store directory: %w", err)
	}
	s := &Store{path: path, now: now}
	// One read checks that the file is usable before the first sign-in.
	err := s.update(func(func(string) *record) ([]*record, error) { return nil, nil })
	return s, err
}

// update runs fn under the file lock with the current records (get
// returns nil for missing and expired ones) and appends the records fn
// returns as changed. A replay (store.ErrReplay) may come with changes, which
// are written before it is reported.
func (s *Store) update(fn func(get func(key string) *record) ([]*record, error)) error {
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

	if err := s.catchUp(); err != nil {
		return err
	}
	now := s.now().Unix()
	changed, ferr := fn(func(key string) *record {
		if r := s.recs[key]; r != nil && r.Exp > now {
			return r
		}
		return nil
	})
	if ferr != nil && !errors.Is(ferr, store.ErrReplay) {
		return ferr
	}
	if len(changed) > 0 {
		if err := s.append(changed); err != nil {
			return err
		}
	}
	if err := s.compact(now); err != nil {
		return err
	}
	return ferr
}

// catchUp reads what was appended since the last read, or the whole file
// when it was replaced (compacted by another process) or is new.
func (s *Store) catchUp() error {
	f, err := os.Open(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		s.recs, s.info, s.offset = map[string]*record{}, nil, 0
		return nil
	}
	if err != nil {
		return fmt.Errorf("oauth: store: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("oauth: store: %w", err)
	}
	if s.info == nil || !os.SameFile(info, s.info) || info.Size() < s.offset {
		s.recs, s.offset = map[string]*record{}, 0
	}
	if info.Size() == s.offset {
		s.info = info
		return nil
	}
	data := make([]byte, info.Size()-s.offset)
	if _, err := f.ReadAt(data, s.offset); err != nil {
		return fmt.Errorf("oauth: store: %w", err)
	}
	// Only whole lines count: a line cut short by a crash is left for the
	// next append to end.
	whole := bytes.LastIndexByte(data, '\n') + 1
	for _, line := range bytes.Split(data[:whole], []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var r record
		if err := json.Unmarshal(line, &r); err != nil {
			// A line cut short by a crash, ended by a later append: its
			// change was never reported as made.
			continue
		}
		if r.Key == "" {
			return fmt.Errorf("oauth: store %s is not a store of this clickgate (a line has no key); remove it to start afresh (everyone signs in again)", s.path)
		}
		s.recs[r.Key] = &r
	}
	s.offset += int64(whole)
	s.info = info
	return nil
}

// append writes recs as lines at the end of the file and takes them in.
func (s *Store) append(recs []*record) error {
	var buf bytes.Buffer
	if s.info != nil && s.info.Size() > s.offset {
		buf.WriteByte('\n') // ends a line cut short by a crash
	}
	for _, r := range recs {
		line, err := json.Marshal(r)
		if err != nil {
			return err
		}
		buf.Write(line)
		buf.WriteByte('\n')
	}
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("oauth: store: %w", err)
	}
	_, werr := f.Write(buf.Bytes())
	info, serr := f.Stat()
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = serr
	}
	if werr != nil {
		return fmt.Errorf("oauth: store: %w", werr)
	}
	for _, r := range recs {
		s.recs[r.Key] = r
	}
	s.info, s.offset = info, info.Size()
	return nil
}

// compact rewrites the file with the live records once dead lines (expired
// or replaced) make up most of a large file.
func (s *Store) compact(now int64) error {
	if s.offset < compactAfter {
		return nil
	}
	live := make([]*record, 0, len(s.recs))
	for _, r := range s.recs {
		if r.Exp > now {
			live = append(live, r)
		}
	}
	if int64(len(live))*64*4 > s.offset { // lines are about 64 bytes
		return nil
	}
	var buf bytes.Buffer
	for _, r := range live {
		line, err := json.Marshal(r)
		if err != nil {
			return err
		}
		buf.Write(line)
		buf.WriteByte('\n')
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.path), ".broker-state-*")
	if err != nil {
		return fmt.Errorf("oauth: store: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(buf.Bytes()); err != nil {
		tmp.Close()
		return fmt.Errorf("oauth: store: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("oauth: store: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("oauth: store: %w", err)
	}
	// Read back from the start: the index then matches the new file.
	s.info = nil
	return s.catchUp()
}

// Use implements store.Store.
func (s *Store) Use(_ context.Context, id string, exp time.Time) error {
	return s.update(func(get func(string) *record) ([]*record, error) {
		if get("use:"+id) != nil {
			return nil, store.ErrReplay
		}
		return []*record{{Key: "use:" + id, Exp: exp.Unix()}}, nil
	})
}

// StartFamily implements store.Store.
func (s *Store) StartFamily(_ context.Context, family string, exp time.Time) error {
	return s.update(func(get func(string) *record) ([]*record, error) {
		if r := get("family:" + family); r != nil {
			if r.Revoked {
				return nil, store.ErrRevoked
			}
			return nil, nil
		}
		return []*record{{Key: "family:" + family, Exp: exp.Unix()}}, nil
	})
}

// Rotate implements store.Store.
func (s *Store) Rotate(_ context.Context, family string, gen int) error {
	return s.update(func(get func(string) *record) ([]*record, error) {
		r := get("family:" + family)
		switch {
		case r == nil || r.Revoked:
			return nil, store.ErrRevoked
		case r.Gen != gen:
			return []*record{{Key: r.Key, Exp: r.Exp, Gen: r.Gen, Revoked: true}}, store.ErrReplay
		}
		return []*record{{Key: r.Key, Exp: r.Exp, Gen: r.Gen + 1}}, nil
	})
}

// Revoke implements store.Store.
func (s *Store) Revoke(_ context.Context, family string, exp time.Time) error {
	return s.update(func(get func(string) *record) ([]*record, error) {
		if r := get("family:" + family); r != nil {
			exp = time.Unix(r.Exp, 0)
		}
		return []*record{{Key: "family:" + family, Exp: exp.Unix(), Revoked: true}}, nil
	})
}
