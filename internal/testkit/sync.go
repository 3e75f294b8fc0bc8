package testkit

import (
	"bytes"
	"sync"
)

// SyncBuffer is a bytes.Buffer that may be written and read by several
// goroutines at once, such as a process's output or a server's log being
// written while the test reads it. The zero value is an empty buffer ready
// to use.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p to the buffer. It never fails.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what has been written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
