package overlay

import (
	"sync"
	"sync/atomic"
)

// Frames whose body is valid only during the send (SendIfUpCopy) are
// queued as copies. A small body is appended to the peer's current send
// block rather than given an allocation of its own: a block is shared by
// the frames copied into it and goes back to a pool, shared by every peer,
// once the link's writer has copied the last of them into a record. A
// frame dropped with its queue (its peer left) is never released, so its
// block is left to the garbage collector instead. A peer lets go of its
// current block when its link idles (releaseIdle): an idle peer holds none.
type sendBlock struct {
	buf  []byte
	refs atomic.Int32 // one per frame not yet written, one for the peer while current
	done func([]byte) // release, made once: what each frame's qframe.release is
}

// sendBlockSize is the size of a send block; maxBlockCopy the largest body
// copied into one (a larger one gets an allocation of its own).
const (
	sendBlockSize = 32 << 10
	maxBlockCopy  = 4 << 10
)

var sendBlocks sync.Pool

// getSendBlock returns an empty send block holding one reference.
func getSendBlock() *sendBlock {
	b, _ := sendBlocks.Get().(*sendBlock)
	if b == nil {
		b = &sendBlock{buf: make([]byte, 0, sendBlockSize)}
		b.done = b.release
	}
	b.refs.Store(1)
	return b
}

// release drops one reference; the last one returns b to the pool.
func (b *sendBlock) release([]byte) {
	if b.refs.Add(-1) == 0 {
		b.buf = b.buf[:0]
		sendBlocks.Put(b)
	}
}

// copyLocked returns a copy of body for a queued frame, with what the
// writer must call once it is written. p.qmu must be held.
func (p *peer) copyLocked(body []byte) ([]byte, func([]byte)) {
	if len(body) > maxBlockCopy {
		return append(make([]byte, 0, len(body)), body...), nil
	}
	if p.blk == nil || cap(p.blk.buf)-len(p.blk.buf) < len(body) {
		p.dropBlockLocked()
		p.blk = getSendBlock()
	}
	b := p.blk
	start := len(b.buf)
	b.buf = append(b.buf, body...)
	b.refs.Add(1)
	return b.buf[start:len(b.buf):len(b.buf)], b.done
}

// dropBlockLocked lets go of the peer's current send block. p.qmu must be
// held.
func (p *peer) dropBlockLocked() {
	if p.blk != nil {
		p.blk.release(nil)
		p.blk = nil
	}
}
