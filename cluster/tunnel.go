package cluster

import (
	"errors"
	"sync"
	"time"

	"github.com/iris-mesh/iris/overlay"
)

// Tunnel errors.
var (
	ErrTunnelClosed  = errors.New("cluster: tunnel closed")
	ErrTunnelTimeout = errors.New("cluster: tunnel build timed out")
	ErrTunnelRefused = errors.New("cluster: no member accepted the tunnel")
)

// TunnelSink receives what arrives for one end of a tunnel; the relay
// implements it for each app-side tunnel. Methods must not block. Data
// calls are serialized, as are Allow calls, but the two may run at once.
type TunnelSink interface {
	// TunnelData delivers a chunk from the far end, never more bytes than
	// Grant allowed. It returns false if the sink has no room now; the
	// tunnel keeps the chunk and offers it again after Resume.
	TunnelData(sizeOrCont uint64, chunk []byte) bool
	// TunnelAllow reports that n more bytes this end sent were passed on,
	// so its app may send n more.
	TunnelAllow(n uint64)
	// TunnelClosed reports that the far end closed the tunnel ("" reason)
	// or that it broke. Nothing follows it.
	TunnelClosed(reason string)
}

// OwnedTunnelSink is a TunnelSink that can tell when it no longer reads a
// chunk: TunnelDataOwned is TunnelData with done, which the sink calls
// once (or never) after its last read of chunk, when it accepted it; the
// chunk's buffer is then reused. When it returns false it must not call
// done: the chunk is offered again.
type OwnedTunnelSink interface {
	TunnelDataOwned(sizeOrCont uint64, chunk []byte, done func()) bool
}

// TunnelMember is a Member that accepts tunnels.
type TunnelMember interface {
	// HandleTunnel offers a tunnel. It returns false to refuse at once;
	// otherwise the member must call Accept or Reject exactly once, soon.
	HandleTunnel(o *TunnelOffer) bool
}

type tchunk struct {
	sc      uint64 // size of the message for its first chunk, else 0
	b       []byte
	release func([]byte) // see SendOwned; nil when b is not given up
	done    func()       // from the far end: see OwnedTunnelSink; may be nil
}

// tunnelPeer carries one end's traffic to the other end. data calls
// release (if not nil) with b once b is no longer read, unless it fails.
type tunnelPeer interface {
	data(sc uint64, b []byte, release func([]byte)) error
	credit(n uint64) error
	close(reason string) error
}

// Tunnel is one end of an ordered, credit-throttled stream between two
// apps. Each end's daemon grants the other a window of TunnelWindow bytes:
// a stalled reader stops its far end's sender without holding up the link
// or any other tunnel.
type Tunnel struct {
	n    *Node
	id   uint64
	node string // far daemon; "" when both ends are on this one
	sink TunnelSink
	peer tunnelPeer

	mu           sync.Mutex // protects following
	remoteCredit uint64     // bytes the far end lets this end send
	outQ         []tchunk   // from the app, waiting for remote credit
	appCredit    uint64     // bytes the app lets this end deliver
	inQ          []tchunk   // from the far end, waiting for app credit or room
	inBytes      int        // bytes in inQ, bounded by the window granted
	unsentCredit uint64     // credit owed to the far end, not yet sent
	outBusy      bool       // a goroutine is flushing outQ
	outAgain     bool
	inBusy       bool // a goroutine is flushing inQ
	inAgain      bool
	closing      bool   // this end closed; close goes out once outQ drains
	closeSent    bool   // the far end has been told
	remoteClosed bool   // the far end closed
	remoteReason string // why
	done         bool   // finished: no more sink calls
	retry        *time.Timer
	drain        *time.Timer
}

// ID returns the tunnel's id on this daemon.
func (t *Tunnel) ID() uint64 { return t.id }

// Send queues a chunk from the app. sizeOrCont is the message's total size
// on its first chunk and 0 on the rest. The caller has checked the app's
// credit; the tunnel reports what it passed on through TunnelAllow.
func (t *Tunnel) Send(sizeOrCont uint64, chunk []byte) error {
	return t.SendOwned(sizeOrCont, chunk, nil)
}

// SendOwned is Send for a chunk whose buffer the caller gives up: release,
// if not nil, may be called with chunk once nothing reads it any more: it
// was copied into the link to the far daemon, or, with both ends on this
// daemon, the far end's sink passed it on (OwnedTunnelSink). It is not
// called when the chunk is dropped (the tunnel closed, or its peer left):
// the buffer is then left to the garbage collector. Nothing is released
// when SendOwned fails.
func (t *Tunnel) SendOwned(sizeOrCont uint64, chunk []byte, release func([]byte)) error {
	t.mu.Lock()
	if t.closing || t.done || t.remoteClosed {
		t.mu.Unlock()
		return ErrTunnelClosed
	}
	t.outQ = append(t.outQ, tchunk{sc: sizeOrCont, b: chunk, release: release})
	t.mu.Unlock()
	t.flushOut()
	return nil
}

// Grant adds n bytes of the app's credit: how much more this end may
// deliver to it.
func (t *Tunnel) Grant(n uint64) {
	t.mu.Lock()
	t.appCredit += n
	t.mu.Unlock()
	t.flushIn()
}

// Resume tells the tunnel its sink has room again.
func (t *Tunnel) Resume() { t.flushIn() }

// Close closes this end: what the app sent before is still delivered (for
// at most TunnelCloseDrain), then the far end is told. No sink call
// follows Close. Idempotent.
func (t *Tunnel) Close() {
	t.mu.Lock()
	if t.closing || t.done {
		t.mu.Unlock()
		return
	}
	t.closing = true
	t.done = true // the app is gone from this end: nothing more to deliver
	t.inQ, t.inBytes = nil, 0
	if t.remoteClosed {
		t.mu.Unlock()
		t.n.dropTunnel(t)
		return
	}
	t.drain = time.AfterFunc(t.n.cfg.TunnelCloseDrain, func() { t.forceClose("iris: tunnel close timed out draining") })
	t.mu.Unlock()
	t.flushOut()
}

// Abort closes this end at once, discarding what is queued either way, and
// tells the far end the tunnel broke with reason (its app sees a close with
// that reason). For an app that vanished. No sink call follows. Idempotent.
func (t *Tunnel) Abort(reason string) {
	if reason == "" {
		reason = "iris: tunnel aborted"
	}
	t.mu.Lock()
	send := !t.closeSent && !t.remoteClosed
	t.closing, t.done, t.closeSent = true, true, true
	t.outQ, t.inQ, t.inBytes = nil, nil, 0
	if t.drain != nil {
		t.drain.Stop()
	}
	t.mu.Unlock()
	if send {
		_ = t.peer.close(reason)
	}
	t.n.dropTunnel(t)
}

func (t *Tunnel) forceClose(reason string) {
	t.mu.Lock()
	if t.closeSent {
		t.mu.Unlock()
		return
	}
	t.closeSent = true
	t.outQ = nil
	t.mu.Unlock()
	_ = t.peer.close(reason)
	t.n.dropTunnel(t)
}

// flushOut passes queued chunks to the far end while credit lasts, one
// flusher at a time so chunks keep their order.
func (t *Tunnel) flushOut() {
	t.mu.Lock()
	if t.outBusy {
		t.outAgain = true
		t.mu.Unlock()
		return
	}
	t.outBusy = true
	for {
		t.outAgain = false
		var sent uint64
		congested := false
		for len(t.outQ) > 0 && !t.remoteClosed && !t.closeSent {
			c := t.outQ[0]
			if uint64(len(c.b)) > t.remoteCredit {
				break
			}
			t.mu.Unlock()
			err := t.peer.data(c.sc, c.b, c.release)
			t.mu.Lock()
			if err != nil {
				congested = true
				break
			}
			if len(t.outQ) == 0 {
				// Closed or aborted while the lock was released: the
				// queue was discarded, and the chunk sent is the last.
				break
			}
			t.outQ[0] = tchunk{}
			t.outQ = t.outQ[1:]
			t.remoteCredit -= uint64(len(c.b))
			sent += uint64(len(c.b))
		}
		sendClose := t.closing && !t.closeSent && len(t.outQ) == 0 && !t.remoteClosed
		if sendClose {
			t.closeSent = true
			if t.drain != nil {
				t.drain.Stop()
			}
		}
		notify := !t.done
		t.mu.Unlock()
		if sent > 0 && notify {
			t.sink.TunnelAllow(sent)
		}
		if congested {
			t.scheduleRetry()
		}
		if sendClose {
			if t.peer.close("") != nil {
				t.n.log.Debug().Uint64("tunnel", t.id).Msg("tunnel close not sent: link congested")
			}
			t.n.dropTunnel(t)
		}
		t.mu.Lock()
		if !t.outAgain {
			break
		}
	}
	t.outBusy = false
	t.mu.Unlock()
}

// flushIn delivers chunks from the far end while the app's credit and the
// sink's room last, and returns what it delivered as credit to the far end.
func (t *Tunnel) flushIn() {
	t.mu.Lock()
	if t.inBusy {
		t.inAgain = true
		t.mu.Unlock()
		return
	}
	t.inBusy = true
	for {
		t.inAgain = false
		var delivered uint64
		for len(t.inQ) > 0 && !t.done {
			c := t.inQ[0]
			if uint64(len(c.b)) > t.appCredit {
				break
			}
			t.mu.Unlock()
			var ok bool
			if ots, owned := t.sink.(OwnedTunnelSink); owned && c.done != nil {
				ok = ots.TunnelDataOwned(c.sc, c.b, c.done)
			} else {
				ok = t.sink.TunnelData(c.sc, c.b)
			}
			t.mu.Lock()
			if !ok || t.done {
				break
			}
			t.inQ[0] = tchunk{}
			t.inQ = t.inQ[1:]
			t.appCredit -= uint64(len(c.b))
			t.inBytes -= len(c.b)
			delivered += uint64(len(c.b))
		}
		closeNow := t.remoteClosed && len(t.inQ) == 0 && !t.done
		if closeNow {
			t.done = true
		}
		t.unsentCredit += delivered
		credit := t.unsentCredit
		t.mu.Unlock()
		if credit > 0 && !closeNow {
			t.sendCredit()
		}
		if closeNow {
			t.sink.TunnelClosed(t.remoteReason)
			t.n.dropTunnel(t)
		}
		t.mu.Lock()
		if !t.inAgain {
			break
		}
	}
	t.inBusy = false
	t.mu.Unlock()
}

func (t *Tunnel) sendCredit() {
	t.mu.Lock()
	n := t.unsentCredit
	t.unsentCredit = 0
	t.mu.Unlock()
	if n == 0 {
		return
	}
	if t.peer.credit(n) != nil {
		t.mu.Lock()
		t.unsentCredit += n
		t.mu.Unlock()
		t.scheduleRetry()
	}
}

// scheduleRetry tries again shortly after the overlay refused a frame
// because the peer's queue was full: tunnel data is never dropped.
func (t *Tunnel) scheduleRetry() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.retry != nil || (t.done && t.closeSent) {
		return
	}
	t.retry = time.AfterFunc(5*time.Millisecond, func() {
		t.mu.Lock()
		t.retry = nil
		t.mu.Unlock()
		t.sendCredit()
		t.flushOut()
	})
}

// onData takes a chunk from the far end; done, if not nil, is called once
// nothing reads b any more (see OwnedTunnelSink).
func (t *Tunnel) onData(sc uint64, b []byte, done func()) {
	t.mu.Lock()
	if t.done || t.remoteClosed {
		t.mu.Unlock()
		return
	}
	t.inBytes += len(b)
	if t.inBytes > t.n.cfg.TunnelWindow {
		t.mu.Unlock()
		t.fail("iris: far end exceeded its tunnel credit")
		_ = t.peer.close("iris: tunnel credit exceeded")
		return
	}
	t.inQ = append(t.inQ, tchunk{sc: sc, b: b, done: done})
	t.mu.Unlock()
	t.flushIn()
}

// onCredit takes credit from the far end.
func (t *Tunnel) onCredit(n uint64) {
	t.mu.Lock()
	t.remoteCredit += n
	t.mu.Unlock()
	t.flushOut()
}

// onClose takes the far end's close. A graceful close is delivered after
// the data before it; a failure at once.
func (t *Tunnel) onClose(reason string) {
	t.mu.Lock()
	if t.remoteClosed {
		t.mu.Unlock()
		return
	}
	t.remoteClosed, t.remoteReason = true, reason
	t.outQ = nil
	if reason != "" {
		t.inQ, t.inBytes = nil, 0
	}
	if t.closing { // both ends closed
		t.closeSent = true
		if t.drain != nil {
			t.drain.Stop()
		}
		t.mu.Unlock()
		t.n.dropTunnel(t)
		return
	}
	t.mu.Unlock()
	t.flushIn()
}

// fail ends the tunnel at once, telling the sink.
func (t *Tunnel) fail(reason string) {
	t.mu.Lock()
	wasDone := t.done
	t.done, t.closeSent, t.remoteClosed = true, true, true
	t.inQ, t.outQ = nil, nil
	if t.drain != nil {
		t.drain.Stop()
	}
	t.mu.Unlock()
	if !wasDone {
		t.sink.TunnelClosed(reason)
	}
	t.n.dropTunnel(t)
}

// localPeer links the two ends of a tunnel on the same daemon.
type localPeer struct{ t *Tunnel }

func (p localPeer) data(sc uint64, b []byte, release func([]byte)) error {
	var done func()
	if release != nil {
		done = func() { release(b) } // once the sink has passed b on
	}
	p.t.onData(sc, b, done)
	return nil
}
func (p localPeer) credit(n uint64) error     { p.t.onCredit(n); return nil }
func (p localPeer) close(reason string) error { p.t.onClose(reason); return nil }

// remotePeer carries a tunnel's traffic over the overlay. Data and close
// share the bulk queue, so a close never overtakes data; credit goes
// ahead as control.
type remotePeer struct {
	n    *Node
	node string
	rid  uint64 // the far end's tunnel id
}

func (p remotePeer) data(sc uint64, b []byte, release func([]byte)) error {
	head := tunHead(fTunData, p.rid, sc)
	ov, ok := p.n.ready()
	if !ok {
		return ErrClosed
	}
	if so, ok := ov.(ownedSender); ok && release != nil {
		return so.SendOwned(p.node, overlay.Bulk, head, b, release)
	}
	return ov.Send(p.node, overlay.Bulk, head, b)
}

// ownedSender is an Overlay that can release the buffers of the frames it
// sent (*overlay.Overlay does).
type ownedSender interface {
	SendOwned(id string, prio overlay.Priority, head, body []byte, release func([]byte)) error
}

func (p remotePeer) credit(n uint64) error {
	return p.n.send(p.node, overlay.Control, tunHead(fTunCredit, p.rid, n), nil)
}

func (p remotePeer) close(reason string) error {
	return p.n.send(p.node, overlay.Bulk, tunHead(fTunClose, p.rid), []byte(reason))
}

// send sends a frame if the node is running.
func (n *Node) send(node string, prio overlay.Priority, head, body []byte) error {
	ov, ok := n.ready()
	if !ok {
		return ErrClosed
	}
	return ov.Send(node, prio, head, body)
}
