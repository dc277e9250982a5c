package cluster

import (
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/iris-mesh/iris/overlay"
)

// TestAvoidanceNeverShortened: a daemon avoided until it is heard from
// (suspect) stays avoided when its link-down event follows in the same
// batch; any frame from it ends the avoidance.
func TestAvoidanceNeverShortened(t *testing.T) {
	n, err := New(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	startQuiet(t, n)
	n.HandlePeer(overlay.Peer{ID: "x", State: overlay.StateAlive})
	r := n.remote("x")
	now := time.Now().UnixNano()
	if !r.healthy(now) {
		t.Fatal("a new alive daemon is avoided")
	}
	n.HandlePeer(overlay.Peer{ID: "x", State: overlay.StateSuspect})
	n.HandleLinkDown("x")
	if got := r.unhealthy.Load(); got != math.MaxInt64 {
		t.Fatalf("after suspect then link down, avoided until %v, want until heard from", time.Unix(0, got))
	}
	if r.healthy(time.Now().Add(time.Hour).UnixNano()) {
		t.Fatal("a suspect daemon is healthy an hour later")
	}
	n.HandleFrame("x", []byte{0xff}) // any frame: an unknown type is skipped
	if !r.healthy(time.Now().UnixNano()) {
		t.Fatal("a frame from the daemon did not end its avoidance")
	}
}

// TestTwoChoicesAreDistinct: between two daemons, the one with many
// requests in flight (say, it stopped answering) is never picked while
// the other is healthy and has room.
func TestTwoChoicesAreDistinct(t *testing.T) {
	stuck, fine := &remoteNode{id: "stuck"}, &remoteNode{id: "fine"}
	stuck.inflight.Store(60)
	ts := []remoteTarget{{node: stuck, members: 1, capacity: 128}, {node: fine, members: 1, capacity: 128}}
	now := time.Now().UnixNano()
	for range 1000 {
		if got := pickRemote(ts, now, nil, false); got != fine {
			t.Fatalf("picked %s over a less loaded daemon", got.id)
		}
	}
}

// nullOverlay is an overlay that delivers nothing and records the frame
// types sent: for tests of the node's own bookkeeping.
type nullOverlay struct {
	id        string
	published chan uint64 // table versions published by the table pusher
	mu        sync.Mutex
	sent      []frameType
	sentTo    []string
	congested map[string]bool // Send to these fails with overlay.ErrBackpressure
}

// startQuiet starts n on a nullOverlay with a subscription (so that its
// table is not empty: a daemon with an empty table resyncs nothing) and
// waits for the table pusher's round, so that it sends nothing unasked
// afterwards.
func startQuiet(t *testing.T, n *Node) *nullOverlay {
	t.Helper()
	ov := &nullOverlay{id: "self", published: make(chan uint64, 16)}
	if err := n.Start(ov); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Subscribe("quiet", quietSub{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ov.published:
	case <-time.After(10 * time.Second):
		t.Fatal("the table pusher did not run")
	}
	return ov
}

type quietSub struct{}

func (quietSub) HandleEvent(string, []byte) {}

// TestEmptyTableResyncsNothing: a daemon whose table never changed pushes
// nothing to a new peer, and asks a peer for its table only when that
// peer gossips a version (so an idle network opens no data links).
func TestEmptyTableResyncsNothing(t *testing.T) {
	n, err := New(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ov := &nullOverlay{id: "self", published: make(chan uint64, 16)}
	if err := n.Start(ov); err != nil {
		t.Fatal(err)
	}
	n.HandlePeer(overlay.Peer{ID: "x", State: overlay.StateAlive})
	if got := ov.take(); len(got) != 0 {
		t.Fatalf("to a new peer with an empty table sent %v, want nothing", got)
	}
	n.HandlePeer(overlay.Peer{ID: "y", State: overlay.StateAlive, AppVersion: 2})
	if got := ov.take(); !slices.Equal(got, []frameType{fTableReq}) {
		t.Fatalf("to a new peer with a table sent %v, want only a table request", got)
	}
	// y restarts empty under the same id before anyone declares it dead:
	// it gossips version 0, and the table held of it must be replaced.
	n.mu.Lock()
	n.remotes["y"].tbl = &table{Version: 2, Instance: 7}
	n.mu.Unlock()
	n.HandlePeer(overlay.Peer{ID: "y", State: overlay.StateAlive, AppVersion: 0})
	if got := ov.take(); !slices.Equal(got, []frameType{fTableReq}) {
		t.Fatalf("to a peer gossiping version 0 whose old table is held sent %v, want a table request", got)
	}
}

func (o *nullOverlay) ID() string   { return o.id }
func (o *nullOverlay) Zone() string { return "" }
func (o *nullOverlay) Send(to string, _ overlay.Priority, head, _ []byte) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.congested[to] {
		return overlay.ErrBackpressure
	}
	o.sent = append(o.sent, frameType(head[0]))
	o.sentTo = append(o.sentTo, to)
	return nil
}

func (o *nullOverlay) SendIfUp(to string, prio overlay.Priority, head, body []byte) error {
	return o.Send(to, prio, head, body)
}

// take returns the frame types sent since the last call.
func (o *nullOverlay) take() []frameType {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := o.sent
	o.sent, o.sentTo = nil, nil
	return out
}

func (o *nullOverlay) SetAppVersion(v uint64) {
	select {
	case o.published <- v:
	default:
	}
}

func (o *nullOverlay) SetAppInstance(uint64) {}

func (o *nullOverlay) Peers() []overlay.Peer { return nil }

// TestResyncOnReappearance: when a daemon appears, comes back from dead,
// or is alive again after its link broke, this one pushes its table and
// asks for the other's at once, whatever the gossiped versions say; a
// daemon that was only quiet (suspect, no link lost) needs no resync.
func TestResyncOnReappearance(t *testing.T) {
	n, err := New(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ov := startQuiet(t, n)
	resync := []frameType{fTable, fTableReq}
	n.HandlePeer(overlay.Peer{ID: "x", State: overlay.StateAlive, AppVersion: 3})
	if got := ov.take(); !slices.Equal(got, resync) {
		t.Fatalf("on a new peer sent %v, want %v", got, resync)
	}
	n.HandlePeer(overlay.Peer{ID: "x", State: overlay.StateAlive, AppVersion: 3})
	if got := ov.take(); len(got) != 0 {
		t.Fatalf("on an unchanged peer sent %v, want nothing", got)
	}
	n.HandlePeer(overlay.Peer{ID: "x", State: overlay.StateSuspect, AppVersion: 3})
	n.HandlePeer(overlay.Peer{ID: "x", State: overlay.StateAlive, AppVersion: 3})
	if got := ov.take(); len(got) != 0 {
		t.Fatalf("on a peer that was only quiet sent %v, want nothing", got)
	}
	n.HandlePeer(overlay.Peer{ID: "x", State: overlay.StateSuspect, AppVersion: 3})
	n.HandleLinkDown("x")
	if got := ov.take(); len(got) != 0 {
		t.Fatalf("on a suspect peer sent %v, want nothing", got)
	}
	n.HandlePeer(overlay.Peer{ID: "x", State: overlay.StateAlive, AppVersion: 3})
	if got := ov.take(); !slices.Equal(got, resync) {
		t.Fatalf("on a peer alive again after its link broke sent %v, want %v", got, resync)
	}
	n.HandlePeer(overlay.Peer{ID: "x", State: overlay.StateDead})
	n.HandlePeer(overlay.Peer{ID: "x", State: overlay.StateAlive, AppVersion: 3})
	if got := ov.take(); !slices.Equal(got, resync) {
		t.Fatalf("on a peer back from dead sent %v, want %v", got, resync)
	}
}

// TestCongestedDaemonsAreSkipped: every daemon serving a cluster is
// avoided (suspect); two of them cannot take frames (their queues are
// full), and a request tries past them, each once, to the third rather
// than failing or trying one of them twice.
func TestCongestedDaemonsAreSkipped(t *testing.T) {
	n, err := New(DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	ov := startQuiet(t, n)
	tbl := &table{Version: 1, Instance: 7, Clusters: map[string]tableEntry{"work": {Members: 1, Capacity: 128}}}
	b, err := tbl.encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a", "b", "q"} {
		n.HandlePeer(overlay.Peer{ID: id, State: overlay.StateAlive})
		if err := n.handleTable(id, b); err != nil {
			t.Fatal(err)
		}
		n.HandlePeer(overlay.Peer{ID: id, State: overlay.StateSuspect})
	}
	ov.mu.Lock()
	ov.congested = map[string]bool{"a": true, "b": true}
	ov.mu.Unlock()
	for range 20 {
		ov.take()
		done := make(chan Result, 1)
		n.Request("work", []byte("x"), time.Minute, func(r Result) { done <- r })
		select {
		case r := <-done:
			t.Fatalf("the request ended at once: %+v", r)
		default:
		}
		ov.mu.Lock()
		to := slices.Clone(ov.sentTo)
		ov.mu.Unlock()
		if !slices.Equal(to, []string{"q"}) {
			t.Fatalf("request sent to %v, want to q", to)
		}
	}
	n.failPending(func(*pending) bool { return true }, "test over")
}
