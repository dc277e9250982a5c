package overlay

import (
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// TestProbeFindsSilentPeerFast: with frames outstanding on a link that
// stops carrying bytes, the peer is avoided (suspect) and the link closed
// long before KeepaliveTimeout; with the path back, a new link makes the
// peer alive again.
func TestProbeFindsSilentPeerFast(t *testing.T) {
	keep := func(c *Config) {
		c.KeepaliveInterval = 100 * time.Millisecond
		c.KeepaliveTimeout = 20 * time.Second // only the probe can close it in time
		c.LinkQuietTimeout = 150 * time.Millisecond
		c.LinkProbeTimeout = 300 * time.Millisecond
	}
	tapA, tapB := newTap(t), newTap(t)
	a := newTestNode(t, "test-net", testKey, func(c *Config) { keep(c); c.AdvertiseAddr = tapA.addr() })
	b := newTestNode(t, "test-net", testKey, func(c *Config) { keep(c); c.AdvertiseAddr = tapB.addr() })
	tapA.start(a.tr.tcp.Addr().String())
	tapB.start(b.tr.tcp.Addr().String())
	if _, err := a.Join([]string{tapB.addr()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "join", func() bool {
		p, ok := a.Peer(b.ID())
		return ok && p.State == StateAlive
	})
	if err := a.Send(b.ID(), Bulk, nil, []byte("x")); err != nil {
		t.Fatal(err)
	}
	recvN(t, b, 1)

	tapA.freeze()
	tapB.freeze()
	thawed := false
	defer func() {
		if !thawed { // a failed wait must not leave the taps' pipes blocked
			tapA.thaw()
			tapB.thaw()
		}
	}()
	frozen := time.Now()
	if err := a.Send(b.ID(), Bulk, nil, []byte("lost")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a to avoid b", func() bool {
		st, _ := a.rec.peerState(b.ID())
		return st == StateSuspect
	})
	waitFor(t, 10*time.Second, "a to close the silent link", func() bool {
		a.rec.mu.Lock()
		defer a.rec.mu.Unlock()
		return a.rec.linkDowns[b.ID()] > 0
	})
	if d := time.Since(frozen); d >= 20*time.Second {
		t.Fatalf("the link closed %v after the path froze: by the keepalive, not the probe", d)
	}
	t.Logf("suspect and link closed %v after the path froze", time.Since(frozen).Round(time.Millisecond))
	// A down peer gets no events queued for a later link.
	if err := a.SendIfUp(b.ID(), Bulk, nil, []byte("stale")); err != ErrPeerDown {
		t.Fatalf("SendIfUp to a down peer: %v, want ErrPeerDown", err)
	}
	tapA.thaw()
	tapB.thaw()
	thawed = true
	waitFor(t, 10*time.Second, "b alive again after a new link", func() bool {
		p, _ := a.Peer(b.ID())
		st, _ := a.rec.peerState(b.ID())
		return p.State == StateAlive && st == StateAlive
	})
	waitFor(t, 10*time.Second, "a frame over the new link", func() bool {
		_ = a.Send(b.ID(), Bulk, nil, []byte("again"))
		select {
		case f := <-b.rec.frames:
			return string(f.payload) == "again"
		case <-time.After(50 * time.Millisecond):
			return false
		}
	})
}

// TestDeadVerdictHeldWhileLinkLive: a dead verdict from gossip about a peer
// whose data link works is held: the link stays and the delegate hears
// nothing; the peer's refutation (alive again) cancels it. Without one,
// the verdict is applied once the grace runs out.
func TestDeadVerdictHeldWhileLinkLive(t *testing.T) {
	nodes := startNodes(t, 2)
	a, b := nodes[0], nodes[1]
	if err := a.Send(b.ID(), Bulk, nil, []byte("x")); err != nil {
		t.Fatal(err)
	}
	recvN(t, b, 1)
	node := func() *memberlist.Node {
		for _, m := range a.ml.Members() {
			if m.Name == b.ID() {
				c := *m
				return &c
			}
		}
		t.Fatal("b is not a member")
		return nil
	}
	ev := (*mlEvents)(a.Overlay)

	// A stale verdict, refuted.
	ev.NotifyLeave(node())
	if p, _ := a.Peer(b.ID()); p.State != StateAlive {
		t.Fatalf("b is %v right after a held dead verdict, want alive", p.State)
	}
	ev.NotifyJoin(node()) // the refutation
	if err := a.Send(b.ID(), Bulk, nil, []byte("still")); err != nil {
		t.Fatalf("Send after a refuted verdict: %v", err)
	}
	if f := recvN(t, b, 1); string(f[0].payload) != "still" {
		t.Fatalf("got %q", f[0].payload)
	}
	a.rec.mu.Lock()
	downs := a.rec.linkDowns[b.ID()]
	a.rec.mu.Unlock()
	if downs != 0 {
		t.Fatal("the link to b went down over a refuted verdict")
	}

	// A verdict nobody refutes is applied after the grace.
	held := time.Now()
	ev.NotifyLeave(node())
	waitFor(t, 10*time.Second, "the verdict to be applied", func() bool {
		st, _ := a.rec.peerState(b.ID())
		return st == StateDead
	})
	if d := time.Since(held); d < a.deadGrace()/2 {
		t.Fatalf("the verdict was applied after %v, before the grace of %v", d, a.deadGrace())
	}
}
