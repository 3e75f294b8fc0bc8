package audit

import (
	"fmt"
	"io"
	"os"
)

// defaultMaxFiles is how many rotated files are kept when Options.MaxSize
// is set without Options.MaxFiles.
const defaultMaxFiles = 5

// fileSink appends lines to a file or a writer. The Log's mutex guards it.
type fileSink struct {
	w        io.Writer
	f        *os.File // nil for standard error and New's writers: never closed, never rotated
	path     string
	size     int64 // bytes in the current file
	maxSize  int64
	maxFiles int
	err      error // the last write's failure, for Ready
}

func openFileSink(path string, maxSize int64, maxFiles int) (*fileSink, error) {
	if path == "-" {
		return &fileSink{w: os.Stderr}, nil
	}
	if maxFiles <= 0 {
		maxFiles = defaultMaxFiles
	}
	s := &fileSink{path: path, maxSize: maxSize, maxFiles: maxFiles}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *fileSink) open() error {
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit.file: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("audit.file: %w", err)
	}
	if fi.IsDir() { // Linux opens no directory for writing, but be sure
		f.Close()
		return fmt.Errorf("audit.file: %s is a directory", s.path)
	}
	s.f, s.w, s.size, s.err = f, f, fi.Size(), nil
	return nil
}

// write appends one whole line, rotating first when the line would take
// the file past maxSize (a line longer than maxSize gets a file of its own).
func (s *fileSink) write(line []byte) error {
	if s.w == nil {
		s.err = errClosed
		return s.err
	}
	if s.f != nil && s.maxSize > 0 && s.size > 0 && s.size+int64(len(line)) > s.maxSize {
		if err := s.rotate(); err != nil {
			s.err = err
			return err
		}
	}
	n, err := s.w.Write(line)
	s.size += int64(n)
	s.err = err
	return err
}

// rotate renames path.N-1 → path.N, …, path → path.1 and opens a new path.
func (s *fileSink) rotate() error {
	if err := s.f.Close(); err != nil {
		return fmt.Errorf("audit.file: rotating: %w", err)
	}
	s.f, s.w = nil, nil
	for i := s.maxFiles - 1; i >= 1; i-- {
		from := fmt.Sprintf("%s.%d", s.path, i)
		if err := os.Rename(from, fmt.Sprintf("%s.%d", s.path, i+1)); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("audit.file: rotating: %w", err)
		}
	}
	if err := os.Rename(s.path, s.path+".1"); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("audit.file: rotating: %w", err)
	}
	return s.open()
}

// reopen opens path anew: logrotate may have moved the file away.
func (s *fileSink) reopen() error {
	if s.path == "" {
		return nil
	}
	if s.f != nil {
		s.f.Close()
		s.f, s.w = nil, nil
	}
	if err := s.open(); err != nil {
		s.err = err
		return err
	}
	return nil
}

func (s *fileSink) close() error {
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f, s.w = nil, nil
	return err
}
