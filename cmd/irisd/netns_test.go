package main

import (
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/iris-mesh/iris/internal/netns"
)

// TestHostsInNamespaces runs irisd on three hosts, each in a network
// namespace of its own on a private bridge, with the default (LAN) gossip
// settings and the default overlay port: membership across real
// interfaces, a host cut off the network (seen dead, then alive again when
// its link comes back), and a graceful leave.
func TestHostsInNamespaces(t *testing.T) {
	needBinary(t)
	if why := netns.Available(); why != "" {
		t.Skip(why)
	}
	nw := netns.New(t, 3)
	keyFile, _ := writeKey(t, t.TempDir(), "net.key")
	seed := nw.Hosts[0].IP
	var procs []*proc
	for i, h := range nw.Hosts {
		args := []string{"-net", "hosts", "-key", keyFile, "-node", h.Name,
			"-listen", h.IP + ":55556", "-status", h.IP + ":55580", "-relay", "0"}
		if i > 0 {
			args = append(args, "-join", seed) // the default port
		}
		p := startCmd(t, h.Command(irisdBin, args...), h.Name, h.IP+":55580", nil)
		p.client = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: h.Dial}}
		procs = append(procs, p)
	}
	ids := func(except int) []string {
		var out []string
		for i, h := range nw.Hosts {
			if i != except {
				out = append(out, h.Name)
			}
		}
		return out
	}
	for i, p := range procs {
		waitFor(t, 5*time.Second, p.name+" sees every host alive", func() bool { return p.sees(ids(i), "alive") })
	}

	// Cut host 3 off: the others see it fail; reconnected, it comes back.
	cut := nw.Hosts[2]
	cut.SetLink(false)
	for _, p := range procs[:2] {
		waitFor(t, 20*time.Second, p.name+" sees the cut host fail", func() bool {
			return p.sees([]string{cut.Name}, "suspect", "dead")
		})
	}
	cut.SetLink(true)
	for _, p := range procs[:2] {
		waitFor(t, 30*time.Second, p.name+" sees the host back", func() bool {
			return p.sees([]string{cut.Name}, "alive")
		})
	}

	// Host 2 leaves gracefully.
	procs[1].stop(t, syscall.SIGTERM)
	for _, i := range []int{0, 2} {
		waitFor(t, 10*time.Second, procs[i].name+" sees host 2 left", func() bool {
			return procs[i].sees([]string{nw.Hosts[1].Name}, "left")
		})
	}
}
