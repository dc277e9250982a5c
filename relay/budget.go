package relay

import (
	"errors"
	"net"
	"os"
	"sync/atomic"
	"time"
)

// Memory of app connections. A Server holds a budget of bytes that all its
// connections share (Config.MemoryBudget): what is queued for apps
// (broadcasts, events, delivered requests and replies, from when they are
// queued until they are written) and what has arrived of messages not
// received in full. Each connection has a small allowance of its own
// (freeAllowance for each) that does not draw on it, so apps that keep up
// and send small messages are served however full the budget is; beyond
// it, what does not fit is refused: broadcasts and events are dropped, a
// delivered request goes to another member, a reply becomes a fault, and a
// partly received message ends the connection with CLOSE.

// freeAllowance is what each connection may queue, and have of a partly
// received message, without drawing on the shared budget: about what its
// read buffer holds anyway.
const freeAllowance = 64 << 10

// lowTierAfter: a connection that already draws this much from the budget
// (for its queue, or for a partly received message) may only use the first
// half of the budget; the second half stays for connections that keep up,
// so apps that never read or stall mid-message cannot starve the others.
const lowTierAfter = 256 << 10

// Reasons sent in CLOSE when the daemon ends a session on its own.
const (
	reasonMemoryBudget = "iris: daemon memory budget for apps exhausted (-app-memory); message refused"
	reasonStalled      = "iris: message not completed in time (-message-timeout)"
)

// Faults put in REPLY when a reply cannot be queued for the app.
const (
	faultReplyQueueFull = "iris: reply dropped: the app's queued replies exceed their byte limit (-max-reply-bytes)"
	faultReplyBudget    = "iris: reply dropped: daemon memory budget for apps exhausted (-app-memory)"
)

// Errors ending a read loop with a CLOSE reason.
var (
	errMemoryBudget = errors.New("relay: memory budget exhausted by a partly received message")
	errStalled      = errors.New("relay: app stalled in the middle of a message")
)

// budget is the Server-wide byte budget.
type budget struct {
	limit   int64
	used    atomic.Int64
	refused atomic.Uint64 // takes that did not fit
}

// take charges n bytes if they fit: in the whole budget, or in its first
// half for a connection in the low tier.
func (b *budget) take(n int, low bool) bool {
	limit := b.limit
	if low {
		limit /= 2
	}
	for {
		u := b.used.Load()
		if u+int64(n) > limit {
			b.refused.Add(1)
			return false
		}
		if b.used.CompareAndSwap(u, u+int64(n)) {
			return true
		}
	}
}

// give returns n bytes.
func (b *budget) give(n int) {
	if n != 0 {
		b.used.Add(-int64(n))
	}
}

// refusal is a read-loop error that ends the session with CLOSE(reason)
// rather than a bare close, so the app learns why.
type refusal struct {
	reason string
	err    error
}

func (r *refusal) Error() string { return r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

// appReader sits between an app's socket and its Decoder. It charges the
// bytes of a partly received message beyond freeAllowance to the budget,
// and gives a message that has begun MessageTimeout to make progress: each
// read inside a message must return within it. Between messages an app may
// stay silent as long as it likes. Only the read loop uses it.
type appReader struct {
	c        *conn
	active   bool // the handshake is over: deadlines are the reader's
	mid      bool // a message has begun
	deadline bool // a read deadline is set
	got      int  // bytes read of the current message(s)
	charged  int  // of which charged to the budget
}

// Read implements io.Reader.
func (r *appReader) Read(p []byte) (int, error) {
	c := r.c
	timeout := c.srv.cfg.MessageTimeout
	managed := r.active && !c.closing.Load() // after CLOSE, endWrites owns the deadline
	if managed {
		if r.mid {
			_ = c.nc.SetReadDeadline(time.Now().Add(timeout))
			r.deadline = true
		} else if r.deadline {
			_ = c.nc.SetReadDeadline(time.Time{})
			r.deadline = false
		}
	}
	n, err := c.nc.Read(p)
	if n > 0 {
		r.mid = true
		r.got += n
		if over := r.got - freeAllowance - r.charged; over > 0 {
			if !c.srv.mem.take(over, r.charged >= lowTierAfter) {
				return n, errMemoryBudget
			}
			r.charged += over
		}
	}
	if err != nil && r.mid && managed && isTimeout(err) {
		return n, errStalled
	}
	return n, err
}

// messageDone is called after each decoded message: what was charged for
// it is given back. buffered is what the Decoder holds of the next.
func (r *appReader) messageDone(buffered int) {
	r.c.srv.mem.give(r.charged)
	r.charged = 0
	r.got = buffered
	r.mid = buffered > 0
}

// release gives back what is charged when the read loop ends.
func (r *appReader) release() {
	r.c.srv.mem.give(r.charged)
	r.charged = 0
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
