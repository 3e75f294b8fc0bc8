//go:build !linux

package signals

// Set is empty where signal dispositions are not tracked.
type Set struct{}

// Snapshot returns nil: signal dispositions are tracked on Linux only.
func Snapshot() *Set { return nil }

// Changed reports nothing.
func (s *Set) Changed(now *Set) []int { return nil }

// Restore does nothing.
func (s *Set) Restore(sigs []int) error { return nil }
