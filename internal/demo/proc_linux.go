//go:build linux

package demo

import (
	"os/exec"
	"syscall"
)

// setProcAttr puts the server in its own process group (a Ctrl-C in the
// terminal reaches clickgate only, which stops the server in order) and has
// the kernel kill it if clickgate dies without stopping it.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
