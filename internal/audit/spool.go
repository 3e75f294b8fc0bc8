package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// spool is a directory of batches that ClickHouse has not taken yet: one
// file per batch, the events as JSON lines (the file sink's format, so a
// spool survives a ClickHouse upgrade), named
// <19-digit stamp>-<batch id>.jsonl. Stamps grow strictly, across
// processes too (a new process starts above the newest file), so the
// lexical order of the names is the order of the batches. A file appears
// only whole and fsync'd (written as .tmp, then renamed).
type spool struct {
	dir string
	max int64

	mu    sync.Mutex
	files int
	bytes int64
	last  int64 // the newest stamp given out
	err   error // the last put's failure, until a put succeeds or space is freed
}

const spoolExt = ".jsonl"

var errSpoolFull = errors.New("the spool is full")

func openSpool(dir string, max int64) (*spool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("audit.clickhouse.spool_dir: %w", err)
	}
	s := &spool{dir: dir, max: max}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("audit.clickhouse.spool_dir: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, ".tmp") { // a write cut short by a crash: never renamed, never complete
			_ = os.Remove(filepath.Join(dir, name))
			continue
		}
		stamp, _, ok := parseSpoolName(name)
		if !ok {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		s.files++
		s.bytes += fi.Size()
		s.last = max64(s.last, stamp)
	}
	return s, nil
}

func max64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}

func parseSpoolName(name string) (stamp int64, id string, ok bool) {
	base, found := strings.CutSuffix(name, spoolExt)
	if !found || len(base) < 21 || base[19] != '-' {
		return 0, "", false
	}
	stamp, err := strconv.ParseInt(base[:19], 10, 64)
	if err != nil {
		return 0, "", false
	}
	return stamp, base[20:], true
}

// stamp returns a stamp above every earlier one: the time in nanoseconds,
// unless the clock went back.
func (s *spool) stamp() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = max64(time.Now().UnixNano(), s.last+1)
	return s.last
}

// put writes b as one file, unless that would take the spool past max.
func (s *spool) put(b *batch) error {
	var data []byte
	for _, r := range b.events {
		line, _ := json.Marshal(r) // only strings, numbers and a list
		data = append(append(data, line...), '\n')
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bytes+int64(len(data)) > s.max {
		s.err = fmt.Errorf("%w (%d of %d bytes)", errSpoolFull, s.bytes, s.max)
		return s.err
	}
	name := fmt.Sprintf("%019d-%s%s", b.stamp, b.id, spoolExt)
	if err := writeFileSync(s.dir, name, data); err != nil {
		s.err = err
		return err
	}
	s.files++
	s.bytes += int64(len(data))
	s.err = nil
	return nil
}

func writeFileSync(dir, name string, data []byte) error {
	tmp := filepath.Join(dir, name+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	// The rename is durable once the directory is synced.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// oldest returns the names of the n oldest batches, oldest first.
func (s *spool) oldest(n int) ([]string, error) {
	entries, err := os.ReadDir(s.dir) // sorted by name
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if _, _, ok := parseSpoolName(e.Name()); ok {
			names = append(names, e.Name())
			if len(names) == n {
				break
			}
		}
	}
	return names, nil
}

// read returns the batch in the file name.
func (s *spool) read(name string) ([]byte, error) {
	return os.ReadFile(filepath.Join(s.dir, name))
}

// remove deletes a batch that ClickHouse took.
func (s *spool) remove(name string, size int64) error {
	err := os.Remove(filepath.Join(s.dir, name))
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil || os.IsNotExist(err) {
		s.files--
		s.bytes -= size
		s.err = nil
		return nil
	}
	return err
}

func (s *spool) size() (int, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.files, s.bytes
}

// writable returns why a batch could not be spooled now, or nil.
func (s *spool) writable() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	if s.bytes >= s.max {
		return fmt.Errorf("%w (%d of %d bytes)", errSpoolFull, s.bytes, s.max)
	}
	return nil
}
