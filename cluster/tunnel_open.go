package cluster

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/iris-mesh/iris/overlay"
)

// tunnels is a daemon's registry of tunnel ends and builds in progress.
type tunnels struct {
	mu    sync.Mutex // protects following
	next  uint64
	ends  map[uint64]*Tunnel
	opens map[uint64]*tunOpen
}

// tunOpen is a tunnel this daemon's app asked for, not yet built.
type tunOpen struct {
	id        uint64 // the opener's tunnel id once built
	cluster   string
	timeoutMs uint64
	deadline  time.Time
	sink      TunnelSink
	cb        func(*Tunnel, error)
	timer     *time.Timer
	node      string      // daemon asked; "" when local or none
	skip      *remoteNode // daemon that refused
	skipMem   *member     // local member that refused
	tries     int
}

func (n *Node) newTunnel(id uint64, node string, sink TunnelSink, peer tunnelPeer, credit uint64) *Tunnel {
	return &Tunnel{n: n, id: id, node: node, sink: sink, peer: peer, remoteCredit: credit}
}

func (n *Node) dropTunnel(t *Tunnel) {
	n.tun.mu.Lock()
	if n.tun.ends[t.id] == t {
		delete(n.tun.ends, t.id)
	}
	n.tun.mu.Unlock()
}

func (n *Node) tunnel(id uint64, from string) *Tunnel {
	n.tun.mu.Lock()
	defer n.tun.mu.Unlock()
	t := n.tun.ends[id]
	if t == nil || t.node != from {
		return nil
	}
	return t
}

// OpenTunnel builds a tunnel to one member of cluster, balanced like a
// request, and calls cb exactly once: with this end of the tunnel, or with
// ErrTunnelTimeout when timeout passes first (with no member anywhere, as
// in Iris v1), or ErrTunnelRefused when every member tried refused it.
// sink receives the far end's traffic from the moment cb runs.
func (n *Node) OpenTunnel(cluster string, timeout time.Duration, sink TunnelSink, cb func(*Tunnel, error)) {
	if _, ok := n.ready(); !ok {
		cb(nil, ErrClosed)
		return
	}
	timeout = min(max(timeout, time.Millisecond), n.cfg.MaxRequestTimeout)
	op := &tunOpen{cluster: cluster, timeoutMs: uint64(timeout / time.Millisecond),
		deadline: time.Now().Add(timeout), sink: sink, cb: cb}
	n.tun.mu.Lock()
	n.tun.next++
	op.id = n.tun.next
	n.tun.opens[op.id] = op
	op.timer = time.AfterFunc(timeout, func() { n.endOpen(op.id, nil, ErrTunnelTimeout) })
	n.tun.mu.Unlock()
	n.dispatchOpen(op)
}

// endOpen answers a build once; later calls find nothing. With t nil the
// build failed with err.
func (n *Node) endOpen(id uint64, t *Tunnel, err error) bool {
	n.tun.mu.Lock()
	op := n.tun.opens[id]
	if op != nil {
		delete(n.tun.opens, id)
		if t != nil {
			n.tun.ends[t.id] = t
		}
	}
	n.tun.mu.Unlock()
	if op == nil {
		return false
	}
	op.timer.Stop()
	op.cb(t, err)
	return true
}

// dispatchOpen offers the build to a target; with none it waits for its
// deadline.
func (n *Node) dispatchOpen(op *tunOpen) {
	n.mu.RLock()
	tg := n.clusters[op.cluster]
	n.mu.RUnlock()
	n.tun.mu.Lock()
	skip, skipMem, tries := op.skip, op.skipMem, op.tries
	n.tun.mu.Unlock()
	var m *member
	var r *remoteNode
	if tg != nil {
		m, r = tg.pick([]*remoteNode{skip}, skipMem)
	}
	switch {
	case m == nil && r == nil && tries > 0:
		// Refused before, and no one else serves the cluster now.
		n.endOpen(op.id, nil, ErrTunnelRefused)
	case m != nil:
		tm, ok := m.m.(TunnelMember)
		offer := &TunnelOffer{n: n, mem: m, openID: op.id, window: uint64(n.cfg.TunnelWindow)}
		if !ok || !tm.HandleTunnel(offer) {
			n.openRefused(op.id, "", m)
		}
	case r != nil:
		n.tun.mu.Lock()
		op.node = r.id
		n.tun.mu.Unlock()
		head := tunHead(fTunOpen, op.id, op.timeoutMs, uint64(n.cfg.TunnelWindow))
		if n.send(r.id, overlay.Bulk, appendName(head, op.cluster), nil) != nil {
			n.openRefused(op.id, r.id, nil)
		}
	}
}

// openRefused tries the build elsewhere, or fails it when out of tries.
// node is the daemon that refused it, or mem the local member.
func (n *Node) openRefused(id uint64, node string, mem *member) {
	var skip *remoteNode
	if node != "" {
		skip = n.remote(node)
	}
	n.tun.mu.Lock()
	op := n.tun.opens[id]
	if op == nil || op.node != node {
		n.tun.mu.Unlock()
		return // answered already, or a stale refusal
	}
	retry := op.tries < n.cfg.MaxRetries && time.Now().Before(op.deadline)
	if retry {
		op.tries++
		op.node = ""
		if skip != nil {
			op.skip = skip
		}
		if mem != nil {
			op.skipMem = mem
		}
	}
	n.tun.mu.Unlock()
	if retry {
		n.dispatchOpen(op)
		return
	}
	n.endOpen(id, nil, ErrTunnelRefused)
}

// TunnelOffer is a tunnel offered to a member.
type TunnelOffer struct {
	n      *Node
	mem    *member
	origin string // opener's daemon; "" for this one
	openID uint64 // the opener's build id
	window uint64 // credit the opener's daemon grants this end
	done   atomic.Bool
}

// Accept takes the tunnel; sink receives the far end's traffic. It returns
// nil if the build was abandoned meanwhile (its deadline passed): the
// member should then tell its app the tunnel is closed.
func (o *TunnelOffer) Accept(sink TunnelSink) *Tunnel {
	if o.done.Swap(true) {
		return nil
	}
	n := o.n
	n.tun.mu.Lock()
	n.tun.next++
	id := n.tun.next
	n.tun.mu.Unlock()
	if o.origin != "" {
		t := n.newTunnel(id, o.origin, sink, remotePeer{n: n, node: o.origin, rid: o.openID}, o.window)
		n.tun.mu.Lock()
		n.tun.ends[id] = t
		n.tun.mu.Unlock()
		head := tunHead(fTunOpened, o.openID, 0, id, uint64(n.cfg.TunnelWindow))
		if n.send(o.origin, overlay.Bulk, head, nil) != nil {
			n.dropTunnel(t)
			return nil
		}
		return t
	}
	n.tun.mu.Lock()
	op := n.tun.opens[o.openID]
	n.tun.mu.Unlock()
	if op == nil {
		return nil
	}
	window := uint64(n.cfg.TunnelWindow)
	far := n.newTunnel(id, "", sink, nil, window)
	near := n.newTunnel(o.openID, "", op.sink, localPeer{far}, window)
	far.peer = localPeer{near}
	n.tun.mu.Lock()
	n.tun.ends[id] = far
	n.tun.mu.Unlock()
	if !n.endOpen(o.openID, near, nil) {
		n.dropTunnel(far)
		return nil
	}
	return far
}

// Reject refuses the tunnel; the opener's daemon tries another member.
func (o *TunnelOffer) Reject() {
	if o.done.Swap(true) {
		return
	}
	if o.origin == "" {
		o.n.openRefused(o.openID, "", o.mem)
		return
	}
	_ = o.n.send(o.origin, overlay.Bulk, tunHead(fTunOpened, o.openID, 1), nil)
}

// handleTunOpen offers a build from another daemon to a local member.
func (n *Node) handleTunOpen(from string, rd *reader) error {
	openID, _, window := rd.uvarint(), rd.uvarint(), rd.uvarint()
	cluster := rd.name()
	if rd.err != nil {
		return rd.err
	}
	n.mu.RLock()
	ms := n.local[string(cluster)]
	n.mu.RUnlock()
	var skip *member
	for range 3 {
		m := pickLocal(ms, skip)
		if m == nil {
			break
		}
		if tm, ok := m.m.(TunnelMember); ok {
			offer := &TunnelOffer{n: n, mem: m, origin: from, openID: openID, window: min(window, 1<<30)}
			if tm.HandleTunnel(offer) {
				return nil
			}
		}
		skip = m
	}
	return n.send(from, overlay.Bulk, tunHead(fTunOpened, openID, 1), nil)
}

// handleTunOpened completes or retries a build this daemon asked for.
func (n *Node) handleTunOpened(from string, rd *reader) error {
	openID, status := rd.uvarint(), rd.uvarint()
	if rd.err != nil {
		return rd.err
	}
	if status != 0 {
		n.openRefused(openID, from, nil)
		return nil
	}
	rid, window := rd.uvarint(), rd.uvarint()
	if rd.err != nil {
		return rd.err
	}
	n.tun.mu.Lock()
	op := n.tun.opens[openID]
	n.tun.mu.Unlock()
	if op == nil {
		// The build timed out here meanwhile: close the far end.
		return n.send(from, overlay.Bulk, tunHead(fTunClose, rid), []byte("iris: tunnel build timed out"))
	}
	t := n.newTunnel(openID, from, op.sink, remotePeer{n: n, node: from, rid: rid}, min(window, 1<<30))
	if !n.endOpen(openID, t, nil) {
		return n.send(from, overlay.Bulk, tunHead(fTunClose, rid), []byte("iris: tunnel build timed out"))
	}
	return nil
}

func (n *Node) handleTunFrame(from string, ft frameType, rd *reader, release func()) error {
	id := rd.uvarint()
	var sc, credit uint64
	switch ft {
	case fTunData:
		sc = rd.uvarint()
	case fTunCredit:
		credit = rd.uvarint()
	}
	rest := rd.rest()
	if rd.err != nil {
		return rd.err
	}
	t := n.tunnel(id, from)
	if t == nil {
		return nil // closed here meanwhile
	}
	switch ft {
	case fTunData:
		t.onData(sc, rest, release)
	case fTunCredit:
		t.onCredit(credit)
	case fTunClose:
		t.onClose(string(rest))
	}
	return nil
}

// failTunnels ends every tunnel and build through daemon node.
func (n *Node) failTunnels(node, reason string) {
	var ends []*Tunnel
	var opens []uint64
	n.tun.mu.Lock()
	for _, t := range n.tun.ends {
		if node == "*" || t.node == node && node != "" {
			ends = append(ends, t)
		}
	}
	for id, op := range n.tun.opens {
		if node == "*" || op.node == node && node != "" {
			opens = append(opens, id)
		}
	}
	n.tun.mu.Unlock()
	for _, t := range ends {
		t.fail(reason)
	}
	for _, id := range opens {
		if node == "*" {
			n.endOpen(id, nil, ErrClosed)
		} else {
			n.openRefused(id, node, nil)
		}
	}
}

// TunnelCount returns how many tunnel ends this daemon holds.
func (n *Node) TunnelCount() int {
	n.tun.mu.Lock()
	defer n.tun.mu.Unlock()
	return len(n.tun.ends)
}
