//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package login

import (
	"fmt"
	"os"
	"syscall"
	"time"
)

// lockWait is how long lockFile waits for another process's lock.
const lockWait = 30 * time.Second

// lockFile takes an exclusive lock on path (created if needed), so that
// two clickgate processes do not refresh the same sign-in at once (a
// rotated refresh token works only once). unlock releases it.
func lockFile(path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	for deadline := time.Now().Add(lockWait); ; time.Sleep(50 * time.Millisecond) {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if err != syscall.EWOULDBLOCK || time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("login: locking %s (another clickgate refreshing?): %w", path, err)
		}
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
