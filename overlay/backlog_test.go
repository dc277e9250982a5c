package overlay

import (
	"testing"
	"testing/synctest"
)

// TestWaitBacklog checks the pushback of a backlogged peer: WaitBacklog
// waits until the writer drains the queues under half the mark, and a peer
// that keeps a caller waiting MaxSendWait is slow (nobody waits) until it
// drains.
func TestWaitBacklog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.SendQueueLen = 8 // backlogged at 4 bulk frames
		o := &Overlay{cfg: *cfg, peers: map[string]*peer{}}
		p := newPeer(o, "x", "")
		o.peers["x"] = p
		o.setViewLocked()
		for range 3 {
			if err := p.enqueue(Bulk, qframe{body: []byte("f")}, false); err != nil {
				t.Fatal(err)
			}
		}
		if o.WaitBacklog("x") || o.WaitBacklog("nobody") {
			t.Fatal("waited under the mark")
		}
		p.enqueue(Bulk, qframe{body: []byte("f")}, false)
		done := make(chan bool, 1)
		go func() { done <- o.WaitBacklog("x") }()
		synctest.Wait()
		p.poll() // 3 left: not under half the mark yet
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("released above half the mark")
		default:
		}
		p.poll()
		p.poll() // 1 left
		if !<-done || p.backlogSlow {
			t.Fatal("WaitBacklog did not report its wait")
		}
		// Nobody drains: one wait of MaxSendWait, then none.
		for range 3 {
			p.enqueue(Bulk, qframe{body: []byte("f")}, false)
		}
		if !o.WaitBacklog("x") {
			t.Fatal("did not wait")
		}
		if o.WaitBacklog("x") {
			t.Fatal("a slow peer made a caller wait again")
		}
		p.drop()
		if p.backlogSlow || p.backlogCh != nil || p.queuedBytes.Load() != 0 {
			t.Fatal("a drained peer still backlogged")
		}
	})
}
