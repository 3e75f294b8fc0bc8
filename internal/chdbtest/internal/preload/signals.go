package preload

import "github.com/clickgate/clickgate/internal/chdb/signals"

// SignalSet is the disposition of every signal, as the kernel reports it
// (Linux only; see package signals, which package chdb shares).
type SignalSet = signals.Set

func snapshotSignals() *SignalSet { return signals.Snapshot() }

// Snapshot reads the current disposition of every signal.
func Snapshot() *SignalSet { return signals.Snapshot() }
