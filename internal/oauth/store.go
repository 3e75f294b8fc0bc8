package oauth

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

// record is one entry of a FileStore: one line of its file.
type record struct {
	Key     string `json:"k"`
	Exp     int64  `json:"x"`
	Gen     int    `json:"g,omitempty"`
	Revoked bool   `json:"r,omitempty"`
}

// FileStore keeps its records as JSON lines appended to one file, locked
// with flock(2) for every change, so that several processes on one host
// (or on a shared volume with working locks) may share it. A later line
// for a key replaces the earlier ones. Each process keeps the records in
// memory and reads only what others appended since, so a change costs
// one short append however many records there are; the file is rewritten
// with the live records only when dead ones make up most of it.
type FileStore struct {
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
	err := s.update(func(func(string) *record) ([]*record, error) { return nil, nil })
	return s, err
}

// update runs fn under the file lock with the current records (get
// returns nil for missing and expired ones) and appends the records fn
// returns as changed. A replay (ErrReplay) may come with changes, which
// are written before it is reported.
func (s *FileStore) update(fn func(get func(key string) *record) ([]*record, error)) error {
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
	if ferr != nil && !errors.Is(ferr, ErrReplay) {
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
func (s *FileStore) catchUp() error {
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
func (s *FileStore) append(recs []*record) error {
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
func (s *FileStore) compact(now int64) error {
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

// Use implements Store.
func (s *FileStore) Use(_ context.Context, id string, exp time.Time) error {
	return s.update(func(get func(string) *record) ([]*record, error) {
		if get("use:"+id) != nil {
			return nil, ErrReplay
		}
		return []*record{{Key: "use:" + id, Exp: exp.Unix()}}, nil
	})
}

// StartFamily implements Store.
func (s *FileStore) StartFamily(_ context.Context, family string, exp time.Time) error {
	return s.update(func(get func(string) *record) ([]*record, error) {
		if r := get("family:" + family); r != nil {
			if r.Revoked {
				return nil, ErrRevoked
			}
			return nil, nil
		}
		return []*record{{Key: "family:" + family, Exp: exp.Unix()}}, nil
	})
}

// Rotate implements Store.
func (s *FileStore) Rotate(_ context.Context, family string, gen int) error {
	return s.update(func(get func(string) *record) ([]*record, error) {
		r := get("family:" + family)
		switch {
		case r == nil || r.Revoked:
			return nil, ErrRevoked
		case r.Gen != gen:
			return []*record{{Key: r.Key, Exp: r.Exp, Gen: r.Gen, Revoked: true}}, ErrReplay
		}
		return []*record{{Key: r.Key, Exp: r.Exp, Gen: r.Gen + 1}}, nil
	})
}

// Revoke implements Store.
func (s *FileStore) Revoke(_ context.Context, family string, exp time.Time) error {
	return s.update(func(get func(string) *record) ([]*record, error) {
		if r := get("family:" + family); r != nil {
			exp = time.Unix(r.Exp, 0)
		}
		return []*record{{Key: "family:" + family, Exp: exp.Unix(), Revoked: true}}, nil
	})
}
