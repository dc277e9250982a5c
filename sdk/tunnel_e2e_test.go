package sdk

// End-to-end tunnel tests: a client's and a service's SDK talk through a
// switchboard, a scripted daemon that builds tunnels from the one to the
// other and forwards their chunks with the daemon's credit rules.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/iris-mesh/iris/api"
	"github.com/iris-mesh/iris/internal/leakcheck"
)

// switchLeg is one end of a switched tunnel: the app it is delivered to.
type switchLeg struct {
	p       *peer
	id      uint64        // the app's tunId
	credit  uint64        // what the app lets the daemon send
	queue   []api.Message // chunks waiting for that credit
	closing bool          // the other end closed: close once the queue drains
	other   *switchLeg
}

// switchboard plays the daemon for one client and one service, forwarding
// chunks in order only within the receiving app's credit, returning the
// sender's credit as it forwards, and closing a tunnel at the far end only
// once what was sent before has been delivered.
type switchboard struct {
	t          testing.TB
	client     *peer
	service    *peer
	chunkLimit uint64
	grant      uint64 // the daemon's credit grant to each app

	mu     sync.Mutex        // protects the following, and writes to both peers
	builds map[uint64]uint64 // buildId → the client's tunId
	legs   map[*peer]map[uint64]*switchLeg
	nextID uint64
	out    []byte
}

func newSwitchboard(t testing.TB, client, service *peer, chunkLimit, grant uint64) *switchboard {
	return &switchboard{
		t: t, client: client, service: service, chunkLimit: chunkLimit, grant: grant,
		builds: make(map[uint64]uint64),
		legs:   map[*peer]map[uint64]*switchLeg{client: {}, service: {}},
	}
}

// serve reads p's messages until it closes the connection; it returns
// errors instead of failing the test.
func (s *switchboard) serve(p *peer) error {
	var m api.Message
	for {
		if err := p.dec.ReadClient(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		s.mu.Lock()
		err := s.handle(p, &m)
		s.mu.Unlock()
		if err != nil || m.Op == api.OpClose {
			return err
		}
	}
}

// write sends m to p as the daemon. s.mu must be held.
func (s *switchboard) write(p *peer, m *api.Message) error {
	s.out = api.AppendDaemon(s.out[:0], m)
	_, err := p.nc.Write(s.out)
	return err
}

func (s *switchboard) handle(p *peer, m *api.Message) error {
	switch m.Op {
	case api.OpTunInit: // from the client: offer it to the service
		s.nextID++
		s.builds[s.nextID] = m.ID
		return s.write(s.service, &api.Message{Op: api.OpTunInit, ID: s.nextID, Size: s.chunkLimit})
	case api.OpTunConfirm: // from the service: the tunnel is built
		c := &switchLeg{p: s.client, id: s.builds[m.ID]}
		v := &switchLeg{p: s.service, id: m.ID2, other: c}
		c.other = v
		s.legs[s.client][c.id], s.legs[s.service][v.id] = c, v
		return errors.Join(
			s.write(s.client, &api.Message{Op: api.OpTunConfirm, ID: c.id, Size: s.chunkLimit}),
			s.write(s.client, &api.Message{Op: api.OpTunAllow, ID: c.id, Size: s.grant}),
			s.write(s.service, &api.Message{Op: api.OpTunAllow, ID: v.id, Size: s.grant}))
	case api.OpClose:
		err := s.write(p, &api.Message{Op: api.OpClose})
		_ = p.nc.Close()
		return err
	}
	leg := s.legs[p][m.ID]
	if leg == nil {
		return nil // crossed the daemon's TUN_CLOSE: ignored
	}
	switch m.Op {
	case api.OpTunAllow:
		leg.credit += m.Size
		return s.flush(leg)
	case api.OpTunTransfer:
		if uint64(len(m.Payload)) > s.chunkLimit {
			return fmt.Errorf("chunk of %d bytes", len(m.Payload))
		}
		leg.other.queue = append(leg.other.queue, *m)
		return s.flush(leg.other)
	case api.OpTunClose:
		delete(s.legs[p], m.ID)
		leg.other.closing = true
		return errors.Join(s.write(p, &api.Message{Op: api.OpTunClose, ID: m.ID}), s.flush(leg.other))
	}
	return fmt.Errorf("switchboard: unexpected %s", m.Op)
}

// flush delivers leg's queued chunks that its credit covers, returning
// their credit to the sender, and closes it once drained if its other end
// closed.
func (s *switchboard) flush(leg *switchLeg) error {
	for len(leg.queue) > 0 && leg.credit >= uint64(len(leg.queue[0].Payload)) {
		c := leg.queue[0]
		leg.queue = leg.queue[1:]
		n := uint64(len(c.Payload))
		leg.credit -= n
		err := errors.Join(
			s.write(leg.p, &api.Message{Op: api.OpTunTransfer, ID: leg.id, Size: c.Size, Payload: c.Payload}),
			s.write(leg.other.p, &api.Message{Op: api.OpTunAllow, ID: leg.other.id, Size: n}))
		if err != nil {
			return err
		}
	}
	if leg.closing && len(leg.queue) == 0 {
		leg.closing = false
		delete(s.legs[leg.p], leg.id)
		return s.write(leg.p, &api.Message{Op: api.OpTunClose, ID: leg.id})
	}
	return nil
}

// switched connects a client and registers a service with handler h at a
// new switchboard, which serves them until they close.
func switched(t *testing.T, cfg *Config, h Handler, chunkLimit, grant uint64) (*Conn, *Service) {
	t.Helper()
	r := newRelay(t)
	if cfg == nil {
		cfg = &Config{}
	}
	cfg.Addr = r.config().Addr
	c, cp := connect(t, r, cfg)
	registered := make(chan *Service, 1)
	go func() {
		svc, err := Register(context.Background(), cfg, "svc", h, nil)
		if err != nil {
			t.Error(err)
		}
		registered <- svc
	}()
	sp := r.accept()
	sp.acceptInit("svc")
	svc := <-registered
	if svc == nil {
		t.FailNow()
	}
	s := newSwitchboard(t, cp, sp, chunkLimit, grant)
	served := []<-chan error{async(func() error { return s.serve(cp) }), async(func() error { return s.serve(sp) })}
	t.Cleanup(func() {
		_ = c.Close()
		_ = svc.Close()
		for _, ch := range served {
			if err := <-ch; err != nil {
				t.Errorf("switchboard: %v", err)
			}
		}
	})
	return c, svc
}

func TestTunnelEndToEndMessages(t *testing.T) {
	leakcheck.Check(t)
	// The service answers each message with its length and the message.
	h := tunnelService{HandlerFunc: nopHandler, serve: func(tun *Tunnel) {
		ctx := context.Background()
		for {
			msg, err := tun.Recv(ctx)
			if err != nil {
				if err != io.EOF {
					t.Errorf("service Recv = %v", err)
				}
				return
			}
			if tun.Send(ctx, fmt.Appendf(nil, "%d", len(msg))) != nil || tun.Send(ctx, msg) != nil {
				t.Error("service Send failed")
				return
			}
		}
	}}
	c, _ := switched(t, &Config{TunnelWindow: 1 << 20}, h, 1000, 64<<10)
	ctx := context.Background()
	tun, err := c.Tunnel(ctx, "svc")
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{0, 1, 999, 1000, 1001, 64 << 10, 1 << 20, 0, 12345} {
		msg := make([]byte, size)
		for i := range msg {
			msg[i] = byte(rng.IntN(256))
		}
		if err := tun.Send(ctx, msg); err != nil {
			t.Fatalf("Send of %d bytes: %v", size, err)
		}
		if n, err := tun.Recv(ctx); err != nil || string(n) != fmt.Sprint(size) {
			t.Fatalf("Recv = %q, %v; want %d", n, err, size)
		}
		if got, err := tun.Recv(ctx); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("Recv: %d bytes, %v; want the %d sent", len(got), err, size)
		}
	}
	if err := tun.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestTunnelEndToEndStream(t *testing.T) {
	leakcheck.Check(t)
	h := tunnelService{HandlerFunc: nopHandler, serve: func(tun *Tunnel) {
		nc := tun.NetConn()
		if _, err := io.Copy(nc, nc); err != nil { // echo until the client closes
			t.Errorf("service io.Copy = %v", err)
		}
	}}
	c, _ := switched(t, &Config{TunnelWindow: MinTunnelWindow}, h, 8<<10, 32<<10)
	tun, err := c.Tunnel(context.Background(), "svc")
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 8<<20)
	_, _ = rand.NewChaCha8([32]byte{2}).Read(data)
	nc := tun.NetConn()
	written := async(func() error { _, err := io.Copy(nc, bytes.NewReader(data)); return err })
	got := make([]byte, len(data))
	if _, err := io.ReadFull(nc, got); err != nil {
		t.Fatal(err)
	}
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Fatal("the stream came back changed")
	}
	if err := nc.Close(); err != nil {
		t.Fatal(err)
	}
}
