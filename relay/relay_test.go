package relay_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/iris-mesh/iris/api"
	"github.com/iris-mesh/iris/internal/leakcheck"
	"github.com/iris-mesh/iris/relay"
)

// Wire constants from docs/relay-protocol.md, spelled out byte by byte.
const (
	hexClientMagic = "11 69726973 2d636c69656e74 2d6d61676963"        // "iris-client-magic"
	hexRelayMagic  = "10 69726973 2d72656c6179 2d6d61676963"          // "iris-relay-magic"
	hexVersion     = "0b 76312e30 2d647261667432"                     // "v1.0-draft2"
	hexInitOK      = "00" + hexRelayMagic + hexVersion                // the daemon's INIT
	hexInitPlain   = "00" + hexClientMagic + hexVersion + "00"        // plain client
	hexInitSvc     = "00" + hexClientMagic + hexVersion + "03 737663" // service "svc"
)

// TestWireBytes checks the daemon's bytes for the core flows against the
// specification, with no codec on the test side.
func TestWireBytes(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t, nil)
	svc, cli := dial(t, d), dial(t, d)
	svc.sendHex(hexInitSvc)
	svc.expectHex(hexInitOK)
	cli.sendHex(hexInitPlain)
	cli.expectHex(hexInitOK)

	// REQUEST(1, "svc", "hi", 1000 ms) → REQUEST(1, "hi", 1000) to the service.
	cli.sendHex("04 01 03737663 026869 e807")
	svc.expectHex("04 01 026869 e807")
	svc.sendHex("05 01 01 02 6f6b") // REPLY(1, success, "ok")
	cli.expectHex("05 01 00 01 02 6f6b")

	// A fault: REPLY(2, failure, "oops") → REPLY(2, not timed out, failure, "oops").
	cli.sendHex("04 02 03737663 00 e807")
	svc.expectHex("04 02 00 e807")
	svc.sendHex("05 02 00 04 6f6f7073")
	cli.expectHex("05 02 00 00 04 6f6f7073")

	// An empty fault reads as a timeout.
	cli.sendHex("04 03 03737663 00 e807")
	svc.expectHex("04 03 00 e807")
	svc.sendHex("05 03 00 00")
	cli.expectHex("05 03 01")

	// No member: REQUEST(4, "none", "", 10 ms) times out: 05 04 01.
	cli.sendHex("04 04 046e6f6e65 00 0a")
	cli.expectHex("05 04 01")

	// Graceful close: 02 → 02 00, then the socket closes.
	cli.sendHex("02")
	cli.expectHex("02 00")
	cli.expectClosed()
	svc.sendHex("02")
	svc.expectHex("02 00")
	svc.expectClosed()
}

func TestHandshake(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t, func(c *relay.Config) { c.HandshakeTimeout = 100 * time.Millisecond })

	t.Run("plain", func(t *testing.T) {
		c := dial(t, d)
		c.sendHex(hexInitPlain)
		c.expectHex(hexInitOK)
	})
	t.Run("deny version", func(t *testing.T) {
		c := dial(t, d)
		c.sendHex("00" + hexClientMagic + hexStr("v0.9") + "00")
		c.expectHex("01" + hexRelayMagic + hexStr("Unsupported protocol. Client: v0.9. Iris: v1.0-draft2."))
		c.expectClosed()
	})
	t.Run("deny service of a newer version", func(t *testing.T) {
		c := dial(t, d)
		c.sendHex("00" + hexClientMagic + hexStr("v1.2") + "03 737663")
		c.expectHex("01" + hexRelayMagic + hexStr("Unsupported protocol. Client: v1.2. Iris: v1.0-draft2."))
		c.expectClosed()
		if cs := d.node.Clusters(); len(cs) != 0 {
			t.Fatalf("denied service registered: %+v", cs)
		}
	})
	t.Run("bad magic", func(t *testing.T) {
		c := dial(t, d)
		c.sendHex("00" + hexStr("iris-relay-magic") + hexVersion + "00")
		c.expectClosed()
	})
	t.Run("not INIT first", func(t *testing.T) {
		c := dial(t, d)
		c.sendHex("06 01 74") // SUBSCRIBE("t")
		c.expectClosed()
	})
	t.Run("timeout", func(t *testing.T) {
		c := dial(t, d)
		start := time.Now()
		c.expectClosed()
		if el := time.Since(start); el < 90*time.Millisecond {
			t.Fatalf("closed after %v, before the handshake timeout", el)
		}
	})
	waitFor(t, "handshake counters", func() bool {
		st := d.srv.Stats()
		return st.Denied == 2 && st.HandshakeFailures == 3
	})
}

// TestRegisteredBeforeInitAnswer: a request sent as soon as the service's
// INIT is answered reaches it (it does not time out for lack of a member).
func TestRegisteredBeforeInitAnswer(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t, nil)
	cli := connect(t, d, "")
	for i := range 20 {
		name := fmt.Sprintf("svc%d", i)
		svc := connect(t, d, name)
		cli.request(uint64(i+1), name, "x", 5000)
		m := svc.expectOp(api.OpRequest)
		svc.reply(m.ID, "y")
		cli.expectReply(api.Message{ID: uint64(i + 1), Success: true, Payload: []byte("y")})
	}
}

func TestRequestOutcomes(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t, nil)
	svc := connect(t, d, "svc")
	cli := connect(t, d, "")
	tests := []struct {
		name  string
		reply api.Message // from the service
		want  api.Message // to the client
	}{
		{"result", api.Message{Success: true, Payload: []byte("res")}, api.Message{Success: true, Payload: []byte("res")}},
		{"empty result", api.Message{Success: true, Payload: []byte{}}, api.Message{Success: true}},
		{"fault", api.Message{Fault: "boom"}, api.Message{Fault: "boom"}},
		{"empty fault", api.Message{}, api.Message{TimedOut: true}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := uint64(100 + i)
			cli.request(id, "svc", "q", 5000)
			m := svc.expectOp(api.OpRequest)
			if string(m.Payload) != "q" || m.TimeoutMs != 5000 || m.ID != uint64(i+1) {
				t.Fatalf("service got %+v", m)
			}
			r := tt.reply
			r.Op, r.ID = api.OpReply, m.ID
			svc.send(r)
			w := tt.want
			w.ID = id
			cli.expectReply(w)
		})
	}
}

// TestRequestTimeoutNoMember: a request to a cluster with no member is
// answered timed out at its deadline.
func TestRequestTimeoutNoMember(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t, nil)
	cli := connect(t, d, "")
	const timeout = 200 * time.Millisecond
	start := time.Now()
	cli.request(1, "nobody", "x", uint64(timeout/time.Millisecond))
	cli.expectReply(api.Message{ID: 1, TimedOut: true})
	// Never early; late only by a busy machine's scheduling delay (the
	// cluster's fake-clock tests check the exact instant).
	if el := time.Since(start); el < timeout || el > timeout+3*time.Second {
		t.Fatalf("timed out after %v, want %v", el, timeout)
	}
	// A timeout of 0 counts as 1 ms.
	cli.request(2, "nobody", "x", 0)
	cli.expectReply(api.Message{ID: 2, TimedOut: true})
}

// TestLateReply: a reply after the delivered request expired is dropped
// silently and the service goes on working.
func TestLateReply(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t, nil)
	svc := connect(t, d, "svc")
	cli := connect(t, d, "")
	cli.request(1, "svc", "slow", 50)
	m := svc.expectOp(api.OpRequest)
	if m.TimeoutMs != 50 {
		t.Fatalf("service got timeout %d, want 50", m.TimeoutMs)
	}
	cli.expectReply(api.Message{ID: 1, TimedOut: true})
	waitFor(t, "the delivered request to expire", func() bool { return d.srv.Stats().ExpiredRequests == 1 })
	svc.reply(m.ID, "late")
	roundTrip(t, cli, svc, "svc", 2)
	if st := d.srv.Stats(); st.LateReplies != 1 || st.Violations != 0 {
		t.Fatalf("LateReplies = %d, Violations = %d; want 1, 0", st.LateReplies, st.Violations)
	}
}

// TestReplyNeverIssued: a reply to an id the daemon never delivered closes
// that connection and no other.
func TestReplyNeverIssued(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t, nil)
	bad := connect(t, d, "svc")
	good := connect(t, d, "svc")
	cli := connect(t, d, "")
	bad.reply(7, "?")
	bad.expectRefused(api.OpClose, "iris: protocol violation: reply to request 7, which was never delivered")
	plain := connect(t, d, "")
	plain.reply(1, "?") // a plain client has never been delivered anything
	plain.expectRefused(api.OpClose, "iris: protocol violation: ")
	for i := range 5 { // bad is unregistered: every request goes to good
		roundTrip(t, cli, good, "svc", uint64(i+1))
	}
	waitFor(t, "2 violations", func() bool { return d.srv.Stats().Violations == 2 })
}

// TestMalformedInput: bytes that break the protocol close that connection
// only.
func TestMalformedInput(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t, nil)
	svc := connect(t, d, "svc")
	cli := connect(t, d, "")
	const violation = "iris: protocol violation: "
	tests := []struct{ name, hex, reason string }{
		{"bad bool", "05 01 02", violation},
		{"overlong varint", "04 ffffffffffffffffffff 01", violation},
		{"varint overflow", "04 ffffffffffffffffff 02", violation},
		{"huge length", "03 01 63 ffffffff0f", "message field of 4294967295 bytes exceeds the daemon's limit of 16777216 bytes (-max-message)"},
		{"huge string", "06 ffffffff0f", "exceeds the daemon's limit of 65536 bytes"},
		{"unknown opcode", "0e", violation},
		{"unknown opcode ff", "ff", violation},
		{"DENY from client", "01" + hexRelayMagic + "00", violation},
		{"second INIT", hexInitPlain, violation},
		{"duplicate request id", "04 09 046e6f6e65 00 b817 04 09 046e6f6e65 00 b817", violation},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := connect(t, d, "")
			c.sendHex(tt.hex)
			c.expectRefused(api.OpClose, tt.reason)
			roundTrip(t, cli, svc, "svc", uint64(i+1))
		})
	}
	waitFor(t, "violations counted", func() bool { return d.srv.Stats().Violations == uint64(len(tests)) })
}

// TestBroadcast: a broadcast reaches every member, the sender included,
// and nothing reaches a plain client.
func TestBroadcast(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t, nil)
	a, b := connect(t, d, "bc"), connect(t, d, "bc")
	other := connect(t, d, "other")
	cli := connect(t, d, "")
	a.send(api.Message{Op: api.OpBroadcast, Cluster: "bc", Payload: []byte("from a")})
	cli.send(api.Message{Op: api.OpBroadcast, Cluster: "bc", Payload: []byte("from cli")})
	cli.send(api.Message{Op: api.OpBroadcast, Cluster: "nobody", Payload: []byte("lost")})
	for _, c := range []*client{a, b} {
		got := map[string]bool{}
		for range 2 {
			got[string(c.expectOp(api.OpBroadcast).Payload)] = true
		}
		if !got["from a"] || !got["from cli"] {
			t.Fatalf("member got %v", got)
		}
	}
	// Neither the plain client nor a member of another cluster got anything:
	// the next thing each receives is its own request's answer.
	for i, c := range []*client{cli, other} {
		c.request(uint64(i+1), "nobody", "", 1)
		c.expectReply(api.Message{ID: uint64(i + 1), TimedOut: true})
	}
}

// TestBroadcastOrder: one connection's broadcasts arrive in order.
func TestBroadcastOrder(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t, nil)
	svc := connect(t, d, "ord")
	cli := connect(t, d, "")
	const n = 1000
	for i := range n {
		cli.send(api.Message{Op: api.OpBroadcast, Cluster: "ord", Payload: fmt.Appendf(nil, "%d", i)})
	}
	for i := range n {
		if m := svc.expectOp(api.OpBroadcast); string(m.Payload) != fmt.Sprint(i) {
			t.Fatalf("broadcast %d arrived as %q", i, m.Payload)
		}
	}
}

// TestBroadcastOrderMixedSizes: broadcasts of mixed sizes, queued faster
// than the writer writes them, arrive whole and in order: small ones copied
// into the write buffer, large ones gathered from where they are.
func TestBroadcastOrderMixedSizes(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t, nil)
	svc := connect(t, d, "ord")
	cli := connect(t, d, "")
	sizes := []int{5, 20 << 10, 1, 70 << 10, 300, 16 << 10, 16<<10 - 1, 64 << 10}
	const n = 64
	payload := func(i int) []byte {
		return bytes.Repeat([]byte{byte('a' + i%26)}, sizes[i%len(sizes)])
	}
	for i := range n {
		cli.send(api.Message{Op: api.OpBroadcast, Cluster: "ord", Payload: payload(i)})
	}
	for i := range n {
		if m := svc.expectOp(api.OpBroadcast); !bytes.Equal(m.Payload, payload(i)) {
			t.Fatalf("broadcast %d arrived as %d bytes, want %d", i, len(m.Payload), sizes[i%len(sizes)])
		}
	}
}

// TestPublishSubscribe: events reach every subscriber, the publisher
// included, once per subscriber; unsubscribing stops delivery at once.
func TestPublishSubscribe(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t, nil)
	a, b := connect(t, d, ""), connect(t, d, "svc")
	sub := func(c *client, topic string) { c.send(api.Message{Op: api.OpSubscribe, Topic: topic}) }
	pub := func(c *client, topic, ev string) {
		c.send(api.Message{Op: api.OpPublish, Topic: topic, Payload: []byte(ev)})
	}
	sub(a, "t")
	pub(a, "t", "a0") // a's own subscription is in place before its publish
	a.expectPublish("t", "a0")
	sub(b, "t")
	sub(b, "t") // idempotent
	pub(b, "t", "b0")
	b.expectPublish("t", "b0")
	a.expectPublish("t", "b0")
	pub(a, "t", "a1")
	a.expectPublish("t", "a1")
	b.expectPublish("t", "a1") // once: b0's duplicate would have come first

	a.send(api.Message{Op: api.OpUnsubscribe, Topic: "t"})
	pub(a, "t", "a2") // a is no longer a subscriber...
	sub(a, "fence")
	pub(a, "fence", "f0")
	a.expectPublish("fence", "f0") // ...or a2 would have come first
	pub(b, "t", "b1")              // nor for b's events:
	pub(b, "fence", "f1")          // b's events arrive in order, b1 before f1
	a.expectPublish("fence", "f1")
	b.expectPublish("t", "a2")
	b.expectPublish("t", "b1")
	a.send(api.Message{Op: api.OpUnsubscribe, Topic: "never subscribed"})
	pub(a, "fence", "g")
	a.expectPublish("fence", "g")
	pub(a, "nobody listens", "x") // dropped without error
}

// TestSlowConsumer: a subscriber that never reads gets its events dropped
// and counted, while the daemon and other apps keep working.
func TestSlowConsumer(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t, func(c *relay.Config) { c.SendQueueLen = 16 })
	slow := connect(t, d, "")
	slow.send(api.Message{Op: api.OpSubscribe, Topic: "firehose"})
	slow.send(api.Message{Op: api.OpPublish, Topic: "firehose", Payload: []byte("first")})
	slow.expectPublish("firehose", "first") // subscribed; from now on slow never reads
	svc := connect(t, d, "svc")
	cli := connect(t, d, "")
	pub := connect(t, d, "")
	event := make([]byte, 64<<10)
	for i := 0; d.srv.Stats().DroppedEvents == 0; i++ {
		if i == 10000 {
			t.Fatal("no event dropped after 10000 events of 64 KiB")
		}
		pub.send(api.Message{Op: api.OpPublish, Topic: "firehose", Payload: event})
	}
	roundTrip(t, cli, svc, "svc", 1)
	pub.request(1, "svc", "ping", 5000) // the publisher is served too
	m := svc.expectOp(api.OpRequest)
	svc.reply(m.ID, "pong")
	pub.expectReply(api.Message{ID: 1, Success: true, Payload: []byte("pong")})
	slow.nc.Close() // its stuck writer must not outlive it (leakcheck)
}

// TestSlowService: a service that stops reading has requests refused once
// its queue is full (the cluster then fails or places them elsewhere), and
// every request still gets exactly one answer.
func TestSlowService(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t, func(c *relay.Config) { c.SendQueueLen = 4 })
	stuck := connect(t, d, "stuck") // never reads
	cli := connect(t, d, "")
	payload := string(make([]byte, 64<<10))
	n := 0
	for d.srv.Stats().RefusedRequests == 0 {
		if n == 10000 {
			t.Fatal("no request refused after 10000 requests of 64 KiB")
		}
		n++
		cli.request(uint64(n), "stuck", payload, 500)
	}
	seen := make(map[uint64]bool)
	overloaded := 0
	for range n {
		m := cli.expectOp(api.OpReply)
		if seen[m.ID] || m.ID < 1 || m.ID > uint64(n) {
			t.Fatalf("unexpected REPLY %d", m.ID)
		}
		seen[m.ID] = true
		if !m.TimedOut {
			overloaded++
		}
	}
	if overloaded == 0 {
		t.Fatal("no request was answered as refused")
	}
	stuck.nc.Close()
}

// TestGracefulClose: on CLOSE the service is unregistered and unsubscribed,
// the requests it holds fail, what is queued is written, and CLOSE("") is
// the last message.
func TestGracefulClose(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t, nil)
	svc := connect(t, d, "gc")
	cli := connect(t, d, "")
	svc.send(api.Message{Op: api.OpSubscribe, Topic: "gt"})
	cli.request(1, "gc", "held", 5000)
	svc.expectOp(api.OpRequest) // held, never answered
	// Queued before CLOSE is read: the broadcast must come out before 02 00.
	svc.send(api.Message{Op: api.OpBroadcast, Cluster: "gc", Payload: []byte("last words")})
	svc.send(api.Message{Op: api.OpClose})
	if b := svc.expectOp(api.OpBroadcast); string(b.Payload) != "last words" {
		t.Fatalf("broadcast = %q", b.Payload)
	}
	if c := svc.expectOp(api.OpClose); c.Fault != "" {
		t.Fatalf("CLOSE reason = %q, want graceful", c.Fault)
	}
	// Gone from the cluster and the topic before the answer.
	if cs := d.node.Clusters(); len(cs) != 0 {
		t.Fatalf("clusters after CLOSE: %+v", cs)
	}
	if ts := d.node.Topics(); len(ts) != 0 {
		t.Fatalf("topics after CLOSE: %+v", ts)
	}
	svc.expectClosed()
	cli.expectReply(api.Message{ID: 1, Fault: "iris: service closed"})
	// A request now finds no member and times out.
	cli.request(2, "gc", "", 20)
	cli.expectReply(api.Message{ID: 2, TimedOut: true})
	waitFor(t, "no connections but cli", func() bool { return d.srv.Stats().Conns == 1 })
}

// TestDropClose: a bare socket close tears the session down as CLOSE does,
// without an answer.
func TestDropClose(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t, nil)
	svc := connect(t, d, "dc")
	cli := connect(t, d, "")
	cli.request(1, "dc", "held", 5000)
	svc.expectOp(api.OpRequest)
	svc.nc.Close()
	cli.expectReply(api.Message{ID: 1, Fault: "iris: service closed"})
	waitFor(t, "the service unregistered", func() bool { return len(d.node.Clusters()) == 0 })
}

// TestShutdown: every app gets CLOSE("daemon shutting down"), then the
// connection closes; Shutdown returns once all is gone.
func TestShutdown(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t, nil)
	svc := connect(t, d, "sd")
	cli := connect(t, d, "")
	cli.send(api.Message{Op: api.OpSubscribe, Topic: "t"})
	half := dial(t, d) // still in its handshake: dropped
	roundTrip(t, cli, svc, "sd", 1)
	errc := make(chan error, 1)
	go func() { errc <- d.srv.Shutdown(context.Background()) }()
	for _, c := range []*client{svc, cli} {
		if m := c.expectOp(api.OpClose); m.Fault != "daemon shutting down" {
			t.Fatalf("CLOSE reason = %q", m.Fault)
		}
		c.expectClosed()
		c.nc.Close() // as a binding does on CLOSE; Shutdown waits for it
	}
	half.expectClosed()
	if err := <-errc; err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	if st := d.srv.Stats(); st.Conns != 0 || st.Services != 0 {
		t.Fatalf("after Shutdown: %+v", st)
	}
	if cs := d.node.Clusters(); len(cs) != 0 {
		t.Fatalf("clusters after Shutdown: %+v", cs)
	}
	if nc, err := net.Dial("tcp", d.addr); err == nil {
		nc.Close()
		t.Fatal("still accepting after Shutdown")
	}
	if err := d.srv.Shutdown(context.Background()); err != nil {
		t.Fatalf("second Shutdown = %v", err)
	}
	d.srv.Close()
	if err := d.srv.Listen(); !errors.Is(err, relay.ErrClosed) {
		t.Fatalf("Listen after Shutdown = %v", err)
	}
}

// TestShutdownWhileSending: an app still sending when Shutdown closes its
// session gets the whole CLOSE; its unread bytes do not reset the
// connection first.
func TestShutdownWhileSending(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t, nil)
	cli := connect(t, d, "")
	stop := make(chan struct{})
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		b := api.AppendClient(nil, &api.Message{Op: api.OpPublish, Topic: "void", Payload: make([]byte, 4096)})
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := cli.nc.Write(b); err != nil {
				return
			}
		}
	}()
	errc := make(chan error, 1)
	go func() { errc <- d.srv.Shutdown(context.Background()) }()
	if m := cli.expectOp(api.OpClose); m.Fault != "daemon shutting down" {
		t.Fatalf("CLOSE reason = %q", m.Fault)
	}
	cli.expectClosed()
	close(stop)
	<-sent
	cli.nc.Close()
	if err := <-errc; err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
}

// TestShutdownDeadline: an app that does not read cannot hold Shutdown
// beyond its context; its connection is then dropped.
func TestShutdownDeadline(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t, nil)
	cliEnd, srvEnd := net.Pipe() // no buffer: CLOSE cannot be written unless read
	defer cliEnd.Close()
	errc := make(chan error, 1)
	go func() { errc <- d.srv.ServeConn(context.Background(), srvEnd) }()
	c := &client{t: t, nc: cliEnd}
	c.sendHex(hexInitPlain)
	c.expectHex(hexInitOK)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := d.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want deadline exceeded", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("ServeConn = %v", err)
	}
}

// TestServeConnCancel: cancelling ServeConn's context drops the connection.
func TestServeConnCancel(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t, nil)
	cliEnd, srvEnd := net.Pipe()
	defer cliEnd.Close()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- d.srv.ServeConn(ctx, srvEnd) }()
	c := &client{t: t, nc: cliEnd}
	c.sendHex(hexInitSvc)
	c.expectHex(hexInitOK)
	cancel()
	c.expectClosed()
	if err := <-errc; err != nil {
		t.Fatalf("ServeConn = %v", err)
	}
	if cs := d.node.Clusters(); len(cs) != 0 {
		t.Fatalf("clusters after cancel: %+v", cs)
	}
}

func TestClose(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t, nil)
	svc := connect(t, d, "cl")
	cli := connect(t, d, "")
	cli.request(1, "cl", "", 5000)
	svc.expectOp(api.OpRequest)
	d.srv.Close() // no CLOSE message: a drop
	svc.expectClosed()
	// cli may or may not get its request failed by svc's teardown before
	// its own connection is dropped; it gets nothing else.
	_ = cli.nc.SetReadDeadline(time.Now().Add(ioTimeout))
	cli.dec = api.NewDecoder(cli.nc, api.Limits{})
	var m api.Message
	err := cli.dec.ReadDaemon(&m)
	if err == nil && (m.Op != api.OpReply || m.Fault != "iris: service closed") {
		t.Fatalf("got %+v after Close", m)
	}
	if err == nil {
		cli.expectClosed()
	}
	d.srv.Close()
	if st := d.srv.Stats(); st.Conns != 0 {
		t.Fatalf("Conns = %d after Close", st.Conns)
	}
	cliEnd, srvEnd := net.Pipe()
	defer cliEnd.Close()
	if err := d.srv.ServeConn(context.Background(), srvEnd); !errors.Is(err, relay.ErrClosed) {
		t.Fatalf("ServeConn after Close = %v", err)
	}
}

func TestServe(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- d.srv.Serve(ln) }()
	other := &daemon{node: d.node, srv: d.srv, addr: ln.Addr().String()}
	svc := connect(t, d, "svc")
	cli := connect(t, other, "")
	roundTrip(t, cli, svc, "svc", 1)
	d.srv.Close()
	if err := <-errc; !errors.Is(err, relay.ErrClosed) {
		t.Fatalf("Serve = %v, want ErrClosed", err)
	}
}

// TestTooManyPending: beyond MaxPendingRequests a request is answered at
// once with a fault, and the connection stays usable.
func TestTooManyPending(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t, func(c *relay.Config) { c.MaxPendingRequests = 2 })
	svc := connect(t, d, "svc")
	cli := connect(t, d, "")
	cli.request(1, "nobody", "", 60000)
	cli.request(2, "nobody", "", 60000)
	cli.request(3, "svc", "", 60000)
	cli.expectReply(api.Message{ID: 3, Fault: "iris: too many pending requests"})
	cli.send(api.Message{Op: api.OpTunInit, ID: 1, Cluster: "svc", TimeoutMs: 60000})
	if m := cli.expectOp(api.OpTunConfirm); m.ID != 1 || !m.TimedOut {
		t.Fatalf("TUN_CONFIRM = %+v, want 1 timed out", m)
	}
	if st := d.srv.Stats(); st.TooManyPending != 2 {
		t.Fatalf("TooManyPending = %d, want 2", st.TooManyPending)
	}
	other := connect(t, d, "")
	roundTrip(t, other, svc, "svc", 1)
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*relay.Config)
		ok   bool
	}{
		{"default", func(*relay.Config) {}, true},
		{"port 0", func(c *relay.Config) { c.Port = 0 }, true},
		{"port high", func(c *relay.Config) { c.Port = 65536 }, false},
		{"port negative", func(c *relay.Config) { c.Port = -1 }, false},
		{"handshake timeout", func(c *relay.Config) { c.HandshakeTimeout = 0 }, false},
		{"queue", func(c *relay.Config) { c.SendQueueLen = 0 }, false},
		{"queue bytes", func(c *relay.Config) { c.SendQueueBytes = 0 }, false},
		{"pending", func(c *relay.Config) { c.MaxPendingRequests = 0 }, false},
		{"capacity", func(c *relay.Config) { c.MemberCapacity = -1 }, false},
		{"limits", func(c *relay.Config) { c.Limits.MaxMessageLen = -1 }, false},
		{"zero limits", func(c *relay.Config) { c.Limits = api.Limits{} }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := relay.DefaultConfig()
			tt.mod(c)
			if err := c.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate = %v, want ok=%v", err, tt.ok)
			}
		})
	}
	if _, err := relay.New(nil, nil); err == nil {
		t.Fatal("New without a node succeeded")
	}
}

// TestMaxConns: past MaxConns a new connection gets DENY with a reason and
// is closed, and counted; the open ones keep working, and a slot freed is
// usable again.
func TestMaxConns(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t, func(c *relay.Config) { c.MaxConns = 2 })
	svc := connect(t, d, "svc")
	cli := connect(t, d, "")
	extra := dial(t, d)
	extra.send(api.Message{Op: api.OpInit, Magic: api.ClientMagic, Version: api.ProtocolVersion})
	extra.expectRefused(api.OpDeny, "iris: too many app connections: the daemon serves at most 2 (-max-apps)")
	if st := d.srv.Stats(); st.RefusedConns != 1 {
		t.Fatalf("RefusedConns = %d, want 1", st.RefusedConns)
	}
	roundTrip(t, cli, svc, "svc", 1)
	cli.send(api.Message{Op: api.OpClose})
	cli.expectOp(api.OpClose)
	// Hang up as an app does after CLOSE; otherwise the daemon keeps the
	// slot for up to HandshakeTimeout, waiting for it to.
	cli.nc.Close()
	waitFor(t, "the slot to free", func() bool { return d.srv.Stats().Conns == 1 })
	again := connect(t, d, "")
	roundTrip(t, again, svc, "svc", 2)
}

// TestPublishOrderMixedSizes: events of mixed sizes, published faster than
// the subscribers read them, arrive whole and in order, on a v1.0 and a
// v1.1 session: small ones fanned out from the publisher's read buffer
// into the subscribers' slabs (across blocks of every size), large ones
// kept as they are and gathered from where they are. Another topic's
// events go to a second subscriber from the same read buffer in between.
func TestPublishOrderMixedSizes(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t, nil)
	sub10 := connect(t, d, "")
	sub11, _ := connectV11(t, d, "", "")
	other := connect(t, d, "")
	pub := connect(t, d, "")
	sub10.send(api.Message{Op: api.OpSubscribe, Topic: "mix"})
	sub11.send(api.Message{Op: api.OpSubscribe, Topic: "mix"})
	if m := sub11.recv(); m.Op != api.OpSubscribed {
		t.Fatalf("SUBSCRIBE answered %+v", m)
	}
	other.send(api.Message{Op: api.OpSubscribe, Topic: "other"})
	// The v1.0 subscriptions are in place once their sessions echo.
	for i, c := range []*client{sub10, other} {
		fence := fmt.Sprint("fence", i)
		c.send(api.Message{Op: api.OpSubscribe, Topic: fence})
		c.send(api.Message{Op: api.OpPublish, Topic: fence, Payload: []byte("f")})
		c.expectPublish(fence, "f")
	}
	sizes := []int{5, 1000, 16<<10 - 1, 16 << 10, 0, 300, 3000, 20 << 10, 1, 40 << 10, 700}
	const n = 200
	payload := func(i int) []byte {
		b := make([]byte, sizes[i%len(sizes)])
		for j := range b {
			b[j] = byte(i + j)
		}
		return b
	}
	for i := range n {
		pub.send(api.Message{Op: api.OpPublish, Topic: "mix", Payload: payload(i)})
		pub.send(api.Message{Op: api.OpPublish, Topic: "other", Payload: payload(n - i)})
	}
	for _, c := range []*client{sub10, sub11} {
		for i := range n {
			if m := c.expectOp(api.OpPublish); m.Topic != "mix" || !bytes.Equal(m.Payload, payload(i)) {
				t.Fatalf("event %d arrived as %q, %d bytes; want %d bytes", i, m.Topic, len(m.Payload), sizes[i%len(sizes)])
			}
		}
	}
	for i := range n {
		if m := other.expectOp(api.OpPublish); m.Topic != "other" || !bytes.Equal(m.Payload, payload(n-i)) {
			t.Fatalf("other event %d arrived as %q, %d bytes", i, m.Topic, len(m.Payload))
		}
	}
	if st := d.srv.Stats(); st.DroppedEvents != 0 {
		t.Errorf("%d events dropped", st.DroppedEvents)
	}
}
