//go:build unix

package overlay

import (
	"net"
	"syscall"
)

// hasData reports whether bytes wait to be read on c, without reading them
// and without waiting: a connection its goroutine has not read from yet
// may already have sent its first handshake message.
func hasData(c *net.TCPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var n int
	var buf [1]byte
	// Control, not Read: Read would wait for the fd's read lock, which the
	// connection's own goroutine holds while it waits for data.
	_ = rc.Control(func(fd uintptr) {
		n, _, _ = syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	})
	return n > 0
}
