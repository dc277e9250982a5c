package relay_test

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/iris-mesh/iris/api"
	"github.com/iris-mesh/iris/cluster"
	"github.com/iris-mesh/iris/crypto"
	"github.com/iris-mesh/iris/overlay"
	"github.com/iris-mesh/iris/relay"
)

// ioTimeout bounds every read a test makes, so a missing message fails the
// test instead of hanging it.
const ioTimeout = 5 * time.Second

var testKey = func() crypto.Key {
	var k crypto.Key
	for i := range k {
		k[i] = byte(i + 1)
	}
	return k
}()

// daemon is a single irisd in process: overlay, cluster node and relay.
type daemon struct {
	node *cluster.Node
	srv  *relay.Server
	addr string // the relay's 127.0.0.1 address
}

// testLogger logs warnings to t. A fuzz target's daemon logs nothing: a
// *testing.F must not be used once the fuzz function runs.
func testLogger(t testing.TB) zerolog.Logger {
	if _, ok := t.(*testing.F); ok {
		return zerolog.Nop()
	}
	return zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
}

// startDaemon starts a daemon whose relay listens on a free port; mod may
// adjust the relay's Config. Everything is closed when the test ends.
func startDaemon(t testing.TB, mod func(*relay.Config)) *daemon {
	t.Helper()
	ccfg := cluster.DefaultConfig()
	ccfg.TunnelWindow = 1 << 20 // TestTunnelViolations overruns it: keep it small
	ccfg.Logger = testLogger(t)
	node, err := cluster.New(ccfg)
	if err != nil {
		t.Fatal(err)
	}
	ocfg := overlay.DefaultConfig()
	ocfg.Network, ocfg.Key = "t", testKey
	ocfg.ListenAddr = "127.0.0.1:0"
	ocfg.Gossip = overlay.LocalGossip()
	ocfg.Delegate = node
	ocfg.Logger = testLogger(t)
	ov, err := overlay.New(ocfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ov.Close() })
	if err := node.Start(ov); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	rcfg := relay.DefaultConfig()
	rcfg.Port = 0
	rcfg.Logger = testLogger(t)
	if mod != nil {
		mod(rcfg)
	}
	srv, err := relay.New(rcfg, node)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	d := &daemon{node: node, srv: srv}
	for _, a := range srv.Addrs() {
		if a.(*net.TCPAddr).IP.To4() != nil {
			d.addr = a.String()
		}
	}
	if d.addr == "" {
		t.Fatalf("relay not listening on 127.0.0.1: %v", srv.Addrs())
	}
	return d
}

// client is a test app speaking the relay protocol over a raw connection.
type client struct {
	t   testing.TB
	nc  net.Conn
	br  *bufio.Reader // with dec, made on first recv; raw reads must not mix with them
	dec *api.Decoder
}

// dial connects to the daemon without a handshake.
func dial(t testing.TB, d *daemon) *client {
	t.Helper()
	nc, err := net.Dial("tcp", d.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &client{t: t, nc: nc}
}

// connect dials and completes the handshake; cluster "" is a plain client.
func connect(t testing.TB, d *daemon, clusterName string) *client {
	t.Helper()
	c := dial(t, d)
	c.send(api.Message{Op: api.OpInit, Magic: api.ClientMagic, Version: api.ProtocolVersion, Cluster: clusterName})
	m := c.recv()
	if m.Op != api.OpInit || m.Magic != api.RelayMagic || m.Version != api.ProtocolVersion {
		t.Fatalf("handshake answer = %+v", m)
	}
	return c
}

func (c *client) send(m api.Message) {
	c.t.Helper()
	if _, err := c.nc.Write(api.AppendClient(nil, &m)); err != nil {
		c.t.Fatalf("send %s: %v", m.Op, err)
	}
}

// sendHex writes raw bytes given in hex; spaces are ignored.
func (c *client) sendHex(h string) {
	c.t.Helper()
	if _, err := c.nc.Write(unhex(c.t, h)); err != nil {
		c.t.Fatalf("send %s: %v", h, err)
	}
}

func (c *client) recv() api.Message {
	c.t.Helper()
	if c.dec == nil {
		c.br = bufio.NewReaderSize(c.nc, 64<<10)
		c.dec = api.NewDecoder(c.br, api.Limits{})
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(ioTimeout))
	var m api.Message
	if err := c.dec.ReadDaemon(&m); err != nil {
		c.t.Fatalf("recv: %v", err)
	}
	return m
}

// expectHex reads exactly the bytes given in hex.
func (c *client) expectHex(h string) {
	c.t.Helper()
	want := unhex(c.t, h)
	got := make([]byte, len(want))
	_ = c.nc.SetReadDeadline(time.Now().Add(ioTimeout))
	if n, err := io.ReadFull(c.nc, got); err != nil {
		c.t.Fatalf("reading % x: got % x, %v", want, got[:n], err)
	}
	if !bytes.Equal(got, want) {
		c.t.Fatalf("got  % x\nwant % x", got, want)
	}
}

// expectClosed reads until the daemon closes the connection and fails if
// anything but the bytes in allow arrives first (allow may be empty).
func (c *client) expectClosed() {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(ioTimeout))
	var r io.Reader = c.nc
	if c.dec != nil {
		var m api.Message
		err := c.dec.ReadDaemon(&m)
		if err == nil {
			c.t.Fatalf("got %s %+v, want the connection closed", m.Op, m)
		}
		checkClosedErr(c.t, err)
		return
	}
	b := make([]byte, 64)
	n, err := r.Read(b)
	if n > 0 {
		c.t.Fatalf("got % x, want the connection closed", b[:n])
	}
	checkClosedErr(c.t, err)
}

// expectRefused expects op (CLOSE, or DENY in the handshake) with a reason
// containing reason, then the connection closed.
func (c *client) expectRefused(op api.Opcode, reason string) {
	c.t.Helper()
	m := c.recv()
	if m.Op != op || !strings.Contains(m.Fault, reason) {
		c.t.Fatalf("got %s %q, want %s with a reason containing %q", m.Op, m.Fault, op, reason)
	}
	c.expectClosed()
}

func checkClosedErr(t testing.TB, err error) {
	t.Helper()
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("connection still open")
	}
	// io.EOF, or a reset when the daemon closed with our bytes unread.
}

// request sends REQUEST(id, cluster, payload, timeoutMs).
func (c *client) request(id uint64, clusterName, payload string, timeoutMs uint64) {
	c.t.Helper()
	c.send(api.Message{Op: api.OpRequest, ID: id, Cluster: clusterName, Payload: []byte(payload), TimeoutMs: timeoutMs})
}

// reply sends a successful REPLY(id, payload).
func (c *client) reply(id uint64, payload string) {
	c.t.Helper()
	c.send(api.Message{Op: api.OpReply, ID: id, Success: true, Payload: []byte(payload)})
}

// expectOp receives one message and checks its opcode.
func (c *client) expectOp(op api.Opcode) api.Message {
	c.t.Helper()
	m := c.recv()
	if m.Op != op {
		c.t.Fatalf("got %s %+v, want %s", m.Op, m, op)
	}
	return m
}

// expectReply receives a REPLY and checks it against want (ID, TimedOut,
// Success, Payload, Fault).
func (c *client) expectReply(want api.Message) {
	c.t.Helper()
	m := c.expectOp(api.OpReply)
	if m.ID != want.ID || m.TimedOut != want.TimedOut || m.Success != want.Success ||
		string(m.Payload) != string(want.Payload) || m.Fault != want.Fault {
		c.t.Fatalf("got REPLY %+v, want %+v", m, want)
	}
}

// expectPublish receives a PUBLISH and checks its topic and event.
func (c *client) expectPublish(topic, event string) {
	c.t.Helper()
	m := c.expectOp(api.OpPublish)
	if m.Topic != topic || string(m.Payload) != event {
		c.t.Fatalf("got PUBLISH(%q, %q), want (%q, %q)", m.Topic, m.Payload, topic, event)
	}
}

func unhex(t testing.TB, h string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(h, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", h, err)
	}
	return b
}

// hexStr is the hex of a string field: varint length, then the bytes.
func hexStr(s string) string {
	return hex.EncodeToString(append([]byte{byte(len(s))}, s...))
}

// waitFor polls cond until it holds, failing the test after ioTimeout.
// It is for state with no event to wait on (counters bumped after the
// observable effect); it never stands in for a message.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for tick := time.Millisecond; !cond(); tick = min(2*tick, 50*time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(tick) // polling a condition with a deadline
	}
}

// roundTrip checks that a request from c reaches svc and its reply returns.
func roundTrip(t testing.TB, c, svc *client, clusterName string, id uint64) {
	t.Helper()
	c.request(id, clusterName, "ping", 5000)
	m := svc.expectOp(api.OpRequest)
	if string(m.Payload) != "ping" {
		t.Fatalf("service got %q", m.Payload)
	}
	svc.reply(m.ID, "pong")
	c.expectReply(api.Message{ID: id, Success: true, Payload: []byte("pong")})
}

// expectClosedAfterTunnelData skips tunnel traffic and a protocol
// violation's CLOSE (credit returned for
// chunks that were passed on) until the daemon closes the connection.
func (c *client) expectClosedAfterTunnelData() {
	c.t.Helper()
	for {
		var m api.Message
		c.nc.SetReadDeadline(time.Now().Add(ioTimeout))
		if c.dec == nil {
			c.br = bufio.NewReader(c.nc)
			c.dec = api.NewDecoder(c.br, api.Limits{})
		}
		err := c.dec.ReadDaemon(&m)
		if err != nil {
			checkClosedErr(c.t, err)
			return
		}
		if m.Op == api.OpClose && strings.HasPrefix(m.Fault, "iris: protocol violation: ") {
			continue // the reason; the close follows
		}
		if m.Op != api.OpTunAllow && m.Op != api.OpTunTransfer {
			c.t.Fatalf("got %+v, want the connection closed", m)
		}
	}
}

// expectTunnelEnd skips tunnel traffic until tunnel id is closed.
func (c *client) expectTunnelEnd(id uint64) {
	c.t.Helper()
	for {
		m := c.recv()
		if m.Op == api.OpTunClose && m.ID == id {
			return
		}
		if m.Op != api.OpTunAllow && m.Op != api.OpTunTransfer {
			c.t.Fatalf("got %+v, want TUN_CLOSE(%d)", m, id)
		}
	}
}
