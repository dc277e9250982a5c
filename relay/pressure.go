package relay

import (
	"time"

	"github.com/iris-mesh/iris/api"
)

// Subscriber pushback (see docs/design-notes.md, "Pub/sub without loss").
//
// Once a subscriber's send queue passes its high-water mark, the queue is
// "pressed": the goroutine that delivers the next event to it waits, after
// queueing it, until the writer brings the queue back under high water.
// For a local publisher that goroutine is the publisher's read loop: the
// daemon stops reading it, its socket fills, and a publisher without flow
// control slows to its subscribers' pace (TCP pushback) instead of having
// its events dropped. For an event from another daemon it is that link's
// read loop: the link's TCP window closes and the far daemon's link queue
// backs up, which makes its publishers wait in turn (overlay.WaitBacklog).
//
// A slow subscriber must not stall others for long: a delivery waits at
// most stallMax; a queue that makes one wait that long is marked slow and
// stalls nobody until its writer brings it under high water again.
// Meanwhile it fills to its hard limits and drops, counted, as before (the
// app is really slower). A subscriber keeping up with high water per
// stallMax (8192 events or 4 MiB per 100 ms) paces what shares its
// publisher or link; one slower than that is cut loose.
const stallMax = 100 * time.Millisecond

// The high-water mark of a send queue is half of its limits, and at most
// pressBytes and pressLen, so that a busy connection's batches stay small
// enough for the writer to recycle (see writeLoop).
const (
	pressBytes = 4 << 20
	pressLen   = 8192
)

// offerPub queues an event for a subscriber like offer (and, for a v1.1
// session, counts a refused one for the next GAP like offerEvent). When the
// queue is past high water and not marked slow, it then waits, at most
// stallMax, for the writer to bring it back under; it reports whether the
// event was queued and whether it waited.
func (q *sendQueue) offerPub(m *api.Message, gap bool) (ok, waited bool) {
	q.mu.Lock()
	if len(m.Payload) < directWriteSize {
		ok = q.offerEncodedLocked(m)
	} else {
		ok = q.offerLocked(m, kindBulk)
	}
	if !ok && gap && q.state == queueOpen {
		q.gap++
		if q.gap == 1 {
			// Wake the writer even if nothing is queued (the budget, not
			// the queue, refused the event), so the GAP goes out.
			signal(q.wakeCh)
		}
	}
	var ch chan struct{}
	if ok {
		ch = q.pressLocked()
	}
	q.mu.Unlock()
	if ch == nil {
		return ok, false
	}
	t := time.NewTimer(stallMax)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
		q.markSlow(ch) // too slow to wait for: it drops rather than stalls
	}
	return ok, true
}

// pressLocked returns the channel of the queue's pressed spell, starting
// one when it is past high water, or nil when it is under high water or
// marked slow. q.mu must be held.
func (q *sendQueue) pressLocked() chan struct{} {
	if q.press == nil && (q.nBytes >= q.hwBytes || q.nBulk >= q.hwLen) {
		q.press = make(chan struct{})
	}
	if q.slow {
		return nil
	}
	return q.press
}

// markSlow marks q slow for the pressed spell ch belongs to.
func (q *sendQueue) markSlow(ch chan struct{}) {
	q.mu.Lock()
	if q.press == ch {
		q.slow = true
	}
	q.mu.Unlock()
}

// releasePressLocked ends the pressed spell once q is back under high
// water, or when q ends. q.mu must be held.
func (q *sendQueue) releasePressLocked(force bool) {
	if q.press == nil || (!force && (q.nBytes >= q.hwBytes || q.nBulk >= q.hwLen)) {
		return
	}
	close(q.press)
	q.press, q.slow = nil, false
}
