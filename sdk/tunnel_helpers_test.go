package sdk

// The scripted relay peer's tunnel side: helpers that play the daemon's
// part of building and serving tunnels.

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/iris-mesh/iris/api"
)

// uvarint is the wire encoding of v, built by hand-checked stdlib code
// rather than package api.
func uvarint(v uint64) []byte {
	var b []byte
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

// wire concatenates byte slices, for writing expected frames.
func wire(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// tunResult is the outcome of a Conn.Tunnel run in a goroutine.
type tunResult struct {
	t   *Tunnel
	err error
}

// buildTunnel runs c.Tunnel in a goroutine.
func buildTunnel(ctx context.Context, c *Conn, cluster string) <-chan tunResult {
	ch := make(chan tunResult, 1)
	go func() {
		t, err := c.Tunnel(ctx, cluster)
		ch <- tunResult{t, err}
	}()
	return ch
}

// openTunnel builds a tunnel from c to cluster "svc", the peer playing the
// daemon: it confirms with chunkLimit, grants credit (nothing if 0) and
// checks the client's own grant of window bytes.
func openTunnel(t testing.TB, c *Conn, p *peer, chunkLimit, credit uint64) *Tunnel {
	t.Helper()
	res := buildTunnel(context.Background(), c, "svc")
	m := p.readOp(api.OpTunInit)
	p.send(&api.Message{Op: api.OpTunConfirm, ID: m.ID, Size: chunkLimit})
	if credit > 0 {
		p.send(&api.Message{Op: api.OpTunAllow, ID: m.ID, Size: credit})
	}
	g := p.readOp(api.OpTunAllow)
	if g.ID != m.ID || g.Size != uint64(c.cfg.TunnelWindow) {
		t.Fatalf("client's TUN_ALLOW %+v, want %d bytes for tunnel %d", g, c.cfg.TunnelWindow, m.ID)
	}
	r := <-res
	if r.err != nil {
		t.Fatalf("Tunnel: %v", r.err)
	}
	return r.t
}

// transfer sends one chunk as the daemon.
func (p *peer) transfer(id, sizeOrCont uint64, chunk string) {
	p.t.Helper()
	p.send(&api.Message{Op: api.OpTunTransfer, ID: id, Size: sizeOrCont, Payload: []byte(chunk)})
}

// readChunk reads the client's next message, which must be a chunk of
// tunnel id with the given sizeOrCont and payload.
func (p *peer) readChunk(id, sizeOrCont uint64, chunk string) {
	p.t.Helper()
	m := p.readOp(api.OpTunTransfer)
	if m.ID != id || m.Size != sizeOrCont || string(m.Payload) != chunk {
		p.t.Fatalf("TUN_TRANSFER tunnel %d size %d %q, want tunnel %d size %d %q",
			m.ID, m.Size, m.Payload, id, sizeOrCont, chunk)
	}
}

// readAllow reads the client's next message, which must grant n bytes on
// tunnel id.
func (p *peer) readAllow(id, n uint64) {
	p.t.Helper()
	if m := p.readOp(api.OpTunAllow); m.ID != id || m.Size != n {
		p.t.Fatalf("TUN_ALLOW tunnel %d %d bytes, want tunnel %d %d bytes", m.ID, m.Size, id, n)
	}
}

// closeConn closes c, answering its CLOSE as the daemon does.
func closeConn(t testing.TB, c *Conn, p *peer) {
	t.Helper()
	closed := async(c.Close)
	p.closeAck()
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// registerPipe registers a service over a pipe made by cfg.Dial (from
// pipeDialer, whose ends channel is given) and completes the handshake.
func registerPipe(t *testing.T, cfg *Config, ends chan net.Conn, cluster string, h Handler, lim *ServiceLimits) (*Service, *peer) {
	t.Helper()
	type registered struct {
		s   *Service
		err error
	}
	ch := make(chan registered, 1)
	go func() {
		s, err := Register(context.Background(), cfg, cluster, h, lim)
		ch <- registered{s, err}
	}()
	p := newPeer(t, <-ends)
	p.acceptInit(cluster)
	r := <-ch
	if r.err != nil {
		t.Fatalf("Register: %v", r.err)
	}
	return r.s, p
}

// tunnelService is a Handler whose HandleTunnel runs serve.
type tunnelService struct {
	HandlerFunc
	serve func(t *Tunnel)
}

func (s tunnelService) HandleTunnel(t *Tunnel) { s.serve(t) }

func nopHandler(context.Context, []byte) ([]byte, error) { return nil, nil }

// serveEcho plays the daemon for tunnel id, whose far end echoes every
// chunk: a chunk the client sends comes back unchanged once the client's
// credit (initially credit bytes) covers it, and its credit is returned to the client as it is
// echoed. After closeAfter bytes are echoed the far end closes the tunnel
// gracefully. It answers the client's TUN_CLOSE and CLOSE as the daemon
// does and returns when the client closes the connection. It may run in its
// own goroutine: it returns errors instead of failing the test.
func (p *peer) serveEcho(id, credit uint64, closeAfter int) error {
	bw := bufio.NewWriterSize(p.nc, 64<<10)
	var (
		m       api.Message
		out     []byte
		backlog []api.Message
		echoed  int
		closed  bool
	)
	for {
		if err := p.dec.ReadClient(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		switch m.Op {
		case api.OpTunAllow:
			credit += m.Size
		case api.OpTunTransfer:
			backlog = append(backlog, m)
		case api.OpTunClose:
			out = api.AppendDaemon(out, &api.Message{Op: api.OpTunClose, ID: m.ID})
		case api.OpClose:
			_, _ = bw.Write(append(out, byte(api.OpClose), 0))
			err := bw.Flush()
			_ = p.nc.Close()
			return err
		}
		for !closed && len(backlog) > 0 && credit >= uint64(len(backlog[0].Payload)) {
			c := backlog[0]
			backlog = backlog[1:]
			n := uint64(len(c.Payload))
			credit -= n
			out = api.AppendDaemon(out, &api.Message{Op: api.OpTunTransfer, ID: id, Size: c.Size, Payload: c.Payload})
			out = api.AppendDaemon(out, &api.Message{Op: api.OpTunAllow, ID: id, Size: n})
			echoed += int(n)
			if echoed >= closeAfter {
				out = api.AppendDaemon(out, &api.Message{Op: api.OpTunClose, ID: id})
				closed = true
			}
		}
		if _, err := bw.Write(out); err != nil {
			return err
		}
		out = out[:0]
		if p.br.Buffered() == 0 {
			if err := bw.Flush(); err != nil {
				return err
			}
		}
	}
}
