package cluster

import (
	"slices"
	"sync"
	"time"

	"github.com/iris-mesh/iris/overlay"
)

// Confirmed subscriptions and registrations (protocol v1.1). Every daemon
// answers each interest table it receives (pushed or pulled) with
// fTableAck carrying the version of that daemon's table it now holds. A
// daemon that wants to know its latest change is known network-wide calls
// Confirm, which waits for every daemon alive at that moment to ack at
// least the current version. A daemon that predates the ack never sends
// one and is reported unconfirmed when the wait ends.

// confirms is the node's state for Confirm.
type confirms struct {
	mu    sync.Mutex        // protects following
	acked map[string]uint64 // peer id → highest version of our table it acked
	waits map[*confirmWait]struct{}
	done  bool // the node closed
}

// confirmWait is one Confirm call waiting.
type confirmWait struct {
	version uint64
	pending map[string]struct{} // peers that have not acked version yet
	// unsure are the peers that were suspect or whose link had just broken
	// when the wait began: not waited for, but reported unconfirmed unless
	// they ack meanwhile.
	unsure map[string]struct{}
	timer  *time.Timer
	done   func(unconfirmed []string)
}

// Confirm calls done once every other daemon alive now holds this daemon's
// interest table as it is now (so with every Subscribe, SubscribeSubject
// and Register that returned before Confirm was called), or once timeout
// passes, with the ids of the daemons that had not confirmed it, sorted. A
// daemon that fails meanwhile is no longer waited for; one that is suspect
// (or whose link just broke) when Confirm is called is not waited for but
// reported unless it confirms meanwhile. done is called
// exactly once: before Confirm returns when there is nothing to wait for,
// else from another goroutine; at Close, at once with the daemons still
// pending.
func (n *Node) Confirm(timeout time.Duration, done func(unconfirmed []string)) {
	n.mu.RLock()
	version := n.version
	peers := make([]string, 0, len(n.remotes))
	unsure := map[string]struct{}{}
	now := time.Now().UnixNano()
	for id, r := range n.remotes {
		peers = append(peers, id)
		if !r.healthy(now) {
			unsure[id] = struct{}{}
		}
	}
	n.mu.RUnlock()
	c := &n.conf
	c.mu.Lock()
	if c.done {
		c.mu.Unlock()
		slices.Sort(peers)
		done(peers)
		return
	}
	w := &confirmWait{version: version, pending: make(map[string]struct{}, len(peers)), unsure: unsure, done: done}
	for _, id := range peers {
		if c.acked[id] >= version {
			delete(unsure, id)
		} else if _, ok := unsure[id]; !ok {
			w.pending[id] = struct{}{}
		}
	}
	if len(w.pending) == 0 {
		missing := w.unconfirmed()
		c.mu.Unlock()
		done(missing)
		return
	}
	if c.waits == nil {
		c.waits = make(map[*confirmWait]struct{})
	}
	c.waits[w] = struct{}{}
	w.timer = time.AfterFunc(timeout, func() { n.confirmExpire(w) })
	c.mu.Unlock()
}

// finishLocked removes w and returns the daemons that did not confirm.
func (c *confirms) finishLocked(w *confirmWait) []string {
	delete(c.waits, w)
	if w.timer != nil {
		w.timer.Stop()
	}
	return w.unconfirmed()
}

// unconfirmed lists, sorted, the daemons still pending or unsure (nil if
// none).
func (w *confirmWait) unconfirmed() []string {
	if len(w.pending)+len(w.unsure) == 0 {
		return nil
	}
	out := make([]string, 0, len(w.pending)+len(w.unsure))
	for id := range w.pending {
		out = append(out, id)
	}
	for id := range w.unsure {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

func (n *Node) confirmExpire(w *confirmWait) {
	c := &n.conf
	c.mu.Lock()
	if _, ok := c.waits[w]; !ok {
		c.mu.Unlock()
		return
	}
	missing := c.finishLocked(w)
	c.mu.Unlock()
	n.stats.unconfirmed.Add(1)
	w.done(missing)
}

// confirmed records that peer id acked version and ends the waits that
// only lacked it. gone means the peer failed: it is no longer waited for.
func (n *Node) confirmed(id string, version uint64, gone bool) {
	c := &n.conf
	var ready []*confirmWait
	c.mu.Lock()
	if gone {
		delete(c.acked, id)
	} else if version > c.acked[id] {
		if c.acked == nil {
			c.acked = make(map[string]uint64)
		}
		c.acked[id] = version
	}
	for w := range c.waits {
		if !gone && w.version > version {
			continue
		}
		delete(w.unsure, id)
		if _, ok := w.pending[id]; !ok {
			continue
		}
		delete(w.pending, id)
		if len(w.pending) == 0 {
			ready = append(ready, w)
		}
	}
	missing := make([][]string, len(ready))
	for i, w := range ready {
		missing[i] = c.finishLocked(w)
	}
	c.mu.Unlock()
	for i, w := range ready {
		w.done(missing[i])
	}
}

// confirmPeerGone stops waiting for a daemon that failed.
func (n *Node) confirmPeerGone(id string) { n.confirmed(id, 0, true) }

// confirmClose ends every wait at once, with the daemons still pending.
func (n *Node) confirmClose() {
	c := &n.conf
	c.mu.Lock()
	c.done = true
	ws := make([]*confirmWait, 0, len(c.waits))
	for w := range c.waits {
		ws = append(ws, w)
	}
	missing := make([][]string, len(ws))
	for i, w := range ws {
		missing[i] = c.finishLocked(w)
	}
	c.mu.Unlock()
	for i, w := range ws {
		w.done(missing[i])
	}
}

// ackTable tells peer from which version of its table this daemon holds.
func (n *Node) ackTable(from string) {
	n.mu.RLock()
	r := n.remotes[from]
	var v uint64
	if r != nil {
		v = r.version()
	}
	ov := n.ov
	n.mu.RUnlock()
	if v == 0 {
		return
	}
	_ = ov.Send(from, overlay.Control, appendAck(v), nil)
}

// handleTableAck: the sender holds our table at least at the version.
func (n *Node) handleTableAck(from string, rd *reader) error {
	v := rd.uvarint()
	if rd.err != nil {
		return rd.err
	}
	if rest := rd.rest(); len(rest) > 0 && rest[0]&deltaCapable != 0 {
		if r := n.remote(from); r != nil {
			r.deltas.Store(true)
		}
	}
	n.confirmed(from, v, false)
	return nil
}
