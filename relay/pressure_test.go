package relay

import (
	"testing"
	"testing/synctest"

	"github.com/iris-mesh/iris/api"
)

// TestPressureWaitsForWriter checks the publisher pushback: a publisher of
// a topic whose subscriber queue passed high water waits until the writer
// brings it back under, and a queue that keeps a publisher waiting stallMax
// is marked slow and stalls nobody until it drains.
func TestPressureWaitsForWriter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var p pressure
		q := newSendQueue(4, 1<<20, 1<<20, 4, nil) // high water: 2 messages
		q.pr = &p
		ev := func() *api.Message { return &api.Message{Op: api.OpPublish, Topic: "t", Payload: []byte("e")} }
		if !q.offerPub(ev(), false) || p.n.Load() != 0 {
			t.Fatal("pressed under high water")
		}
		if !q.offerPub(ev(), false) || p.n.Load() != 1 {
			t.Fatal("not pressed at high water")
		}
		if p.wait("other", nil) {
			t.Fatal("a publisher of another topic waited")
		}
		done := make(chan bool, 1)
		go func() { done <- p.wait("t", nil) }()
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("publisher did not wait for a pressed queue")
		default:
		}
		batch, _ := q.take(nil)
		q.written(batch)
		if !<-done || p.n.Load() != 0 {
			t.Fatal("publisher not released when the queue drained")
		}

		// No writer: the publisher gives up after stallMax and the queue is slow.
		q.offerPub(ev(), false)
		q.offerPub(ev(), false)
		if !p.wait("t", nil) {
			t.Fatal("publisher did not wait")
		}
		if p.wait("t", nil) {
			t.Fatal("a slow queue stalled a publisher again")
		}
		q.offerPub(ev(), false)
		q.offerPub(ev(), false)
		if q.offerPub(ev(), false) {
			t.Fatal("a slow queue took an event beyond its limit")
		}
		batch, _ = q.take(nil)
		q.written(batch)
		if p.n.Load() != 0 || q.slow || q.press != nil {
			t.Fatal("a drained queue still pressing or slow")
		}
	})
}
