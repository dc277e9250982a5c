package cluster

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/iris-mesh/iris/crypto"
	"github.com/iris-mesh/iris/overlay"
)

var testKey = crypto.Key{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32}

type testDaemon struct {
	*Node
	ov *overlay.Overlay
}

func newDaemon(t testing.TB, zone string, mod func(*Config)) *testDaemon {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Logger = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	if mod != nil {
		mod(cfg)
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	oc := overlay.DefaultConfig()
	oc.Network, oc.Key, oc.ListenAddr, oc.Zone = "cluster-test", testKey, "127.0.0.1:0", zone
	oc.Delegate = n
	oc.Gossip = overlay.LocalGossip()
	// All daemons share this process's CPU: on a loaded machine the
	// default 600 ms would close live links of starved peers. Silent
	// links are overlay's and the fault suite's to test.
	oc.LinkQuietTimeout, oc.LinkProbeTimeout = time.Second, 2*time.Second
	oc.Logger = cfg.Logger
	ov, err := overlay.New(oc)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(ov); err != nil {
		t.Fatal(err)
	}
	d := &testDaemon{n, ov}
	t.Cleanup(d.stop)
	return d
}

func (d *testDaemon) stop() {
	d.Node.Close()
	d.ov.Close()
}

func startDaemons(t testing.TB, zones ...string) []*testDaemon {
	t.Helper()
	ds := make([]*testDaemon, len(zones))
	for i, z := range zones {
		ds[i] = newDaemon(t, z, nil)
		if i > 0 {
			if _, err := ds[i].ov.Join([]string{ds[0].ov.Addr()}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return ds
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
}

// waitMembers waits until d sees want members of cluster in total.
func waitMembers(t *testing.T, d *testDaemon, cluster string, want int) {
	t.Helper()
	waitFor(t, 5*time.Second, fmt.Sprintf("%s sees %d members of %s", d.id, want, cluster), func() bool {
		got := 0
		for _, c := range d.Clusters() {
			if c.Name == cluster {
				got = c.LocalMembers
				for _, n := range c.Remote {
					got += n
				}
			}
		}
		return got == want
	})
}

// echoMember answers every request with its name and the payload, from a
// worker goroutine. When hold is set it keeps requests unanswered.
type echoMember struct {
	name   string
	queue  chan *Request
	served atomic.Int64
	hold   atomic.Bool
	casts  chan []byte
	wg     sync.WaitGroup
	stop   chan struct{}
}

func newEchoMember(t *testing.T, name string) *echoMember {
	m := &echoMember{name: name, queue: make(chan *Request, 1<<14), casts: make(chan []byte, 1<<14), stop: make(chan struct{})}
	m.wg.Go(func() {
		for {
			select {
			case r := <-m.queue:
				if m.hold.Load() {
					continue
				}
				m.served.Add(1)
				r.Reply(append([]byte(m.name+":"), r.Payload...))
			case <-m.stop:
				return
			}
		}
	})
	t.Cleanup(func() { close(m.stop); m.wg.Wait() })
	return m
}

func (m *echoMember) HandleRequest(r *Request) bool {
	select {
	case m.queue <- r:
		return true
	default:
		return false
	}
}

func (m *echoMember) HandleBroadcast(msg []byte) { m.casts <- msg }

func register(t *testing.T, d *testDaemon, cluster string, m Member) *Registration {
	t.Helper()
	reg, err := d.Register(cluster, m, 0)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// call sends one request and waits for its result.
func call(d *testDaemon, cluster, payload string, timeout time.Duration) Result {
	ch := make(chan Result, 2)
	d.Request(cluster, []byte(payload), timeout, func(r Result) { ch <- r })
	res := <-ch
	select {
	case extra := <-ch:
		panic(fmt.Sprintf("second answer: %+v", extra))
	default:
	}
	return res
}

func TestLocalRequest(t *testing.T) {
	d := startDaemons(t, "")[0]
	register(t, d, "echo", newEchoMember(t, "m1"))
	res := call(d, "echo", "hi", time.Second)
	if res.Status != StatusOK || string(res.Payload) != "m1:hi" {
		t.Fatalf("got %+v", res)
	}
}

func TestEmptyClusterTimesOutAtDeadline(t *testing.T) {
	d := startDaemons(t, "")[0]
	start := time.Now()
	res := call(d, "nobody", "hi", 150*time.Millisecond)
	el := time.Since(start)
	if res.Status != StatusTimeout {
		t.Fatalf("got %+v", res)
	}
	// Not before the deadline; after it, only as late as a busy machine
	// makes it. TestDeadlinesOnAFakeClock checks the exact instant.
	if el < 150*time.Millisecond || el > 150*time.Millisecond+3*time.Second {
		t.Fatalf("timed out after %v, want 150ms (plus scheduling delay)", el)
	}
}

func TestFaultsAndEmptyFault(t *testing.T) {
	ds := startDaemons(t, "", "")
	a, b := ds[0], ds[1]
	faulty := &funcMember{f: func(r *Request) { r.Fail("boom") }}
	silent := &funcMember{f: func(r *Request) { r.Fail("") }}
	register(t, b, "faulty", faulty)
	register(t, b, "silent", silent)
	waitMembers(t, a, "faulty", 1)
	waitMembers(t, a, "silent", 1)
	if res := call(a, "faulty", "x", time.Second); res.Status != StatusFault || res.Fault != "boom" {
		t.Fatalf("faulty: %+v", res)
	}
	if res := call(a, "silent", "x", time.Second); res.Status != StatusTimeout {
		t.Fatalf("silent: %+v", res)
	}
}

type funcMember struct{ f func(*Request) }

func (m *funcMember) HandleRequest(r *Request) bool { go m.f(r); return true }
func (m *funcMember) HandleBroadcast([]byte)        {}

func TestBalancingAcrossDaemons(t *testing.T) {
	ds := startDaemons(t, "", "", "")
	a, b, c := ds[0], ds[1], ds[2]
	members := []*echoMember{
		newEchoMember(t, "b1"), newEchoMember(t, "b2"),
		newEchoMember(t, "c1"), newEchoMember(t, "c2"),
	}
	register(t, b, "echo", members[0])
	register(t, b, "echo", members[1])
	register(t, c, "echo", members[2])
	register(t, c, "echo", members[3])
	waitMembers(t, a, "echo", 4)

	const total = 4000
	var wg sync.WaitGroup
	var bad atomic.Int64
	sem := make(chan struct{}, 64)
	for i := range total {
		sem <- struct{}{}
		wg.Add(1)
		payload := fmt.Sprint(i)
		a.Request("echo", []byte(payload), 5*time.Second, func(r Result) {
			defer wg.Done()
			<-sem
			if r.Status != StatusOK || len(r.Payload) < 3 || string(r.Payload[3:]) != payload {
				bad.Add(1)
			}
		})
	}
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d bad answers", bad.Load())
	}
	for _, m := range members {
		share := float64(m.served.Load()) / total
		t.Logf("%s served %.1f%%", m.name, 100*share)
		if share < 0.15 || share > 0.35 {
			t.Errorf("%s served %.1f%%, want 15–35%%", m.name, 100*share)
		}
	}

	// From b, the local members serve.
	before := members[2].served.Load() + members[3].served.Load()
	for range 200 {
		if res := call(b, "echo", "x", time.Second); res.Status != StatusOK || res.Payload[0] != 'b' {
			t.Fatalf("from b: %+v", res)
		}
	}
	if members[2].served.Load()+members[3].served.Load() != before {
		t.Fatal("c served requests from b while b's members had room")
	}
}

func TestZonePreference(t *testing.T) {
	ds := startDaemons(t, "z1", "z1", "z2")
	a, near, far := ds[0], ds[1], ds[2]
	mNear, mFar := newEchoMember(t, "near"), newEchoMember(t, "far")
	register(t, near, "svc", mNear)
	register(t, far, "svc", mFar)
	waitMembers(t, a, "svc", 2)
	waitFor(t, 5*time.Second, "zones known", func() bool {
		n := a.remote(near.id)
		return n != nil && n.zone == "z1"
	})
	for range 100 {
		if res := call(a, "svc", "x", time.Second); res.Status != StatusOK || string(res.Payload[:4]) != "near" {
			t.Fatalf("got %+v", res)
		}
	}
}

func TestSaturationSpillsToNextTier(t *testing.T) {
	ds := startDaemons(t, "", "")
	b, c := ds[0], ds[1]
	local, remote := newEchoMember(t, "b"), newEchoMember(t, "c")
	local.hold.Store(true)
	if _, err := b.Register("svc", local, 4); err != nil {
		t.Fatal(err)
	}
	register(t, c, "svc", remote)
	waitMembers(t, b, "svc", 2)
	// Four held requests saturate the local member...
	for range 4 {
		b.Request("svc", nil, 10*time.Second, func(Result) {})
	}
	// ...so the next ones go to c.
	for range 10 {
		if res := call(b, "svc", "x", time.Second); res.Status != StatusOK || res.Payload[0] != 'c' {
			t.Fatalf("got %+v", res)
		}
	}
}

func TestServingDaemonDiesFaultsInFlight(t *testing.T) {
	ds := startDaemons(t, "", "")
	a, b := ds[0], ds[1]
	m := newEchoMember(t, "b")
	m.hold.Store(true) // never answers
	register(t, b, "svc", m)
	waitMembers(t, a, "svc", 1)
	results := make(chan Result, 100)
	for range 100 {
		a.Request("svc", nil, 30*time.Second, func(r Result) { results <- r })
	}
	waitFor(t, 5*time.Second, "requests delivered", func() bool { return len(m.queue) == 100 || m.served.Load() > 0 || b.Stats().Delivered == 100 })
	start := time.Now()
	b.stop()
	t.Logf("stop took %v", time.Since(start))
	for range 100 {
		select {
		case r := <-results:
			if r.Status != StatusFault {
				t.Fatalf("got %+v", r)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("request left hanging after its daemon died")
		}
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("faults took %v", el)
	}
	if a.Stats().Pending != 0 {
		t.Fatalf("pending left: %d", a.Stats().Pending)
	}
}

func TestBroadcastAndPublishAcrossDaemons(t *testing.T) {
	ds := startDaemons(t, "", "", "")
	var members []*echoMember
	for i, d := range ds {
		m := newEchoMember(t, fmt.Sprint(i))
		members = append(members, m)
		register(t, d, "all", m)
	}
	subs := make([]*chanSub, len(ds))
	for i, d := range ds {
		subs[i] = &chanSub{ch: make(chan string, 1000)}
		if _, err := d.Subscribe("news", subs[i]); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range ds {
		waitMembers(t, d, "all", 3)
		waitFor(t, 5*time.Second, "topic known", func() bool {
			ts := d.Topics()
			return len(ts) == 1 && len(ts[0].Remote) == 2
		})
	}
	for i := range 50 {
		ds[i%3].Broadcast("all", []byte(fmt.Sprint(i)))
		ds[0].Publish("news", []byte(fmt.Sprint(i)))
	}
	for _, m := range members {
		for range 50 {
			select {
			case <-m.casts:
			case <-time.After(5 * time.Second):
				t.Fatalf("member %s missed broadcasts", m.name)
			}
		}
	}
	for i, s := range subs {
		for want := range 50 {
			select {
			case got := <-s.ch:
				if got != "news:"+fmt.Sprint(want) {
					t.Fatalf("sub %d: got %s, want %d (order)", i, got, want)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("sub %d missed events", i)
			}
		}
	}
}

type chanSub struct{ ch chan string }

func (s *chanSub) HandleEvent(topic string, ev []byte) { s.ch <- topic + ":" + string(ev) }

func TestUnregisterPropagates(t *testing.T) {
	ds := startDaemons(t, "", "")
	a, b := ds[0], ds[1]
	reg := register(t, b, "svc", newEchoMember(t, "b"))
	waitMembers(t, a, "svc", 1)
	reg.Close()
	reg.Close()
	waitMembers(t, a, "svc", 0)
	if res := call(a, "svc", "x", 50*time.Millisecond); res.Status != StatusTimeout {
		t.Fatalf("got %+v", res)
	}
}

// refusing is a member whose queue is always full.
type refusing struct{ offered atomic.Int64 }

func (r *refusing) HandleRequest(*Request) bool { r.offered.Add(1); return false }
func (r *refusing) HandleBroadcast([]byte)      {}

func TestRefusingLocalMemberIsSkipped(t *testing.T) {
	ds := startDaemons(t, "", "")
	a, b := ds[0], ds[1]
	full := &refusing{}
	register(t, a, "svc", full)
	register(t, b, "svc", newEchoMember(t, "b"))
	waitMembers(t, a, "svc", 2)
	for range 20 {
		if res := call(a, "svc", "x", time.Second); res.Status != StatusOK || res.Payload[0] != 'b' {
			t.Fatalf("got %+v", res)
		}
	}
	if full.offered.Load() > 20 {
		t.Fatalf("the full member was offered %d requests for 20 calls", full.offered.Load())
	}
}

func TestTooLargeForTheOverlayFaultsAtOnce(t *testing.T) {
	ds := startDaemons(t, "", "")
	register(t, ds[1], "svc", newEchoMember(t, "b"))
	waitMembers(t, ds[0], "svc", 1)
	start := time.Now()
	res := call(ds[0], "svc", string(make([]byte, overlay.DefaultMaxFrameSize+1)), 10*time.Second)
	if res.Status != StatusFault || time.Since(start) > 5*time.Second { // the deadline is 10s
		t.Fatalf("got %+v after %v, want a fault at once", res.Status, time.Since(start))
	}
}

// keepSub keeps every event it is handed, as it is.
type keepSub struct{ ch chan []byte }

func (s *keepSub) HandleEvent(_ string, ev []byte) { s.ch <- ev }

// transientSub copies what it is handed by HandleTransientEvent, and
// records the address it was handed.
type transientSub struct {
	keepSub
	at chan *byte
}

func (s *transientSub) HandleTransientEvent(_ string, ev []byte) {
	s.at <- &ev[0]
	s.ch <- append([]byte(nil), ev...)
}

// TestPublishTransient: an event valid only during PublishTransient
// reaches a TransientSubscriber as it is, and a plain Subscriber and
// another daemon as a copy, which the publisher's next bytes leave alone.
func TestPublishTransient(t *testing.T) {
	ds := startDaemons(t, "", "")
	a, b := ds[0], ds[1]
	plain := &keepSub{ch: make(chan []byte, 10)}
	trans := &transientSub{keepSub: keepSub{ch: make(chan []byte, 10)}, at: make(chan *byte, 10)}
	far := &keepSub{ch: make(chan []byte, 10)}
	for _, s := range []struct {
		d   *testDaemon
		sub Subscriber
	}{{a, plain}, {a, trans}, {b, far}} {
		if _, err := s.d.Subscribe("t", s.sub); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 5*time.Second, "b's interest known to a", func() bool {
		ts := a.Topics()
		return len(ts) == 1 && len(ts[0].Remote) == 1
	})
	buf := []byte("first")
	a.PublishTransient("t", buf)
	copy(buf, "XXXXX") // the publisher's buffer, reused
	if p := <-trans.at; p != &buf[0] {
		t.Error("the TransientSubscriber was handed a copy")
	}
	for name, s := range map[string]*keepSub{"plain": plain, "transient": &trans.keepSub, "far": far} {
		select {
		case ev := <-s.ch:
			if string(ev) != "first" {
				t.Errorf("%s subscriber kept %q, want first", name, ev)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s subscriber got nothing", name)
		}
	}
}
