package cluster

import (
	"encoding/binary"

	"github.com/iris-mesh/iris/overlay"
)

// RequestKey identifies a request across daemons: the daemon it came from
// and its id there. Members compare keys to find a request to cancel.
type RequestKey struct {
	origin string
	id     uint64
	survey bool // a survey question: its id is a survey's, another space
}

// Key returns the request's key.
func (r *Request) Key() RequestKey { return RequestKey{r.origin, r.id, r.onDone != nil} }

// Canceler is implemented by a Member that can be told that a request it
// holds was cancelled by its caller. The cluster checks for it with a type
// assertion. CancelRequest reports whether the member held the request
// with key k; it must not block. The member should stop working on it and
// may drop its reply, which would be discarded anyway.
type Canceler interface {
	CancelRequest(k RequestKey) bool
}

// FaultCancelled is the fault a cancelled request is answered with.
const FaultCancelled = "iris: request cancelled"

// Cancel ends the pending request id (as returned by Request): it is
// answered at once with the fault FaultCancelled, and the member serving it,
// here or on another daemon, is told (see Canceler). A reply that comes
// later is dropped. Cancelling a request that has been answered does
// nothing. Finding the member costs a scan of the cluster's local members
// and their requests, on cancel only: the request path pays nothing.
func (n *Node) Cancel(id uint64) {
	n.pmu.Lock()
	p := n.pending[id]
	var node, cluster string
	if p != nil {
		node, cluster = p.node, p.cluster
	}
	n.pmu.Unlock()
	if p == nil {
		return
	}
	n.ext.stats.cancels.Add(1)
	n.complete(id, Result{Status: StatusFault, Fault: FaultCancelled})
	if node == "" {
		n.cancelLocal(RequestKey{origin: "", id: id}, cluster)
		return
	}
	if ov, ok := n.ready(); ok {
		h := binary.AppendUvarint([]byte{byte(fCancel)}, id)
		_ = ov.Send(node, overlay.Control, appendName(h, cluster), nil)
	}
}

// handleRemoteCancel tells the local member serving a request from another
// daemon that its caller cancelled it. fCancel: id, cluster.
func (n *Node) handleRemoteCancel(from string, rd *reader) error {
	id := rd.uvarint()
	cluster := rd.name()
	if rd.err != nil {
		return rd.err
	}
	n.cancelLocal(RequestKey{origin: from, id: id}, string(cluster))
	return nil
}

// cancelLocal finds the local member of cluster holding request k and
// tells it.
func (n *Node) cancelLocal(k RequestKey, cluster string) {
	n.mu.RLock()
	ms := n.local[cluster]
	n.mu.RUnlock()
	for _, m := range ms {
		if c, ok := m.m.(Canceler); ok && c.CancelRequest(k) {
			n.ext.stats.cancelsServed.Add(1)
			return
		}
	}
}
