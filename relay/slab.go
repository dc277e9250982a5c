package relay

import (
	"encoding/binary"
	"math/bits"
	"sync"

	"github.com/iris-mesh/iris/api"
)

// An eventSlab is where a send queue encodes the small events it queues
// (offerEncodedLocked): each is copied once, from wherever the publisher's
// bytes lie (a read buffer, a link's record), into a block, and written
// from there with the events beside it, without another copy.
//
// Blocks are never grown, which would copy them: a full one is left to the
// events in it and another started, at least as large as all that was
// encoded since the writer's last take (so what a queue holds in blocks
// stays within twice its events' bytes, plus one block of the smallest
// size), and at most slabBlock. take hands the blocks in use to the writer
// with its batch and takes back those of the previous batch, written; they
// go back to pools shared by every connection, which the garbage collector
// empties when they are not used, so an idle connection holds none.
//
// Its methods are called with the queue's mutex held.
type eventSlab struct {
	cur   *slabBuf   // the block being filled
	full  []*slabBuf // blocks filled since the last take
	bytes int        // encoded since the last take
}

// A slabBuf is one block; b's capacity is one of the pools' sizes, unless
// it was made for an event larger than slabBlock.
type slabBuf struct{ b []byte }

// Block sizes: minSlabBlock << class, up to slabBlock.
const (
	minSlabBlock = 1 << 10
	slabBlock    = 64 << 10
	slabClasses  = 7 // 1 KiB to 64 KiB
)

var slabPools [slabClasses]sync.Pool

// slabClass returns the class of the smallest block of at least n bytes.
func slabClass(n int) int {
	if n <= minSlabBlock {
		return 0
	}
	return bits.Len(uint(n-1)) - bits.Len(minSlabBlock-1)
}

// getBlock returns an empty block of at least n bytes.
func getBlock(n int) *slabBuf {
	if n > slabBlock {
		return &slabBuf{b: make([]byte, 0, n)}
	}
	c := slabClass(n)
	if sb, ok := slabPools[c].Get().(*slabBuf); ok {
		return sb
	}
	return &slabBuf{b: make([]byte, 0, minSlabBlock<<c)}
}

// putBlock returns sb to its pool; nothing may read its bytes any more.
func putBlock(sb *slabBuf) {
	n := cap(sb.b)
	if n > slabBlock || n != minSlabBlock<<slabClass(n) {
		return
	}
	sb.b = sb.b[:0]
	slabPools[slabClass(n)].Put(sb)
}

// maxEventHead bounds the bytes an encoded event takes beyond its topic
// and payload: the opcode and two varint lengths.
const maxEventHead = 1 + 2*binary.MaxVarintLen64

// encode appends m's encoding to the slab and returns it.
func (s *eventSlab) encode(m *api.Message) []byte {
	need := len(m.Payload) + len(m.Topic) + maxEventHead
	if s.cur == nil || cap(s.cur.b)-len(s.cur.b) < need {
		if s.cur != nil {
			s.full = append(s.full, s.cur)
		}
		s.cur = getBlock(max(need, min(s.bytes, slabBlock)))
	}
	start := len(s.cur.b)
	s.cur.b = api.AppendDaemon(s.cur.b, m)
	s.bytes += len(s.cur.b) - start
	return s.cur.b[start:]
}

// take returns the blocks holding what was encoded since the last take,
// and gives back written, the blocks of the previous take, which the
// writer is done with.
func (s *eventSlab) take(written []*slabBuf) []*slabBuf {
	release(written)
	blocks := s.full
	if s.cur != nil {
		blocks = append(blocks, s.cur)
		s.cur = nil
	}
	s.full = written[:0]
	s.bytes = 0
	return blocks
}

// discard gives back the blocks of what was encoded since the last take:
// the queue dropped those events.
func (s *eventSlab) discard() {
	release(s.full)
	s.full = s.full[:0]
	if s.cur != nil {
		putBlock(s.cur)
		s.cur = nil
	}
	s.bytes = 0
}

// release gives blocks back to their pools and clears the list.
func release(blocks []*slabBuf) {
	for i, sb := range blocks {
		putBlock(sb)
		blocks[i] = nil
	}
}
