package devidp

import "time"

// SetKeyCheckInterval changes how often a running provider looks at its key
// file, for tests that rotate keys through the file.
func SetKeyCheckInterval(d time.Duration) (restore func()) {
	old := keyCheckInterval
	keyCheckInterval = d
	return func() { keyCheckInterval = old }
}
