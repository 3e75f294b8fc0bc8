//go:build !unix

package chproc

import "os/exec"

func setProcAttr(cmd *exec.Cmd) {}

// signalGroup ends the server; there are no process groups or SIGTERM here.
func signalGroup(cmd *exec.Cmd, kill bool) { _ = cmd.Process.Kill() }
