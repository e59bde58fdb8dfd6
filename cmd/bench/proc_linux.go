package main

import (
	"os/exec"
	"syscall"
)

// dieWithParent makes the child get SIGKILL when this process ends, however
// it ends, so that no nats-server or worker outlives a killed benchmark.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
