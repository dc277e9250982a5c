package overlay

import (
	"encoding/binary"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iris-mesh/iris/crypto"
)

// Frame kinds inside a link's plaintext stream. ONLY APPEND.
const (
	frameApp       byte = 'F' // an upper-layer frame
	frameHeartbeat byte = 'H' // empty; sent by a writer idle for KeepaliveInterval, or to answer a probe
	frameProbe     byte = 'P' // empty; asks the peer for a heartbeat now (older peers skip it)
	frameBye       byte = 'G' // empty; offers to close an idle link (goodbye.go)
	frameByeAck    byte = 'g' // empty; agrees to close
	frameByeBusy   byte = 'N' // empty; declines: frames are waiting
)

const (
	frameHeaderSize = 5
	// flushThreshold is how many sealed bytes the writer gathers before one
	// write: many records per syscall under load.
	flushThreshold = 256 << 10
	// linkWriteTimeout closes a link whose peer stopped reading.
	linkWriteTimeout = 30 * time.Second
)

// qframe is one queued frame: head and body are written back to back and
// arrive at the peer as one payload. Queues hold qframes by value, so
// queueing allocates nothing.
type qframe struct {
	head, body []byte
	release    func([]byte) // called with body once it is copied; may be nil (SendOwned)
}

func (f *qframe) size() int { return len(f.head) + len(f.body) }

// link is one established, authenticated data connection to a peer.
type link struct {
	p        *peer
	conn     net.Conn
	sess     *crypto.Session
	outbound bool // dialed by this node

	closeOnce  sync.Once
	closeCh    chan struct{}
	writerDone chan struct{}
	err        error       // first error; set before closeCh is closed
	silent     atomic.Bool // closed because the peer went silent

	// Link health, read by the overlay's watchdog (see watchLinks).
	lastRecv  atomic.Int64  // unix nanos of the last record received
	lastSend  atomic.Int64  // unix nanos of the last frame written
	probeAt   atomic.Int64  // unix nanos a probe was asked for; 0 when none is outstanding
	wantProbe atomic.Bool   // the writer should send a probe
	wantBeat  atomic.Bool   // the writer should send a heartbeat (a probe came in)
	kickCh    chan struct{} // wakes an idle writer; cap 1
	bye       byeState      // closing by agreement when idle (goodbye.go)
}

func newLink(p *peer, conn net.Conn, sess *crypto.Session, outbound bool) *link {
	l := &link{
		p: p, conn: conn, sess: sess, outbound: outbound,
		closeCh:    make(chan struct{}),
		writerDone: make(chan struct{}),
		kickCh:     make(chan struct{}, 1),
	}
	l.lastRecv.Store(time.Now().UnixNano()) // the handshake just came in
	l.bye.lastIn.Store(l.lastRecv.Load())
	return l
}

// kick wakes the writer if it is idle.
func (l *link) kick() {
	select {
	case l.kickCh <- struct{}{}:
	default:
	}
}

// close records err as the reason (first one wins) and unblocks both loops.
func (l *link) close(err error) {
	l.closeOnce.Do(func() {
		l.err = err
		close(l.closeCh)
		l.conn.Close()
	})
}

// run serves the link until it breaks or is closed: the writer in its own
// goroutine, the reader in this one. It returns after both have exited.
func (l *link) run() {
	go func() {
		defer close(l.writerDone)
		if err := l.writeLoop(); err != nil {
			l.close(fmt.Errorf("write: %w", err))
		}
	}()
	err := l.readLoop()
	l.close(fmt.Errorf("read: %w", err))
	<-l.writerDone
	l.p.o.linkClosed(l)
}

// writeLoop drains the peer's queues, control first, packing frames into
// records and records into writes; a writer idle for KeepaliveInterval
// sends an empty heartbeat frame, so the far reader hears from this end at
// least that often (see readLoop). Probes and heartbeats asked for by the
// watchdog or the far end go out with the next write.
func (l *link) writeLoop() error {
	p := l.p
	b := newBatcher(l)
	idle := time.NewTimer(p.o.cfg.KeepaliveInterval)
	defer idle.Stop()
	for {
		var f qframe
		var ok, beat, kicked bool
		if l.closing() { // goodbye offered or agreed: frames wait for the next link
			ok, beat, kicked = l.waitClosing(idle.C)
		} else {
			f, ok, beat, kicked = p.next(l.closeCh, idle.C, l.kickCh)
		}
		if !ok {
			return nil
		}
		if beat {
			l.wantBeat.Store(true)
		}
		wrote := !beat && !kicked
		if wrote {
			p.writing.Store(true)
		}
		for wrote {
			err := b.frame(frameApp, f.head, f.body)
			if f.release != nil {
				f.release(f.body) // copied (or lost with the link): no longer read
			}
			if err != nil {
				return err
			}
			p.o.stats.framesOut.Add(1)
			if f, ok = p.poll(); !ok {
				break
			}
		}
		if l.wantProbe.Swap(false) {
			if err := b.frame(frameProbe, nil, nil); err != nil {
				return err
			}
		}
		if l.wantBeat.Swap(false) {
			if err := b.frame(frameHeartbeat, nil, nil); err != nil {
				return err
			}
		}
		if err := l.byeFrames(b); err != nil {
			return err
		}
		if err := b.end(); err != nil {
			return err
		}
		if wrote {
			p.writing.Store(false)
			l.lastSend.Store(time.Now().UnixNano())
		}
		if beat {
			b.release() // idle for KeepaliveInterval: hold no buffers
			p.releaseIdle()
		}
		if !beat && !idle.Stop() {
			select { // drain a tick that fired meanwhile
			case <-idle.C:
			default:
			}
		}
		idle.Reset(p.o.cfg.KeepaliveInterval)
	}
}

// batcher packs frames into records of up to MaxRecordPlaintext bytes and
// sealed records into writes of about flushThreshold bytes. Frames are
// copied once, into the write buffer right where their record goes, and
// sealed there in place; large bodies are sealed from where they lie. Its buffer grows with the load and is released
// when the link idles.
type batcher struct {
	l   *link
	out []byte // sealed records not yet written, then the record being filled
	rec int    // offset in out of the record being filled; -1 when none
	hdr [frameHeaderSize]byte
}

// sealTag is the AEAD tag a sealed record adds (crypto's record format).
const sealTag = 16

func newBatcher(l *link) *batcher {
	return &batcher{l: l, rec: -1}
}

// release drops the buffer; it grows again with the next frames.
func (b *batcher) release() { b.out, b.rec = nil, -1 }

// sealDirect is the body size from which a frame's body is sealed from
// where it lies, in records of its own, rather than copied into the
// record being filled.
const sealDirect = 16 << 10

// frame appends one frame: its header, then head and body back to back.
// A large body is not copied: the record holding the frame's header and
// head is closed, and the body sealed from where it lies into records of
// its own (the reader puts the plaintexts of records back to back, so the
// frame arrives whole all the same).
func (b *batcher) frame(kind byte, head, body []byte) error {
	b.hdr[0] = kind
	binary.BigEndian.PutUint32(b.hdr[1:], uint32(len(head)+len(body)))
	if err := b.put(b.hdr[:]); err != nil {
		return err
	}
	if err := b.put(head); err != nil {
		return err
	}
	if len(body) < sealDirect {
		return b.put(body)
	}
	if err := b.seal(); err != nil {
		return err
	}
	for len(body) > 0 {
		k := min(len(body), crypto.MaxRecordPlaintext)
		var err error
		if b.out, err = b.l.sess.Seal(b.out, body[:k]); err != nil {
			return err
		}
		body = body[k:]
		if len(b.out) >= flushThreshold {
			if err := b.flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// put appends bytes, sealing full records and writing full batches.
func (b *batcher) put(p []byte) error {
	for len(p) > 0 {
		if b.rec < 0 {
			b.rec = len(b.out)
			b.out = append(b.out, make([]byte, crypto.RecordHeaderSize)...)
		}
		filled := len(b.out) - b.rec - crypto.RecordHeaderSize
		n := min(crypto.MaxRecordPlaintext-filled, len(p))
		b.out = append(b.out, p[:n]...)
		p = p[n:]
		if filled+n < crypto.MaxRecordPlaintext {
			continue
		}
		if err := b.seal(); err != nil {
			return err
		}
		if len(b.out) >= flushThreshold {
			if err := b.flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// seal seals the record being filled where it lies.
func (b *batcher) seal() error {
	if b.rec < 0 {
		return nil
	}
	b.out = slices.Grow(b.out, sealTag) // room for the tag: Seal then stays in place
	plain := b.out[b.rec+crypto.RecordHeaderSize:]
	var err error
	b.out, err = b.l.sess.Seal(b.out[:b.rec], plain)
	b.rec = -1
	return err
}

// flush writes the sealed records; no record may be open.
func (b *batcher) flush() error {
	if len(b.out) == 0 {
		return nil
	}
	_ = b.l.conn.SetWriteDeadline(time.Now().Add(linkWriteTimeout))
	_, err := b.l.conn.Write(b.out)
	b.l.p.o.stats.bytesOut.Add(uint64(len(b.out)))
	b.out = b.out[:0]
	return err
}

// end seals what is left and writes it: the queues ran empty.
func (b *batcher) end() error {
	if err := b.seal(); err != nil {
		return err
	}
	return b.flush()
}

// readLoop reads records and delivers their frames (see recordReader).
func (l *link) readLoop() error {
	o := l.p.o
	rr := recordReader{
		src:     l.conn,
		open:    l.sess.Open,
		max:     o.cfg.MaxFrameSize,
		deliver: l.deliver,
		opened: func(n int) {
			o.stats.bytesIn.Add(uint64(n))
			l.heard()
		},
	}
	for {
		// The far writer sends at least a heartbeat every KeepaliveInterval:
		// silence for KeepaliveTimeout means the peer or the path is gone,
		// even when TCP has not noticed (a partition sends no RST).
		_ = l.conn.SetReadDeadline(time.Now().Add(o.cfg.KeepaliveTimeout))
		if err := rr.step(); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				l.silent.Store(true)
				return fmt.Errorf("no traffic from the peer for %v: %w", o.cfg.KeepaliveTimeout, err)
			}
			return err
		}
	}
}

// heard records that a record came in: the link works, any probe is
// answered, and a peer marked quiet is not any more.
func (l *link) heard() {
	l.lastRecv.Store(time.Now().UnixNano())
	if l.probeAt.Load() != 0 {
		l.probeAt.Store(0)
	}
	if l.p.quiet.Load() && l.p.quiet.CompareAndSwap(true, false) {
		l.p.o.refresh(l.p.id)
	}
}

func (l *link) deliver(kind byte, payload []byte, release func()) {
	o := l.p.o
	switch kind {
	case frameApp:
		l.bye.lastIn.Store(time.Now().UnixNano())
	case frameBye, frameByeAck, frameByeBusy:
		l.handleBye(kind)
		return
	case frameHeartbeat:
		o.stats.heartbeatsIn.Add(1)
		return
	case frameProbe:
		l.wantBeat.Store(true)
		l.kick()
		return
	default:
		o.stats.framesSkipped.Add(1) // from a newer peer; skip, as derp does
		return
	}
	o.stats.framesIn.Add(1)
	if release != nil {
		if h, ok := o.cfg.Delegate.(OwnedFrameHandler); ok {
			h.HandleOwnedFrame(l.p.id, payload, release)
			return
		}
	} else { // in the reader's buffer
		if h, ok := o.cfg.Delegate.(TransientFrameHandler); ok && h.HandleTransientFrame(l.p.id, payload) {
			return
		}
		payload = append([]byte(nil), payload...)
	}
	o.cfg.Delegate.HandleFrame(l.p.id, payload)
}

// peer holds what this node keeps per remote daemon: its bounded send
// queues, which outlive any one link, and its current link. An idle peer
// costs a few hundred bytes: the queues are allocated when the first frame
// is queued and released when they run empty.
type peer struct {
	o  *Overlay
	id string

	qmu         sync.Mutex // protects q, blk, backlogCh, backlogSlow
	q           [2]fifo    // control, bulk; drained by the current link's writer
	blk         *sendBlock // where small bodies are copied (sendcopy.go)
	queuedBytes atomic.Int64
	backlogCh   chan struct{} // closed when the queues fall under the backlog mark (backlog.go)
	backlogSlow bool          // a WaitBacklog timed out in this backlog
	wake        chan struct{} // a frame was queued; cap 1
	hasLink     atomic.Bool   // fast path for Send: no dial needed
	linkUpCh    chan struct{}
	// down is set when a link to the peer broke or a dial failed, and
	// cleared when a link comes up: until then the peer shows as suspect,
	// the dialer keeps trying, and SendIfUp refuses frames (they would
	// reach the peer late, or a restarted peer that never asked for them).
	down atomic.Bool
	// quiet is set by the watchdog when the current link has gone quiet,
	// and cleared by the next record received: the peer shows as suspect.
	quiet atomic.Bool
	// writing is set while the current link's writer holds frames taken
	// from the queues but not yet written.
	writing atomic.Bool

	mu      sync.Mutex // protects following
	addr    string     // overlay address; "" until gossip tells it
	link    *link
	dialing bool
	removed bool
}

func newPeer(o *Overlay, id, addr string) *peer {
	return &peer{
		o: o, id: id, addr: addr,
		wake:     make(chan struct{}, 1),
		linkUpCh: make(chan struct{}, 1),
	}
}

// fifo is one send queue: a slice grown on demand, released when it runs
// empty so that a peer's burst does not pin memory while it idles.
type fifo struct {
	s []qframe
	h int // index of the head in s
}

func (q *fifo) len() int { return len(q.s) - q.h }

func (q *fifo) push(f qframe) {
	if q.h > 0 && q.h >= len(q.s)/2 && len(q.s) == cap(q.s) {
		n := copy(q.s, q.s[q.h:]) // reuse the drained front rather than grow
		clear(q.s[n:])
		q.s, q.h = q.s[:n], 0
	}
	q.s = append(q.s, f)
}

func (q *fifo) pop() (qframe, bool) {
	if q.h == len(q.s) {
		return qframe{}, false
	}
	f := q.s[q.h]
	q.s[q.h] = qframe{}
	q.h++
	if q.h == len(q.s) {
		// Empty: keep the slice for the next frames (a busy link would
		// otherwise regrow it after every catch-up); the writer releases
		// it once the link idles (releaseIdle).
		q.s, q.h = q.s[:0], 0
	}
	return f, true
}

// releaseIdle drops the slices of empty queues, so that a peer's burst
// does not pin memory while it idles.
func (p *peer) releaseIdle() {
	p.qmu.Lock()
	for i := range p.q {
		if p.q[i].len() == 0 {
			p.q[i] = fifo{}
		}
	}
	p.dropBlockLocked()
	p.qmu.Unlock()
}

// next blocks for the next frame, control first. It returns ok=false when
// stop is closed, beat=true (no frame) when idle fires first, and
// kicked=true (no frame) when kick does.
func (p *peer) next(stop <-chan struct{}, idle <-chan time.Time, kick <-chan struct{}) (f qframe, ok, beat, kicked bool) {
	for {
		if f, ok := p.poll(); ok {
			return f, true, false, false
		}
		select {
		case <-p.wake:
		case <-idle:
			return qframe{}, true, true, false
		case <-kick:
			return qframe{}, true, false, true
		case <-stop:
			return qframe{}, false, false, false
		}
	}
}

// poll returns a queued frame without blocking, control first.
func (p *peer) poll() (qframe, bool) {
	p.qmu.Lock()
	defer p.qmu.Unlock()
	f, ok := p.q[Control].pop()
	if !ok {
		f, ok = p.q[Bulk].pop()
	}
	if ok {
		p.queuedBytes.Add(-int64(f.size() + frameOverhead))
		if p.backlogCh != nil {
			p.releaseBacklogLocked()
		}
	}
	return f, ok
}

// drop discards every queued frame and returns how many there were.
func (p *peer) drop() int {
	p.qmu.Lock()
	n := p.q[Control].len() + p.q[Bulk].len()
	p.q = [2]fifo{}
	p.dropBlockLocked()
	p.queuedBytes.Store(0)
	p.releaseBacklogLocked()
	p.qmu.Unlock()
	return n
}

// enqueue queues f without blocking; the queues are bounded in bytes
// (SendQueueBytes, both together, frameOverhead per frame included) and in
// frames (SendQueueLen each).
// With copyBody, f.body is valid only during the call, and what is queued
// is a copy of it (copyLocked).
func (p *peer) enqueue(prio Priority, f qframe, copyBody bool) error {
	n := int64(f.size() + frameOverhead)
	if prio != Control {
		prio = Bulk
	}
	p.qmu.Lock()
	q := &p.q[prio]
	if q.len() >= p.o.cfg.SendQueueLen || p.queuedBytes.Load()+n > int64(p.o.cfg.SendQueueBytes) {
		p.qmu.Unlock()
		return ErrBackpressure
	}
	if copyBody {
		f.body, f.release = p.copyLocked(f.body)
	}
	q.push(f)
	p.queuedBytes.Add(n)
	p.qmu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return nil
}

// queued reports whether any frame waits.
func (p *peer) queued() bool {
	p.qmu.Lock()
	defer p.qmu.Unlock()
	return p.q[Control].len()+p.q[Bulk].len() > 0
}
