package relay

import (
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/iris-mesh/iris/api"
)

// kind says how the send queue treats a message when it is full.
type kind uint8

const (
	// kindBulk is a broadcast or an event: dropped when the bulk budget
	// (SendQueueLen messages, SendQueueBytes bytes) is spent.
	kindBulk kind = iota
	// kindDelivery is a request delivered to a service: refused when the
	// bulk budget is spent, so the cluster places it on another member.
	kindDelivery
	// kindAnswer answers one of the app's own requests or tunnel builds. It
	// is always admitted: its slot was reserved (conn.answers) when the read
	// loop accepted the request, and the writer releases it on taking it.
	kindAnswer
	// kindControl is a message the read loop makes itself (an immediate
	// fault, the CLOSE answer). It is admitted while the queue is under its
	// hard cap; otherwise the read loop waits for the writer.
	kindControl
	// kindTunnel is tunnel traffic to the app (offers, credit, chunks,
	// closes). It is always admitted: the tunnel layer bounds it, chunks by
	// TunnelQueueBytes and the rest by the tunnels' credit and count.
	kindTunnel
)

// outMsg is one message waiting for the write loop.
type outMsg struct {
	msg  api.Message
	kind kind
	// enc is set for an event queued encoded (offerEncodedLocked):
	// msg.Payload is its encoding in the queue's slab, written as it is.
	enc  bool
	cost int // payload bytes counted against the queue's byte limits until written
}

// queueState is the life cycle of a sendQueue.
type queueState uint8

const (
	queueOpen    queueState = iota
	queueSealed             // no more pushes; the writer drains what is queued, then stops
	queueAborted            // no more pushes; what is queued is discarded
)

// sendQueue is a connection's bounded queue of messages to the app, drained
// by its write loop. Pushes never block except pushControl; the writer takes
// everything queued at once, so a busy connection writes many messages per
// syscall and an idle one writes each message at once.
//
// Dropping policy: a full queue rejects the new bulk message (nats.go's slow
// consumer), rather than dropping from the head as derp does, because the
// head may hold requests and answers that must never be dropped, and
// rejecting the newest keeps each publisher's delivered messages in order.
type sendQueue struct {
	bulkLen     int // SendQueueLen
	bulkBytes   int // SendQueueBytes
	answerBytes int // MaxReplyBytes
	hardLen     int // kindControl waits while len(items) >= hardLen
	mem         *budget

	wakeCh chan struct{} // cap 1: items were queued or the state changed
	roomCh chan struct{} // cap 1: the writer took a batch or the state changed

	mu     sync.Mutex // protects following
	items  []outMsg
	nBulk  int // kindBulk and kindDelivery items in items
	nBytes int // their payload bytes, and those of the ones being written
	nAns   int // payload bytes of kindAnswer items queued or being written
	// charged is how much of nBytes+nAns is drawn from mem; the rest is
	// the connection's freeAllowance.
	charged int
	state   queueState
	gap     uint64 // events dropped since the last GAP (v1.1; subs.go)
	// gapStat counts the GAPs sent (Server stats); nil in tests.
	gapStat *atomic.Uint64

	// Subscriber pushback (pressure.go): high water in bytes and count,
	// the pressed spell's channel (nil when under high water), and whether
	// a delivery gave up waiting for this queue in this spell.
	hwBytes, hwLen int
	press          chan struct{}
	slow           bool
	// recent is the size of the recent batches (decaying): take keeps a
	// spare slice that large for the writer.
	recent int
	// slab holds the encodings of the events queued encoded
	// (offerEncodedLocked).
	slab eventSlab
	// dones holds, by the address of their first byte, what to call once
	// queued tunnel chunks are written (pushChunk); doneBuf is written's.
	dones   map[*byte]func()
	doneBuf []func()
}

// msgOverhead is what a queued message costs beyond its payload bytes (its
// outMsg slot and the writer's encoding of the header), counted against
// SendQueueBytes and the memory budget for broadcasts, events and
// delivered requests, so that the byte bounds hold for small messages too.
const msgOverhead = int(unsafe.Sizeof(outMsg{}))

func newSendQueue(bulkLen, bulkBytes, answerBytes, maxAnswers int, mem *budget) *sendQueue {
	return &sendQueue{
		bulkLen:     bulkLen,
		bulkBytes:   bulkBytes,
		answerBytes: answerBytes,
		hardLen:     bulkLen + maxAnswers,
		mem:         mem,
		hwBytes:     max(min(bulkBytes/2, pressBytes), 1),
		hwLen:       max(min(bulkLen/2, pressLen), 1),
		wakeCh:      make(chan struct{}, 1),
		roomCh:      make(chan struct{}, 1),
	}
}

// chargeLocked accounts for n more payload bytes: those beyond the
// connection's freeAllowance are drawn from the shared budget. It reports
// false, charging nothing, when they do not fit.
func (q *sendQueue) chargeLocked(n int) bool {
	over := q.nBytes + q.nAns + n - freeAllowance - q.charged
	if over <= 0 || q.mem == nil {
		return true
	}
	if !q.mem.take(over, q.charged >= lowTierAfter) {
		return false
	}
	q.charged += over
	return true
}

// unchargeLocked gives back what is drawn from the budget beyond the
// bytes still held. nBytes and nAns must already be reduced.
func (q *sendQueue) unchargeLocked() {
	need := max(q.nBytes+q.nAns-freeAllowance, 0)
	if q.charged > need && q.mem != nil {
		q.mem.give(q.charged - need)
		q.charged = need
	}
}

// offer queues a kindBulk or kindDelivery message if the bulk budget
// allows; it reports whether it did.
func (q *sendQueue) offer(m *api.Message, k kind) bool {
	q.mu.Lock()
	ok := q.offerLocked(m, k)
	q.mu.Unlock()
	return ok
}

// offerLocked is offer with q.mu held.
func (q *sendQueue) offerLocked(m *api.Message, k kind) bool {
	n := len(m.Payload) + msgOverhead
	ok := q.admitBulkLocked(n)
	if ok {
		q.appendLocked(m, k, n)
	}
	return ok
}

// offerEncodedLocked is offerLocked for a kindBulk event smaller than
// directWriteSize: it is encoded into the slab, so that nothing of m is
// kept once it returns.
func (q *sendQueue) offerEncodedLocked(m *api.Message) bool {
	n := len(m.Payload) + msgOverhead
	ok := q.admitBulkLocked(n)
	if ok {
		enc := q.slab.encode(m)
		q.items = append(q.items, outMsg{msg: api.Message{Op: m.Op, Payload: enc}, kind: kindBulk, enc: true, cost: n})
		if len(q.items) == 1 {
			signal(q.wakeCh)
		}
	}
	return ok
}

// admitBulkLocked admits a kindBulk or kindDelivery message of cost n if
// the bulk budget allows, and counts it.
func (q *sendQueue) admitBulkLocked(n int) bool {
	ok := q.state == queueOpen && q.nBulk < q.bulkLen &&
		(q.nBytes+n <= q.bulkBytes || q.nBytes == 0) && q.chargeLocked(n)
	if ok {
		q.nBulk++
		q.nBytes += n
	}
	return ok
}

// push queues a kindAnswer message. It fails only once the queue is sealed
// or aborted. A reply whose payload does not fit the answer byte limit
// (unless no other answer bytes are held) or the budget is replaced by a
// fault, so the request is still answered once; push then reports the
// fault it used.
func (q *sendQueue) push(m *api.Message) (ok bool, fault string) {
	n := len(m.Payload)
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.state != queueOpen {
		return false, ""
	}
	if n > 0 {
		switch {
		case q.nAns+n > q.answerBytes && q.nAns > 0:
			fault = faultReplyQueueFull
		case !q.chargeLocked(n):
			fault = faultReplyBudget
		}
		if fault != "" {
			*m = api.Message{Op: api.OpReply, ID: m.ID, Fault: fault}
			n = 0
		}
	}
	q.nAns += n
	q.appendLocked(m, kindAnswer, n)
	return true, fault
}

// pushControl queues a kindControl message, waiting while the queue is at
// its hard cap. It fails once the queue is sealed or aborted. Only the read
// loop calls it, so an app that does not read what it asked for stops
// being read from rather than growing the queue.
func (q *sendQueue) pushControl(m *api.Message) bool {
	for {
		q.mu.Lock()
		if q.state != queueOpen {
			q.mu.Unlock()
			return false
		}
		if len(q.items) < q.hardLen {
			q.appendLocked(m, kindControl, 0)
			q.mu.Unlock()
			return true
		}
		q.mu.Unlock()
		<-q.roomCh
	}
}

// pushTunnel queues a kindTunnel message. It fails only once the queue is
// sealed or aborted.
func (q *sendQueue) pushTunnel(m *api.Message) bool {
	q.mu.Lock()
	ok := q.state == queueOpen
	if ok {
		q.appendLocked(m, kindTunnel, 0)
	}
	q.mu.Unlock()
	return ok
}

// pushChunk is pushTunnel for a tunnel chunk whose done (if not nil) is
// called once the writer has written it (see written); it is not called
// when the chunk is discarded, or when pushChunk fails. done is kept
// beside the queue, not in it, so that the queue's slots stay small.
func (q *sendQueue) pushChunk(m *api.Message, done func()) bool {
	q.mu.Lock()
	ok := q.state == queueOpen
	if ok {
		q.appendLocked(m, kindTunnel, 0)
		if done != nil && len(m.Payload) > 0 {
			if q.dones == nil {
				q.dones = make(map[*byte]func())
			}
			q.dones[&m.Payload[0]] = done
		}
	}
	q.mu.Unlock()
	return ok
}

func (q *sendQueue) appendLocked(m *api.Message, k kind, cost int) {
	q.items = append(q.items, outMsg{msg: *m, kind: k, cost: cost})
	if len(q.items) == 1 {
		signal(q.wakeCh)
	}
}

// seal queues last (if not nil) as the final message: the writer drains the
// queue, then stops. Later pushes fail. It does nothing once sealed or
// aborted.
func (q *sendQueue) seal(last *api.Message) {
	q.mu.Lock()
	if q.state == queueOpen {
		if last != nil {
			q.items = append(q.items, outMsg{msg: *last, kind: kindControl})
		}
		q.state = queueSealed
	}
	q.mu.Unlock()
	signal(q.wakeCh)
	signal(q.roomCh)
}

// replace discards what is queued and seals the queue with last: the app
// gets last next, once the writer is done with what it holds.
func (q *sendQueue) replace(last *api.Message) {
	q.mu.Lock()
	if q.state == queueOpen {
		q.discardLocked()
		q.items = append(q.items, outMsg{msg: *last, kind: kindControl})
		q.state = queueSealed
	}
	q.mu.Unlock()
	signal(q.wakeCh)
	signal(q.roomCh)
}

// abort discards what is queued and makes the writer stop. Later pushes
// fail.
func (q *sendQueue) abort() {
	q.mu.Lock()
	q.state = queueAborted
	q.discardLocked()
	q.releasePressLocked(true)
	q.mu.Unlock()
	signal(q.wakeCh)
	signal(q.roomCh)
}

// discardLocked drops the queued items and their byte counts.
func (q *sendQueue) discardLocked() {
	q.releaseLocked(q.items)
	clear(q.items) // drop the payloads now
	q.items = q.items[:0]
	q.slab.discard()
	q.nBulk = 0
	q.dones = nil // discarded chunks are not released
}

// releaseLocked takes items' bytes off the counts and the budget.
func (q *sendQueue) releaseLocked(items []outMsg) {
	for i := range items {
		switch items[i].kind {
		case kindBulk, kindDelivery:
			q.nBytes -= items[i].cost
		case kindAnswer:
			q.nAns -= items[i].cost
		}
	}
	q.unchargeLocked()
}

// written tells the queue that the writer is done with batch (written or
// not): its bytes no longer count.
func (q *sendQueue) written(batch []outMsg) {
	q.mu.Lock()
	q.releaseLocked(batch)
	q.releasePressLocked(false)
	dones := q.doneBuf[:0]
	if len(q.dones) > 0 {
		for i := range batch {
			m := &batch[i].msg
			if batch[i].kind != kindTunnel || m.Op != api.OpTunTransfer || len(m.Payload) == 0 {
				continue
			}
			if done, ok := q.dones[&m.Payload[0]]; ok {
				delete(q.dones, &m.Payload[0])
				dones = append(dones, done)
			}
		}
	}
	q.mu.Unlock()
	for i, done := range dones {
		done() // written (or never to be): not read any more
		dones[i] = nil
	}
	q.doneBuf = dones[:0] // only the writer calls written
}

// take waits until messages are queued and returns all of them, with the
// slab blocks their encoded events lie in, handing spare and written (the
// previous batch and its blocks, written) to the queue for reuse. It
// returns false when the writer must stop: the queue was aborted, or
// sealed and fully taken.
func (q *sendQueue) take(spare []outMsg, written []*slabBuf) ([]outMsg, []*slabBuf, bool) {
	for {
		q.mu.Lock()
		if q.state == queueAborted {
			q.mu.Unlock()
			return nil, nil, false
		}
		if len(q.items) > 0 || q.gap > 0 {
			q.recent = max(len(q.items), q.recent-q.recent/8)
			batch, blocks := q.takeGapLocked(q.items), q.slab.take(written)
			q.items = spare[:0]
			q.nBulk = 0 // bytes count until written
			q.mu.Unlock()
			signal(q.roomCh)
			return batch, blocks, true
		}
		release(written)
		written = nil
		sealed := q.state == queueSealed
		if cap(q.items) > max(minKeptQ, 4*q.recent) {
			q.items = nil // the bursts are over: do not hold their slice
		}
		q.mu.Unlock()
		if sealed {
			return nil, nil, false
		}
		<-q.wakeCh
	}
}

// sealed reports whether the queue was sealed (and not aborted since).
func (q *sendQueue) sealed() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.state == queueSealed
}

// signal wakes the receiver of a capacity-1 channel without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
