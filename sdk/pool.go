package sdk

import (
	"runtime"
	"sync"
	"time"
)

// deliveryOverhead is charged against a pool's memory limit for every
// queued delivery on top of its payload, so that a flood of empty messages
// is bounded too. It is about the size of a delivery in the queue.
const deliveryOverhead = 64

// delivery is a message the daemon delivered, waiting for a handler.
type delivery struct {
	id       uint64    // request id (requests only)
	payload  []byte    // request, broadcast message or event
	deadline time.Time // request deadline (requests only)
	survey   bool      // a survey question rather than a request
	topic    string    // the topic an event was published to (v1.1)
}

func (d *delivery) cost() int { return len(d.payload) + deliveryOverhead }

// pool runs a handler on deliveries with at most threads goroutines at a
// time, queueing the rest in FIFO order up to limit bytes. Workers start on
// demand and exit when the queue is empty, so an idle pool costs no
// goroutine. Only the connection's reader calls push, which never blocks;
// workers are counted in wg, which the connection waits on.
type pool struct {
	threads int
	limit   int
	run     func(*delivery)
	wg      *sync.WaitGroup

	mu     sync.Mutex // protects the following
	queue  []delivery // queue[head:] is waiting
	head   int
	used   int // bytes charged for the waiting deliveries
	active int // running workers
	closed bool
	lost   uint64 // deliveries refused for memory since the last onLost
	// onLost, if set, is told how many deliveries were refused, by the
	// next worker to take one after them (subs.go).
	onLost func(n uint64)
}

func newPool(threads, limit int, wg *sync.WaitGroup, run func(*delivery)) *pool {
	return &pool{threads: threads, limit: limit, run: run, wg: wg}
}

// push queues d and starts a worker if fewer than threads run. It returns
// false, dropping d, when d would take the queue over the memory limit or
// the pool is closed.
func (p *pool) push(d delivery) bool {
	cost := d.cost()
	p.mu.Lock()
	if p.closed || p.used+cost > p.limit {
		if !p.closed && p.onLost != nil {
			p.lost++
		}
		p.mu.Unlock()
		return false
	}
	p.used += cost
	if p.head > 0 && len(p.queue) == cap(p.queue) {
		// Reuse the consumed front rather than growing.
		n := copy(p.queue, p.queue[p.head:])
		clear(p.queue[n:])
		p.queue, p.head = p.queue[:n], 0
	}
	p.queue = append(p.queue, d)
	start := p.active < p.threads
	if start {
		p.active++
	}
	p.mu.Unlock()
	if start {
		p.wg.Go(p.work)
	}
	return true
}

// work runs deliveries until the queue is empty or the pool is closed.
// Before it exits it yields once and looks again, so a steady stream whose
// reader is a moment behind keeps one worker rather than starting a
// goroutine per delivery.
func (p *pool) work() {
	d := new(delivery) // one per worker: run takes a pointer, which escapes
	yielded := false
	for {
		var lost uint64
		var ok, out bool
		*d, lost, ok, out = p.pop(!yielded)
		if !ok {
			if out {
				return
			}
			yielded = true
			runtime.Gosched()
			continue
		}
		yielded = false
		if lost > 0 {
			p.onLost(lost)
		}
		p.run(d)
		*d = delivery{} // drop the payload reference
	}
}

// pop takes the oldest waiting delivery, and the count of deliveries
// refused since the last pop reported one. When there is none (or the pool
// is closed) it returns ok false, and unless stay is set (the worker will
// look again) and the pool is open, counts the calling worker out and
// returns out true.
func (p *pool) pop(stay bool) (d delivery, lost uint64, ok, out bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.head == len(p.queue) {
		if !stay || p.closed {
			p.active--
			return delivery{}, 0, false, true
		}
		return delivery{}, 0, false, false
	}
	lost = p.lost
	p.lost = 0
	d = p.queue[p.head]
	p.queue[p.head] = delivery{} // drop the payload reference
	p.head++
	if p.head == len(p.queue) {
		p.queue, p.head = p.queue[:0], 0
	}
	p.used -= d.cost()
	return d, lost, true, false
}

// close discards the waiting deliveries and refuses new ones. Running
// handlers are not interrupted.
func (p *pool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.queue, p.head, p.used = nil, 0, 0
}
