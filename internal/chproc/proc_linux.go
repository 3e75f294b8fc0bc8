//go:build linux

package chproc

import (
	"os/exec"
	"syscall"
)

// setProcAttr puts the server in its own process group (a Ctrl-C in the
// terminal reaches only the program that started it, which stops it in
// order) and has the kernel kill it if that program dies without stopping
// it (a panic, a test timeout).
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
