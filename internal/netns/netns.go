// Package netns builds throwaway multi-host networks for tests: each host
// is a Linux network namespace with one interface on a private bridge, and
// the bridge lives in a namespace of its own, so nothing is added to the
// machine's real network. Tests run programs inside a host with Command and
// open sockets inside it with Dial.
//
// Creating namespaces needs root and iproute2; New skips the test otherwise.
//
// Never dial a host's address from the test process's own namespace: the
// machine would route it to its real network. Use Host.Dial.
package netns

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// Net is a switch and the hosts plugged into it.
type Net struct {
	t       testing.TB
	prefix  string
	sw      string // the switch namespace
	Hosts   []*Host
	bridges int // bridges made by Partition besides br0
}

// Host is one namespace on the Net.
type Host struct {
	Name  string // namespace name
	IP    string // its address on the switch, 10.77.0.x
	net   *Net
	index int // 1-based
}

// Available reports why namespaces cannot be used here, or "" if they can.
func Available() string {
	if os.Geteuid() != 0 {
		return "network namespaces need root"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "network namespaces need iproute2 (ip)"
	}
	return ""
}

// New creates a switch and n hosts on 10.77.0.0/24 (hosts .1 to .n). The
// namespaces are removed when the test ends.
func New(t testing.TB, n int) *Net {
	t.Helper()
	if why := Available(); why != "" {
		t.Skip(why)
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	nw := &Net{t: t, prefix: "iris" + hex.EncodeToString(b[:])}
	nw.sw = nw.prefix + "sw"
	t.Cleanup(nw.destroy)
	nw.ip("netns", "add", nw.sw)
	nw.ip("-n", nw.sw, "link", "set", "lo", "up")
	nw.ip("-n", nw.sw, "link", "add", "br0", "type", "bridge")
	nw.ip("-n", nw.sw, "link", "set", "br0", "up")
	for i := 1; i <= n; i++ {
		h := &Host{Name: fmt.Sprintf("%sh%d", nw.prefix, i), IP: fmt.Sprintf("10.77.0.%d", i), net: nw, index: i}
		port := fmt.Sprintf("p%d", i)
		nw.ip("netns", "add", h.Name)
		nw.ip("-n", h.Name, "link", "set", "lo", "up")
		nw.ip("-n", nw.sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", h.Name)
		nw.ip("-n", nw.sw, "link", "set", port, "master", "br0")
		nw.ip("-n", nw.sw, "link", "set", port, "up")
		nw.ip("-n", h.Name, "addr", "add", h.IP+"/24", "dev", "eth0")
		nw.ip("-n", h.Name, "link", "set", "eth0", "up")
		nw.Hosts = append(nw.Hosts, h)
	}
	return nw
}

// Partition splits the switch: each group of hosts is plugged into a
// bridge of its own, so hosts reach only the hosts of their group, and
// packets to the others vanish without a word (no RST, no ICMP), as in a
// real partition. Hosts in no group are cut off from everyone. Heal
// undoes it. Everything happens inside the test's namespaces.
func (nw *Net) Partition(groups ...[]*Host) {
	nw.t.Helper()
	for len(groups) > nw.bridges {
		nw.bridges++
		br := fmt.Sprintf("br%d", nw.bridges)
		nw.ip("-n", nw.sw, "link", "add", br, "type", "bridge")
		nw.ip("-n", nw.sw, "link", "set", br, "up")
	}
	grouped := map[*Host]bool{}
	for i, g := range groups {
		for _, h := range g {
			grouped[h] = true
			nw.ip("-n", nw.sw, "link", "set", h.port(), "master", fmt.Sprintf("br%d", i+1))
		}
	}
	for _, h := range nw.Hosts {
		if !grouped[h] {
			nw.ip("-n", nw.sw, "link", "set", h.port(), "nomaster")
		}
	}
}

// Isolate cuts h off the switch without a word: its interface stays up,
// but what it sends goes nowhere and nothing reaches it. Heal undoes it.
func (nw *Net) Isolate(h *Host) {
	nw.t.Helper()
	nw.ip("-n", nw.sw, "link", "set", h.port(), "nomaster")
}

// Heal plugs every host back into the one switch.
func (nw *Net) Heal() {
	nw.t.Helper()
	for _, h := range nw.Hosts {
		nw.ip("-n", nw.sw, "link", "set", h.port(), "master", "br0")
	}
}

// port is the name of h's port on the switch.
func (h *Host) port() string { return fmt.Sprintf("p%d", h.index) }

func (nw *Net) ip(args ...string) {
	nw.t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		nw.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

func (nw *Net) destroy() {
	for _, h := range nw.Hosts {
		_ = exec.Command("ip", "netns", "del", h.Name).Run()
	}
	_ = exec.Command("ip", "netns", "del", nw.sw).Run()
}

// Command returns a command that runs inside the host's namespace.
func (h *Host) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", h.Name, name}, args...)...)
}

// SetLink brings the host's interface up or down: down cuts it off the
// switch (a partition, or a host that vanished without a word).
func (h *Host) SetLink(up bool) {
	state := "down"
	if up {
		state = "up"
	}
	h.net.ip("-n", h.Name, "link", "set", "eth0", state)
}

// Dial connects to addr from inside the host's namespace. The connection
// works from any goroutine afterwards: a socket stays in the namespace it
// was created in.
func (h *Host) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := h.do(func() error {
		var d net.Dialer
		var err error
		conn, err = d.DialContext(ctx, network, addr)
		return err
	})
	return conn, err
}

// do runs f on an OS thread switched into the host's namespace.
func (h *Host) do(f func() error) error {
	runtime.LockOSThread()
	// The thread is not unlocked on failure to switch back: the runtime then
	// retires it rather than reuse a thread in the wrong namespace.
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	target, err := os.Open("/run/netns/" + h.Name)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("netns: enter %s: %w", h.Name, err)
	}
	ferr := f()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("netns: leave %s: %w", h.Name, err)
	}
	runtime.UnlockOSThread()
	return ferr
}
