package daemon

import (
	"sync/atomic"

	"github.com/iris-mesh/iris/overlay"
)

// discard is the overlay Delegate the daemon uses until the cluster layer
// exists: it counts the frames it is handed and drops them, and ignores peer
// events (the overlay keeps its own peer list for /status). The cluster
// layer will implement overlay.Delegate and replace it in New.
//
// Its methods run on overlay goroutines and never block.
type discard struct {
	frames *atomic.Uint64 // frames received and dropped; nil in Validate's probe
}

// newDiscard returns a discard delegate with its own counter.
func newDiscard() discard { return discard{frames: new(atomic.Uint64)} }

// HandleFrame implements overlay.Delegate: the frame is counted and dropped.
func (d discard) HandleFrame(from string, payload []byte) {
	if d.frames != nil {
		d.frames.Add(1)
	}
}

// HandlePeer implements overlay.Delegate.
func (d discard) HandlePeer(overlay.Peer) {}

// HandleLinkDown implements overlay.Delegate.
func (d discard) HandleLinkDown(string) {}

// dropped returns how many frames were dropped.
func (d discard) dropped() uint64 {
	if d.frames == nil {
		return 0
	}
	return d.frames.Load()
}
