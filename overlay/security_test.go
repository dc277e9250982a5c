package overlay

import (
	"bytes"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"
)

// tap forwards TCP and UDP arriving on its own loopback port to target,
// recording every byte that crosses it in either direction.
type tap struct {
	tcp    net.Listener
	udp    net.PacketConn
	target string
	wg     sync.WaitGroup

	mu       sync.Mutex
	tcpBytes bytes.Buffer
	udpBytes bytes.Buffer

	// gate holds TCP bytes while write-locked (see freeze): the path goes
	// silent without closing anything, as in a partition.
	gate sync.RWMutex
}

// freeze holds every TCP byte crossing the tap until thaw.
func (tp *tap) freeze() { tp.gate.Lock() }

// thaw lets held TCP bytes through again.
func (tp *tap) thaw() { tp.gate.Unlock() }

func newTap(t *testing.T) *tap {
	t.Helper()
	tcp, udp, err := listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tp := &tap{tcp: tcp, udp: udp}
	t.Cleanup(func() {
		tcp.Close()
		udp.Close()
		tp.wg.Wait()
	})
	return tp
}

func (tp *tap) addr() string { return tp.tcp.Addr().String() }

func (tp *tap) start(target string) {
	tp.target = target
	tp.wg.Go(func() {
		buf := make([]byte, maxUDPPacket)
		dst, _ := net.ResolveUDPAddr("udp", target)
		for {
			n, _, err := tp.udp.ReadFrom(buf)
			if err != nil {
				return
			}
			tp.mu.Lock()
			tp.udpBytes.Write(buf[:n])
			tp.mu.Unlock()
			tp.udp.WriteTo(buf[:n], dst)
		}
	})
	tp.wg.Go(func() {
		for {
			c, err := tp.tcp.Accept()
			if err != nil {
				return
			}
			tp.wg.Go(func() { tp.pipe(c) })
		}
	})
}

func (tp *tap) pipe(c net.Conn) {
	defer c.Close()
	d, err := net.Dial("tcp", tp.target)
	if err != nil {
		return
	}
	defer d.Close()
	var wg sync.WaitGroup
	copyRec := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				tp.gate.RLock()
				tp.mu.Lock()
				tp.tcpBytes.Write(buf[:n])
				tp.mu.Unlock()
				_, werr := dst.Write(buf[:n])
				tp.gate.RUnlock()
				if werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		dst.Close()
		src.Close()
	}
	wg.Go(func() { copyRec(d, c) })
	copyRec(c, d)
	wg.Wait()
}

// TestNothingInClearOnTheWire routes all traffic between two nodes through
// taps and checks the captured bytes for the payloads and the network name.
func TestNothingInClearOnTheWire(t *testing.T) {
	const network = "visible-network-name"
	marker := []byte("PAYLOAD-MARKER-7f3a9c")
	tapA, tapB := newTap(t), newTap(t)
	a := newTestNode(t, network, testKey, func(c *Config) { c.AdvertiseAddr = tapA.addr() })
	b := newTestNode(t, network, testKey, func(c *Config) { c.AdvertiseAddr = tapB.addr() })
	tapA.start(a.tr.tcp.Addr().String())
	tapB.start(b.tr.tcp.Addr().String())
	if _, err := a.Join([]string{tapB.addr()}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "join", func() bool {
		pa, oka := a.Peer(b.ID())
		pb, okb := b.Peer(a.ID())
		return oka && okb && pa.State == StateAlive && pb.State == StateAlive
	})
	for range 10 {
		if err := a.Send(b.ID(), Bulk, marker, marker); err != nil {
			t.Fatal(err)
		}
		if err := b.Send(a.ID(), Control, nil, marker); err != nil {
			t.Fatal(err)
		}
	}
	recvN(t, a, 10)
	recvN(t, b, 10)
	// Let a few gossip rounds cross the taps.
	waitFor(t, 5*time.Second, "gossip through the taps", func() bool {
		tapA.mu.Lock()
		defer tapA.mu.Unlock()
		tapB.mu.Lock()
		defer tapB.mu.Unlock()
		return tapA.udpBytes.Len() > 2000 && tapB.udpBytes.Len() > 2000
	})
	for _, tp := range []*tap{tapA, tapB} {
		tp.mu.Lock()
		for kind, captured := range map[string][]byte{"tcp": tp.tcpBytes.Bytes(), "udp": tp.udpBytes.Bytes()} {
			if len(captured) == 0 {
				t.Errorf("%s: nothing captured", kind)
			}
			for _, secret := range [][]byte{marker, []byte(network), []byte("PAYLOAD"), []byte(a.ID()), []byte(b.ID())} {
				if bytes.Contains(captured, secret) {
					t.Errorf("%s capture contains %q in clear", kind, secret)
				}
			}
		}
		tp.mu.Unlock()
	}
}

// TestHostileInput throws garbage at the overlay port and checks that it
// costs bounded goroutines, never crashes the node, and leaves real peers
// unaffected.
func TestHostileInput(t *testing.T) {
	const maxPending = 16
	mod := func(c *Config) {
		c.HandshakeTimeout = 300 * time.Millisecond
		c.MaxPendingHandshakes = maxPending
	}
	victim := newTestNode(t, "test-net", testKey, mod)
	friend := newTestNode(t, "test-net", testKey, nil)
	if _, err := friend.Join([]string{victim.Addr()}); err != nil {
		t.Fatal(err)
	}
	addr := victim.tr.tcp.Addr().String()
	base := runtime.NumGoroutine()
	rng := rand.New(rand.NewPCG(1, 2))

	send := func(b []byte) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return // refused under load is fine
		}
		defer c.Close()
		c.Write(b)
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		io.Copy(io.Discard, c) // the victim closes it
	}
	garbage := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	cases := map[string][]byte{
		"random":          garbage(4096),
		"oversize-prefix": {0xff, 0xff, 1, 2, 3},
		"truncated":       {0x00, 0x30, 1, 2, 3},
		"zero-length":     {0x00, 0x00},
		"empty":           nil,
	}
	var wg sync.WaitGroup
	for name, b := range cases {
		for range 8 {
			wg.Go(func() { send(b) })
		}
		_ = name
	}
	// A flood of half-open connections: more than MaxPendingHandshakes.
	var open []net.Conn
	for range 4 * maxPending {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			open = append(open, c)
		}
	}
	// Garbage on the UDP side too.
	u, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	for range 200 {
		u.Write(garbage(rng.IntN(1400) + 1))
	}
	u.Close()
	if g := runtime.NumGoroutine(); g > base+maxPending+64 {
		t.Errorf("goroutines grew from %d to %d under a flood", base, g)
	}
	wg.Wait()
	waitFor(t, 5*time.Second, "pending connections evicted", func() bool {
		return victim.tr.adm.evicted.Load() > 0
	})
	for _, c := range open {
		c.Close()
	}
	waitFor(t, 5*time.Second, "handshake failures counted", func() bool {
		return victim.tr.refusedAuth.Load() >= uint64(len(cases))
	})

	// The real peer still gets through, both ways, and membership holds.
	if err := friend.Send(victim.ID(), Bulk, nil, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	recvN(t, victim, 1)
	if err := victim.Send(friend.ID(), Bulk, nil, []byte("back")); err != nil {
		t.Fatal(err)
	}
	recvN(t, friend, 1)
	if p, ok := victim.Peer(friend.ID()); !ok || p.State != StateAlive {
		t.Fatalf("friend is %v", p.State)
	}
}

// TestBadFrameClosesOnlyThatLink checks that a peer sending an oversized
// frame header loses its link, and nothing else happens.
func TestBadFrameClosesOnlyThatLink(t *testing.T) {
	nodes := startNodes(t, 2)
	a, b := nodes[0], nodes[1]
	if err := a.Send(b.ID(), Bulk, nil, []byte("x")); err != nil {
		t.Fatal(err)
	}
	recvN(t, b, 1)
	// Forge a record with a huge frame length on a's link to b.
	a.mu.RLock()
	p := a.peers[b.ID()]
	a.mu.RUnlock()
	p.mu.Lock()
	l := p.link
	p.mu.Unlock()
	var hdr [frameHeaderSize]byte
	hdr[0] = frameApp
	binary.BigEndian.PutUint32(hdr[1:], uint32(b.cfg.MaxFrameSize+1))
	// Seal the forged header into a record of its own and write it on the
	// link's socket; the link's writer is idle, so nothing races.
	rec, err := l.sess.Seal(nil, hdr[:])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.conn.Write(rec); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "b drops the link", func() bool {
		b.rec.mu.Lock()
		defer b.rec.mu.Unlock()
		return b.rec.linkDowns[a.ID()] > 0
	})
	// A new link comes up on the next send and works.
	if err := a.Send(b.ID(), Bulk, nil, []byte("after")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "frame after reconnect", func() bool {
		for {
			select {
			case f := <-b.rec.frames:
				if string(f.payload) == "after" {
					return true
				}
			default:
				if err := a.Send(b.ID(), Bulk, nil, []byte("after")); err != nil {
					t.Log(err)
				}
				return false
			}
		}
	})
}

// TestSilentLinkIsSuspect: a data link that stops carrying bytes without
// closing (a partition: no RST) is closed after KeepaliveTimeout, the
// delegate is told, and the peer shows as suspect while gossip still says
// alive; once the path works again a new link makes it alive.
func TestSilentLinkIsSuspect(t *testing.T) {
	keep := func(c *Config) {
		// Margins a starved machine meets: a healthy link is never silent
		// for 1.5 s, even under a CPU hog.
		c.KeepaliveInterval = 100 * time.Millisecond
		c.KeepaliveTimeout = 1500 * time.Millisecond
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
	// Idle but healthy: heartbeats keep the link up across several timeouts.
	downs, beats := a.stats.linkDowns.Load(), a.Stats().HeartbeatsIn
	waitFor(t, 10*time.Second, "heartbeats over two timeouts' worth of idleness", func() bool {
		return a.Stats().HeartbeatsIn >= beats+30
	})
	if a.stats.linkDowns.Load() != downs {
		t.Fatal("an idle, healthy link was closed")
	}

	tapA.freeze()
	tapB.freeze()
	// The quiet link makes b suspect at once; the keepalive then closes it
	// and the delegate is told.
	waitFor(t, 5*time.Second, "a to suspect b", func() bool {
		p, _ := a.Peer(b.ID())
		st, _ := a.rec.peerState(b.ID())
		return p.State == StateSuspect && st == StateSuspect
	})
	waitFor(t, 5*time.Second, "the delegate to be told the link went down", func() bool {
		a.rec.mu.Lock()
		defer a.rec.mu.Unlock()
		return a.rec.linkDowns[b.ID()] > 0
	})
	if p, _ := a.Peer(b.ID()); p.State != StateSuspect {
		t.Fatalf("b is %v after its link went down, want suspect", p.State)
	}
	tapA.thaw()
	tapB.thaw()
	waitFor(t, 10*time.Second, "b alive again after a new link", func() bool {
		_ = a.Send(b.ID(), Bulk, nil, []byte("again"))
		p, _ := a.Peer(b.ID())
		return p.State == StateAlive
	})
}
