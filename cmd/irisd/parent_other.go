//go:build !linux

package main

import "syscall"

// exitWithParent does nothing on this system: a dev node outlives the
// process that started it (build the binary rather than `go run` it).
func exitWithParent(syscall.Signal) (orphaned bool, err error) { return false, nil }
