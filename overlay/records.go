package overlay

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/iris-mesh/iris/crypto"
)

// The link reader reads records into an arena and opens each in place, so
// that the plaintexts of consecutive records lie back to back: a frame
// spanning records (a 64 KiB tunnel chunk always spans two) is then one
// slice of the arena, handed out without a copy.
const (
	// arenaSize is the size of a reader's arena while large frames
	// arrive: several records, so that a frame spanning two is seldom cut
	// by the arena's end.
	arenaSize = 512 << 10
	// recordBufSize is the size of its buffer while only small frames
	// arrive: a whole record and the next length, and some more.
	recordBufSize = 80 << 10
	// idleBufSize is the buffer a reader keeps for its whole life, into
	// which it reads when nothing is pending: an idle link holds no more.
	idleBufSize = 8 << 10
	// sliceMin is the frame size from which the reader hands out a slice
	// of its arena rather than a copy: a small frame held long by a slow
	// consumer would otherwise pin a whole arena. A sliced frame pins at
	// most arenaSize/sliceMin times its size.
	sliceMin = 32 << 10
	// maxRecordSize is the largest record: its length and ciphertext.
	maxRecordSize = crypto.RecordHeaderSize + 65535
	// freeRead is the room the reader keeps for a read: a whole record
	// and the next record's length.
	freeRead = maxRecordSize + crypto.RecordHeaderSize
	// readMax bounds a read: several records of a busy link.
	readMax = 256 << 10
	// moveMax is the most the reader copies to join a frame's start and
	// the next record's plaintext when a read brought both with a gap
	// between them (their headers and tag); larger ones are read apart.
	moveMax = 4 << 10
)

// arenaPool and recordPool hold buffers no frame was sliced from, or whose
// sliced frames were all given back, between bursts.
var arenaPool, recordPool sync.Pool

func getBuf(size int) []byte {
	pool := &recordPool
	if size == arenaSize {
		pool = &arenaPool
	}
	if b, ok := pool.Get().(*[]byte); ok {
		return *b
	}
	return make([]byte, size)
}

// putArena returns an arena or a record buffer to its pool; other
// buffers (the idle buffer, oversized ones) are left alone.
func putArena(b []byte) {
	var pool *sync.Pool
	switch cap(b) {
	case arenaSize:
		pool = &arenaPool
	case recordBufSize:
		pool = &recordPool
	default:
		return
	}
	b = b[:cap(b)]
	pool.Put(&b)
}

// held counts the holders of an arena frames were sliced from: the reader
// while it fills it, and each sliced frame whose consumer can give it back
// (Delegate's optional HandleOwnedFrame). The last to let go returns the
// arena to the pool; frames never given back leave it to the garbage
// collector.
type held struct {
	buf  []byte
	refs atomic.Int32
}

// release lets go of one hold.
func (h *held) release() {
	if h.refs.Add(-1) == 0 {
		putArena(h.buf)
	}
}

// errBadFrame is the cause of a frame longer than MaxFrameSize.
var errBadFrame = errors.New("overlay: bad frame")

// recordReader reads a link's records, opens them and splits their
// plaintext stream into frames.
//
// Records are read into a buffer a, and each is opened where it lies: a
// small buffer kept for the reader's life when nothing is pending (an idle
// link holds nothing more), a pooled record buffer for ordinary traffic,
// and a pooled arena of several records while large frames arrive. Up to
// readMax bytes are read at once, which may bring several records; the
// plaintext of one that continues a frame is joined to the frame's start
// by copying the shorter of the two. While a large start of a frame waits
// in a[r:w] for a large record (a sender that cut a large frame across
// records), the record's length is read first and its ciphertext right at
// w, so that its plaintext continues the frame: a frame spanning records
// is assembled without a copy. (Senders seal large frame bodies into
// records of their own: only the small records around them move.)
//
// Frames of sliceMin bytes or more are delivered as slices of the arena,
// which from then on is never written where they lie, with a release
// function for consumers that can tell when they are done with them (see
// held); smaller ones where they lie, with no release function, valid only
// during deliver's call (the link copies what it keeps of them).
type recordReader struct {
	src  io.Reader
	open func(dst, ciphertext []byte) ([]byte, error) // crypto.Session.Open
	max  int                                          // largest frame body
	// deliver hands out a frame; release, when not nil, is to be called
	// once payload is no longer read (the frame is a slice of the arena);
	// when nil, payload is valid only during the call.
	deliver func(kind byte, payload []byte, release func())
	opened  func(n int) // called with the length of each record opened

	a        []byte // the idle buffer, a record buffer or an arena
	small    []byte // idleBufSize bytes, kept for the reader's life
	retained bool   // a frame was sliced from a: never reuse it
	hold     *held  // a's holds, once retained
	sliced   bool   // a frame was sliced in the last step
	r, w     int    // a[r:w]: plaintext not yet delivered (the start of a frame)
	x, y     int    // a[x:y]: bytes read, not yet opened
	n        int    // the next record's ciphertext length, when known
	known    bool   // n is known (its length field is consumed)
	drained  bool   // the last read got less than it asked for
}

// step reads once from src and delivers every frame completed.
func (rr *recordReader) step() error {
	if err := rr.fill(); err != nil {
		return err
	}
	return rr.process()
}

// fill reads at least the bytes that complete the next record's length or
// ciphertext, and at most readMax (or that record and the next length,
// while a large frame start waits for a large record).
func (rr *recordReader) fill() error {
	if rr.a == nil { // idle: read into the small buffer first
		if rr.small == nil {
			rr.small = make([]byte, idleBufSize)
		}
		rr.a = rr.small
		rr.r, rr.w, rr.x, rr.y = 0, 0, 0, 0
	}
	// A large start of a frame is followed by the next record's plaintext
	// without a gap (no copy) when that record is large too: read apart.
	bigStart := rr.w-rr.r >= moveMax
	if rr.x == rr.y {
		rr.x, rr.y = rr.w, rr.w // the next ciphertext goes right after the plaintext
	}
	if bigStart && !rr.known && rr.x == rr.y {
		// Read the length apart: the ciphertext then lands at w.
		var h [crypto.RecordHeaderSize]byte
		if _, err := io.ReadFull(rr.src, h[:]); err != nil {
			return err
		}
		rr.n, rr.known = int(binary.BigEndian.Uint16(h[:])), true
	}
	need := crypto.RecordHeaderSize - (rr.y - rr.x) // bytes the read must bring
	if rr.known {
		need = rr.n - (rr.y - rr.x)
	}
	idle := &rr.a[0] == &rr.small[0] && rr.r == rr.w && rr.x == rr.y && need+crypto.RecordHeaderSize <= idleBufSize
	if idle {
		rr.r, rr.w, rr.x, rr.y = 0, 0, 0, 0
	} else if whole := freeRead - (rr.y - rr.x); len(rr.a)-rr.y < whole {
		rr.rearrange(whole) // room for at least the record begun and the next length
	}
	most := min(len(rr.a)-rr.y, readMax) // what the read may bring
	if bigStart && rr.known && rr.n-crypto.RecordHeaderSize >= moveMax {
		most = need + crypto.RecordHeaderSize // this record and the next length
	}
	k, err := io.ReadAtLeast(rr.src, rr.a[rr.y:rr.y+most], need)
	rr.y += k
	rr.drained = k < most
	return err
}

// rearrange makes room for more bytes after a[y], keeping the frame being
// received and the bytes not opened yet: at the front of the buffer when no
// frame was sliced from it and it is large enough, else in a new one, large
// enough for the frame being received and a record more: an arena when
// large frames arrive, else a record buffer.
func (rr *recordReader) rearrange(more int) {
	keep, raw := rr.w-rr.r, rr.y-rr.x
	size := keep + raw + more
	bulk := rr.retained
	if keep >= frameHeaderSize {
		body := int(binary.BigEndian.Uint32(rr.a[rr.r+1:])) // checked by frames
		size = max(size, frameHeaderSize+body+freeRead)
		bulk = bulk || body >= sliceMin
	}
	var na []byte
	switch {
	case rr.a != nil && !rr.retained && len(rr.a) >= size && (!bulk || len(rr.a) >= arenaSize):
		na = rr.a
	case bulk && size <= arenaSize:
		na = getBuf(arenaSize)
	case size <= recordBufSize:
		na = getBuf(recordBufSize)
	case size <= arenaSize:
		na = getBuf(arenaSize)
	default:
		na = make([]byte, size)
	}
	copy(na, rr.a[rr.r:rr.w])
	copy(na[keep:], rr.a[rr.x:rr.y])
	if rr.a != nil && !rr.retained && &na[0] != &rr.a[0] {
		putArena(rr.a)
	}
	rr.leave()
	rr.a, rr.retained = na, false
	rr.r, rr.w, rr.x, rr.y = 0, keep, keep, keep+raw
}

// process opens every complete record read and delivers the frames they
// complete.
func (rr *recordReader) process() error {
	rr.sliced = false
	for {
		if !rr.known {
			if rr.y-rr.x < crypto.RecordHeaderSize {
				break
			}
			rr.n, rr.known = int(binary.BigEndian.Uint16(rr.a[rr.x:])), true
			rr.x += crypto.RecordHeaderSize
		}
		if rr.y-rr.x < rr.n {
			break
		}
		n := rr.n
		plain, err := rr.open(rr.a[rr.x:rr.x], rr.a[rr.x:rr.x+n])
		if err != nil {
			return err
		}
		rr.opened(n + crypto.RecordHeaderSize)
		rr.known = false
		m := len(plain)
		switch {
		case rr.r == rr.w:
			rr.r, rr.w = rr.x, rr.x+m // nothing pending: frames start here
		case rr.x == rr.w:
			rr.w += m // right after the frame's start
		case rr.w-rr.r <= m:
			// Move the frame's start next to the record's plaintext.
			copy(rr.a[rr.x-(rr.w-rr.r):], rr.a[rr.r:rr.w])
			rr.r, rr.w = rr.x-(rr.w-rr.r), rr.x+m
		default:
			copy(rr.a[rr.w:], plain) // move the plaintext back to the frame
			rr.w += m
		}
		rr.x += n
		if err := rr.frames(); err != nil {
			return err
		}
	}
	if rr.r == rr.w && rr.x == rr.y {
		rr.rest()
	}
	return nil
}

// frames delivers the whole frames in a[r:w].
func (rr *recordReader) frames() error {
	for rr.w-rr.r >= frameHeaderSize {
		kind := rr.a[rr.r]
		size := binary.BigEndian.Uint32(rr.a[rr.r+1:])
		if int64(size) > int64(rr.max) {
			return fmt.Errorf("%w: frame of %d bytes exceeds limit %d", errBadFrame, size, rr.max)
		}
		end := rr.r + frameHeaderSize + int(size)
		if end > rr.w {
			break
		}
		body := rr.a[rr.r+frameHeaderSize : end : end]
		var release func()
		if len(body) >= sliceMin {
			if !rr.retained {
				rr.hold = &held{buf: rr.a}
				rr.hold.refs.Store(1) // the reader's
			}
			rr.retained, rr.sliced = true, true
			rr.hold.refs.Add(1)
			release = rr.hold.release
		}
		rr.r = end
		rr.deliver(kind, body, release)
	}
	return nil
}

// leave lets go of the reader's hold on a retained arena it stops filling.
func (rr *recordReader) leave() {
	if rr.hold != nil {
		rr.hold.release()
		rr.hold = nil
	}
}

// rest is called when everything read was delivered: an arena nothing was
// sliced from is reused from its start, and returned to the pool when the
// socket had no more to give; one that holds sliced frames is dropped
// unless frames are being sliced from it and it has room for a record.
func (rr *recordReader) rest() {
	switch {
	case !rr.retained && rr.drained:
		putArena(rr.a)
		rr.a = nil
	case !rr.retained:
	case !rr.sliced || len(rr.a)-rr.w < maxRecordSize+crypto.RecordHeaderSize:
		rr.leave()
		rr.a, rr.retained = nil, false
	default:
		return // keep filling it after the sliced frames
	}
	rr.r, rr.w, rr.x, rr.y = 0, 0, 0, 0
}
