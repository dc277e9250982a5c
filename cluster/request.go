package cluster

import (
	"errors"
	"sync/atomic"
	"time"

	"github.com/iris-mesh/iris/internal/deadline"
	"github.com/iris-mesh/iris/overlay"
)

// Status says how a request ended.
type Status uint8

// Request outcomes.
const (
	StatusOK      Status = iota // Payload holds the reply
	StatusFault                 // Fault holds the reason
	StatusTimeout               // the deadline passed without a reply
)

// Result is the one answer to a request.
type Result struct {
	Status  Status
	Payload []byte
	Fault   string
}

// pending is a request this daemon originated and has not answered yet.
type pending struct {
	slot      deadline.Slot // in Node.deadlines while pending
	id        uint64
	cluster   string
	payload   []byte
	timeoutMs uint64
	deadline  time.Time
	cb        func(Result)
	tries     int
	node      string      // remote daemon it was sent to; "" if local or unplaced
	target    *remoteNode // for in-flight accounting
}

// DeadlineSlot implements deadline.Item.
func (p *pending) DeadlineSlot() *deadline.Slot { return &p.slot }

// Request sends payload to one member of cluster and calls cb exactly once
// with the reply, a fault, or a timeout when timeout passes. cb must not
// block; it runs on a daemon goroutine, or on the caller's before Request
// returns when the request fails at once (node closed, every member
// refusing), so the caller must not hold a lock cb takes. With no member
// anywhere the request times out at its deadline, as in Iris v1. It
// returns the request's id, for Cancel (0 if it failed at once).
func (n *Node) Request(cluster string, payload []byte, timeout time.Duration, cb func(Result)) uint64 {
	n.stats.requests.Add(1)
	if _, ok := n.ready(); !ok {
		cb(Result{Status: StatusFault, Fault: "iris: daemon shutting down"})
		return 0
	}
	timeout = min(max(timeout, time.Millisecond), n.cfg.MaxRequestTimeout)
	p := &pending{
		cluster: cluster, payload: payload, cb: cb,
		timeoutMs: uint64(timeout / time.Millisecond),
		deadline:  time.Now().Add(timeout),
	}
	n.pmu.Lock()
	if len(n.pending) >= n.cfg.MaxPendingRequests {
		n.pmu.Unlock()
		n.stats.tooManyPending.Add(1)
		cb(Result{Status: StatusFault, Fault: FaultTooManyPending})
		return 0
	}
	n.nextID++
	id := n.nextID
	p.id = id
	n.pending[id] = p
	n.deadlines.Add(p, p.deadline)
	n.pmu.Unlock()
	n.dispatch(id, p, nil)
	return id
}

// dispatch places a pending request on a target, trying another when one
// cannot take it. With no target, the request waits for its deadline.
func (n *Node) dispatch(id uint64, p *pending, skip *remoteNode) {
	n.mu.RLock()
	t := n.clusters[p.cluster]
	ov := n.ov
	draining := n.draining
	n.mu.RUnlock()
	if t == nil {
		return
	}
	if draining && len(t.local) > 0 && len(t.near)+len(t.far) > 0 {
		// Local members are on their way out: prefer other daemons.
		t = &targets{near: t.near, far: t.far}
	}
	var refused *member
	var skips []*remoteNode
	if skip != nil {
		skips = append(skips, skip)
	}
	unreachable := false // a daemon picked could not be reached
	// Three tries, not counting daemons found unreachable: each of those is
	// skipped from then on, so the loop ends.
	for tries := 0; tries < 3; {
		m, r := t.pick(skips, refused)
		switch {
		case m != nil:
			req := &Request{Cluster: p.cluster, Payload: p.payload, TimeoutMs: p.timeoutMs,
				Deadline: p.deadline, n: n, mem: m, id: id}
			m.inflight.Add(1)
			if m.m.HandleRequest(req) {
				n.stats.delivered.Add(1)
				return
			}
			m.inflight.Add(-1)
			refused = m
			tries++
		case r != nil:
			n.pmu.Lock()
			live := n.pending[id] == p
			if live {
				p.node, p.target = r.id, r
				r.inflight.Add(1)
			}
			n.pmu.Unlock()
			if !live {
				return
			}
			err := ov.Send(r.id, overlay.Bulk, requestHead(id, p.timeoutMs, p.cluster), p.payload)
			if err == nil {
				return
			}
			if errors.Is(err, overlay.ErrFrameTooLarge) {
				n.complete(id, Result{Status: StatusFault, Fault: "iris: request too large to send to another daemon"})
				return
			}
			n.pmu.Lock()
			if n.pending[id] == p && p.target == r {
				p.node, p.target = "", nil
				r.inflight.Add(-1)
			}
			n.pmu.Unlock()
			skips = append(skips, r)
			if errors.Is(err, overlay.ErrPeerDown) {
				unreachable = true
			} else {
				tries++
			}
		case refused != nil:
			// Every member that could take it refused: say so now rather
			// than at the deadline.
			n.complete(id, Result{Status: StatusFault, Fault: "iris: every member of the cluster is overloaded"})
			return
		case unreachable:
			// The only daemons serving it are unreachable right now: say so
			// rather than wait for the deadline.
			n.complete(id, Result{Status: StatusFault, Fault: "iris: the serving daemon is unreachable"})
			return
		default:
			return
		}
	}
	if unreachable && refused == nil {
		n.complete(id, Result{Status: StatusFault, Fault: "iris: the serving daemon is unreachable"})
		return
	}
	n.complete(id, Result{Status: StatusFault, Fault: "iris: every member of the cluster is overloaded"})
}

// complete answers pending request id, once: later calls find nothing.
func (n *Node) complete(id uint64, res Result) {
	n.pmu.Lock()
	p := n.pending[id]
	if p != nil {
		delete(n.pending, id)
		n.deadlines.Remove(p)
		if p.target != nil {
			p.target.inflight.Add(-1)
		}
	}
	n.pmu.Unlock()
	if p == nil {
		return
	}
	switch res.Status {
	case StatusOK:
		n.stats.replies.Add(1)
	case StatusFault:
		n.stats.faults.Add(1)
	case StatusTimeout:
		n.stats.timeouts.Add(1)
	}
	p.cb(res)
}

// expirePending answers the pending requests whose deadline has passed
// with a timeout; the deadline Set's timer calls it.
func (n *Node) expirePending() {
	n.pmu.Lock()
	due := n.deadlines.Expired(time.Now(), nil)
	n.pmu.Unlock()
	for _, p := range due {
		n.complete(p.id, Result{Status: StatusTimeout})
	}
}

// failPending faults every pending request that match selects.
func (n *Node) failPending(match func(*pending) bool, fault string) {
	var ids []uint64
	n.pmu.Lock()
	for id, p := range n.pending {
		if match(p) {
			ids = append(ids, id)
		}
	}
	n.pmu.Unlock()
	for _, id := range ids {
		n.complete(id, Result{Status: StatusFault, Fault: fault})
	}
}

// handleReply completes a request from a remote daemon's answer, or
// re-dispatches it when that daemon had no member to place it on.
func (n *Node) handleReply(from string, rd *reader) error {
	id := rd.uvarint()
	st := replyStatus(rd.byte())
	body := rd.rest()
	if rd.err != nil {
		return rd.err
	}
	switch st {
	case repOK:
		n.complete(id, Result{Status: StatusOK, Payload: body})
	case repFault:
		if len(body) == 0 { // an empty fault counts as a timeout
			n.complete(id, Result{Status: StatusTimeout})
		} else {
			n.complete(id, Result{Status: StatusFault, Fault: string(body)})
		}
	case repUnavailable:
		n.retry(from, id)
	}
	return nil
}

func (n *Node) retry(from string, id uint64) {
	n.pmu.Lock()
	p := n.pending[id]
	var skip *remoteNode
	ok := p != nil && p.node == from && p.tries < n.cfg.MaxRetries && time.Now().Before(p.deadline)
	if ok {
		p.tries++
		skip = p.target
		p.target.inflight.Add(-1)
		p.node, p.target = "", nil
	}
	n.pmu.Unlock()
	if ok {
		n.stats.retries.Add(1)
		n.dispatch(id, p, skip)
	}
}

// Request is a request delivered to a local member. The member ends it
// exactly once with Reply, Fail or Abandon; later calls do nothing.
type Request struct {
	Cluster   string
	Payload   []byte
	TimeoutMs uint64    // the timeout the requester gave, in milliseconds
	Deadline  time.Time // when the requester's daemon answers with a timeout

	n      *Node
	mem    *member
	origin string // requesting daemon; "" for this one
	id     uint64 // the request's id at its origin
	done   atomic.Bool
	// onDone, if set, receives the answer instead of the requester: a
	// survey question's answer goes to its survey.
	onDone func(st replyStatus, body []byte)
}

// Reply answers the request with payload.
func (r *Request) Reply(payload []byte) { r.finish(repOK, payload) }

// Fail answers the request with a fault. An empty fault reads as a timeout
// to the requester, as in Iris v1.
func (r *Request) Fail(fault string) { r.finish(repFault, []byte(fault)) }

// Abandon ends the request without an answer: the requester's daemon
// answers it with a timeout at its deadline.
func (r *Request) Abandon() {
	if !r.done.Swap(true) {
		r.mem.inflight.Add(-1)
	}
}

func (r *Request) finish(st replyStatus, body []byte) {
	if r.done.Swap(true) {
		return
	}
	r.mem.inflight.Add(-1)
	if r.onDone != nil {
		r.onDone(st, body)
		return
	}
	if r.origin != "" {
		if ov, ok := r.n.ready(); ok {
			_ = ov.Send(r.origin, overlay.Bulk, replyHead(r.id, st), body)
		}
		return
	}
	switch {
	case st == repOK:
		r.n.complete(r.id, Result{Status: StatusOK, Payload: body})
	case len(body) == 0:
		r.n.complete(r.id, Result{Status: StatusTimeout})
	default:
		r.n.complete(r.id, Result{Status: StatusFault, Fault: string(body)})
	}
}

// handleRemoteRequest places a request from another daemon on a local
// member, or tells the requester to try elsewhere.
func (n *Node) handleRemoteRequest(from string, rd *reader) error {
	id := rd.uvarint()
	timeoutMs := rd.uvarint()
	cluster := rd.name()
	payload := rd.rest()
	if rd.err != nil {
		return rd.err
	}
	n.mu.RLock()
	ms := n.local[string(cluster)]
	ov := n.ov
	if n.draining {
		ms = nil // turned back: the requester places it elsewhere
	}
	n.mu.RUnlock()
	var skip *member
	for range 3 {
		m := pickLocal(ms, skip)
		if m == nil {
			break
		}
		req := &Request{Cluster: m.cluster, Payload: payload, TimeoutMs: timeoutMs,
			Deadline: time.Now().Add(time.Duration(timeoutMs) * time.Millisecond),
			n:        n, mem: m, origin: from, id: id}
		m.inflight.Add(1)
		if m.m.HandleRequest(req) {
			n.stats.delivered.Add(1)
			return nil
		}
		m.inflight.Add(-1)
		skip = m
	}
	return ov.Send(from, overlay.Bulk, replyHead(id, repUnavailable), nil)
}
