package deadline

import (
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

type item struct {
	slot Slot
	id   int
	due  time.Time
}

func (it *item) DeadlineSlot() *Slot { return &it.slot }

// owner is how the daemon uses a Set: under its lock, with fire expiring
// what is due.
type owner struct {
	mu      sync.Mutex
	set     *Set[*item]
	expired []*item
}

func newOwner() *owner {
	o := &owner{}
	o.set = New[*item](o.fire)
	return o
}

func (o *owner) fire() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.expired = o.set.Expired(time.Now(), o.expired)
}

// Every item not removed expires at its deadline, not before, whatever the
// order items were added and removed in; removed items never expire.
func TestSetExpiresAtDeadlines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newOwner()
		r := rand.New(rand.NewPCG(1, 2))
		start := time.Now()
		var items []*item
		removed := map[int]bool{}
		o.mu.Lock()
		for i := range 500 {
			it := &item{id: i, due: start.Add(time.Duration(1+r.IntN(5000)) * time.Millisecond)}
			items = append(items, it)
			o.set.Add(it, it.due)
			if r.IntN(3) == 0 { // answered before its deadline
				victim := items[r.IntN(len(items))]
				if o.set.Remove(victim) {
					removed[victim.id] = true
				}
			}
		}
		if o.set.Len() != len(items)-len(removed) {
			t.Fatalf("Len = %d, want %d", o.set.Len(), len(items)-len(removed))
		}
		o.mu.Unlock()

		seen := 0
		for step := range 5001 {
			time.Sleep(time.Millisecond)
			synctest.Wait()
			now := start.Add(time.Duration(step+1) * time.Millisecond)
			o.mu.Lock()
			for _, it := range o.expired[seen:] {
				if it.due.After(now) {
					t.Fatalf("item %d expired at %v, before its deadline %v", it.id, now.Sub(start), it.due.Sub(start))
				}
				if removed[it.id] {
					t.Fatalf("removed item %d expired", it.id)
				}
			}
			seen = len(o.expired)
			for _, it := range items {
				if !removed[it.id] && !it.due.After(now) && it.slot.pos != 0 {
					t.Fatalf("item %d still waiting at %v, its deadline was %v", it.id, now.Sub(start), it.due.Sub(start))
				}
			}
			o.mu.Unlock()
		}
		if got, want := len(o.expired), len(items)-len(removed); got != want {
			t.Fatalf("%d items expired, want %d", got, want)
		}
		if !slices.IsSortedFunc(o.expired, func(a, b *item) int { return a.due.Compare(b.due) }) {
			t.Fatal("items did not expire in deadline order")
		}
	})
}

// Drain hands back what is left and stops the timer: nothing expires
// afterwards.
func TestSetDrain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newOwner()
		o.mu.Lock()
		for i := range 10 {
			o.set.Add(&item{id: i}, time.Now().Add(time.Second))
		}
		left := o.set.Drain(nil)
		o.mu.Unlock()
		if len(left) != 10 || o.set.Len() != 0 {
			t.Fatalf("Drain returned %d, left %d", len(left), o.set.Len())
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if len(o.expired) != 0 {
			t.Fatalf("%d items expired after Drain", len(o.expired))
		}
		if o.set.Remove(left[0]) {
			t.Fatal("Remove of a drained item reported true")
		}
	})
}

// Adding and removing items in deadline order, as requests with one
// timeout do, costs no timer update.
func BenchmarkSetAddRemove(b *testing.B) {
	o := newOwner()
	items := make([]item, 64)
	now := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		it := &items[i%len(items)]
		o.mu.Lock()
		o.set.Remove(it)
		o.set.Add(it, now.Add(time.Minute+time.Duration(i)))
		o.mu.Unlock()
	}
	o.mu.Lock()
	o.set.Drain(nil)
	o.mu.Unlock()
}

// The runtime timer each, for comparison.
func BenchmarkAfterFuncStop(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		t := time.AfterFunc(time.Minute, func() {})
		t.Stop()
	}
}
