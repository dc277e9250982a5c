package sdk

// A scripted relay peer: the daemon side of the relay protocol, driven step
// by step by each test through package api over a real TCP loopback
// connection (or, in synctest bubbles, one end of a net.Pipe).

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"

	"github.com/iris-mesh/iris/api"
)

// relay listens on 127.0.0.1:0 and hands accepted connections to the test.
type relay struct {
	t     testing.TB
	ln    net.Listener
	conns chan net.Conn
	stop  chan struct{}
	done  chan struct{}
}

func newRelay(t testing.TB) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{t: t, ln: ln, conns: make(chan net.Conn), stop: make(chan struct{}), done: make(chan struct{})}
	go r.acceptLoop()
	t.Cleanup(func() {
		close(r.stop)
		_ = ln.Close()
		<-r.done
	})
	return r
}

func (r *relay) acceptLoop() {
	defer close(r.done)
	for {
		nc, err := r.ln.Accept()
		if err != nil {
			return
		}
		select {
		case r.conns <- nc:
		case <-r.stop:
			_ = nc.Close()
			return
		}
	}
}

// config returns a Config that reaches the relay.
func (r *relay) config() *Config { return &Config{Addr: r.ln.Addr().String()} }

// accept returns the next connection, before its handshake.
func (r *relay) accept() *peer {
	r.t.Helper()
	p := newPeer(r.t, <-r.conns)
	r.t.Cleanup(func() { _ = p.nc.Close() })
	return p
}

// peer is the daemon's end of one connection.
type peer struct {
	t   testing.TB
	nc  net.Conn
	br  *bufio.Reader // shared with dec, for reading raw bytes
	dec *api.Decoder
}

func newPeer(t testing.TB, nc net.Conn) *peer {
	br := bufio.NewReaderSize(nc, 64<<10)
	return &peer{t: t, nc: nc, br: br, dec: api.NewDecoder(br, api.Limits{})}
}

// read decodes the next client message; it fails the test on error and
// must be called from the test goroutine.
func (p *peer) read() *api.Message {
	p.t.Helper()
	var m api.Message
	if err := p.dec.ReadClient(&m); err != nil {
		p.t.Fatalf("peer: read: %v", err)
	}
	return &m
}

// readOp reads the next message and checks its opcode.
func (p *peer) readOp(op api.Opcode) *api.Message {
	p.t.Helper()
	m := p.read()
	if m.Op != op {
		p.t.Fatalf("peer: read %s, want %s", m.Op, op)
	}
	return m
}

// readRaw reads exactly len(want) bytes and compares them with want.
func (p *peer) readRaw(want []byte) {
	p.t.Helper()
	got := make([]byte, len(want))
	if _, err := io.ReadFull(p.br, got); err != nil {
		p.t.Fatalf("peer: read %d raw bytes: %v (got % x)", len(want), err, got)
	}
	if !bytes.Equal(got, want) {
		p.t.Fatalf("peer: read % x, want % x", got, want)
	}
}

// expectEOF checks that the client closed the connection with nothing more
// to say.
func (p *peer) expectEOF() {
	p.t.Helper()
	if b, err := p.br.ReadByte(); err != io.EOF {
		p.t.Fatalf("peer: read byte %#x, err %v; want EOF", b, err)
	}
}

// send encodes m as the daemon and writes it.
func (p *peer) send(m *api.Message) {
	p.t.Helper()
	p.sendRaw(api.AppendDaemon(nil, m))
}

func (p *peer) sendRaw(b []byte) {
	p.t.Helper()
	if _, err := p.nc.Write(b); err != nil {
		p.t.Fatalf("peer: write: %v", err)
	}
}

// acceptInit reads the client's INIT, checks it and accepts it.
func (p *peer) acceptInit(cluster string) {
	p.t.Helper()
	m := p.readOp(api.OpInit)
	if m.Magic != api.ClientMagic || m.Version != api.ProtocolV11 || m.Cluster != cluster {
		p.t.Fatalf("peer: INIT magic %q version %q cluster %q; want cluster %q", m.Magic, m.Version, m.Cluster, cluster)
	}
	// Answer as a v1.1 daemon; the session's v1.0 messages are unchanged.
	p.dec.EnableV11()
	info := api.EncodeInitInfo(&api.InitInfo{Daemon: "peer", MaxMessage: 16 << 20, PushWindow: 64, Subjects: true})
	p.send(&api.Message{Op: api.OpInit, Magic: api.RelayMagic, Version: api.ProtocolV11, Payload: info})
}

// closeAck reads the client's CLOSE, answers it as the daemon does and
// closes the socket.
func (p *peer) closeAck() {
	p.t.Helper()
	p.readOp(api.OpClose)
	p.send(&api.Message{Op: api.OpClose})
	_ = p.nc.Close()
}

// reply sends a successful REPLY.
func (p *peer) reply(id uint64, payload []byte) {
	p.t.Helper()
	p.send(&api.Message{Op: api.OpReply, ID: id, Success: true, Payload: payload})
}

// serve answers every REQUEST with answer(request) until the client closes,
// answering CLOSE as the daemon does. It may run in its own goroutine: it
// returns errors instead of failing the test. Replies are buffered and
// flushed whenever no more input is buffered.
func (p *peer) serve(answer func(m *api.Message) api.Message) error {
	bw := bufio.NewWriterSize(p.nc, 64<<10)
	var m api.Message
	var out []byte
	for {
		if err := p.dec.ReadClient(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		switch m.Op {
		case api.OpRequest:
			reply := answer(&m)
			out = api.AppendDaemon(out[:0], &reply)
			if _, err := bw.Write(out); err != nil {
				return err
			}
		case api.OpClose:
			_, _ = bw.Write([]byte{byte(api.OpClose), 0})
			err := bw.Flush()
			_ = p.nc.Close()
			return err
		}
		if p.br.Buffered() == 0 {
			if err := bw.Flush(); err != nil {
				return err
			}
		}
	}
}

// echo answers a request with its own payload.
func echo(m *api.Message) api.Message {
	return api.Message{Op: api.OpReply, ID: m.ID, Success: true, Payload: m.Payload}
}

// connect connects a plain client to r and completes the handshake. The
// connection is dropped and closed at cleanup.
func connect(t testing.TB, r *relay, cfg *Config) (*Conn, *peer) {
	t.Helper()
	if cfg == nil {
		cfg = r.config()
	}
	type dialed struct {
		c   *Conn
		err error
	}
	ch := make(chan dialed, 1)
	go func() {
		c, err := Connect(context.Background(), cfg)
		ch <- dialed{c, err}
	}()
	p := r.accept()
	p.acceptInit("")
	d := <-ch
	if d.err != nil {
		t.Fatalf("Connect: %v", d.err)
	}
	t.Cleanup(func() {
		_ = p.nc.Close()
		_ = d.c.Close()
	})
	return d.c, p
}

// register registers a service in cluster at r and completes the
// handshake. The service is dropped and closed at cleanup.
func register(t testing.TB, r *relay, cluster string, h Handler, lim *ServiceLimits) (*Service, *peer) {
	t.Helper()
	type registered struct {
		s   *Service
		err error
	}
	ch := make(chan registered, 1)
	go func() {
		s, err := Register(context.Background(), r.config(), cluster, h, lim)
		ch <- registered{s, err}
	}()
	p := r.accept()
	p.acceptInit(cluster)
	reg := <-ch
	if reg.err != nil {
		t.Fatalf("Register: %v", reg.err)
	}
	t.Cleanup(func() {
		_ = p.nc.Close()
		_ = reg.s.Close()
	})
	return reg.s, p
}

// pipeDialer returns a Config.Dial that connects over net.Pipe, and the
// channel on which it hands over the daemon's ends; for synctest bubbles,
// where goroutines blocked on a pipe count as durably blocked.
func pipeDialer() (func(context.Context, string, string) (net.Conn, error), chan net.Conn) {
	ends := make(chan net.Conn, 1)
	return func(context.Context, string, string) (net.Conn, error) {
		client, daemon := net.Pipe()
		ends <- daemon
		return client, nil
	}, ends
}

// async runs f in a goroutine and returns a channel that yields its error.
func async(f func() error) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- f() }()
	return ch
}

// reqResult is the outcome of a Request run in a goroutine.
type reqResult struct {
	reply []byte
	err   error
}

// request runs c.Request in a goroutine.
func request(ctx context.Context, c *Conn, cluster string, payload []byte) <-chan reqResult {
	ch := make(chan reqResult, 1)
	go func() {
		reply, err := c.Request(ctx, cluster, payload)
		ch <- reqResult{reply, err}
	}()
	return ch
}

// isDone reports whether ch is closed or holds a value right now; it
// consumes the value.
func isDone[T any](ch <-chan T) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
