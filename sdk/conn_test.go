package sdk

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/iris-mesh/iris/api"
	"github.com/iris-mesh/iris/internal/leakcheck"
)

// wireString is the relay encoding of a short string, built by hand so the
// tests do not only check api against itself.
func wireString(s string) []byte { return append([]byte{byte(len(s))}, s...) }

func TestConnectHandshakeBytes(t *testing.T) {
	leakcheck.Check(t)
	r := newRelay(t)
	connected := async(func() error {
		c, err := Connect(context.Background(), r.config())
		if err == nil {
			err = c.Close()
		}
		return err
	})
	p := r.accept()
	want := []byte{0x00}
	want = append(want, wireString("iris-client-magic")...)
	want = append(want, wireString("v1.1")...)
	want = append(want, 0x00) // cluster "": a plain client
	want = append(want, 0x00) // an empty options block
	p.readRaw(want)
	// A daemon may choose v1.0 (no options block follows then).
	answer := append([]byte{0x00}, wireString("iris-relay-magic")...)
	p.sendRaw(append(answer, wireString("v1.0-draft2")...))
	p.closeAck()
	if err := <-connected; err != nil {
		t.Fatal(err)
	}
}

func TestConnectDenied(t *testing.T) {
	leakcheck.Check(t)
	r := newRelay(t)
	connected := async(func() error {
		_, err := Connect(context.Background(), r.config())
		return err
	})
	p := r.accept()
	p.readOp(api.OpInit)
	reason := api.DenyVersionReason("v1.0-draft2")
	p.send(&api.Message{Op: api.OpDeny, Magic: api.RelayMagic, Fault: reason})
	_ = p.nc.Close()
	err := <-connected
	var denied *DeniedError
	if !errors.As(err, &denied) || denied.Reason != reason {
		t.Fatalf("Connect error %v, want *DeniedError with reason %q", err, reason)
	}
	if !errors.Is(err, ErrDenied) {
		t.Fatalf("errors.Is(%v, ErrDenied) is false", err)
	}
}

func TestConnectBadAnswer(t *testing.T) {
	tests := []struct {
		name     string
		answer   *api.Message
		protocol bool // the error must wrap api.ErrProtocol
	}{
		{"bad magic", &api.Message{Op: api.OpInit, Magic: "nope", Version: api.ProtocolVersion}, true},
		{"bad deny magic", &api.Message{Op: api.OpDeny, Magic: "nope", Fault: "x"}, true},
		{"other version", &api.Message{Op: api.OpInit, Magic: api.RelayMagic, Version: "v9"}, true},
		{"not INIT", &api.Message{Op: api.OpReply, ID: 1, TimedOut: true}, true},
		{"hang up", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leakcheck.Check(t)
			r := newRelay(t)
			connected := async(func() error {
				_, err := Connect(context.Background(), r.config())
				return err
			})
			p := r.accept()
			p.readOp(api.OpInit)
			if tt.answer != nil {
				p.send(tt.answer)
			}
			_ = p.nc.Close()
			err := <-connected
			if err == nil || errors.Is(err, ErrDenied) {
				t.Fatalf("Connect error %v, want a handshake failure", err)
			}
			if tt.protocol != errors.Is(err, api.ErrProtocol) {
				t.Fatalf("Connect error %v: wraps api.ErrProtocol %v, want %v", err, !tt.protocol, tt.protocol)
			}
		})
	}
}

func TestConnectCancelledDuringHandshake(t *testing.T) {
	leakcheck.Check(t)
	r := newRelay(t)
	ctx, cancel := context.WithCancel(context.Background())
	connected := async(func() error {
		_, err := Connect(ctx, r.config())
		return err
	})
	p := r.accept()
	p.readOp(api.OpInit) // and never answer
	cancel()
	if err := <-connected; !errors.Is(err, context.Canceled) {
		t.Fatalf("Connect error %v, want context.Canceled", err)
	}
	p.expectEOF()
}

func TestConnectNoDaemon(t *testing.T) {
	leakcheck.Check(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	if _, err := Connect(context.Background(), &Config{Addr: addr}); err == nil || !strings.Contains(err.Error(), addr) {
		t.Fatalf("Connect to a closed port: %v", err)
	}
}

func TestRequestReply(t *testing.T) {
	leakcheck.Check(t)
	c, p := connect(t, newRelay(t), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res := request(ctx, c, "svc", []byte("ping"))
	m := p.readOp(api.OpRequest)
	if m.Cluster != "svc" || string(m.Payload) != "ping" {
		t.Fatalf("REQUEST cluster %q payload %q", m.Cluster, m.Payload)
	}
	if m.TimeoutMs == 0 || m.TimeoutMs > 5000 {
		t.Fatalf("REQUEST timeoutMs %d, want in (0, 5000]", m.TimeoutMs)
	}
	p.reply(m.ID, []byte("pong"))
	if r := <-res; r.err != nil || string(r.reply) != "pong" {
		t.Fatalf("Request = %q, %v", r.reply, r.err)
	}
}

func TestRequestDefaultTimeout(t *testing.T) {
	leakcheck.Check(t)
	r := newRelay(t)
	cfg := r.config()
	cfg.DefaultRequestTimeout = 1234*time.Millisecond + 999*time.Microsecond
	c, p := connect(t, r, cfg)
	res := request(context.Background(), c, "svc", nil)
	m := p.readOp(api.OpRequest)
	if m.TimeoutMs != 1234 {
		t.Fatalf("timeoutMs %d, want 1234", m.TimeoutMs)
	}
	if len(m.Payload) != 0 {
		t.Fatalf("payload %q, want empty", m.Payload)
	}
	p.reply(m.ID, nil)
	if r := <-res; r.err != nil || len(r.reply) != 0 {
		t.Fatalf("Request = %q, %v", r.reply, r.err)
	}
}

func TestRequestFaultAndTimeout(t *testing.T) {
	tests := []struct {
		name  string
		reply api.Message
		check func(error) bool
	}{
		{"fault", api.Message{Op: api.OpReply, Fault: "boom"}, func(err error) bool {
			var re *RemoteError
			return errors.As(err, &re) && re.Fault == "boom" && !errors.Is(err, ErrOverloaded)
		}},
		{"overloaded", api.Message{Op: api.OpReply, Fault: "sdk: service overloaded"}, func(err error) bool {
			return errors.Is(err, ErrOverloaded)
		}},
		{"timed out", api.Message{Op: api.OpReply, TimedOut: true}, isTimeout},
		{"empty fault", api.Message{Op: api.OpReply}, isTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leakcheck.Check(t)
			c, p := connect(t, newRelay(t), nil)
			res := request(context.Background(), c, "svc", []byte("x"))
			tt.reply.ID = p.readOp(api.OpRequest).ID
			p.send(&tt.reply)
			if r := <-res; r.reply != nil || !tt.check(r.err) {
				t.Fatalf("Request = %q, %v", r.reply, r.err)
			}
		})
	}
}

// isTimeout checks every way ErrTimeout must be recognisable.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, ErrTimeout) && errors.Is(err, context.DeadlineExceeded) &&
		errors.As(err, &ne) && ne.Timeout()
}

func TestRequestCancelDiscardsLateReply(t *testing.T) {
	leakcheck.Check(t)
	c, p := connect(t, newRelay(t), nil)
	ctx, cancel := context.WithCancel(context.Background())
	res := request(ctx, c, "svc", []byte("first"))
	first := p.readOp(api.OpRequest)
	cancel()
	if r := <-res; !errors.Is(r.err, context.Canceled) {
		t.Fatalf("cancelled Request = %q, %v; want context.Canceled", r.reply, r.err)
	}
	if m := p.readOp(api.OpCancel); m.ID != first.ID { // v1.1: the daemon is told
		t.Fatalf("CANCEL %d, want %d", m.ID, first.ID)
	}
	p.reply(first.ID, []byte("late")) // the daemon always answers once

	res = request(context.Background(), c, "svc", []byte("second"))
	second := p.readOp(api.OpRequest)
	if second.ID == first.ID {
		t.Fatalf("request id %d reused while its reply was due", second.ID)
	}
	p.reply(second.ID, []byte("ok"))
	if r := <-res; r.err != nil || string(r.reply) != "ok" {
		t.Fatalf("second Request = %q, %v", r.reply, r.err)
	}
	// The reader handled the late reply before the second one.
	if s := c.Stats(); s.LateReplies != 1 || s.UnknownReplies != 0 {
		t.Fatalf("Stats %+v, want 1 late reply", s)
	}
	if err := c.Err(); err != nil {
		t.Fatalf("connection failed: %v", err)
	}
}

func TestRequestExpiredContext(t *testing.T) {
	leakcheck.Check(t)
	c, _ := connect(t, newRelay(t), nil)
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	if _, err := c.Request(ctx, "svc", nil); !isTimeout(err) {
		t.Fatalf("Request with an expired context: %v", err)
	}
	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	if _, err := c.Request(ctx, "svc", nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Request with a cancelled context: %v", err)
	}
}

func TestRequestConcurrentOutOfOrder(t *testing.T) {
	leakcheck.Check(t)
	c, p := connect(t, newRelay(t), nil)
	const n = 64
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			payload := fmt.Appendf(nil, "request %d", i)
			reply, err := c.Request(context.Background(), "svc", payload)
			if err != nil || !bytes.Equal(reply, append([]byte("re: "), payload...)) {
				t.Errorf("Request %d = %q, %v", i, reply, err)
			}
		})
	}
	reqs := make([]*api.Message, n)
	ids := make(map[uint64]bool)
	for i := range reqs {
		reqs[i] = p.readOp(api.OpRequest)
		if ids[reqs[i].ID] {
			t.Fatalf("request id %d used twice", reqs[i].ID)
		}
		ids[reqs[i].ID] = true
	}
	for i := n - 1; i >= 0; i-- { // answer in reverse order
		p.reply(reqs[i].ID, append([]byte("re: "), reqs[i].Payload...))
	}
	wg.Wait()
}

func TestConnectionLostFailsPending(t *testing.T) {
	leakcheck.Check(t)
	c, p := connect(t, newRelay(t), nil)
	var results []<-chan reqResult
	for range 3 {
		results = append(results, request(context.Background(), c, "svc", nil))
		p.readOp(api.OpRequest)
	}
	_ = p.nc.Close()
	for _, res := range results {
		if r := <-res; !errors.Is(r.err, ErrClosed) {
			t.Fatalf("pending Request after drop = %v, want ErrClosed", r.err)
		}
	}
	<-c.Done()
	if err := c.Err(); !errors.Is(err, ErrClosed) || err == ErrClosed {
		t.Fatalf("Err() = %v, want ErrClosed wrapped with the cause", err)
	}
	if _, err := c.Request(context.Background(), "svc", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Request after drop = %v", err)
	}
	if err := c.Broadcast(context.Background(), "svc", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Broadcast after drop = %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close after drop = %v", err)
	}
}

func TestCloseSequence(t *testing.T) {
	leakcheck.Check(t)
	c, p := connect(t, newRelay(t), nil)
	pending := request(context.Background(), c, "svc", nil)
	p.readOp(api.OpRequest) // never answered
	closed := async(c.Close)

	p.readRaw([]byte{0x02}) // CLOSE
	if isDone(closed) {
		t.Fatal("Close returned before the daemon answered")
	}
	if _, err := c.Request(context.Background(), "svc", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Request while closing = %v, want ErrClosed", err)
	}
	p.sendRaw([]byte{0x02, 0x00}) // CLOSE ""
	p.expectEOF()
	if err := <-closed; err != nil {
		t.Fatalf("Close = %v", err)
	}
	if r := <-pending; !errors.Is(r.err, ErrClosed) {
		t.Fatalf("pending Request after Close = %v, want ErrClosed", r.err)
	}
	if err := c.Err(); err != ErrClosed {
		t.Fatalf("Err() after Close = %v, want ErrClosed", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

func TestCloseConcurrent(t *testing.T) {
	leakcheck.Check(t)
	c, p := connect(t, newRelay(t), nil)
	var closes []<-chan error
	for range 4 {
		closes = append(closes, async(c.Close))
	}
	p.closeAck()
	for _, ch := range closes {
		if err := <-ch; err != nil {
			t.Fatalf("Close = %v", err)
		}
	}
}

func TestCloseAnsweredWithReason(t *testing.T) {
	leakcheck.Check(t)
	c, p := connect(t, newRelay(t), nil)
	closed := async(c.Close)
	p.readOp(api.OpClose)
	p.send(&api.Message{Op: api.OpClose, Fault: "going away"})
	if err := <-closed; err == nil || !strings.Contains(err.Error(), "going away") {
		t.Fatalf("Close = %v, want the reason", err)
	}
}

func TestDaemonClosesConnection(t *testing.T) {
	leakcheck.Check(t)
	c, p := connect(t, newRelay(t), nil)
	res := request(context.Background(), c, "svc", nil)
	p.readOp(api.OpRequest)
	p.send(&api.Message{Op: api.OpClose, Fault: "daemon shutting down"})
	r := <-res
	if !errors.Is(r.err, ErrClosed) || !strings.Contains(r.err.Error(), "daemon shutting down") {
		t.Fatalf("pending Request = %v, want ErrClosed with the reason", r.err)
	}
	<-c.Done()
}

func TestProtocolViolationDropsConnection(t *testing.T) {
	tests := []struct {
		name string
		wire []byte
	}{
		{"unknown opcode", []byte{0x42}},
		{"INIT again", api.AppendDaemon(nil, &api.Message{Op: api.OpInit, Magic: api.RelayMagic})},
		{"bad bool", []byte{0x05, 0x01, 0x07}},
		{"foreign tunnel", []byte{0x0d, 0x01, 0x00}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leakcheck.Check(t)
			c, p := connect(t, newRelay(t), nil)
			p.sendRaw(tt.wire)
			<-c.Done()
			if err := c.Err(); !errors.Is(err, ErrClosed) || !errors.Is(err, api.ErrProtocol) {
				t.Fatalf("Err() = %v, want ErrClosed and api.ErrProtocol", err)
			}
			p.expectEOF()
		})
	}
}

func TestUnknownReplyIgnored(t *testing.T) {
	leakcheck.Check(t)
	c, p := connect(t, newRelay(t), nil)
	p.reply(99, []byte("stray"))
	res := request(context.Background(), c, "svc", nil)
	p.reply(p.readOp(api.OpRequest).ID, []byte("ok"))
	if r := <-res; r.err != nil {
		t.Fatal(r.err)
	}
	if s := c.Stats(); s.UnknownReplies != 1 {
		t.Fatalf("Stats %+v, want 1 unknown reply", s)
	}
}

func TestRequestBadArguments(t *testing.T) {
	leakcheck.Check(t)
	r := newRelay(t)
	cfg := r.config()
	cfg.Limits.MaxMessageLen = 8
	c, _ := connect(t, r, cfg)
	if _, err := c.Request(context.Background(), "svc", make([]byte, 9)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Request of 9 bytes, limit 8: %v", err)
	}
	if _, err := c.Request(context.Background(), "", nil); err == nil {
		t.Fatal("Request to an empty cluster name succeeded")
	}
	if err := c.Publish(context.Background(), "t", make([]byte, 9)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Publish of 9 bytes, limit 8: %v", err)
	}
}

func TestRequestToPlainClientGetsFault(t *testing.T) {
	leakcheck.Check(t)
	c, p := connect(t, newRelay(t), nil)
	p.send(&api.Message{Op: api.OpRequest, ID: 5, Payload: []byte("x"), TimeoutMs: 1000})
	m := p.readOp(api.OpReply)
	if m.ID != 5 || m.Success || m.Fault == "" {
		t.Fatalf("REPLY %+v, want a fault for id 5", m)
	}
	if s := c.Stats(); s.Ignored != 1 {
		t.Fatalf("Stats %+v", s)
	}
}

func TestLargeMessagesKeepOrder(t *testing.T) {
	leakcheck.Check(t)
	c, p := connect(t, newRelay(t), nil)
	ctx := context.Background()
	sizes := []int{10, 32 << 10, 5, outboxBytes + 1, 0, 64<<10 - 1, 7}
	payloads := make([][]byte, len(sizes))
	for i, n := range sizes {
		payloads[i] = bytes.Repeat([]byte{byte('a' + i)}, n)
	}
	sent := async(func() error {
		for _, pl := range payloads {
			if err := c.Publish(ctx, "t", pl); err != nil {
				return err
			}
		}
		return nil
	})
	for i, want := range payloads {
		if m := p.readOp(api.OpPublish); !bytes.Equal(m.Payload, want) {
			t.Fatalf("PUBLISH %d: %d bytes, want %d bytes of %q", i, len(m.Payload), len(want), rune('a'+i))
		}
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
}

func TestCloseLostBeforeAnswer(t *testing.T) {
	leakcheck.Check(t)
	c, p := connect(t, newRelay(t), nil)
	closed := async(c.Close)
	p.readOp(api.OpClose)
	_ = p.nc.Close() // a bare close: a drop, not a graceful answer
	if err := <-closed; err == nil || !errors.Is(err, ErrClosed) {
		t.Fatalf("Close = %v, want an error wrapping ErrClosed", err)
	}
}
