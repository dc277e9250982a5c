package relay

import (
	"errors"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Memory of app connections. A Server holds a budget of bytes that all its
// connections share (Config.MemoryBudget), in two halves: one for what is
// queued for apps (broadcasts, events, delivered requests and replies,
// from when they are queued until they are written), one for what has
// arrived of messages not received in full. Each connection has a small
// allowance of its own (freeAllowance for each) that does not draw on it,
// so apps that keep up and send small messages are served however full
// the budget is.
//
// Queued bytes that do not fit are refused: broadcasts and events are
// dropped, a delivered request goes to another member, a reply becomes a
// fault. A connection already holding lowTierAfter of the queue half may
// only use half of it, so subscribers that never read cannot starve those
// that do.
//
// A message trickling in (below slowRate after stallGrace) may only use
// half of the read half. A partly received message that does not fit takes the budget of the
// connection that has been stalled longest in the middle of a message
// (no bytes for stallGrace), which gets CLOSE("iris: daemon memory
// budget ..."); if none is stalled it waits for room, up to budgetWait,
// before it gets that CLOSE itself. So apps stalling mid-message cannot
// keep apps that send large messages briskly out for long.

// freeAllowance is what each connection may queue, and have of a partly
// received message, without drawing on the shared budget: about what its
// read buffer holds anyway.
const freeAllowance = 64 << 10

// lowTierAfter: a connection whose queue already draws this much from the
// queue half of the budget may only use half of that; the rest stays for
// connections that keep up. 1 MiB: since queued messages count their slot
// (msgOverhead) too, a subscriber that keeps up with a few hundred 1 KiB
// events in flight draws over 256 KiB, and at 256 KiB it was starved by a
// stalled one holding the low half.
const lowTierAfter = 1 << 20

// maxChargedRead bounds one read from an app's socket: what a read brings
// in is charged after it.
const maxChargedRead = 256 << 10

// partialCost is what got bytes of a partly received message cost in the
// budget: the Decoder grows a large message's buffer by doubling as it
// arrives, so it may hold up to twice what has arrived.
func partialCost(got int) int { return max(2*(got-freeReadAllowance), 0) }

// freeReadAllowance is what a connection may have read of messages not
// decoded yet without drawing on the budget: a message of up to 64 KiB
// plus the read-ahead of the Decoder's 64 KiB buffer, so that apps sending
// messages of up to 64 KiB never wait for the budget.
const freeReadAllowance = 128 << 10

// stallGrace is how long a connection may go without receiving a byte of
// a message it has begun before another's partly received message may
// take its budget.
const stallGrace = time.Second

// slowRate is the average rate below which a message that has taken more
// than stallGrace to arrive counts as slow (see charge): a trickle, not a
// large message on a busy machine.
const slowRate = 1 << 20 // bytes per second

// slowMessage reports whether a message of which got bytes arrived in
// elapsed is slow: older than stallGrace, and arriving below slowRate.
func slowMessage(got int, elapsed time.Duration) bool {
	return elapsed > stallGrace && float64(got) < slowRate*elapsed.Seconds()
}

// budgetWait bounds how long a partly received message waits for room in
// the budget (while stalled connections are evicted for it) before its
// connection is refused.
const budgetWait = 3 * stallGrace

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

// budget is one half of the Server-wide byte budget.
type budget struct {
	limit   int64
	used    atomic.Int64
	refused atomic.Uint64 // takes that did not fit at once

	waiting atomic.Bool // someone waits on freed
	mu      sync.Mutex  // protects freed
	freed   chan struct{}
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

// give returns n bytes, waking those waiting for room.
func (b *budget) give(n int) {
	if n == 0 {
		return
	}
	b.used.Add(-int64(n))
	if b.waiting.Load() {
		b.mu.Lock()
		if b.freed != nil {
			close(b.freed)
			b.freed = nil
		}
		b.waiting.Store(false)
		b.mu.Unlock()
	}
}

// wait returns a channel closed at the next give. Take again after
// calling it, before waiting, so that a give in between is not missed.
func (b *budget) wait() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.freed == nil {
		b.freed = make(chan struct{})
	}
	b.waiting.Store(true)
	return b.freed
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
// bytes of a partly received message beyond freeAllowance to the read half
// of the budget, and gives a message that has begun MessageTimeout to make
// progress: each read inside a message must return within it. Between
// messages an app may stay silent as long as it likes. Only the read loop
// calls Read and messageDone.
type appReader struct {
	c        *conn
	active   bool      // the handshake is over: deadlines are the reader's
	mid      bool      // a message has begun
	deadline bool      // a read deadline is set
	got      int       // bytes read of the current message(s)
	start    time.Time // when the current message began, moved later by the time spent in charge

	charged  atomic.Int64 // of which charged to the budget
	progress atomic.Int64 // unix nanos of the last byte received in a message; 0 between messages
	evicted  atomic.Bool  // another connection took this one's budget
	waiting  atomic.Bool  // waiting in charge: not stalled by its app
}

// Read implements io.Reader.
func (r *appReader) Read(p []byte) (int, error) {
	c := r.c
	if r.evicted.Load() {
		return 0, errMemoryBudget
	}
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
	// Small reads keep what is received but not yet charged small.
	n, err := c.nc.Read(p[:min(len(p), maxChargedRead)])
	if n > 0 {
		now := time.Now()
		if !r.mid {
			r.start = now
		}
		r.mid = true
		r.progress.Store(now.UnixNano())
		r.got += n
		if over := partialCost(r.got) - int(r.charged.Load()); over > 0 {
			if !r.charge(over, slowMessage(r.got, now.Sub(r.start))) {
				return n, errMemoryBudget
			}
		}
	}
	if err != nil && r.evicted.Load() {
		return n, errMemoryBudget
	}
	if err != nil && r.mid && managed && isTimeout(err) {
		return n, errStalled
	}
	return n, err
}

// charge draws n bytes from the read half of the budget; a slow message
// (old: see slowMessage; time spent waiting here does not count) may only
// use the first half of it, so that messages arriving briskly find room
// beside slow or stalled ones.
// When they do not fit, it evicts the connection stalled longest (if one has stalled for
// stallGrace) and waits for room, at most budgetWait: a connection that
// finds the budget full of messages still arriving is refused.
func (r *appReader) charge(n int, old bool) bool {
	b := &r.c.srv.memRead
	if b.take(n, old) {
		r.charged.Add(int64(n))
		return true
	}
	r.waiting.Store(true)
	began := time.Now()
	defer func() {
		r.waiting.Store(false)
		r.start = r.start.Add(time.Since(began)) // waiting on us does not age the message
	}()
	deadline := began.Add(budgetWait)
	for {
		freed := b.wait()
		if b.take(n, old) {
			r.charged.Add(int64(n))
			return true
		}
		r.c.srv.evictStalled(r.c)
		left := time.Until(deadline)
		if left <= 0 || r.c.closing.Load() || r.evicted.Load() || isClosed(r.c.srv.shutdownCh) {
			return false
		}
		t := time.NewTimer(min(left, stallGrace/4)) // recheck for newly stalled connections
		select {
		case <-freed:
		case <-t.C:
		case <-r.c.srv.shutdownCh:
		}
		t.Stop()
	}
}

// isClosed reports whether ch is closed.
func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// messageDone is called after each decoded message: what was charged for
// it is given back. buffered is what the Decoder holds of the next.
func (r *appReader) messageDone(buffered int) {
	if r.charged.Load() != 0 {
		r.release()
	}
	r.got = buffered
	r.mid = buffered > 0
	if !r.mid && r.progress.Load() != 0 {
		r.progress.Store(0)
	}
}

// release gives back what is charged.
func (r *appReader) release() {
	r.c.srv.memRead.give(int(r.charged.Swap(0)))
}

// evictStalled takes the budget of the connection (not self) that has
// gone longest without a byte in the middle of a message, if one has for
// stallGrace and no eviction is still giving back: its read fails and it
// gets CLOSE with the budget's reason.
func (s *Server) evictStalled(self *conn) {
	cutoff := time.Now().Add(-stallGrace).UnixNano()
	var victim *conn
	var oldest int64
	s.mu.Lock()
	for c := range s.conns {
		if c.rd.evicted.Load() && c.rd.charged.Load() > 0 {
			victim = nil // one eviction at a time: wait for it to give back
			break
		}
		if c == self || c.rd.charged.Load() == 0 || c.rd.evicted.Load() || c.rd.waiting.Load() {
			continue
		}
		if p := c.rd.progress.Load(); p != 0 && p < cutoff && (victim == nil || p < oldest) {
			victim, oldest = c, p
		}
	}
	s.mu.Unlock()
	if victim != nil && !victim.rd.evicted.Swap(true) {
		_ = victim.nc.SetReadDeadline(time.Unix(1, 0)) // wakes its read loop
	}
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
