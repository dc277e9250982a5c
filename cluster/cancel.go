package cluster

import (
	"encoding/binary"

	"github.com/iris-mesh/iris/overlay"
)

// Canceler is implemented by a Member that can be told a request it holds
// was cancelled by its caller. The cluster checks for it with a type
// assertion. CancelRequest must not block; the member should stop working
// on r and may drop its reply (which would be discarded anyway).
type Canceler interface {
	CancelRequest(r *Request)
}

// FaultCancelled is the fault a cancelled request is answered with.
const FaultCancelled = "iris: request cancelled"

// Cancel ends the pending request id (as returned by Request): it is
// answered at once with the fault FaultCancelled, and the member serving it,
// here or on another daemon, is told (see Canceler). A reply that comes
// later is dropped. Cancelling a request that has been answered does
// nothing.
func (n *Node) Cancel(id uint64) {
	n.pmu.Lock()
	p := n.pending[id]
	node := ""
	if p != nil {
		node = p.node
	}
	n.pmu.Unlock()
	if p == nil {
		return
	}
	n.ext.stats.cancels.Add(1)
	if node != "" {
		if ov, ok := n.ready(); ok {
			_ = ov.Send(node, overlay.Control, binary.AppendUvarint([]byte{byte(fCancel)}, id), nil)
		}
	} else {
		n.cancelServed(servedKey{"", id})
	}
	n.complete(id, Result{Status: StatusFault, Fault: FaultCancelled})
}

// handleRemoteCancel tells the local member serving a request from another
// daemon that its caller cancelled it.
func (n *Node) handleRemoteCancel(from string, rd *reader) error {
	id := rd.uvarint()
	if rd.err != nil {
		return rd.err
	}
	n.cancelServed(servedKey{from, id})
	return nil
}

func (n *Node) cancelServed(k servedKey) {
	v, ok := n.ext.served.Load(k)
	if !ok {
		return
	}
	r := v.(*Request)
	if c, ok := r.mem.m.(Canceler); ok {
		n.ext.stats.cancelsServed.Add(1)
		c.CancelRequest(r)
	}
}

// trackServed records a request about to be offered to a local member, so
// that its caller can cancel it; untrackServed forgets it once it ends.
func (n *Node) trackServed(r *Request) { n.ext.served.Store(servedKey{r.origin, r.id}, r) }

func (n *Node) untrackServed(r *Request) { n.ext.served.CompareAndDelete(servedKey{r.origin, r.id}, r) }
