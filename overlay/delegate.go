package overlay

// State is a peer's membership state as seen by this node.
type State uint8

// Peer states. The values are local, never sent on the wire.
const (
	StateAlive State = iota
	StateSuspect
	StateDead
	StateLeft
)

func (s State) String() string {
	switch s {
	case StateAlive:
		return "alive"
	case StateSuspect:
		return "suspect"
	case StateDead:
		return "dead"
	case StateLeft:
		return "left"
	}
	return "unknown"
}

// Peer describes one daemon of the network.
type Peer struct {
	ID    string // node id, unique in the network
	Addr  string // host:port of its overlay listener
	Zone  string // locality label, "" if none
	State State
	// AppVersion is the version of the peer's upper-layer state (its
	// interest table), gossiped in its node metadata. Upper layers pull the
	// state when the version they hold differs.
	AppVersion uint64
	// AppInstance names the process whose state AppVersion counts (set by
	// SetAppInstance; 0 from daemons that predate it): versions of one
	// instance only grow.
	AppInstance uint64
}

// Priority selects the queue a frame waits in. Control frames are written
// ahead of bulk frames.
type Priority uint8

// Frame priorities.
const (
	Bulk Priority = iota
	Control
)

// OwnedFrameHandler is a Delegate that can give back the buffers of large
// frames. A frame of 32 KiB or more is a slice of the link reader's buffer;
// HandleOwnedFrame is HandleFrame for such a frame, with release, which the
// callee may call once (or never), when nothing reads payload any more:
// the buffer is then reused. Other frames go to HandleFrame.
type OwnedFrameHandler interface {
	HandleOwnedFrame(from string, payload []byte, release func())
}

// TransientFrameHandler is a Delegate that can take some frames without a
// copy of their own. A frame smaller than 32 KiB arrives in the link
// reader's buffer, which the next record overwrites: the reader offers it
// to HandleTransientFrame, which reads payload only during the call and
// reports whether it took the frame; if not, HandleFrame gets a copy.
type TransientFrameHandler interface {
	HandleTransientFrame(from string, payload []byte) bool
}

// Delegate is implemented by the layer above the overlay. Methods are called
// from overlay goroutines and must not block: hand work off to a bounded queue
// instead. They may call back into the Overlay.
type Delegate interface {
	// HandleFrame is called by a link's reader goroutine for every frame
	// received from peer from, in the order the peer sent them. The callee
	// owns payload.
	HandleFrame(from string, payload []byte)

	// HandlePeer is called when a peer joins, changes its metadata, is
	// suspected, fails or leaves. Calls for one peer are serialized and carry
	// its latest state; intermediate states may be coalesced.
	HandlePeer(p Peer)

	// HandleLinkDown is called after the data link to peer id broke or could
	// not be established. Frames sent to it before the call may have been
	// lost; later frames go over a new link.
	HandleLinkDown(id string)
}
