//go:build linux

package chtest

import (
	"os/exec"
	"syscall"
)

// setProcAttr puts the server in its own process group and has the kernel kill
// it if the test binary dies without running its cleanups (a panic, a timeout).
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
