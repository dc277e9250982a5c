package main

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/iris-mesh/iris/sdk"
)

// TestKillServingDaemonUnderLoad: three irisd processes; cluster "work" has
// two members on b (quick) and two on c (they hold what they get). A client
// on a keeps requests flowing; c is SIGKILLed. Every request is answered
// exactly once: those in flight to c with a fault within 2 s of the kill,
// the rest by b; none waits for its deadline.
func TestKillServingDaemonUnderLoad(t *testing.T) {
	needBinary(t)
	dir := t.TempDir()
	keyFile, _ := writeKey(t, dir, "net.key")
	type daemonProc struct {
		*proc
		relay string
	}
	var ds []daemonProc
	var seed string
	for _, name := range []string{"a", "b", "c"} {
		n := newNode(t, name)
		relay := freePort(t)
		args := n.args("-net", "kill", "-key", keyFile)
		for i, a := range args { // this test needs the relay
			if a == "-relay" {
				args[i+1] = relay
			}
		}
		if seed != "" {
			args = append(args, "-join", seed)
		} else {
			seed = n.listen
		}
		ds = append(ds, daemonProc{startIrisd(t, name, n.status, nil, args...), "127.0.0.1:" + relay})
	}
	a, b, c := ds[0], ds[1], ds[2]
	for _, d := range ds {
		waitFor(t, 5*time.Second, d.name+" sees all alive", func() bool {
			var others []string
			for _, o := range ds {
				if o.name != d.name {
					others = append(others, o.name)
				}
			}
			return d.sees(others, "alive")
		})
	}
	cfg := func(d daemonProc) *sdk.Config {
		sc := sdk.DefaultConfig()
		sc.Addr = d.relay
		return sc
	}
	dial := func(d daemonProc) {
		waitFor(t, 5*time.Second, d.name+"'s relay", func() bool {
			conn, err := net.Dial("tcp", d.relay)
			if err == nil {
				conn.Close()
			}
			return err == nil
		})
	}
	for _, d := range ds {
		dial(d)
	}
	hold := make(chan struct{})
	defer close(hold)
	var onC atomic.Int64
	quick := sdk.HandlerFunc(func(ctx context.Context, req []byte) ([]byte, error) { return append([]byte("b:"), req...), nil })
	holding := sdk.HandlerFunc(func(ctx context.Context, req []byte) ([]byte, error) {
		onC.Add(1)
		select {
		case <-hold:
		case <-ctx.Done():
		}
		return nil, errors.New("unreachable: c was killed")
	})
	for _, s := range []struct {
		d daemonProc
		h sdk.Handler
	}{{b, quick}, {b, quick}, {c, holding}, {c, holding}} {
		lim := sdk.DefaultServiceLimits()
		lim.RequestThreads = 64 // c's handlers hold on: let many be in flight
		svc, err := sdk.Register(context.Background(), cfg(s.d), "work", s.h, &lim)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { svc.Close() })
	}
	client, err := sdk.Connect(context.Background(), cfg(a))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	waitFor(t, 5*time.Second, "a to know the four members", func() bool {
		st, ok := a.getStatus()
		return ok && st.members("work") == 4
	})

	// Up to 512 requests in flight: c's members hold theirs, so the rest
	// must keep flowing to b.
	load := startLoad(client, "work", 512, 10*time.Second, func(req string, rep []byte) bool { return string(rep) == "b:"+req })
	waitFor(t, 10*time.Second, "requests in flight on c", func() bool { return onC.Load() >= 64 && load.ok.Load() >= 1000 })
	killed := time.Now()
	c.stop(t, syscall.SIGKILL)
	okAtKill := load.ok.Load()
	waitFor(t, 10*time.Second, "b to keep serving after the kill", func() bool { return load.ok.Load() >= okAtKill+2000 })
	load.finish()

	lastFault, faultText := load.lastFaultInfo()
	t.Logf("sent %d: %d answered by b, %d faults (last %v after the kill: %s), %d timeouts; %d were held on c",
		load.sent.Load(), load.ok.Load(), load.faults.Load(), lastFault.Sub(killed).Round(time.Millisecond), faultText, load.timeouts.Load(), onC.Load())
	if load.answered() != load.sent.Load() {
		t.Fatalf("%d requests sent, %d answered", load.sent.Load(), load.answered())
	}
	if load.timeouts.Load() != 0 {
		t.Fatalf("%d requests waited for their deadline", load.timeouts.Load())
	}
	if load.faults.Load() == 0 {
		t.Fatal("no request was in flight to c when it died")
	}
	if d := lastFault.Sub(killed); d > 2*time.Second {
		t.Fatalf("the last fault came %v after the kill, want within 2s", d)
	}
	if !strings.Contains(faultText, "iris:") {
		t.Fatalf("fault %q does not come from the daemon", faultText)
	}
}

// members counts the members of cluster in a status document.
func (st statusDoc) members(cluster string) int {
	n := 0
	for _, c := range st.Clusters {
		if c.Name == cluster {
			n += c.LocalMembers
			for _, m := range c.Remote {
				n += m
			}
		}
	}
	return n
}
