// Package deadline times many items, each with its own deadline, with one
// runtime timer.
//
// A daemon holds a deadline for every request in flight; a runtime timer
// each (time.AfterFunc, then Stop when the answer comes) costs an
// allocation and two updates of the runtime's timer heap per request, on
// the hot path. A Set keeps its items in a heap ordered by deadline, under
// its owner's lock, and arms its one timer for the earliest deadline. The
// timer is only ever moved earlier: an item removed before its deadline
// leaves the timer where it was, and when it fires the owner expires what
// is due and the timer is set for the new earliest deadline. Requests with
// similar timeouts arrive in deadline order, so adding and removing them
// touches no timer at all.
//
// A Set is not safe for concurrent use: its owner calls every method,
// including Expired from the fire function, with its own lock held.
package deadline

import "time"

// epoch is the origin of the monotonic clock readings a Set compares.
var epoch = time.Now()

// since returns t as nanoseconds after epoch, on the monotonic clock when
// t carries a monotonic reading (time.Now and times derived from it do).
func since(t time.Time) int64 { return int64(t.Sub(epoch)) }

// Slot is what a Set keeps in each item: embed it in the item and return
// it from the item's DeadlineSlot method.
type Slot struct {
	at  int64 // deadline, nanoseconds after epoch
	pos int   // index in the heap plus one; 0 while not in a Set
}

// Item is an element of a Set.
type Item interface {
	DeadlineSlot() *Slot
}

// Set is a set of items ordered by deadline, with a timer armed for the
// earliest. The zero value is not usable; call New.
type Set[T Item] struct {
	heap  []T
	fire  func()
	timer *time.Timer // made by the first Add
	armed int64       // the deadline the timer is set for; 0: not set
}

// New returns an empty Set whose timer calls fire, on its own goroutine,
// once the earliest deadline it was armed for has passed. fire must take
// the owner's lock and call Expired.
func New[T Item](fire func()) *Set[T] {
	return &Set[T]{fire: fire}
}

// Len returns the number of items in the set.
func (s *Set[T]) Len() int { return len(s.heap) }

// Add adds it, which must not be in a Set, with deadline at.
func (s *Set[T]) Add(it T, at time.Time) {
	sl := it.DeadlineSlot()
	sl.at = since(at)
	s.heap = append(s.heap, it)
	sl.pos = len(s.heap)
	s.up(len(s.heap) - 1)
	if s.armed == 0 || sl.at < s.armed {
		s.arm(sl.at)
	}
}

// Remove takes it out of the set and reports whether it was in it. The
// timer stays where it is.
func (s *Set[T]) Remove(it T) bool {
	sl := it.DeadlineSlot()
	if sl.pos == 0 {
		return false
	}
	i := sl.pos - 1
	last := len(s.heap) - 1
	if i != last {
		s.swap(i, last)
	}
	var zero T
	s.heap[last] = zero
	s.heap = s.heap[:last]
	sl.pos = 0
	if i != last {
		s.down(i)
		s.up(i)
	}
	return true
}

// Expired removes the items whose deadline is not after now, appends them
// to dst in deadline order and returns it. It sets the timer for the
// earliest deadline left.
func (s *Set[T]) Expired(now time.Time, dst []T) []T {
	t := since(now)
	for len(s.heap) > 0 && s.heap[0].DeadlineSlot().at <= t {
		it := s.heap[0]
		s.Remove(it)
		dst = append(dst, it)
	}
	s.armed = 0
	if len(s.heap) > 0 {
		s.arm(s.heap[0].DeadlineSlot().at)
	}
	return dst
}

// Drain removes every item, appends them to dst and returns it, and stops
// the timer: for the owner's shutdown.
func (s *Set[T]) Drain(dst []T) []T {
	for _, it := range s.heap {
		it.DeadlineSlot().pos = 0
		dst = append(dst, it)
	}
	clear(s.heap)
	s.heap = s.heap[:0]
	s.Stop()
	return dst
}

// Stop stops the timer. Items left in the set do not expire until the
// next Add.
func (s *Set[T]) Stop() {
	if s.timer != nil {
		s.timer.Stop()
	}
	s.armed = 0
}

// arm sets the timer for deadline at.
func (s *Set[T]) arm(at int64) {
	s.armed = at
	d := time.Duration(at - since(time.Now()))
	if s.timer == nil {
		s.timer = time.AfterFunc(d, s.fire)
		return
	}
	s.timer.Reset(d)
}

func (s *Set[T]) less(i, j int) bool {
	return s.heap[i].DeadlineSlot().at < s.heap[j].DeadlineSlot().at
}

func (s *Set[T]) swap(i, j int) {
	s.heap[i], s.heap[j] = s.heap[j], s.heap[i]
	s.heap[i].DeadlineSlot().pos = i + 1
	s.heap[j].DeadlineSlot().pos = j + 1
}

func (s *Set[T]) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !s.less(i, p) {
			return
		}
		s.swap(i, p)
		i = p
	}
}

func (s *Set[T]) down(i int) {
	n := len(s.heap)
	for {
		c := 2*i + 1
		if c >= n {
			return
		}
		if r := c + 1; r < n && s.less(r, c) {
			c = r
		}
		if !s.less(c, i) {
			return
		}
		s.swap(i, c)
		i = c
	}
}
