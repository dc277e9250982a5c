package daemon

import (
	"errors"
	"testing"
	"time"

	"github.com/iris-mesh/iris/internal/leakcheck"
	"github.com/iris-mesh/iris/overlay"
)

// TestDuplicateNodeIDRefused: a daemon started with a node id that is
// alive in the network stops itself with ErrNodeIDConflict, whichever
// daemon it joins through; the daemon that had the id keeps it and hears of
// the conflict.
func TestDuplicateNodeIDRefused(t *testing.T) {
	leakcheck.Check(t)
	key := newKey(t)
	a := startDaemon(t, testConfig(t, "a", "n", key))
	b := startDaemon(t, testConfig(t, "b", "n", key, a.Addr()))
	waitFor(t, 5*time.Second, "b joined", func() bool {
		p, ok := a.Overlay().Peer("b")
		return ok && p.State == overlay.StateAlive
	})
	for _, seed := range []*Daemon{a, b} {
		dup := startDaemon(t, testConfig(t, "a", "n", key, seed.Addr()))
		select {
		case <-dup.Failed():
		case <-time.After(10 * time.Second):
			t.Fatalf("duplicate joining through %s did not stop", seed.Overlay().ID())
		}
		if err := dup.Err(); !errors.Is(err, overlay.ErrNodeIDConflict) {
			t.Fatalf("Err = %v, want ErrNodeIDConflict", err)
		}
		t.Logf("duplicate joining through %s: %v", seed.Overlay().ID(), dup.Err())
	}
	// A data link the duplicate opened to b under a's id broke when it
	// stopped: b shows a suspect until its redial to a works, at once.
	waitFor(t, 5*time.Second, "b to see a alive at its own address", func() bool {
		p, ok := b.Overlay().Peer("a")
		return ok && p.State == overlay.StateAlive && p.Addr == a.Addr()
	})
	waitFor(t, 5*time.Second, "conflict seen by the daemon holding the id", func() bool {
		return a.Overlay().Stats().NodeIDConflicts > 0
	})
}
