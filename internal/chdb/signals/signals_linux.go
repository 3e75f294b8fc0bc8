package signals

import (
	"syscall"
	"unsafe"
)

// numSignals is the number of signals Linux defines (1..64).
const numSignals = 64

// kernelSigaction is the kernel's struct sigaction for rt_sigaction(2) with an
// 8-byte signal set. It is copied back and forth unchanged, never interpreted,
// so its exact field layout (which differs a little between architectures)
// does not matter as long as it is at least as large as the kernel's.
type kernelSigaction struct {
	handler  uintptr
	flags    uint64
	restorer uintptr
	mask     uint64
}

// Set is the disposition of every signal, as the kernel reports it.
type Set struct {
	act [numSignals + 1]kernelSigaction
	ok  [numSignals + 1]bool
}

// Snapshot reads the current disposition of every signal.
func Snapshot() *Set {
	s := new(Set)
	for sig := 1; sig <= numSignals; sig++ {
		_, _, errno := syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, uintptr(sig), 0,
			uintptr(unsafe.Pointer(&s.act[sig])), 8, 0, 0)
		s.ok[sig] = errno == 0
	}
	return s
}

// Changed lists the signals whose disposition differs between s and now.
func (s *Set) Changed(now *Set) []int {
	var out []int
	for sig := 1; sig <= numSignals; sig++ {
		if s.ok[sig] && now.ok[sig] && s.act[sig] != now.act[sig] {
			out = append(out, sig)
		}
	}
	return out
}

// Restore puts back the recorded disposition of each signal in sigs.
func (s *Set) Restore(sigs []int) error {
	for _, sig := range sigs {
		if sig == int(syscall.SIGKILL) || sig == int(syscall.SIGSTOP) || !s.ok[sig] {
			continue
		}
		_, _, errno := syscall.RawSyscall6(syscall.SYS_RT_SIGACTION, uintptr(sig),
			uintptr(unsafe.Pointer(&s.act[sig])), 0, 8, 0, 0)
		if errno != 0 {
			return errno
		}
	}
	return nil
}
