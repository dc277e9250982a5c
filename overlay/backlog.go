package overlay

import "time"

// Pushback for callers that can wait (see docs/design-notes.md, "Pub/sub
// without loss"). A peer's queues are bounded in bytes, each frame costing
// its size plus frameOverhead, and in frames; past half of either (at most
// backlogBytes or backlogFrames) the peer is backlogged, and WaitBacklog
// makes a caller that can afford it wait until the link's writer brings the
// queues back under, for at most MaxSendWait. A peer that keeps a caller
// waiting that long is marked slow and makes nobody wait until it drains:
// a slow or stuck link costs each caller one bounded wait per backlog, not
// one per frame.

// MaxSendWait bounds one WaitBacklog. It is well above the relay's wait for
// a subscriber (100 ms): the far daemon's reader may pause that long for one
// of its subscribers (closing the TCP window), and the link is not stuck
// then; cutting it loose would drop what that pause pushes back.
const MaxSendWait = 300 * time.Millisecond

// frameOverhead is what a queued frame costs beyond its bytes: its queue
// slot and frame header, counted against SendQueueBytes.
const frameOverhead = 64

// Caps of the backlog mark, so that a link's writer drains it in a few
// milliseconds.
const (
	backlogBytes  = 4 << 20
	backlogFrames = 8192
)

// backlogLocked reports whether the queues are past the backlog mark
// divided by div. p.qmu must be held.
func (p *peer) backlogLocked(div int) bool {
	c := p.o.cfg
	return p.queuedBytes.Load() >= int64(min(c.SendQueueBytes/2, backlogBytes)/div) ||
		p.q[Bulk].len() >= min(c.SendQueueLen/2, backlogFrames)/div
}

// releaseBacklogLocked wakes the waiters once the queues are back under
// half the mark (or emptied): the hysteresis lets a waiter send a batch
// before it waits again. p.qmu must be held.
func (p *peer) releaseBacklogLocked() {
	if p.backlogCh != nil && !p.backlogLocked(2) {
		close(p.backlogCh)
		p.backlogCh, p.backlogSlow = nil, false
	}
}

// WaitBacklog waits, for at most MaxSendWait, while the queues to peer id
// are backlogged; callers that would rather slow down than have their
// later frames dropped (a publishing app's read loop) call it after Send.
// It reports whether it waited.
func (o *Overlay) WaitBacklog(id string) bool {
	p, _ := o.lookup(id)
	if p == nil {
		return false
	}
	p.qmu.Lock()
	if p.backlogSlow || !p.backlogLocked(1) {
		p.qmu.Unlock()
		return false
	}
	if p.backlogCh == nil {
		p.backlogCh = make(chan struct{})
	}
	ch := p.backlogCh
	p.qmu.Unlock()
	t := time.NewTimer(MaxSendWait)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
		p.qmu.Lock()
		if p.backlogCh == ch {
			p.backlogSlow = true
		}
		p.qmu.Unlock()
	}
	return true
}
