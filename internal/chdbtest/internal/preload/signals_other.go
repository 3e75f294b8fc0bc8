//go:build !linux

package preload

// SignalSet is empty where signal dispositions are not tracked.
type SignalSet struct{}

func snapshotSignals() *SignalSet { return nil }

// Snapshot returns nil: signal dispositions are tracked on Linux only.
func Snapshot() *SignalSet { return nil }

// Changed reports nothing.
func (s *SignalSet) Changed(now *SignalSet) []int { return nil }

// Restore does nothing.
func (s *SignalSet) Restore(sigs []int) error { return nil }
