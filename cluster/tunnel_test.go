package cluster

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// tunEnd plays an app's side of a tunnel: it collects what arrives, and
// sends under the credit the daemon returns, as a binding would.
type tunEnd struct {
	t      *Tunnel
	data   chan tchunk
	closed chan string

	mu      sync.Mutex
	credit  uint64 // what this app may still send
	allowCh chan struct{}
}

const appGrant = 4 << 20 // what the relay grants an app

func newTunEnd() *tunEnd {
	return &tunEnd{data: make(chan tchunk, 1<<12), closed: make(chan string, 1), credit: appGrant, allowCh: make(chan struct{}, 1)}
}

func (e *tunEnd) TunnelData(sc uint64, b []byte) bool {
	select {
	case e.data <- tchunk{sc: sc, b: b}:
		return true
	default:
		return false
	}
}

func (e *tunEnd) TunnelAllow(n uint64) {
	e.mu.Lock()
	e.credit += n
	e.mu.Unlock()
	select {
	case e.allowCh <- struct{}{}:
	default:
	}
}

func (e *tunEnd) TunnelClosed(reason string) { e.closed <- reason }

// send sends msg in 64 KiB chunks, waiting for credit; false if the
// deadline passed first.
func (e *tunEnd) send(msg []byte, deadline time.Time) bool {
	first := true
	for len(msg) > 0 || first {
		n := min(len(msg), 64<<10)
		for {
			e.mu.Lock()
			ok := e.credit >= uint64(n)
			if ok {
				e.credit -= uint64(n)
			}
			e.mu.Unlock()
			if ok {
				break
			}
			select {
			case <-e.allowCh:
			case <-time.After(time.Until(deadline)):
				return false
			}
		}
		sc := uint64(0)
		if first {
			sc = uint64(len(msg))
		}
		if err := e.t.Send(sc, msg[:n]); err != nil {
			return false
		}
		msg, first = msg[n:], false
	}
	return true
}

// recv reassembles one message.
func (e *tunEnd) recv(t *testing.T) []byte {
	t.Helper()
	var msg []byte
	var size uint64
	for {
		select {
		case c := <-e.data:
			if c.sc != 0 {
				size, msg = c.sc, msg[:0]
			}
			msg = append(msg, c.b...)
			if uint64(len(msg)) == size {
				return msg
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("message not received (have %d of %d bytes)", len(msg), size)
		}
	}
}

// tunMember accepts every tunnel and echoes each message back.
type tunMember struct {
	*echoMember
	ends chan *tunEnd
	wg   sync.WaitGroup
	echo bool
	quit chan struct{}
}

func newTunMember(t *testing.T, echo bool) *tunMember {
	m := &tunMember{echoMember: newEchoMember(t, "tun"), ends: make(chan *tunEnd, 1<<14), echo: echo, quit: make(chan struct{})}
	t.Cleanup(func() { close(m.quit); m.wg.Wait() })
	return m
}

func (m *tunMember) HandleTunnel(o *TunnelOffer) bool {
	m.wg.Go(func() {
		e := newTunEnd()
		e.t = o.Accept(e)
		if e.t == nil {
			return
		}
		e.t.Grant(64 << 20)
		m.ends <- e
		if !m.echo {
			return
		}
		for {
			var msg []byte
			var size uint64
			for {
				select {
				case c := <-e.data:
					if c.sc != 0 {
						size, msg = c.sc, nil
					}
					msg = append(msg, c.b...)
				case <-e.closed:
					e.t.Close()
					return
				case <-m.quit:
					return
				}
				if uint64(len(msg)) == size {
					break
				}
			}
			if !e.send(msg, time.Now().Add(10*time.Second)) {
				return
			}
		}
	})
	return true
}

func openTunnel(t *testing.T, d *testDaemon, cluster string, timeout time.Duration) (*tunEnd, error) {
	t.Helper()
	e := newTunEnd()
	type res struct {
		t   *Tunnel
		err error
	}
	ch := make(chan res, 2)
	d.OpenTunnel(cluster, timeout, e, func(tn *Tunnel, err error) { ch <- res{tn, err} })
	r := <-ch
	if r.err != nil {
		return nil, r.err
	}
	e.t = r.t
	e.t.Grant(64 << 20)
	return e, nil
}

func TestTunnelEcho(t *testing.T) {
	for _, remote := range []bool{false, true} {
		t.Run(fmt.Sprint("remote=", remote), func(t *testing.T) {
			ds := startDaemons(t, "", "")
			client, server := ds[0], ds[0]
			if remote {
				server = ds[1]
			}
			register(t, server, "tun", newTunMember(t, true))
			waitMembers(t, client, "tun", 1)
			e, err := openTunnel(t, client, "tun", time.Second)
			if err != nil {
				t.Fatal(err)
			}
			for i, size := range []int{0, 1, 100, 64 << 10, 64<<10 + 1, 16 << 20} {
				msg := bytes.Repeat([]byte{byte(i + 1)}, size)
				if !e.send(msg, time.Now().Add(10*time.Second)) {
					t.Fatalf("send %d bytes: no credit", size)
				}
				if got := e.recv(t); !bytes.Equal(got, msg) {
					t.Fatalf("echo of %d bytes: got %d bytes", size, len(got))
				}
			}
			e.t.Close()
			waitFor(t, 5*time.Second, "tunnels gone", func() bool {
				return client.TunnelCount() == 0 && server.TunnelCount() == 0
			})
		})
	}
}

func TestTunnelStalledReaderThrottlesOnlyItself(t *testing.T) {
	ds := startDaemons(t, "", "")
	client, server := ds[0], ds[1]
	stalled := newTunMember(t, false) // accepts and never reads
	register(t, server, "sink", stalled)
	register(t, server, "echo", newTunMember(t, true))
	waitMembers(t, client, "sink", 1)
	waitMembers(t, client, "echo", 1)

	slow, err := openTunnel(t, client, "sink", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	far := <-stalled.ends
	_ = far
	// The far app granted 64 MiB but its sink holds only 4096 chunks and
	// is never drained; past that and the windows, the sender is throttled.
	// send fails only after waiting for credit past its deadline; 160 MiB
	// is more than the credit and every window together.
	big := make([]byte, 160<<20)
	if slow.send(big, time.Now().Add(3*time.Second)) {
		t.Fatal("a sender whose far end stopped reading was never throttled")
	}
	// Meanwhile another tunnel on the same daemons keeps flowing: each
	// message is several windows, and the deadline is one a loaded machine
	// meets while a tunnel stuck behind the stalled one never would.
	fast, err := openTunnel(t, client, "echo", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	msg := bytes.Repeat([]byte("x"), 4<<20)
	for range 4 {
		if !fast.send(msg, time.Now().Add(30*time.Second)) {
			t.Fatal("healthy tunnel throttled")
		}
		if got := fast.recv(t); !bytes.Equal(got, msg) {
			t.Fatal("bad echo")
		}
	}
	// And requests still flow.
	register(t, server, "req", newEchoMember(t, "r"))
	waitMembers(t, client, "req", 1)
	if res := call(client, "req", "x", 10*time.Second); res.Status != StatusOK {
		t.Fatalf("request: %+v", res)
	}
}

func TestTunnelToEmptyClusterTimesOut(t *testing.T) {
	d := startDaemons(t, "")[0]
	start := time.Now()
	_, err := openTunnel(t, d, "nobody", 100*time.Millisecond)
	if !errors.Is(err, ErrTunnelTimeout) {
		t.Fatalf("got %v", err)
	}
	// Not early; late only by a busy machine's scheduling delay.
	if el := time.Since(start); el < 100*time.Millisecond || el > 100*time.Millisecond+3*time.Second {
		t.Fatalf("timed out after %v", el)
	}
}

type refuser struct{ *echoMember }

func (r *refuser) HandleTunnel(o *TunnelOffer) bool { go o.Reject(); return true }

func TestTunnelRefused(t *testing.T) {
	ds := startDaemons(t, "", "")
	register(t, ds[1], "no", &refuser{newEchoMember(t, "x")})
	waitMembers(t, ds[0], "no", 1)
	if _, err := openTunnel(t, ds[0], "no", 5*time.Second); !errors.Is(err, ErrTunnelRefused) {
		t.Fatalf("got %v", err)
	}
}

func TestTunnelFarDaemonDies(t *testing.T) {
	ds := startDaemons(t, "", "")
	client, server := ds[0], ds[1]
	m := newTunMember(t, true)
	register(t, server, "tun", m)
	waitMembers(t, client, "tun", 1)
	e, err := openTunnel(t, client, "tun", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	server.stop()
	select {
	case reason := <-e.closed:
		if reason == "" {
			t.Fatal("failure reported as a graceful close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("tunnel not closed after its far daemon died")
	}
}
