package sdk

import (
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
func (p *pool) work() {
	for {
		d, ok := p.pop()
		if !ok {
			return
		}
		p.run(&d)
	}
}

// pop takes the oldest waiting delivery. When there is none (or the pool is
// closed) it counts the calling worker out and returns false.
func (p *pool) pop() (delivery, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.head == len(p.queue) {
		p.active--
		return delivery{}, false
	}
	d := p.queue[p.head]
	p.queue[p.head] = delivery{} // drop the payload reference
	p.head++
	if p.head == len(p.queue) {
		p.queue, p.head = p.queue[:0], 0
	}
	p.used -= d.cost()
	return d, true
}

// close discards the waiting deliveries and refuses new ones. Running
// handlers are not interrupted.
func (p *pool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	p.queue, p.head, p.used = nil, 0, 0
}
