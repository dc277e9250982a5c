package sdk

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/iris-mesh/iris/api"
	"github.com/iris-mesh/iris/internal/leakcheck"
)

func TestTunnelBuildBytes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dial, ends := pipeDialer()
		c, p := connectPipe(t, &Config{Dial: dial}, ends)

		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		defer cancel()
		res := buildTunnel(ctx, c, "svc")
		p.readRaw(wire([]byte{0x09, 0x00}, wireString("svc"), []byte{0xdc, 0x0b})) // TUN_INIT 0 "svc" 1500
		p.sendRaw([]byte{0x0a, 0x00, 0x00, 0x80, 0x80, 0x04})                      // TUN_CONFIRM 0 ok 65536
		p.sendRaw([]byte{0x0b, 0x00, 0x80, 0x80, 0x80, 0x02})                      // TUN_ALLOW 0 4 MiB
		p.readRaw([]byte{0x0b, 0x00, 0x80, 0x80, 0x80, 0x20})                      // TUN_ALLOW 0 64 MiB
		r := <-res
		if r.err != nil {
			t.Fatalf("Tunnel = %v", r.err)
		}
		tun := r.t
		if tun.ChunkLimit() != 64<<10 || tun.Cluster() != "svc" {
			t.Fatalf("ChunkLimit %d, Cluster %q", tun.ChunkLimit(), tun.Cluster())
		}
		synctest.Wait() // the read loop has handled the daemon's TUN_ALLOW
		tun.mu.Lock()
		credit := tun.credit
		tun.mu.Unlock()
		if credit != 4<<20 {
			t.Fatalf("send credit %d, want 4 MiB", credit)
		}

		// A failed build; no deadline: DefaultTunnelTimeout, 10000 ms.
		res = buildTunnel(context.Background(), c, "other")
		p.readRaw(wire([]byte{0x09, 0x01}, wireString("other"), []byte{0x90, 0x4e}))
		p.sendRaw([]byte{0x0a, 0x01, 0x01}) // TUN_CONFIRM 1 timed out
		r = <-res
		if !isTimeout(r.err) || r.t != nil || !strings.Contains(r.err.Error(), `"other"`) {
			t.Fatalf("failed build: Tunnel = %v, %v; want ErrTimeout naming the cluster", r.t, r.err)
		}

		closed := async(tun.Close)
		p.readRaw([]byte{0x0d, 0x00}) // TUN_CLOSE 0
		p.sendRaw([]byte{0x0d, 0x00, 0x00})
		if err := <-closed; err != nil {
			t.Fatalf("Tunnel.Close = %v", err)
		}
		closeConn(t, c, p)
	})
}

func TestTunnelBuildContextEnds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dial, ends := pipeDialer()
		c, p := connectPipe(t, &Config{Dial: dial}, ends)

		ctx, cancel := context.WithCancel(context.Background())
		res := buildTunnel(ctx, c, "svc")
		m := p.readOp(api.OpTunInit)
		cancel()
		if r := <-res; !errors.Is(r.err, context.Canceled) {
			t.Fatalf("cancelled Tunnel = %v", r.err)
		}
		// The daemon builds it anyway: the SDK closes it.
		p.send(&api.Message{Op: api.OpTunConfirm, ID: m.ID, Size: 1024})
		p.send(&api.Message{Op: api.OpTunAllow, ID: m.ID, Size: 4096})
		p.readRaw([]byte{0x0d, byte(m.ID)})
		p.send(&api.Message{Op: api.OpTunClose, ID: m.ID})

		// The deadline passes before the daemon answers.
		ctx, cancel = context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		res = buildTunnel(ctx, c, "svc")
		m = p.readOp(api.OpTunInit)
		if r := <-res; !isTimeout(r.err) {
			t.Fatalf("expired Tunnel = %v", r.err)
		}
		p.send(&api.Message{Op: api.OpTunConfirm, ID: m.ID, TimedOut: true})

		// An answer for a build never made, and a message for a tunnel
		// closed: ignored.
		p.send(&api.Message{Op: api.OpTunConfirm, ID: 0, TimedOut: true})
		p.send(&api.Message{Op: api.OpTunTransfer, ID: 0, Size: 1, Payload: []byte("x")})
		tun := openTunnel(t, c, p, 1024, 0) // a sync point
		s := c.Stats()
		if s.LateReplies != 2 || s.UnknownReplies != 1 || s.Ignored != 1 {
			t.Fatalf("Stats %+v, want 2 late, 1 unknown, 1 ignored", s)
		}
		if tun.id != 2 {
			t.Fatalf("tunnel id %d, want 2", tun.id)
		}
		closeConn(t, c, p)
		if err := tun.Close(); err != nil {
			t.Fatalf("Tunnel.Close after Conn.Close = %v", err)
		}
	})
}

func TestTunnelBuildConnectionLost(t *testing.T) {
	leakcheck.Check(t)
	c, p := connect(t, newRelay(t), nil)
	res := buildTunnel(context.Background(), c, "svc")
	p.readOp(api.OpTunInit)
	_ = p.nc.Close()
	if r := <-res; !errors.Is(r.err, ErrClosed) {
		t.Fatalf("Tunnel after drop = %v, want ErrClosed", r.err)
	}
	if _, err := c.Tunnel(context.Background(), "svc"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Tunnel on a lost connection = %v", err)
	}
	if _, err := c.Tunnel(context.Background(), ""); err == nil {
		t.Fatal("Tunnel to an empty cluster name succeeded")
	}
}

func TestTunnelOfferBytes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dial, ends := pipeDialer()
		served := make(chan *Tunnel, 1)
		h := tunnelService{HandlerFunc: nopHandler, serve: func(tun *Tunnel) {
			served <- tun
			for { // echo until the far end closes
				msg, err := tun.Recv(context.Background())
				if err != nil {
					served <- nil
					if err != io.EOF {
						t.Errorf("handler Recv = %v, want io.EOF", err)
					}
					return
				}
				if err := tun.Send(context.Background(), msg); err != nil {
					t.Errorf("handler Send = %v", err)
				}
			}
		}}
		svc, p := registerPipe(t, &Config{Dial: dial}, ends, "svc", h, nil)

		p.sendRaw([]byte{0x09, 0x07, 0x80, 0x80, 0x04}) // TUN_INIT build 7, chunk limit 65536
		p.readRaw([]byte{0x0a, 0x07, 0x00})             // TUN_CONFIRM build 7 → tunnel 0
		p.readRaw([]byte{0x0b, 0x00, 0x80, 0x80, 0x80, 0x20})
		tun := <-served
		if tun.ChunkLimit() != 64<<10 || tun.Cluster() != "svc" {
			t.Fatalf("ChunkLimit %d, Cluster %q", tun.ChunkLimit(), tun.Cluster())
		}
		p.sendRaw([]byte{0x0b, 0x00, 0x64}) // TUN_ALLOW 0 100
		p.sendRaw(wire([]byte{0x0c, 0x00, 0x02}, wireString("hi")))
		p.readRaw(wire([]byte{0x0c, 0x00, 0x02}, wireString("hi")))
		p.readAllow(0, 2)                   // the handler waits for more: it returns the credit of "hi" first
		p.sendRaw([]byte{0x0d, 0x00, 0x00}) // the far end closes
		if <-served != nil {
			t.Fatal("handler still serving")
		}
		// The handler returned and the SDK closed the tunnel, which the
		// daemon had closed already: nothing more is sent.
		closed := async(svc.Close)
		p.readRaw([]byte{0x02})
		p.sendRaw([]byte{0x02, 0x00})
		if err := <-closed; err != nil {
			t.Fatal(err)
		}
	})
}

func TestTunnelOfferRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dial, ends := pipeDialer()
		// The handler returns on the first message or when the tunnel ends.
		h := tunnelService{HandlerFunc: nopHandler, serve: func(tun *Tunnel) { _, _ = tun.Recv(context.Background()) }}
		svc, p := registerPipe(t, &Config{Dial: dial}, ends, "svc", h, &ServiceLimits{MaxTunnels: 1})
		p.send(&api.Message{Op: api.OpTunInit, ID: 1, Size: 512})
		p.readRaw([]byte{0x0a, 0x01, 0x00})
		p.readAllow(0, DefaultTunnelWindow)
		p.send(&api.Message{Op: api.OpTunInit, ID: 2, Size: 512}) // over MaxTunnels
		synctest.Wait()
		if s := svc.Conn().Stats(); s.TunnelsRefused != 1 {
			t.Fatalf("Stats %+v, want 1 refused", s)
		}
		p.transfer(0, 1, "q") // the handler returns: the SDK closes its tunnel
		p.readRaw([]byte{0x0d, 0x00})
		p.send(&api.Message{Op: api.OpTunClose, ID: 0})
		synctest.Wait()
		p.send(&api.Message{Op: api.OpTunInit, ID: 3, Size: 512}) // room again
		p.readRaw([]byte{0x0a, 0x03, 0x01})
		p.readAllow(1, DefaultTunnelWindow)
		closed := async(svc.Close) // a service's tunnels close with it
		p.closeAck()
		if err := <-closed; err != nil {
			t.Fatal(err)
		}

		// A plain client refuses offers too.
		dial, ends = pipeDialer()
		c, p := connectPipe(t, &Config{Dial: dial}, ends)
		p.send(&api.Message{Op: api.OpTunInit, ID: 1, Size: 512})
		synctest.Wait()
		if s := c.Stats(); s.TunnelsRefused != 1 {
			t.Fatalf("plain client Stats %+v, want 1 refused", s)
		}
		closeConn(t, c, p)
	})
}

func TestTunnelSendChunks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dial, ends := pipeDialer()
		c, p := connectPipe(t, &Config{Dial: dial}, ends)
		tun := openTunnel(t, c, p, 4, 100)
		ctx := context.Background()
		sent := async(func() error { return tun.Send(ctx, []byte("hello world!!")) })
		p.readRaw(wire([]byte{0x0c, 0x00, 0x0d}, wireString("hell"))) // first: the total size
		p.readRaw(wire([]byte{0x0c, 0x00, 0x00}, wireString("o wo"))) // the rest: 0
		p.readChunk(0, 0, "rld!")
		p.readChunk(0, 0, "!")
		if err := <-sent; err != nil {
			t.Fatal(err)
		}
		sent = async(func() error { return tun.Send(ctx, nil) })
		p.readRaw([]byte{0x0c, 0x00, 0x00, 0x00}) // an empty message: one empty chunk
		if err := <-sent; err != nil {
			t.Fatal(err)
		}
		sent = async(func() error { return tun.Send(ctx, []byte("four")) })
		p.readChunk(0, 4, "four")
		if err := <-sent; err != nil {
			t.Fatal(err)
		}
		tun.mu.Lock()
		credit := tun.credit
		tun.mu.Unlock()
		if credit != 100-17 {
			t.Fatalf("credit left %d, want 83", credit)
		}
		closeConn(t, c, p)
		if err := tun.Send(ctx, []byte("x")); !errors.Is(err, ErrTunnelClosed) || !errors.Is(err, ErrClosed) {
			t.Fatalf("Send after Conn.Close = %v, want ErrTunnelClosed and ErrClosed", err)
		}
	})
}

func TestTunnelSendWaitsForCredit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dial, ends := pipeDialer()
		c, p := connectPipe(t, &Config{Dial: dial}, ends)
		tun := openTunnel(t, c, p, 4, 0)

		// No credit: Send waits until its deadline and sends nothing.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		start := time.Now()
		if err := tun.Send(ctx, []byte("abc")); !isTimeout(err) {
			t.Fatalf("Send without credit = %v, want ErrTimeout", err)
		}
		if d := time.Since(start); d != time.Second {
			t.Fatalf("Send gave up after %v, want 1s", d)
		}

		sent := async(func() error { return tun.Send(context.Background(), []byte("abcdef")) })
		synctest.Wait()
		if isDone(sent) {
			t.Fatal("Send returned without credit")
		}
		p.send(&api.Message{Op: api.OpTunAllow, ID: 0, Size: 3}) // not enough for a 4-byte chunk
		synctest.Wait()
		p.send(&api.Message{Op: api.OpTunAllow, ID: 0, Size: 1})
		p.readChunk(0, 6, "abcd")
		synctest.Wait()
		if isDone(sent) {
			t.Fatal("Send returned with the last chunk unsent")
		}
		p.send(&api.Message{Op: api.OpTunAllow, ID: 0, Size: 2})
		p.readChunk(0, 0, "ef")
		if err := <-sent; err != nil {
			t.Fatal(err)
		}

		// A Send waiting for credit when the tunnel is closed.
		sent = async(func() error { return tun.Send(context.Background(), []byte("x")) })
		synctest.Wait()
		closed := async(tun.Close)
		p.readRaw([]byte{0x0d, 0x00})
		if err := <-sent; !errors.Is(err, ErrTunnelClosed) {
			t.Fatalf("Send during Close = %v, want ErrTunnelClosed", err)
		}
		p.send(&api.Message{Op: api.OpTunClose, ID: 0})
		if err := <-closed; err != nil {
			t.Fatal(err)
		}
		closeConn(t, c, p)
	})
}

func TestTunnelConcurrentSendsDoNotInterleave(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dial, ends := pipeDialer()
		c, p := connectPipe(t, &Config{Dial: dial}, ends)
		tun := openTunnel(t, c, p, 2, 1000)
		msgs := []string{"aaaaaa", "bbbbbb", "cccccc"}
		var sends []<-chan error
		for _, m := range msgs {
			sends = append(sends, async(func() error { return tun.Send(context.Background(), []byte(m)) }))
		}
		seen := make(map[string]bool)
		for range msgs {
			first := p.readOp(api.OpTunTransfer)
			if first.Size != 6 {
				t.Fatalf("first chunk %+v, want size 6", first)
			}
			got := string(first.Payload)
			for range 2 {
				m := p.readOp(api.OpTunTransfer)
				if m.Size != 0 {
					t.Fatalf("chunk of another message %+v inside %q", m, got)
				}
				got += string(m.Payload)
			}
			if strings.Count(got, got[:1]) != 6 || seen[got] {
				t.Fatalf("message %q interleaved", got)
			}
			seen[got] = true
		}
		for _, ch := range sends {
			if err := <-ch; err != nil {
				t.Fatal(err)
			}
		}
		closeConn(t, c, p)
	})
}

func TestTunnelReassembly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dial, ends := pipeDialer()
		c, p := connectPipe(t, &Config{Dial: dial}, ends)
		tun := openTunnel(t, c, p, 4, 0)
		p.transfer(0, 6, "abcd")
		p.transfer(0, 0, "ef")
		p.transfer(0, 9, "1234") // cut short by the next message
		p.transfer(0, 0, "5678")
		p.transfer(0, 2, "xy")
		p.transfer(0, 0, "")   // an empty message
		p.transfer(0, 4, "gh") // cut short by the empty message
		p.transfer(0, 0, "")
		p.transfer(0, 0, "zz") // a continuation without a first chunk
		p.transfer(0, 3, "end")
		synctest.Wait()
		want := []string{"abcdef", "xy", "", "", "end"}
		for _, w := range want {
			msg, err := tun.Recv(context.Background())
			if err != nil || string(msg) != w || msg == nil {
				t.Fatalf("Recv = %q, %v; want %q", msg, err, w)
			}
		}
		if s := c.Stats(); s.TunnelMessagesDropped != 3 {
			t.Fatalf("Stats %+v, want 3 tunnel messages dropped", s)
		}
		// Recv now waits: it returns the credit of all 23 bytes received,
		// consumed or dropped.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		recv := async(func() error { _, err := tun.Recv(ctx); return err })
		p.readAllow(0, 23)
		if err := <-recv; !isTimeout(err) {
			t.Fatalf("Recv with nothing sent = %v, want ErrTimeout", err)
		}
		closeConn(t, c, p)
	})
}

func TestTunnelMalformedMessagesDropped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dial, ends := pipeDialer()
		c, p := connectPipe(t, &Config{Dial: dial, TunnelWindow: MinTunnelWindow}, ends)
		tun := openTunnel(t, c, p, 4, 0)
		p.transfer(0, MinTunnelWindow+1, "abcd") // could never be buffered whole
		p.transfer(0, 0, "efgh")
		p.transfer(0, 2, "abc") // longer than announced
		p.transfer(0, 3, "ab")
		p.transfer(0, 0, "cd") // overflows the announced size
		p.transfer(0, 0, "e")
		p.transfer(0, 1, "k")
		synctest.Wait() // all dispatched: Recv does not wait, so returns no credit yet
		if msg, err := tun.Recv(context.Background()); err != nil || string(msg) != "k" {
			t.Fatalf("Recv = %q, %v", msg, err)
		}
		if s := c.Stats(); s.TunnelMessagesDropped != 3 {
			t.Fatalf("Stats %+v, want 3 dropped", s)
		}
		// Too many messages waiting: TunnelWindow/64 = 1024.
		for range MinTunnelWindow/queuedMsgCost + 1 {
			p.transfer(0, 0, "")
		}
		synctest.Wait()
		if s := c.Stats(); s.TunnelMessagesDropped != 4 {
			t.Fatalf("Stats %+v, want 4 dropped", s)
		}
		closeConn(t, c, p)
		for range MinTunnelWindow / queuedMsgCost {
			if msg, err := tun.Recv(context.Background()); err != nil || len(msg) != 0 {
				t.Fatalf("Recv after Conn.Close = %q, %v; want the buffered empty messages", msg, err)
			}
		}
		if _, err := tun.Recv(context.Background()); !errors.Is(err, ErrTunnelClosed) || !errors.Is(err, ErrClosed) {
			t.Fatalf("drained Recv after Conn.Close = %v, want ErrTunnelClosed and ErrClosed", err)
		}
	})
}

func TestTunnelRecvReturnsCredit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dial, ends := pipeDialer()
		c, p := connectPipe(t, &Config{Dial: dial, TunnelWindow: MinTunnelWindow}, ends)
		tun := openTunnel(t, c, p, 4096, 0)
		msg := strings.Repeat("m", 4096)
		for range 5 {
			p.transfer(0, 4096, msg)
		}
		synctest.Wait()
		ctx := context.Background()
		for range 3 {
			if _, err := tun.Recv(ctx); err != nil {
				t.Fatal(err)
			}
		}
		// 12 KiB owed, below a quarter of the window: nothing granted yet.
		grants := async(func() error { _, err := tun.Recv(ctx); return err })
		p.readAllow(0, 16384) // the fourth Recv reaches 16 KiB
		if err := <-grants; err != nil {
			t.Fatal(err)
		}
		if _, err := tun.Recv(ctx); err != nil { // 4 KiB owed
			t.Fatal(err)
		}
		recv := async(func() error { _, err := tun.Recv(ctx); return err })
		p.readAllow(0, 4096) // the sixth waits, and returns the rest first
		p.transfer(0, 1, "z")
		if err := <-recv; err != nil {
			t.Fatal(err)
		}
		tun.mu.Lock()
		allowance, owed := tun.allowance, tun.owed
		tun.mu.Unlock()
		if allowance != MinTunnelWindow-1 || owed != 1 {
			t.Fatalf("allowance %d, owed %d; want %d and 1", allowance, owed, MinTunnelWindow-1)
		}
		closeConn(t, c, p)
	})
}

func TestTunnelProtocolViolations(t *testing.T) {
	tests := []struct {
		name string
		send func(p *peer)
	}{
		{"chunk over the limit", func(p *peer) { p.transfer(0, 5, "12345") }},
		{"beyond the credit granted", func(p *peer) {
			p.transfer(0, MinTunnelWindow, "xxxx")
			for range MinTunnelWindow/4 - 1 {
				p.transfer(0, 0, "xxxx")
			}
			p.transfer(0, 1, "y")
		}},
		{"chunk for a tunnel never opened", func(p *peer) { p.transfer(9, 1, "y") }},
		{"credit for a tunnel never opened", func(p *peer) {
			p.send(&api.Message{Op: api.OpTunAllow, ID: 9, Size: 1})
		}},
		{"zero chunk limit", func(p *peer) {
			p.send(&api.Message{Op: api.OpTunConfirm, ID: 1, Size: 0})
		}},
		{"offer with a chunk limit over 64 KiB", func(p *peer) {
			p.send(&api.Message{Op: api.OpTunInit, ID: 1, Size: 64<<10 + 1})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				dial, ends := pipeDialer()
				c, p := connectPipe(t, &Config{Dial: dial, TunnelWindow: MinTunnelWindow}, ends)
				tun := openTunnel(t, c, p, 4, 0)
				pending := buildTunnel(context.Background(), c, "other")
				p.readOp(api.OpTunInit) // build 1 is pending
				tt.send(p)
				<-c.Done()
				if err := c.Err(); !errors.Is(err, ErrClosed) || !errors.Is(err, api.ErrProtocol) {
					t.Fatalf("Err() = %v, want ErrClosed and api.ErrProtocol", err)
				}
				if r := <-pending; !errors.Is(r.err, ErrClosed) {
					t.Fatalf("pending Tunnel = %v, want ErrClosed", r.err)
				}
				p.expectEOF()
				if err := c.Close(); err != nil {
					t.Fatal(err)
				}
				if err := tun.Close(); err != nil {
					t.Fatal(err)
				}
			})
		})
	}
}

func TestTunnelCloseSequence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dial, ends := pipeDialer()
		c, p := connectPipe(t, &Config{Dial: dial, CloseTimeout: 2 * time.Second}, ends)
		tun := openTunnel(t, c, p, 16, 100)
		p.transfer(0, 3, "old") // discarded by Close
		synctest.Wait()
		ctx := context.Background()

		closed := async(tun.Close)
		p.readRaw([]byte{0x0d, 0x00})
		synctest.Wait()
		if isDone(closed) {
			t.Fatal("Close returned before the daemon answered")
		}
		if err := tun.Send(ctx, []byte("x")); err != ErrTunnelClosed {
			t.Fatalf("Send while closing = %v, want ErrTunnelClosed", err)
		}
		if _, err := tun.Recv(ctx); err != ErrTunnelClosed {
			t.Fatalf("Recv while closing = %v, want ErrTunnelClosed", err)
		}
		p.transfer(0, 1, "z") // crossed our TUN_CLOSE: ignored
		p.sendRaw([]byte{0x0d, 0x00, 0x00})
		if err := <-closed; err != nil {
			t.Fatalf("Close = %v", err)
		}
		if err := tun.Close(); err != nil {
			t.Fatalf("second Close = %v", err)
		}
		p.transfer(0, 1, "late") // the tunnel is forgotten: ignored
		synctest.Wait()
		if s := c.Stats(); s.Ignored != 1 {
			t.Fatalf("Stats %+v, want 1 ignored", s)
		}

		// The daemon answers with a reason, or not at all.
		tun = openTunnel(t, c, p, 16, 0)
		closed = async(tun.Close)
		p.readRaw([]byte{0x0d, 0x01})
		p.send(&api.Message{Op: api.OpTunClose, ID: 1, Fault: "oops"})
		if err := <-closed; err == nil || !strings.Contains(err.Error(), "oops") {
			t.Fatalf("Close = %v, want the reason", err)
		}
		tun = openTunnel(t, c, p, 16, 0)
		start := time.Now()
		closed = async(tun.Close)
		p.readRaw([]byte{0x0d, 0x02})
		if err := <-closed; err == nil || time.Since(start) != 2*time.Second {
			t.Fatalf("Close = %v after %v, want an error after CloseTimeout", err, time.Since(start))
		}
		p.send(&api.Message{Op: api.OpTunClose, ID: 2}) // late: ignored
		closeConn(t, c, p)
	})
}

func TestTunnelClosedByFarEnd(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dial, ends := pipeDialer()
		c, p := connectPipe(t, &Config{Dial: dial}, ends)
		ctx := context.Background()
		tun := openTunnel(t, c, p, 16, 100)
		p.transfer(0, 5, "first")
		p.transfer(0, 6, "second")
		p.transfer(0, 9, "part") // never completed
		p.send(&api.Message{Op: api.OpTunClose, ID: 0})
		synctest.Wait() // all dispatched: Recv does not wait, so returns no credit
		for _, want := range []string{"first", "second"} {
			if msg, err := tun.Recv(ctx); err != nil || string(msg) != want {
				t.Fatalf("Recv = %q, %v; want %q", msg, err, want)
			}
		}
		for range 2 {
			if msg, err := tun.Recv(ctx); err != io.EOF {
				t.Fatalf("Recv after far close = %q, %v; want io.EOF", msg, err)
			}
		}
		if err := tun.Send(ctx, []byte("x")); !errors.Is(err, ErrTunnelClosed) {
			t.Fatalf("Send after far close = %v", err)
		}
		if err := tun.Close(); err != nil { // sends nothing
			t.Fatal(err)
		}

		tun = openTunnel(t, c, p, 16, 100)
		recv := make(chan error, 1)
		go func() { _, err := tun.Recv(ctx); recv <- err }()
		synctest.Wait()
		p.send(&api.Message{Op: api.OpTunClose, ID: 1, Fault: "peer lost"})
		err := <-recv
		var te *TunnelError
		if !errors.As(err, &te) || te.Reason != "peer lost" || !errors.Is(err, ErrTunnelClosed) {
			t.Fatalf("Recv = %v, want a *TunnelError with the reason", err)
		}
		if err := tun.Send(ctx, nil); !errors.As(err, &te) {
			t.Fatalf("Send = %v, want the *TunnelError", err)
		}
		if err := tun.Close(); err != nil {
			t.Fatal(err)
		}
		closeConn(t, c, p) // no TUN_CLOSE before CLOSE
	})
}

func TestTunnelEndsWithConnection(t *testing.T) {
	leakcheck.Check(t)
	c, p := connect(t, newRelay(t), nil)
	tun := openTunnel(t, c, p, 16, 0)
	recv := make(chan error, 1)
	go func() { _, err := tun.Recv(context.Background()); recv <- err }()
	sent := async(func() error { return tun.Send(context.Background(), []byte("x")) })
	_ = p.nc.Close()
	for _, ch := range []<-chan error{recv, sent} {
		if err := <-ch; !errors.Is(err, ErrTunnelClosed) || !errors.Is(err, ErrClosed) {
			t.Fatalf("call on a tunnel of a lost connection = %v, want ErrTunnelClosed and ErrClosed", err)
		}
	}
	if err := tun.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestServiceCloseEndsTunnels(t *testing.T) {
	leakcheck.Check(t)
	started := make(chan struct{})
	h := tunnelService{HandlerFunc: nopHandler, serve: func(tun *Tunnel) {
		close(started)
		_, err := tun.Recv(context.Background()) // until the service closes
		if !errors.Is(err, ErrTunnelClosed) || !errors.Is(err, ErrClosed) {
			t.Errorf("handler Recv = %v", err)
		}
	}}
	svc, p := register(t, newRelay(t), "svc", h, nil)
	p.send(&api.Message{Op: api.OpTunInit, ID: 1, Size: 1024})
	p.readOp(api.OpTunConfirm)
	p.readOp(api.OpTunAllow)
	<-started
	closed := async(svc.Close)
	p.readRaw([]byte{0x02})
	p.sendRaw([]byte{0x02, 0x00}) // the daemon closes the connection's tunnels
	p.expectEOF()                 // no TUN_CLOSE: the tunnel is gone with the connection
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}

func TestTunnelLargeMessageThroughEcho(t *testing.T) {
	leakcheck.Check(t)
	c, p := connect(t, newRelay(t), nil)
	tun := openTunnel(t, c, p, 64<<10, 1<<20)
	msg := bytes.Repeat([]byte("0123456789abcdef"), 3<<20/16) // 3 MiB: 48 chunks, 3 grants
	echoed := async(func() error { return p.serveEcho(0, DefaultTunnelWindow, 2*len(msg)+1) })
	ctx := context.Background()
	for range 2 {
		if err := tun.Send(ctx, msg); err != nil {
			t.Fatal(err)
		}
		got, err := tun.Recv(ctx)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("Recv: %d bytes, %v; want the %d sent", len(got), err, len(msg))
		}
	}
	if err := tun.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-echoed; err != nil {
		t.Fatal(err)
	}
}
