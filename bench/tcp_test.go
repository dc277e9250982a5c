package bench

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
)

// The raw-TCP floor: the least a broker on loopback must do for the same
// job, with the same number of TCP hops as Iris and NATS and the same
// batching (write what is queued, flush when idle), but no routing, no
// encryption and no protocol beyond a 4-byte length prefix per frame.
//
//	request/reply, 1 node:  client ⇄ hub ⇄ echo
//	request/reply, 2 nodes: client ⇄ hub ⇄ hub ⇄ echo
//	pub/sub:                publisher → hub → each subscriber

// maxFrame bounds the frames the floor accepts.
const maxFrame = 1 << 20

// tcpNet owns the connections and goroutines of one raw-TCP topology.
type tcpNet struct {
	tb    testing.TB
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

// newTCPNet returns an empty topology that cleanup closes: it closes every
// connection, which ends every goroutine, and waits for them.
func newTCPNet(tb testing.TB) *tcpNet {
	n := &tcpNet{tb: tb}
	tb.Cleanup(func() {
		n.mu.Lock()
		for _, c := range n.conns {
			c.Close()
		}
		n.mu.Unlock()
		n.wg.Wait()
	})
	return n
}

// pair returns the two ends of a new loopback TCP connection.
func (n *tcpNet) pair() (dialed, accepted net.Conn) {
	n.tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		n.tb.Fatal(err)
	}
	type result struct {
		c   net.Conn
		err error
	}
	acc := make(chan result, 1)
	n.wg.Go(func() {
		c, err := ln.Accept()
		acc <- result{c, err}
	})
	dialed, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		ln.Close() // ends the Accept
	}
	r := <-acc
	ln.Close()
	n.mu.Lock()
	for _, c := range []net.Conn{dialed, r.c} {
		if c != nil {
			n.conns = append(n.conns, c)
		}
	}
	n.mu.Unlock()
	if err = errors.Join(err, r.err); err != nil {
		n.tb.Fatal(err)
	}
	return dialed, r.c
}

// goForward runs a forwarder until src closes: it copies every frame read
// from src to each of dsts, flushing when src has nothing more buffered.
func (n *tcpNet) goForward(src net.Conn, dsts ...net.Conn) {
	n.wg.Go(func() {
		r := bufio.NewReaderSize(src, 64<<10)
		ws := make([]*bufio.Writer, len(dsts))
		for i, d := range dsts {
			ws[i] = bufio.NewWriterSize(d, 64<<10)
		}
		var buf []byte
		for {
			var err error
			if buf, err = readFrame(r, buf); err != nil {
				return
			}
			for _, w := range ws {
				if writeFrame(w, buf) != nil {
					return
				}
			}
			if r.Buffered() == 0 {
				for _, w := range ws {
					if w.Flush() != nil {
						return
					}
				}
			}
		}
	})
}

// goHub forwards frames both ways between a and b.
func (n *tcpNet) goHub(a, b net.Conn) {
	n.goForward(a, b)
	n.goForward(b, a)
}

// goCount counts the frames read from c until it closes.
func (n *tcpNet) goCount(c net.Conn, cnt *counter) {
	n.wg.Go(func() {
		r := bufio.NewReaderSize(c, 64<<10)
		var buf []byte
		for {
			var err error
			if buf, err = readFrame(r, buf); err != nil {
				return
			}
			cnt.n.Add(1)
		}
	})
}

// readFrame reads one frame from r into buf, grown as needed.
func readFrame(r *bufio.Reader, buf []byte) ([]byte, error) {
	var h [4]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return buf, err
	}
	size := binary.BigEndian.Uint32(h[:])
	if size > maxFrame {
		return buf, fmt.Errorf("frame of %d bytes", size)
	}
	if cap(buf) < int(size) {
		buf = make([]byte, size)
	}
	buf = buf[:size]
	_, err := io.ReadFull(r, buf)
	return buf, err
}

// writeFrame writes p to w as one frame.
func writeFrame(w *bufio.Writer, p []byte) error {
	var h [4]byte
	binary.BigEndian.PutUint32(h[:], uint32(len(p)))
	w.Write(h[:])
	_, err := w.Write(p)
	return err
}

// tcpWriter is the sending side of a client, built as nats.go's is:
// callers append frames to a buffer under a lock and wake a flusher
// goroutine, which writes what has gathered in one system call.
type tcpWriter struct {
	mu   sync.Mutex
	w    *bufio.Writer
	kick chan struct{}
}

// newTCPWriter starts the flusher of c; it ends when stop is closed.
func (n *tcpNet) newTCPWriter(c net.Conn, stop <-chan struct{}) *tcpWriter {
	tw := &tcpWriter{w: bufio.NewWriterSize(c, 64<<10), kick: make(chan struct{}, 1)}
	n.wg.Go(func() {
		for {
			select {
			case <-tw.kick:
			case <-stop:
				return
			}
			tw.mu.Lock()
			err := tw.w.Flush()
			tw.mu.Unlock()
			if err != nil {
				return
			}
		}
	})
	return tw
}

// send queues p as one frame, calling then (if not nil) under the lock so
// that the order of then matches the order of the frames.
func (tw *tcpWriter) send(p []byte, then func()) error {
	tw.mu.Lock()
	err := writeFrame(tw.w, p)
	if err == nil && then != nil {
		then()
	}
	tw.mu.Unlock()
	select {
	case tw.kick <- struct{}{}:
	default:
	}
	return err
}

// tcpRequester builds client ⇄ hub (⇄ hub) ⇄ echo and returns a requester
// that multiplexes its callers on the client's one connection. The echo
// answers in order, so the reader hands each reply to the oldest waiter.
func tcpRequester(tb testing.TB, nodes int) requester {
	n := newTCPNet(tb)
	stop := make(chan struct{})
	tb.Cleanup(func() { close(stop) }) // runs before the net's cleanup

	client, hubIn := n.pair()
	for range nodes - 1 {
		out, next := n.pair()
		n.goHub(hubIn, out)
		hubIn = next
	}
	hubOut, echo := n.pair()
	n.goHub(hubIn, hubOut)
	n.goForward(echo, echo)

	w := n.newTCPWriter(client, stop)
	waiters := make(chan chan []byte, 2*maxInflight)
	n.wg.Go(func() {
		r := bufio.NewReaderSize(client, 64<<10)
		for {
			reply, err := readFrame(r, nil)
			if err != nil {
				return
			}
			select {
			case ch := <-waiters:
				ch <- reply
			case <-stop:
				return
			}
		}
	})
	replies := sync.Pool{New: func() any { return make(chan []byte, 1) }}
	return func(p []byte) ([]byte, error) {
		ch := replies.Get().(chan []byte)
		if err := w.send(p, func() { waiters <- ch }); err != nil {
			return nil, err
		}
		select {
		case reply := <-ch:
			replies.Put(ch)
			return reply, nil
		case <-stop:
			return nil, net.ErrClosed
		}
	}
}

// tcpPubSub builds publisher → hub → subscribers and returns the
// publisher and the subscribers' counters.
func tcpPubSub(tb testing.TB, subs int) (publisher, []*counter) {
	return tcpPubSubHops(tb, 1, subs)
}

// tcpPubSubHops is tcpPubSub through nodes forwarding hops in a row (one
// per server a message would cross).
func tcpPubSubHops(tb testing.TB, nodes, subs int) (publisher, []*counter) {
	n := newTCPNet(tb)
	stop := make(chan struct{})
	tb.Cleanup(func() { close(stop) })

	pub, hubIn := n.pair()
	for range nodes - 1 {
		out, next := n.pair()
		n.goForward(hubIn, out)
		hubIn = next
	}
	counters := make([]*counter, subs)
	outs := make([]net.Conn, subs)
	for i := range counters {
		counters[i] = &counter{}
		var sub net.Conn
		outs[i], sub = n.pair()
		n.goCount(sub, counters[i])
	}
	n.goForward(hubIn, outs...)
	w := n.newTCPWriter(pub, stop)
	return func(p []byte) error { return w.send(p, nil) }, counters
}
