package sdk

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"testing"
	"testing/synctest"
	"time"

	"github.com/iris-mesh/iris/api"
	"github.com/iris-mesh/iris/internal/leakcheck"
)

func TestTunnelNetConnCopy(t *testing.T) {
	leakcheck.Check(t)
	r := newRelay(t)
	cfg := r.config()
	cfg.TunnelWindow = MinTunnelWindow // many grants each way
	c, p := connect(t, r, cfg)
	tun := openTunnel(t, c, p, 16<<10, 256<<10)
	data := make([]byte, 4<<20+123)
	rng := rand.NewChaCha8([32]byte{1})
	_, _ = rng.Read(data)
	echoed := async(func() error { return p.serveEcho(0, MinTunnelWindow, len(data)) })

	nc := tun.NetConn()
	if nc != tun.NetConn() {
		t.Fatal("NetConn returned two views")
	}
	written := async(func() error {
		n, err := io.Copy(nc, bytes.NewReader(data))
		if err == nil && n != int64(len(data)) {
			err = io.ErrShortWrite
		}
		return err
	})
	var got bytes.Buffer
	if _, err := io.Copy(&got, nc); err != nil { // until the far end closes
		t.Fatalf("io.Copy from the tunnel: %v", err)
	}
	if err := <-written; err != nil {
		t.Fatalf("io.Copy to the tunnel: %v", err)
	}
	if !bytes.Equal(got.Bytes(), data) {
		t.Fatalf("read %d bytes back, want the %d written", got.Len(), len(data))
	}
	if n, err := nc.Read(make([]byte, 1)); n != 0 || err != io.EOF {
		t.Fatalf("Read after far close = %d, %v; want io.EOF", n, err)
	}
	if _, err := nc.Write([]byte("x")); !errors.Is(err, ErrTunnelClosed) {
		t.Fatalf("Write after far close = %v", err)
	}
	if err := nc.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-echoed; err != nil {
		t.Fatal(err)
	}
}

func TestTunnelNetConnServiceEcho(t *testing.T) {
	leakcheck.Check(t)
	done := make(chan error, 1)
	h := tunnelService{HandlerFunc: nopHandler, serve: func(tun *Tunnel) {
		nc := tun.NetConn()
		_, err := io.Copy(nc, nc) // echo until the far end closes
		done <- err
	}}
	_, p := register(t, newRelay(t), "svc", h, nil)
	p.send(&api.Message{Op: api.OpTunInit, ID: 5, Size: 8})
	id := p.readOp(api.OpTunConfirm).ID2
	p.readAllow(id, DefaultTunnelWindow)
	p.send(&api.Message{Op: api.OpTunAllow, ID: id, Size: 1 << 20})
	p.transfer(id, 10, "hello, ")
	p.transfer(id, 0, "tun")
	p.transfer(id, 5, "nel!!")
	// io.Copy writes what each Read returns, as messages of at most 8
	// bytes, one chunk each. A Read that waits returns credit first.
	var got []byte
	for len(got) < 15 {
		m := p.read()
		if m.Op == api.OpTunAllow {
			continue
		}
		if m.Op != api.OpTunTransfer || m.ID != id || m.Size != uint64(len(m.Payload)) {
			t.Fatalf("TUN_TRANSFER %+v, want one-chunk messages on tunnel %d", m, id)
		}
		got = append(got, m.Payload...)
	}
	if string(got) != "hello, tunnel!!" {
		t.Fatalf("echoed %q", got)
	}
	p.send(&api.Message{Op: api.OpTunClose, ID: id})
	if err := <-done; err != nil {
		t.Fatalf("io.Copy in the handler = %v, want nil at EOF", err)
	}
}

func TestTunnelNetConnRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dial, ends := pipeDialer()
		c, p := connectPipe(t, &Config{Dial: dial}, ends)
		tun := openTunnel(t, c, p, 16, 100)
		nc := tun.NetConn()
		if a := nc.LocalAddr(); a.Network() != "iris" || a.String() != "tunnel:svc/0" || nc.RemoteAddr() != a {
			t.Fatalf("LocalAddr %v %q, RemoteAddr %v", a.Network(), a, nc.RemoteAddr())
		}
		p.transfer(0, 5, "hello")
		p.transfer(0, 0, "")
		p.transfer(0, 5, "world")
		p.send(&api.Message{Op: api.OpTunClose, ID: 0})
		synctest.Wait() // all dispatched: no Read waits, so none returns credit
		buf := make([]byte, 10)
		if n, err := nc.Read(buf[:0]); n != 0 || err != nil {
			t.Fatalf("empty Read = %d, %v", n, err)
		}
		for _, tt := range []struct {
			size int
			want string
		}{{3, "hel"}, {10, "lo"}, {10, "world"}} {
			n, err := nc.Read(buf[:tt.size])
			if err != nil || string(buf[:n]) != tt.want {
				t.Fatalf("Read(%d bytes) = %q, %v; want %q", tt.size, buf[:n], err, tt.want)
			}
		}
		if n, err := nc.Read(buf); n != 0 || err != io.EOF {
			t.Fatalf("Read at the end = %d, %v; want io.EOF", n, err)
		}
		closeConn(t, c, p)
	})
}

// isDeadlineErr checks that err is what net.Conn calls return when their
// deadline passes.
func isDeadlineErr(err error) bool {
	var ne net.Error
	var oe *net.OpError
	return errors.Is(err, os.ErrDeadlineExceeded) && errors.As(err, &ne) && ne.Timeout() && errors.As(err, &oe)
}

func TestTunnelNetConnReadDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dial, ends := pipeDialer()
		c, p := connectPipe(t, &Config{Dial: dial}, ends)
		tun := openTunnel(t, c, p, 16, 100)
		nc := tun.NetConn()
		buf := make([]byte, 10)

		start := time.Now()
		_ = nc.SetReadDeadline(start.Add(time.Second))
		if _, err := nc.Read(buf); !isDeadlineErr(err) || time.Since(start) != time.Second {
			t.Fatalf("Read = %v after %v, want a timeout after 1s", err, time.Since(start))
		}
		p.transfer(0, 3, "abc")
		synctest.Wait()
		if _, err := nc.Read(buf); !isDeadlineErr(err) {
			t.Fatalf("Read past the deadline with data waiting = %v, want a timeout", err)
		}
		_ = nc.SetReadDeadline(time.Time{})
		if n, err := nc.Read(buf); err != nil || string(buf[:n]) != "abc" {
			t.Fatalf("Read without a deadline = %q, %v", buf[:n], err)
		}

		// A deadline moved while a Read waits.
		start = time.Now()
		_ = nc.SetDeadline(start.Add(time.Second))
		read := async(func() error { _, err := nc.Read(buf); return err })
		p.readAllow(0, 3) // the Read waits: it returns the credit of "abc"
		time.Sleep(500 * time.Millisecond)
		_ = nc.SetReadDeadline(time.Now().Add(2 * time.Second))
		if err := <-read; !isDeadlineErr(err) || time.Since(start) != 2500*time.Millisecond {
			t.Fatalf("Read = %v after %v, want a timeout after 2.5s", err, time.Since(start))
		}
		read = async(func() error { _, err := nc.Read(buf); return err })
		synctest.Wait()
		_ = nc.SetReadDeadline(time.Now()) // into the past: the Read ends now
		if err := <-read; !isDeadlineErr(err) || time.Since(start) != 2500*time.Millisecond {
			t.Fatalf("Read = %v after %v, want a timeout at once", err, time.Since(start))
		}

		closed := async(nc.Close)
		p.readRaw([]byte{0x0d, 0x00})
		p.send(&api.Message{Op: api.OpTunClose, ID: 0})
		if err := <-closed; err != nil {
			t.Fatal(err)
		}
		// Closed wins over the deadlines, both passed.
		if _, err := nc.Read(buf); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Read after Close = %v, want net.ErrClosed", err)
		}
		if _, err := nc.Write(buf); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Write after Close = %v, want net.ErrClosed", err)
		}
		closeConn(t, c, p)
	})
}

func TestTunnelNetConnWriteDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dial, ends := pipeDialer()
		c, p := connectPipe(t, &Config{Dial: dial}, ends)
		tun := openTunnel(t, c, p, 4, 8)
		nc := tun.NetConn()

		type result struct {
			n   int
			err error
		}
		res := make(chan result, 1)
		go func() {
			n, err := nc.Write([]byte("abcdefghij"))
			res <- result{n, err}
		}()
		p.readChunk(0, 4, "abcd") // each piece is a message of one chunk
		p.readChunk(0, 4, "efgh")
		synctest.Wait() // "ij" waits for credit
		start := time.Now()
		_ = nc.SetWriteDeadline(start.Add(500 * time.Millisecond))
		r := <-res
		if r.n != 8 || !isDeadlineErr(r.err) || time.Since(start) != 500*time.Millisecond {
			t.Fatalf("Write = %d, %v after %v; want 8 bytes and a timeout after 500ms", r.n, r.err, time.Since(start))
		}
		if n, err := nc.Write([]byte("x")); n != 0 || !isDeadlineErr(err) {
			t.Fatalf("Write past the deadline = %d, %v", n, err)
		}
		_ = nc.SetDeadline(time.Time{})
		p.send(&api.Message{Op: api.OpTunAllow, ID: 0, Size: 2})
		if n, err := nc.Write([]byte("ij")); n != 2 || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		p.readChunk(0, 2, "ij")
		if n, err := nc.Write(nil); n != 0 || err != nil {
			t.Fatalf("empty Write = %d, %v", n, err)
		}
		closeConn(t, c, p) // nothing sent for the empty Write
	})
}
