package relay

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/iris-mesh/iris/api"
)

// Publisher pushback (see docs/design-notes.md, "Pub/sub without loss").
//
// An event is queued for each local subscriber without blocking the
// goroutine that delivers it (cluster.Subscriber). Once a subscriber's
// queue passes its high-water mark, the queue is "pressed": it registers
// under the topic of the event that pressed it. The read loop of a local
// app that publishes to a pressed topic then waits, after the publish, for
// the pressing queues to fall back under high water, so a publisher
// without flow control slows to its subscribers' pace (TCP pushback to the
// app: the daemon stops reading it) instead of having its events dropped.
//
// A slow subscriber must not stall others for long: a publisher waits at
// most stallMax for a queue; a queue that makes a publisher wait that long
// is marked slow and stalls nobody until its writer brings it under high
// water again. Meanwhile it fills to its hard limits and drops, as before
// (the app is really slower). Events that arrive from other daemons are
// never waited for: the link's read loop serves every subscriber of the
// daemon, so it must not stall for one.
const stallMax = 50 * time.Millisecond

// The high-water mark of a send queue is half of its limits, and at most
// pressBytes and pressLen, so that a busy connection's batches stay small
// enough for the writer to recycle (see writeLoop).
const (
	pressBytes = 4 << 20
	pressLen   = 8192
)

// pressure is the Server's registry of pressed queues by topic.
type pressure struct {
	n atomic.Int32 // len(byTopic): the publishers' fast path checks it

	mu      sync.Mutex // protects byTopic
	byTopic map[string]map[*sendQueue]struct{}
}

// add registers q as pressing topic.
func (p *pressure) add(topic string, q *sendQueue) {
	p.mu.Lock()
	if p.byTopic == nil {
		p.byTopic = make(map[string]map[*sendQueue]struct{})
	}
	qs := p.byTopic[topic]
	if qs == nil {
		qs = make(map[*sendQueue]struct{})
		p.byTopic[topic] = qs
		p.n.Add(1)
	}
	qs[q] = struct{}{}
	p.mu.Unlock()
}

// remove unregisters q from topics.
func (p *pressure) remove(topics []string, q *sendQueue) {
	p.mu.Lock()
	for _, t := range topics {
		qs := p.byTopic[t]
		delete(qs, q)
		if qs != nil && len(qs) == 0 {
			delete(p.byTopic, t)
			p.n.Add(-1)
		}
	}
	p.mu.Unlock()
}

// wait blocks while queues pressing topic are above high water, for at
// most stallMax each, or until stop is closed. It reports whether it
// waited at all (for the stats).
func (p *pressure) wait(topic string, stop <-chan struct{}) bool {
	if p.n.Load() == 0 {
		return false
	}
	var chs [8]chan struct{}
	var qs [8]*sendQueue
	n := 0
	p.mu.Lock()
	for q := range p.byTopic[topic] {
		qs[n] = q
		if n++; n == len(qs) {
			break
		}
	}
	p.mu.Unlock()
	k := 0
	for _, q := range qs[:n] {
		if ch := q.pressed(); ch != nil { // q.mu after p.mu is released: add takes them the other way
			chs[k], qs[k] = ch, q
			k++
		}
	}
	if k == 0 {
		return false
	}
	timer := time.NewTimer(stallMax)
	defer timer.Stop()
	for i := range k {
		select {
		case <-chs[i]:
		case <-stop:
			return true
		case <-timer.C:
			// Too slow to wait for: from now on it drops rather than stalls.
			for _, q := range qs[i:k] {
				q.markSlow(chs[i])
			}
			return true
		}
	}
	return true
}

// offerPub queues an event for a subscriber like offer (and, for a v1.1
// session, counts a refused one for the next GAP like offerEvent), then
// registers the queue with the Server's pressure when it passed high water.
func (q *sendQueue) offerPub(m *api.Message, gap bool) bool {
	q.mu.Lock()
	ok := q.offerLocked(m, kindBulk)
	if !ok && gap && q.state == queueOpen {
		q.gap++
		if q.gap == 1 {
			// Wake the writer even if nothing is queued (the budget, not
			// the queue, refused the event), so the GAP goes out.
			signal(q.wakeCh)
		}
	}
	reg := ok && q.pressLocked(m.Topic)
	q.mu.Unlock()
	if reg && q.pr != nil {
		q.pr.add(m.Topic, q)
	}
	return ok
}

// pressLocked records, after an event for topic was queued, whether the
// queue is above high water, and returns true when the caller must register
// it under topic with the Server's pressure. q.mu must be held.
func (q *sendQueue) pressLocked(topic string) bool {
	if q.press == nil && (q.nBytes >= q.hwBytes || q.nBulk >= q.hwLen) {
		q.press = make(chan struct{})
	}
	if q.press == nil || q.slow {
		return false
	}
	for _, t := range q.pressTopics {
		if t == topic {
			return false
		}
	}
	if len(q.pressTopics) == cap(q.pressTopics) && len(q.pressTopics) >= maxPressTopics {
		return false
	}
	q.pressTopics = append(q.pressTopics, topic)
	return true
}

// maxPressTopics bounds the topics one queue presses at once.
const maxPressTopics = 16

// pressed returns the channel closed when q falls back under high water,
// or nil when q is not pressing (any more) or is marked slow.
func (q *sendQueue) pressed() chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.slow {
		return nil
	}
	return q.press
}

// markSlow marks q slow for the pressed spell ch belongs to.
func (q *sendQueue) markSlow(ch chan struct{}) {
	q.mu.Lock()
	if q.press == ch {
		q.slow = true
	}
	q.mu.Unlock()
}

// releasePressLocked ends the pressed spell once q is back under high
// water, or when q ends. It returns the topics to unregister. q.mu must be
// held.
func (q *sendQueue) releasePressLocked(force bool) []string {
	if q.press == nil || (!force && (q.nBytes >= q.hwBytes || q.nBulk >= q.hwLen)) {
		return nil
	}
	close(q.press)
	q.press, q.slow = nil, false
	topics := q.pressTopics
	q.pressTopics = nil
	return topics
}
