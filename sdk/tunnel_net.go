package sdk

import (
	"context"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"time"
)

// TunnelAddr is the net.Addr of a tunnel's NetConn, both local and remote:
// a tunnel joins two apps through their daemons and has no host address.
type TunnelAddr struct {
	// Cluster is the tunnel's cluster (see Tunnel.Cluster).
	Cluster string
	// ID is the tunnel's id on this connection.
	ID uint64
}

// Network returns "iris".
func (a TunnelAddr) Network() string { return "iris" }

// String returns "tunnel:<cluster>/<id>".
func (a TunnelAddr) String() string {
	return "tunnel:" + a.Cluster + "/" + strconv.FormatUint(a.ID, 10)
}

// NetConn returns a net.Conn view of the tunnel: a byte stream carried by
// its messages, for code written against net.Conn (io.Copy, bufio, TLS...).
// Every call returns the same view.
//
// Write sends p as messages of at most ChunkLimit bytes, each one chunk, so
// the far end can read them with NetConn or Recv whatever its window. Read
// returns bytes of the current message, then of the next ones; empty
// messages carry no bytes and are skipped. Read returns io.EOF once the far
// end has closed the tunnel gracefully and everything sent before has been
// read. Close closes the tunnel.
//
// Deadlines are supported as for any net.Conn: a call blocked past its
// deadline returns an error wrapping os.ErrDeadlineExceeded (a net.Error
// whose Timeout is true); a Write interrupted that way reports the bytes of
// the messages sent whole, and the far end never reads part of a message.
// Errors other than io.EOF are *net.OpError values; after Close they wrap
// net.ErrClosed.
//
// Do not mix Recv with Read on the same tunnel while a message is partly
// read: Recv returns the next whole message, skipping the rest of that one.
func (t *Tunnel) NetConn() net.Conn {
	t.netOnce.Do(func() {
		t.netConn = &tunnelConn{
			t:    t,
			rsem: make(chan struct{}, 1),
			wsem: make(chan struct{}, 1),
			rd:   newDeadline(),
			wd:   newDeadline(),
		}
	})
	return t.netConn
}

// tunnelConn is the net.Conn view of a tunnel.
type tunnelConn struct {
	t      *Tunnel
	rsem   chan struct{} // held by Read
	wsem   chan struct{} // held by Write
	rd, wd *deadline
	cur    []byte // the rest of the message being read; guarded by rsem
}

func (tc *tunnelConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	dl := tc.rd.wait()
	if err := tc.enter(tc.rsem, dl); err != nil {
		return 0, tc.opErr("read", err)
	}
	defer func() { <-tc.rsem }()
	for len(tc.cur) == 0 {
		msg, err := tc.t.take(context.Background(), dl, "read")
		if err == io.EOF {
			return 0, io.EOF
		}
		if err != nil {
			return 0, tc.opErr("read", err)
		}
		tc.cur = msg
	}
	n := copy(p, tc.cur)
	tc.cur = tc.cur[n:]
	tc.t.consumed(context.Background(), dl, n)
	return n, nil
}

func (tc *tunnelConn) Write(p []byte) (int, error) {
	dl := tc.wd.wait()
	if err := tc.enter(tc.wsem, dl); err != nil {
		return 0, tc.opErr("write", err)
	}
	defer func() { <-tc.wsem }()
	written := 0
	for len(p) > 0 {
		n := min(len(p), tc.t.chunkLimit)
		if err := tc.t.send(context.Background(), dl, p[:n]); err != nil {
			return written, tc.opErr("write", err)
		}
		written += n
		p = p[n:]
	}
	return written, nil
}

// enter takes sem, unless the tunnel was closed here, or the deadline
// passes first or has passed.
func (tc *tunnelConn) enter(sem chan struct{}, dl <-chan struct{}) error {
	tc.t.mu.Lock()
	closing := tc.t.closing
	tc.t.mu.Unlock()
	if closing {
		return ErrTunnelClosed
	}
	select {
	case <-dl:
		return errDeadline
	default:
	}
	select {
	case sem <- struct{}{}:
		return nil
	case <-dl:
		return errDeadline
	}
}

// errDeadline is the error of a call stopped by its net.Conn deadline,
// as stopErr returns it.
var errDeadline = os.ErrDeadlineExceeded

// opErr wraps a tunnel error as net.Conn methods do; ErrTunnelClosed from
// a Close on this side becomes net.ErrClosed.
func (tc *tunnelConn) opErr(op string, err error) error {
	if err == ErrTunnelClosed {
		err = net.ErrClosed
	}
	addr := tc.LocalAddr()
	return &net.OpError{Op: op, Net: addr.Network(), Source: addr, Addr: addr, Err: err}
}

func (tc *tunnelConn) Close() error { return tc.t.Close() }

func (tc *tunnelConn) LocalAddr() net.Addr { return TunnelAddr{Cluster: tc.t.cluster, ID: tc.t.id} }

func (tc *tunnelConn) RemoteAddr() net.Addr { return tc.LocalAddr() }

func (tc *tunnelConn) SetDeadline(t time.Time) error {
	tc.rd.set(t)
	tc.wd.set(t)
	return nil
}

func (tc *tunnelConn) SetReadDeadline(t time.Time) error {
	tc.rd.set(t)
	return nil
}

func (tc *tunnelConn) SetWriteDeadline(t time.Time) error {
	tc.wd.set(t)
	return nil
}

// deadline is a net.Conn deadline: a channel closed when it passes, which
// calls blocked before it was set see too. It works as net.Pipe's.
type deadline struct {
	mu     sync.Mutex // protects the following
	timer  *time.Timer
	cancel chan struct{} // closed when the deadline passes
}

func newDeadline() *deadline { return &deadline{cancel: make(chan struct{})} }

// set sets the deadline; the zero time means none. A call waiting on the
// current channel sees a deadline moved into the past, and keeps waiting
// when it is moved later.
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.cancel // the timer fired: wait for it to close the channel
	}
	d.timer = nil
	closed := isClosed(d.cancel)
	if t.IsZero() {
		if closed {
			d.cancel = make(chan struct{})
		}
		return
	}
	if left := time.Until(t); left > 0 {
		if closed {
			d.cancel = make(chan struct{})
		}
		cancel := d.cancel
		d.timer = time.AfterFunc(left, func() { close(cancel) })
		return
	}
	if !closed {
		close(d.cancel)
	}
}

// wait returns the channel closed when the deadline passes.
func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cancel
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
