package overlay

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/iris-mesh/iris/crypto"
	"github.com/iris-mesh/iris/internal/leakcheck"
)

// recorder is a Delegate that records what it is given.
type recorder struct {
	frames chan recvFrame

	mu        sync.Mutex
	peers     map[string]Peer
	linkDowns map[string]int
	changed   chan struct{}
}

type recvFrame struct {
	from    string
	payload []byte
}

func newRecorder() *recorder {
	return &recorder{
		frames:    make(chan recvFrame, 1<<16),
		peers:     map[string]Peer{},
		linkDowns: map[string]int{},
		changed:   make(chan struct{}, 1),
	}
}

func (r *recorder) HandleFrame(from string, payload []byte) {
	r.frames <- recvFrame{from, payload}
}

func (r *recorder) HandlePeer(p Peer) {
	r.mu.Lock()
	r.peers[p.ID] = p
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) HandleLinkDown(id string) {
	r.mu.Lock()
	r.linkDowns[id]++
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) poke() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *recorder) peerState(id string) (State, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p, ok := r.peers[id]
	return p.State, ok
}

// waitFor polls cond until it holds or d passes. Overlay events arrive from
// other goroutines and sockets, so the test waits for the condition itself.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond) // poll interval, not a stand-in for an event
	}
}

type testNode struct {
	*Overlay
	rec *recorder
}

var testKey = func() crypto.Key {
	var k crypto.Key
	for i := range k {
		k[i] = byte(i + 1)
	}
	return k
}()

func newTestNode(t *testing.T, network string, key crypto.Key, mod func(*Config)) *testNode {
	t.Helper()
	rec := newRecorder()
	cfg := DefaultConfig()
	cfg.Network = network
	cfg.Key = key
	cfg.ListenAddr = "127.0.0.1:0"
	cfg.Delegate = rec
	cfg.Gossip = LocalGossip()
	// Every node shares this process's CPU: on a loaded machine the
	// default 600 ms would close live links of starved peers, losing the
	// frames on them. The watchdog's own tests set their timings.
	cfg.LinkQuietTimeout, cfg.LinkProbeTimeout = time.Second, 2*time.Second
	cfg.Logger = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	if mod != nil {
		mod(cfg)
	}
	o, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { o.Close() })
	return &testNode{o, rec}
}

// cluster starts n nodes joined through the first.
func startNodes(t *testing.T, n int) []*testNode {
	t.Helper()
	nodes := make([]*testNode, n)
	for i := range nodes {
		nodes[i] = newTestNode(t, "test-net", testKey, nil)
		if i > 0 {
			if _, err := nodes[i].Join([]string{nodes[0].Addr()}); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, a := range nodes {
		for _, b := range nodes {
			if a == b {
				continue
			}
			waitFor(t, 5*time.Second, a.ID()+" sees "+b.ID(), func() bool {
				p, ok := a.Peer(b.ID())
				return ok && p.State == StateAlive
			})
		}
	}
	return nodes
}

func recvN(t *testing.T, n *testNode, count int) []recvFrame {
	t.Helper()
	out := make([]recvFrame, 0, count)
	timeout := time.After(20 * time.Second)
	for len(out) < count {
		select {
		case f := <-n.rec.frames:
			out = append(out, f)
		case <-timeout:
			t.Fatalf("received %d of %d frames", len(out), count)
		}
	}
	return out
}

func TestMembershipAndFrames(t *testing.T) {
	nodes := startNodes(t, 3)
	a, b, c := nodes[0], nodes[1], nodes[2]

	// Many small frames in order, from two senders at once.
	const count = 5000
	for _, src := range []*testNode{a, c} {
		go func() {
			for i := range count {
				head := binary.BigEndian.AppendUint32(nil, uint32(i))
				for src.Send(b.ID(), Bulk, head, []byte(src.ID())) == ErrBackpressure {
					time.Sleep(time.Millisecond)
				}
			}
		}()
	}
	next := map[string]uint32{}
	for _, f := range recvN(t, b, 2*count) {
		seq := binary.BigEndian.Uint32(f.payload)
		if string(f.payload[4:]) != f.from {
			t.Fatalf("payload %q from %s", f.payload[4:], f.from)
		}
		if seq != next[f.from] {
			t.Fatalf("from %s: got seq %d, want %d", f.from, seq, next[f.from])
		}
		next[f.from]++
	}
	if st := b.Stats(); st.FramesIn < 2*count || st.BytesIn == 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestLargeFramesSpanRecords(t *testing.T) {
	nodes := startNodes(t, 2)
	a, b := nodes[0], nodes[1]
	sizes := []int{0, 1, crypto.MaxRecordPlaintext - frameHeaderSize, crypto.MaxRecordPlaintext, 1 << 20, 4<<20 + 7}
	var want [][]byte
	for i, n := range sizes {
		body := bytes.Repeat([]byte{byte(i + 1)}, n)
		want = append(want, body)
		if err := a.Send(b.ID(), Bulk, nil, body); err != nil {
			t.Fatal(err)
		}
	}
	for i, f := range recvN(t, b, len(sizes)) {
		if !bytes.Equal(f.payload, want[i]) {
			t.Fatalf("frame %d: got %d bytes, want %d", i, len(f.payload), len(want[i]))
		}
	}
	if err := a.Send(b.ID(), Bulk, nil, make([]byte, a.cfg.MaxFrameSize+1)); err != ErrFrameTooLarge {
		t.Fatalf("oversized send: %v", err)
	}
}

func TestSimultaneousDialsMakeOneLink(t *testing.T) {
	for i := range 5 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			nodes := startNodes(t, 2)
			a, b := nodes[0], nodes[1]
			start := make(chan struct{})
			var wg sync.WaitGroup
			for _, pair := range [][2]*testNode{{a, b}, {b, a}} {
				wg.Go(func() {
					<-start
					for j := range 100 {
						if err := pair[0].Send(pair[1].ID(), Bulk, nil, []byte{byte(j)}); err != nil {
							t.Error(err)
						}
					}
				})
			}
			close(start)
			wg.Wait()
			for _, n := range []*testNode{a, b} {
				for j, f := range recvN(t, n, 100) {
					if f.payload[0] != byte(j) {
						t.Fatalf("frame %d out of order: %d", j, f.payload[0])
					}
				}
			}
			waitFor(t, 5*time.Second, "one link each way", func() bool {
				return a.Stats().Links == 1 && b.Stats().Links == 1
			})
			if a.stats.linkDowns.Load() != 0 || b.stats.linkDowns.Load() != 0 {
				t.Fatalf("a link went down: %d, %d", a.stats.linkDowns.Load(), b.stats.linkDowns.Load())
			}
		})
	}
}

func TestFailureAndLeave(t *testing.T) {
	nodes := startNodes(t, 3)
	a, b, c := nodes[0], nodes[1], nodes[2]
	if err := a.Send(b.ID(), Control, nil, []byte("x")); err != nil {
		t.Fatal(err)
	}
	recvN(t, b, 1)

	// b dies without a word: a sees the link go down and b dead.
	b.Close()
	waitFor(t, 10*time.Second, "b dead", func() bool {
		st, ok := a.rec.peerState(b.ID())
		p, _ := a.Peer(b.ID())
		return ok && st == StateDead && p.State == StateDead
	})
	a.rec.mu.Lock()
	downs := a.rec.linkDowns[b.ID()]
	a.rec.mu.Unlock()
	if downs == 0 {
		t.Fatal("no HandleLinkDown for the failed peer")
	}
	if err := a.Send(b.ID(), Bulk, nil, []byte("x")); err != ErrUnknownPeer {
		t.Fatalf("send to dead peer: %v", err)
	}

	// c leaves gracefully: a sees it left, not dead.
	if err := c.Leave(2 * time.Second); err != nil {
		t.Fatal(err)
	}
	c.Close()
	waitFor(t, 10*time.Second, "c left", func() bool {
		p, ok := a.Peer(c.ID())
		return ok && p.State == StateLeft
	})
}

func TestWrongKeyOrNetworkNeverJoins(t *testing.T) {
	nodes := startNodes(t, 2)
	var otherKey crypto.Key
	copy(otherKey[:], testKey[:])
	otherKey[0] ^= 0xff
	bad := []*testNode{
		newTestNode(t, "test-net", otherKey, nil),
		newTestNode(t, "other-net", testKey, nil),
	}
	for _, n := range bad {
		if _, err := n.Join([]string{nodes[0].Addr()}); err == nil {
			t.Fatalf("%s joined with a wrong key or network", n.ID())
		}
		// Also try from the good side towards the bad one.
		if _, err := nodes[1].Join([]string{n.Addr()}); err == nil {
			t.Fatalf("joined %s", n.ID())
		}
	}
	// Good nodes still talk.
	if err := nodes[0].Send(nodes[1].ID(), Bulk, nil, []byte("still fine")); err != nil {
		t.Fatal(err)
	}
	recvN(t, nodes[1], 1)
	for _, n := range append(nodes, bad...) {
		for _, p := range n.Peers() {
			for _, m := range append(nodes, bad...) {
				sameSide := (containsNode(nodes, n) == containsNode(nodes, m))
				if p.ID == m.ID() && !sameSide {
					t.Fatalf("%s lists %s", n.ID(), m.ID())
				}
			}
		}
	}
	if nodes[0].tr.refusedAuth.Load()+nodes[1].tr.refusedAuth.Load() == 0 {
		t.Fatal("no refused handshakes counted")
	}
}

func containsNode(list []*testNode, n *testNode) bool {
	for _, m := range list {
		if m == n {
			return true
		}
	}
	return false
}

// transientRecorder is a recorder that takes the frames starting with 't'
// through HandleTransientFrame, copying them.
type transientRecorder struct {
	*recorder
	transient chan recvFrame
}

func (r *transientRecorder) HandleTransientFrame(from string, payload []byte) bool {
	if len(payload) == 0 || payload[0] != 't' {
		return false
	}
	r.transient <- recvFrame{from, append([]byte(nil), payload...)}
	return true
}

// TestTransientFrames: a TransientFrameHandler is offered each frame
// smaller than 32 KiB where it lies; what it takes does not reach
// HandleFrame, and what it declines does, as a copy that later records
// leave intact. A larger frame goes to HandleFrame, as ever.
func TestTransientFrames(t *testing.T) {
	leakcheck.Check(t)
	tr := &transientRecorder{recorder: newRecorder(), transient: make(chan recvFrame, 1<<12)}
	a := newTestNode(t, "test-net", testKey, nil)
	b := newTestNode(t, "test-net", testKey, func(c *Config) { c.Delegate = tr })
	if _, err := b.Join([]string{a.Addr()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a knows b", func() bool {
		p, ok := a.Peer(b.ID())
		return ok && p.State == StateAlive
	})
	frame := func(i int) []byte {
		size := 1 + i*97%3000
		if i == 500 {
			size = 40 << 10
		}
		p := make([]byte, size)
		for j := range p {
			p[j] = byte(i + j)
		}
		p[0] = "to"[i%2]
		return p
	}
	const n = 1000
	for i := range n {
		for a.Send(b.ID(), Bulk, nil, frame(i)) == ErrBackpressure {
			time.Sleep(time.Millisecond)
		}
	}
	timeout := time.After(20 * time.Second)
	next := func(ch chan recvFrame) []byte {
		select {
		case f := <-ch:
			return f.payload
		case <-timeout:
			t.Fatal("frames missing")
			return nil
		}
	}
	var plain [][]byte
	for i := range n {
		if i%2 == 1 || i == 500 {
			plain = append(plain, next(tr.frames))
			continue
		}
		if got := next(tr.transient); !bytes.Equal(got, frame(i)) {
			t.Fatalf("transient frame %d: %d bytes, want %d", i, len(got), len(frame(i)))
		}
	}
	// HandleFrame's copies are checked only now, after every record.
	k := 0
	for i := range n {
		if i%2 == 1 || i == 500 {
			if !bytes.Equal(plain[k], frame(i)) {
				t.Fatalf("frame %d changed after delivery: %d bytes", i, len(plain[k]))
			}
			k++
		}
	}
	select {
	case f := <-tr.frames:
		t.Fatalf("an extra frame reached HandleFrame: %d bytes", len(f.payload))
	default:
	}
}

// TestSendIfUpCopy: frames sent from one buffer, overwritten after each
// call, arrive as they were sent, small ones copied into shared send
// blocks and larger ones on their own; a peer lets go of its block when
// its link idles.
func TestSendIfUpCopy(t *testing.T) {
	leakcheck.Check(t)
	nodes := startNodes(t, 2)
	a, b := nodes[0], nodes[1]
	frame := func(i int) []byte {
		p := make([]byte, 1+i*131%(3*maxBlockCopy))
		for j := range p {
			p[j] = byte(i ^ j)
		}
		return p
	}
	const n = 2000
	buf := make([]byte, 3*maxBlockCopy)
	for i := range n {
		body := append(buf[:0], frame(i)...)
		for a.SendIfUpCopy(b.ID(), Bulk, []byte{byte(i)}, body) == ErrBackpressure {
			time.Sleep(time.Millisecond)
		}
		clear(body)
	}
	for i, f := range recvN(t, b, n) {
		want := append([]byte{byte(i)}, frame(i)...)
		if !bytes.Equal(f.payload, want) {
			t.Fatalf("frame %d: %d bytes, want %d", i, len(f.payload), len(want))
		}
	}
	p, _ := a.lookup(b.ID())
	waitFor(t, 10*time.Second, "the idle peer's send block let go", func() bool {
		p.qmu.Lock()
		defer p.qmu.Unlock()
		return p.blk == nil
	})
}
