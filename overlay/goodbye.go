package overlay

import (
	"errors"
	"sync/atomic"
	"time"
)

// Closing idle links by agreement (issue 11). A link that carried no
// upper-layer frame either way for LinkIdleTimeout is offered for closing
// by the end whose watchdog notices first:
//
//	A → B  'G'  goodbye: A sends no more upper-layer frames on this link
//	B → A  'g'  agreed: B had nothing to send and sends none either; A closes
//	B → A  'N'  not now: B has frames queued; both carry on
//
// Frames queued at either end while it is closing wait in the peer's
// queue and go over the next link, which the first frame queued dials.
// Neither end treats the close as a failure (no suspect state, no link-down
// event, nothing faulted). Frames before 'G' and 'g' arrive first (a link is
// FIFO), so nothing is lost. When both ends offer at once, each reads the
// other's 'G' as an offer it agrees to. A daemon that predates goodbyes
// skips 'G'; the offer then lapses after KeepaliveTimeout, and the link
// stays open for another LinkIdleTimeout.

// Goodbye states of a link end.
const (
	byeNone    int32 = iota
	byeOffered       // this end sent (or is sending) 'G' and waits for the answer
	byeAgreed        // this end agreed ('g'): it waits for the far end to close
	byeClosing       // agreed both ways: the link is closing, not failing
)

// byeState is a link's goodbye state.
type byeState struct {
	state    atomic.Int32
	since    atomic.Int64 // unix nanos the offer was made
	lastIn   atomic.Int64 // unix nanos of the last upper-layer frame received
	wantBye  atomic.Bool  // the writer should send 'G'
	wantAck  atomic.Bool  // the writer should send 'g'
	wantBusy atomic.Bool  // the writer should send 'N'
}

var errIdleClose = errors.New("idle link closed by agreement")

// closing reports whether this end sends no more upper-layer frames.
func (l *link) closing() bool { return l.bye.state.Load() != byeNone }

// idleClose reports whether the link ended by agreement rather than by a
// failure: both ends agreed, or this end agreed and the far end then
// closed the connection, as it does on reading the agreement.
func (l *link) idleClose() bool {
	st := l.bye.state.Load()
	return st == byeClosing || st == byeAgreed
}

// checkIdle is called by the watchdog: it offers to close a link idle for
// LinkIdleTimeout, and withdraws an offer unanswered for KeepaliveTimeout
// (a peer that predates goodbyes skips it).
func (l *link) checkIdle(now int64) {
	cfg := &l.p.o.cfg
	if cfg.LinkIdleTimeout <= 0 {
		return
	}
	switch l.bye.state.Load() {
	case byeNone:
		last := max(l.lastSend.Load(), l.bye.lastIn.Load())
		if now-last < int64(cfg.LinkIdleTimeout) || l.p.queued() || l.p.writing.Load() {
			return
		}
		if l.bye.state.CompareAndSwap(byeNone, byeOffered) {
			l.bye.since.Store(now)
			l.bye.wantBye.Store(true)
			l.kick()
		}
	case byeOffered:
		if now-l.bye.since.Load() > int64(cfg.KeepaliveTimeout) && l.bye.state.CompareAndSwap(byeOffered, byeNone) {
			l.bye.lastIn.Store(now) // wait another LinkIdleTimeout before offering again
			l.kick()                // frames may have been held meanwhile
		}
	}
}

// handleBye handles a goodbye frame from the far end.
func (l *link) handleBye(kind byte) {
	switch kind {
	case frameBye:
		st := l.bye.state.Load()
		busy := st == byeNone && (l.p.queued() || l.p.writing.Load())
		if busy || (st != byeNone && st != byeOffered) || !l.bye.state.CompareAndSwap(st, byeAgreed) {
			l.bye.wantBusy.Store(true)
		} else {
			l.bye.wantAck.Store(true)
		}
		l.kick()
	case frameByeAck:
		if l.bye.state.CompareAndSwap(byeOffered, byeClosing) || l.bye.state.CompareAndSwap(byeAgreed, byeClosing) {
			l.close(errIdleClose)
		}
	case frameByeBusy:
		if l.bye.state.CompareAndSwap(byeOffered, byeNone) {
			l.bye.lastIn.Store(time.Now().UnixNano())
			l.kick() // frames held while the offer was out may go now
		}
	}
}

// byeFrames appends the goodbye frames the writer was asked to send.
func (l *link) byeFrames(b *batcher) error {
	for _, f := range []struct {
		want *atomic.Bool
		kind byte
	}{{&l.bye.wantBye, frameBye}, {&l.bye.wantAck, frameByeAck}, {&l.bye.wantBusy, frameByeBusy}} {
		if f.want.Swap(false) {
			if err := b.frame(f.kind, nil, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// waitClosing is the writer's wait while this end sends no upper-layer
// frames: heartbeats, the watchdog's and reader's kicks, or the close.
func (l *link) waitClosing(idle <-chan time.Time) (ok, beat, kicked bool) {
	select {
	case <-idle:
		return true, true, false
	case <-l.kickCh:
		return true, false, true
	case <-l.closeCh:
		return false, false, false
	}
}
