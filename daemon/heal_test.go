package daemon

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iris-mesh/iris/internal/leakcheck"
)

// seqSubscriber records the sequence numbers of the events it receives.
type seqSubscriber struct {
	mu   sync.Mutex
	seqs []uint64
}

func (s *seqSubscriber) HandleEvent(_ string, event []byte) {
	n, _ := strconv.ParseUint(string(event), 10, 64)
	s.mu.Lock()
	s.seqs = append(s.seqs, n)
	s.mu.Unlock()
}

func (s *seqSubscriber) snapshot() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint64(nil), s.seqs...)
}

// TestRestartedSubscriberGetsNoStaleEvents: a publisher on a keeps
// publishing while the subscriber's daemon b crashes and comes back under
// the same node id and address. The new subscriber on b sees none of the
// events published while b was down (they used to wait in a's queue for b
// and reach the new daemon when a's redial succeeded).
func TestRestartedSubscriberGetsNoStaleEvents(t *testing.T) {
	leakcheck.Check(t)
	key := newKey(t)
	a := startDaemon(t, testConfig(t, "a", "stale", key))
	bcfg := testConfig(t, "b", "stale", key, a.Addr())
	b := startDaemon(t, bcfg)
	old := new(seqSubscriber)
	if _, err := b.Cluster().Subscribe("events", old); err != nil {
		t.Fatal(err)
	}

	var seq atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			a.Cluster().Publish("events", []byte(strconv.FormatUint(seq.Add(1), 10)))
		}
	})
	defer func() { close(stop); wg.Wait() }()
	waitFor(t, 10*time.Second, "events to reach b", func() bool { return len(old.snapshot()) >= 50 })

	b.Close() // a crash: no leave
	down := seq.Load()
	waitFor(t, 5*time.Second, "a to publish while b is down", func() bool { return seq.Load() >= down+200 })
	bcfg2 := testConfig(t, "b", "stale", key, a.Addr())
	bcfg2.Listen = b.Addr()
	restarted := seq.Load()
	b2 := startDaemon(t, bcfg2)
	fresh := new(seqSubscriber)
	if _, err := b2.Cluster().Subscribe("events", fresh); err != nil {
		t.Fatal(err)
	}
	subscribed := seq.Load()
	waitFor(t, 10*time.Second, "events published after the subscription to reach the new b", func() bool {
		for _, s := range fresh.snapshot() {
			if s > subscribed+50 {
				return true
			}
		}
		return false
	})
	stale, late := 0, 0
	for _, s := range fresh.snapshot() {
		switch {
		case s <= restarted:
			stale++
		case s <= subscribed:
			late++ // published while b restarted, before it subscribed
		}
	}
	t.Logf("b was down for events %d..%d; the new subscriber got %d of them, and %d published before it subscribed",
		down+1, restarted, stale, late)
	if stale > 0 {
		t.Fatalf("the restarted subscriber got %d events published while its daemon was down", stale)
	}
}
