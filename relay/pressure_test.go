package relay

import (
	"testing"
	"testing/synctest"

	"github.com/iris-mesh/iris/api"
)

// TestPressureWaitsForWriter checks the subscriber pushback: a delivery to
// a queue past high water waits until the writer brings it back under, and
// a queue that keeps a delivery waiting stallMax is marked slow and stalls
// nobody until it drains.
func TestPressureWaitsForWriter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newSendQueue(4, 1<<20, 1<<20, 4, nil) // high water: 2 messages
		ev := func() *api.Message { return &api.Message{Op: api.OpPublish, Topic: "t", Payload: []byte("e")} }
		if ok, waited := q.offerPub(ev(), false); !ok || waited {
			t.Fatal("waited under high water")
		}
		done := make(chan bool, 1)
		go func() {
			ok, waited := q.offerPub(ev(), false)
			done <- ok && waited
		}()
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("delivery did not wait for a pressed queue")
		default:
		}
		batch, _, _ := q.take(nil, nil)
		q.written(batch)
		if !<-done || q.slow || q.press != nil {
			t.Fatal("delivery not released when the queue drained")
		}

		// No writer: a delivery gives up after stallMax and the queue is slow.
		q.offerPub(ev(), false)
		if _, waited := q.offerPub(ev(), false); !waited || !q.slow {
			t.Fatal("delivery did not wait, or the queue is not slow")
		}
		if _, waited := q.offerPub(ev(), false); waited {
			t.Fatal("a slow queue stalled a delivery again")
		}
		q.offerPub(ev(), false)
		if ok, _ := q.offerPub(ev(), false); ok {
			t.Fatal("a slow queue took an event beyond its limit")
		}
		batch, _, _ = q.take(batch, nil)
		q.written(batch)
		if q.slow || q.press != nil {
			t.Fatal("a drained queue still pressed or slow")
		}
	})
}
