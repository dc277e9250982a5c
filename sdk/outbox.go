package sdk

import (
	"runtime"
	"sync"

	"github.com/iris-mesh/iris/api"
)

// Sizes of the outbox.
const (
	// outboxBytes bounds the encoded bytes waiting for the writer; with
	// Config.SendQueueLen (in messages) it bounds the queue. A message
	// larger than it is still taken when the outbox is empty. The writer
	// writes up to this much per system call.
	outboxBytes = 256 << 10
	// keepBuf is the largest buffer the writer keeps when it finds the
	// outbox empty; one grown further by a message of more than
	// outboxBytes is freed then.
	keepBuf = 2 * outboxBytes
	// yieldBelow is the number of queued messages under which the writer
	// yields once before it takes them, for more to arrive.
	yieldBelow = 8
)

// outbox is the queue between a connection's senders and its writer.
// Senders encode their messages straight into the outbox's buffer under
// its lock (one copy of the payload, no allocation); the writer swaps the
// buffer for its spare and writes everything in it with one system call.
type outbox struct {
	limit int // at most this many messages wait (Config.SendQueueLen)

	mu     sync.Mutex
	buf    []byte // encoded messages waiting for the writer
	n      int    // messages in buf
	spare  []byte // the buffer the writer wrote last, to swap in
	parked bool   // the writer waits on wake
	wake   chan struct{}
	roomCh chan struct{} // closed when the writer takes buf; nil if nobody waits
}

func newOutbox(limit int) *outbox {
	return &outbox{limit: limit, wake: make(chan struct{}, 1)}
}

// put encodes m into the outbox and returns nil, or, when the outbox is
// full, queues nothing and returns a channel closed once the writer has
// made room: the caller waits on it (or gives up) and calls put again.
func (o *outbox) put(m *api.Message) <-chan struct{} {
	o.mu.Lock()
	if o.n >= o.limit || (o.n > 0 && len(o.buf) >= outboxBytes) {
		if o.roomCh == nil {
			o.roomCh = make(chan struct{})
		}
		ch := o.roomCh
		o.mu.Unlock()
		return ch
	}
	o.buf = api.AppendClient(o.buf, m)
	o.n++
	if o.parked {
		o.parked = false
		o.wake <- struct{}{} // cap 1, and only the parked writer takes it
	}
	o.mu.Unlock()
	return nil
}

// take waits until messages are queued and returns them for the writer
// to write; it gives the outbox back the buffer done, which the writer has
// finished writing. It returns nil, without waiting, once dead is closed,
// or once flush is closed and nothing is queued. A buffer a burst has
// grown is freed when the writer finds the outbox empty.
func (o *outbox) take(done []byte, flush, dead <-chan struct{}) []byte {
	o.mu.Lock()
	o.spare = done[:0]
	for o.n == 0 {
		if cap(o.spare) > keepBuf {
			o.spare = nil
		}
		if cap(o.buf) > keepBuf {
			o.buf = nil
		}
		o.parked = true
		o.mu.Unlock()
		select {
		case <-o.wake:
		case <-dead:
			return nil
		case <-flush:
		}
		o.mu.Lock()
		o.parked = false // a wake token put left is harmless: the loop rechecks
		if o.n == 0 {
			select {
			case <-flush:
				o.mu.Unlock()
				return nil
			default:
			}
		}
	}
	if o.n < yieldBelow {
		// Let the goroutines that are about to send (requesters, handlers
		// replying) queue their messages first, so that one system call
		// carries them all: without this the writer woke for each message
		// and wrote 2 per call under load instead of 30. Alone, Gosched
		// returns at once.
		o.mu.Unlock()
		runtime.Gosched()
		o.mu.Lock()
	}
	buf := o.buf
	o.buf, o.n, o.spare = o.spare, 0, nil
	if o.roomCh != nil {
		close(o.roomCh)
		o.roomCh = nil
	}
	o.mu.Unlock()
	return buf
}
