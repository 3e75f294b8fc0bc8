//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package login

// lockFile does not lock where flock is not available: two clickgate
// processes refreshing at the same moment may then spend a rotated refresh
// token twice, and the loser asks the person to sign in again.
func lockFile(string) (func(), error) { return func() {}, nil }
