package main

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// exitWithParent asks the kernel to send sig to this process when its
// parent exits (PR_SET_PDEATHSIG). orphaned reports that the parent had
// already gone before the request took effect.
func exitWithParent(sig syscall.Signal) (orphaned bool, err error) {
	ppid := os.Getppid()
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(sig), 0, 0, 0); err != nil {
		return false, os.NewSyscallError("prctl(PR_SET_PDEATHSIG)", err)
	}
	return os.Getppid() != ppid, nil
}
