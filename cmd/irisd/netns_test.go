package main

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/iris-mesh/iris/internal/netns"
	"github.com/iris-mesh/iris/sdk"
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

// TestPartitionFaultsRequests: three hosts; cluster "work" has a member on
// host 2 (answers) and one on host 3 (holds what it gets). A client on
// host 1 keeps requests flowing with 60 s deadlines; host 3 is cut off the
// network without a word (no RST, unlike a killed process). The requests
// held on host 3 are faulted once failure detection gives up on it, long
// before their deadline, and every request is answered exactly once.
func TestPartitionFaultsRequests(t *testing.T) {
	needBinary(t)
	if why := netns.Available(); why != "" {
		t.Skip(why)
	}
	nw := netns.New(t, 3)
	keyFile, _ := writeKey(t, t.TempDir(), "net.key")
	var procs []*proc
	for i, h := range nw.Hosts {
		args := []string{"-net", "part", "-key", keyFile, "-node", h.Name,
			"-listen", h.IP + ":55556", "-status", "127.0.0.1:55580"}
		if i > 0 {
			args = append(args, "-join", nw.Hosts[0].IP)
		}
		p := startCmd(t, h.Command(irisdBin, args...), h.Name, "127.0.0.1:55580", nil)
		p.client = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: h.Dial}}
		procs = append(procs, p)
	}
	sdkCfg := func(h *netns.Host) *sdk.Config {
		c := sdk.DefaultConfig()
		c.Dial = h.Dial // the relay listens on the host's own loopback
		return c
	}
	for _, p := range procs {
		waitFor(t, 10*time.Second, p.name+"'s status", func() bool { _, ok := p.getStatus(); return ok })
	}
	ctx := context.Background()
	answer := sdk.HandlerFunc(func(ctx context.Context, req []byte) ([]byte, error) { return req, nil })
	hold := make(chan struct{})
	defer close(hold)
	var held atomic.Int64
	holding := sdk.HandlerFunc(func(ctx context.Context, req []byte) ([]byte, error) {
		held.Add(1)
		select {
		case <-hold:
		case <-ctx.Done():
		}
		return nil, errors.New("unreachable")
	})
	lim := sdk.DefaultServiceLimits()
	lim.RequestThreads = 64
	for _, s := range []struct {
		h  *netns.Host
		h2 sdk.Handler
	}{{nw.Hosts[1], answer}, {nw.Hosts[2], holding}} {
		svc, err := sdk.Register(ctx, sdkCfg(s.h), "work", s.h2, &lim)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { svc.Close() })
	}
	client, err := sdk.Connect(ctx, sdkCfg(nw.Hosts[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	waitFor(t, 10*time.Second, "host 1 to know both members", func() bool {
		st, ok := procs[0].getStatus()
		return ok && st.members("work") == 2
	})

	load := startLoad(client, "work", 256, 60*time.Second, nil)
	waitFor(t, 10*time.Second, "requests held on host 3", func() bool { return held.Load() >= 16 && load.ok.Load() >= 500 })
	cut := time.Now()
	nw.Hosts[2].SetLink(false)
	waitFor(t, 30*time.Second, "the held requests to be faulted", func() bool { return load.faults.Load() > 0 })
	faultedAfter := time.Since(cut)
	okAfter := load.ok.Load()
	waitFor(t, 10*time.Second, "host 2 to serve after the cut", func() bool { return load.ok.Load() >= okAfter+500 })
	load.finish()
	t.Logf("sent %d: %d answered, %d faulted (first %v after the cut), %d timed out",
		load.sent.Load(), load.ok.Load(), load.faults.Load(), faultedAfter.Round(time.Millisecond), load.timeouts.Load())
	if load.answered() != load.sent.Load() {
		t.Fatalf("%d requests sent, %d answered", load.sent.Load(), load.answered())
	}
	if load.timeouts.Load() != 0 {
		t.Fatalf("%d requests waited for their 60 s deadline", load.timeouts.Load())
	}
}
