package daemon

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iris-mesh/iris/cluster"
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

// slowMember answers every request after a short while, on a goroutine of
// its own, counting what it answers.
type slowMember struct {
	wg       sync.WaitGroup
	answered atomic.Int64
}

func (m *slowMember) HandleRequest(r *cluster.Request) bool {
	m.wg.Go(func() {
		work := time.NewTimer(5 * time.Millisecond)
		defer work.Stop()
		<-work.C
		m.answered.Add(1)
		r.Reply(r.Payload)
	})
	return true
}

func (m *slowMember) HandleBroadcast([]byte) {}

// TestShutdownDrainsUnderLoad: cluster "work" has a member on b and one on
// c; a keeps 32 requests in flight. b shuts down gracefully: peers stop
// sending it work, the requests its member holds are answered, and no
// request fails.
func TestShutdownDrainsUnderLoad(t *testing.T) {
	leakcheck.Check(t)
	key := newKey(t)
	a := startDaemon(t, testConfig(t, "a", "drain", key))
	b := startDaemon(t, testConfig(t, "b", "drain", key, a.Addr()))
	c := startDaemon(t, testConfig(t, "c", "drain", key, a.Addr()))
	mb, mc := new(slowMember), new(slowMember)
	defer mb.wg.Wait()
	defer mc.wg.Wait()
	for _, x := range []struct {
		d *Daemon
		m *slowMember
	}{{b, mb}, {c, mc}} {
		if _, err := x.d.Cluster().Register("work", x.m, 0); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "a to know both members", func() bool {
		cs := a.Cluster().Clusters()
		return len(cs) == 1 && len(cs[0].Remote) == 2
	})

	var sent, ok, failed atomic.Int64
	var mu sync.Mutex
	var faults []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			case sem <- struct{}{}:
			}
			sent.Add(1)
			wg.Add(1)
			a.Cluster().Request("work", []byte("x"), 10*time.Second, func(res cluster.Result) {
				defer wg.Done()
				if res.Status == cluster.StatusOK {
					ok.Add(1)
				} else {
					failed.Add(1)
					mu.Lock()
					faults = append(faults, res.Fault)
					mu.Unlock()
				}
				<-sem
			})
		}
	})
	waitFor(t, 10*time.Second, "b to serve", func() bool { return mb.answered.Load() >= 200 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := b.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	base := mc.answered.Load()
	waitFor(t, 10*time.Second, "c to serve after b left", func() bool { return mc.answered.Load() >= base+200 })
	close(stop)
	wg.Wait()
	t.Logf("b drained and left in %v; %d requests sent, %d ok, %d failed %v", took.Round(time.Millisecond),
		sent.Load(), ok.Load(), failed.Load(), faults)
	if ok.Load()+failed.Load() != sent.Load() {
		t.Fatalf("%d requests sent, %d answered", sent.Load(), ok.Load()+failed.Load())
	}
	if failed.Load() != 0 {
		t.Fatalf("%d requests failed across a graceful shutdown: %v", failed.Load(), faults)
	}
}

// TestRejoinsDeadMembersAddress: a knows b, which crashes; a daemon that
// knows no seed comes up at b's address. Nobody is told to join anybody,
// yet they find each other: a keeps trying the last known address of its
// dead member.
func TestRejoinsDeadMembersAddress(t *testing.T) {
	leakcheck.Check(t)
	key := newKey(t)
	a := startDaemon(t, testConfig(t, "a", "rejoin", key))
	b := startDaemon(t, testConfig(t, "b", "rejoin", key, a.Addr()))
	sc := newStatusClient(t)
	waitFor(t, 10*time.Second, "a to see b", func() bool { return sc.peerStates(a)["b"] == "alive" })
	b.Close()
	waitFor(t, 20*time.Second, "a to see b dead", func() bool { return sc.peerStates(a)["b"] == "dead" })
	cfg := testConfig(t, "b2", "rejoin", key) // no seeds
	cfg.Listen = b.Addr()
	b2 := startDaemon(t, cfg)
	start := time.Now()
	waitFor(t, 20*time.Second, "a and b2 to find each other", func() bool {
		return sc.peerStates(a)["b2"] == "alive" && sc.peerStates(b2)["a"] == "alive"
	})
	t.Logf("a found the daemon at its dead member's address in %v", time.Since(start).Round(time.Millisecond))
}
