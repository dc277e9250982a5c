package sdk

// Tests that depend on time run in testing/synctest bubbles over net.Pipe:
// the clock is fake and advances only when every goroutine of the bubble is
// blocked, so deadlines pass instantly and exactly. synctest.Test also fails
// if a goroutine outlives the test.

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/iris-mesh/iris/api"
)

// connectPipe connects a client over a pipe made by cfg.Dial (from
// pipeDialer, whose ends channel is given) and completes the handshake.
func connectPipe(t *testing.T, cfg *Config, ends chan net.Conn) (*Conn, *peer) {
	t.Helper()
	type dialed struct {
		c   *Conn
		err error
	}
	ch := make(chan dialed, 1)
	go func() {
		c, err := Connect(context.Background(), cfg)
		ch <- dialed{c, err}
	}()
	p := newPeer(t, <-ends)
	p.acceptInit("")
	d := <-ch
	if d.err != nil {
		t.Fatalf("Connect: %v", d.err)
	}
	return d.c, p
}

func TestRequestContextDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dial, ends := pipeDialer()
		c, p := connectPipe(t, &Config{Dial: dial}, ends)

		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		res := request(ctx, c, "svc", nil)
		m := p.readOp(api.OpRequest)
		if m.TimeoutMs != 100 {
			t.Fatalf("timeoutMs %d, want 100", m.TimeoutMs)
		}
		r := <-res // the daemon has not answered yet: the deadline passes
		if !isTimeout(r.err) {
			t.Fatalf("Request = %v, want ErrTimeout", r.err)
		}
		if d := time.Since(start); d != 100*time.Millisecond {
			t.Fatalf("Request returned after %v, want 100ms", d)
		}
		p.send(&api.Message{Op: api.OpReply, ID: m.ID, TimedOut: true}) // the daemon's answer, late

		res = request(context.Background(), c, "svc", nil)
		p.reply(p.readOp(api.OpRequest).ID, []byte("ok"))
		if r := <-res; r.err != nil {
			t.Fatal(r.err)
		}
		if s := c.Stats(); s.LateReplies != 1 {
			t.Fatalf("Stats %+v, want 1 late reply", s)
		}
		closed := async(c.Close)
		p.closeAck()
		if err := <-closed; err != nil {
			t.Fatal(err)
		}
	})
}

func TestCloseTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dial, ends := pipeDialer()
		c, p := connectPipe(t, &Config{Dial: dial, CloseTimeout: 3 * time.Second}, ends)
		start := time.Now()
		closed := async(c.Close)
		p.readOp(api.OpClose) // and never answer
		err := <-closed
		if err == nil || !strings.Contains(err.Error(), "did not answer") {
			t.Fatalf("Close = %v, want a timeout error", err)
		}
		if d := time.Since(start); d != 3*time.Second {
			t.Fatalf("Close returned after %v, want 3s", d)
		}
		p.expectEOF()
		if !errors.Is(c.Err(), ErrClosed) {
			t.Fatalf("Err() = %v", c.Err())
		}
	})
}

func TestDialTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dial, ends := pipeDialer()
		connected := async(func() error {
			_, err := Connect(context.Background(), &Config{Dial: dial, DialTimeout: 2 * time.Second})
			return err
		})
		p := newPeer(t, <-ends)
		p.readOp(api.OpInit) // and never answer
		if err := <-connected; !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Connect = %v, want context.DeadlineExceeded", err)
		}
		p.expectEOF()
	})
}

func TestServiceSkipsExpiredRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dial, ends := pipeDialer()
		release := make(chan struct{})
		h := HandlerFunc(func(ctx context.Context, req []byte) ([]byte, error) {
			if string(req) == "hold" {
				<-release
			}
			return req, nil
		})
		registered := make(chan *Service, 1)
		go func() {
			s, err := Register(context.Background(), &Config{Dial: dial}, "svc", h, &ServiceLimits{RequestThreads: 1})
			if err != nil {
				t.Error(err)
			}
			registered <- s
		}()
		p := newPeer(t, <-ends)
		p.acceptInit("svc")
		svc := <-registered

		p.send(&api.Message{Op: api.OpRequest, ID: 1, Payload: []byte("hold"), TimeoutMs: 60000})
		p.send(&api.Message{Op: api.OpRequest, ID: 2, Payload: []byte("short"), TimeoutMs: 10})
		p.send(&api.Message{Op: api.OpRequest, ID: 3, Payload: []byte("long"), TimeoutMs: 60000})
		synctest.Wait()
		time.Sleep(20 * time.Millisecond) // fake time: request 2 expires in the queue
		close(release)
		for _, id := range []uint64{1, 3} {
			if m := p.readOp(api.OpReply); m.ID != id || !m.Success {
				t.Fatalf("REPLY %+v, want success for %d", m, id)
			}
		}
		if s := svc.Conn().Stats(); s.RequestsExpired != 1 {
			t.Fatalf("Stats %+v, want 1 expired", s)
		}
		closed := async(svc.Close)
		p.closeAck()
		if err := <-closed; err != nil {
			t.Fatal(err)
		}
	})
}

func TestSendQueueFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dial, ends := pipeDialer()
		c, p := connectPipe(t, &Config{Dial: dial, SendQueueLen: 1}, ends)
		ctx := context.Background()
		if err := c.Broadcast(ctx, "c", []byte("1")); err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // the writer is blocked writing 1: a pipe does not buffer
		if err := c.Broadcast(ctx, "c", []byte("2")); err != nil {
			t.Fatal(err)
		}
		// The queue is full: senders wait until their context ends.
		tctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		start := time.Now()
		if err := c.Publish(tctx, "t", []byte("3")); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Publish on a full queue = %v", err)
		}
		if _, err := c.Request(tctx, "svc", nil); !isTimeout(err) {
			t.Fatalf("Request on a full queue = %v, want ErrTimeout", err)
		}
		if d := time.Since(start); d != time.Second {
			t.Fatalf("senders gave up after %v, want 1s", d)
		}
		c.mu.Lock()
		pending := len(c.pending)
		c.mu.Unlock()
		if pending != 0 {
			t.Fatalf("%d calls pending after a failed send, want 0", pending)
		}
		for _, want := range []string{"1", "2"} {
			if m := p.readOp(api.OpBroadcast); string(m.Payload) != want {
				t.Fatalf("BROADCAST %q, want %q", m.Payload, want)
			}
		}
		closed := async(c.Close)
		p.closeAck()
		if err := <-closed; err != nil {
			t.Fatal(err)
		}
	})
}

// The send queue is bounded in bytes too: with outboxBytes queued behind a
// blocked writer, senders wait, even with room in SendQueueLen; a message
// larger than the bound still goes out alone.
func TestSendQueueBytes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dial, ends := pipeDialer()
		c, p := connectPipe(t, &Config{Dial: dial}, ends)
		ctx := context.Background()
		if err := c.Broadcast(ctx, "c", []byte("first")); err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // the writer is blocked writing it: a pipe does not buffer
		big := make([]byte, outboxBytes+1)
		if err := c.Broadcast(ctx, "c", big); err != nil {
			t.Fatalf("a message over the byte bound into an empty queue: %v", err)
		}
		tctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if err := c.Publish(tctx, "t", []byte("x")); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Publish behind %d queued bytes = %v, want to wait until the deadline", len(big), err)
		}
		sent := async(func() error { return c.Publish(ctx, "t", []byte("after")) })
		for _, want := range []int{len("first"), len(big)} {
			if m := p.readOp(api.OpBroadcast); len(m.Payload) != want {
				t.Fatalf("BROADCAST of %d bytes, want %d", len(m.Payload), want)
			}
		}
		if m := p.readOp(api.OpPublish); string(m.Payload) != "after" {
			t.Fatalf("PUBLISH %q, want %q", m.Payload, "after")
		}
		if err := <-sent; err != nil {
			t.Fatal(err)
		}
		closed := async(c.Close)
		p.closeAck()
		if err := <-closed; err != nil {
			t.Fatal(err)
		}
	})
}
