package relay

import (
	"testing"

	"github.com/iris-mesh/iris/api"
)

// TestQueueGap: events the queue refuses are counted, and the writer's next
// batch ends with one GAP carrying the count, which is then reset.
func TestQueueGap(t *testing.T) {
	q := newSendQueue(2, 1<<20, 1<<20, 4, nil)
	ev := api.Message{Op: api.OpPublish, Topic: "t", Payload: []byte("x")}
	for i := range 5 {
		if ok := q.offerEvent(&ev); ok != (i < 2) {
			t.Fatalf("offer %d: %v", i, ok)
		}
	}
	batch, _, ok := q.take(nil, nil)
	if !ok || len(batch) != 3 || batch[2].msg.Op != api.OpGap || batch[2].msg.Size != 3 {
		t.Fatalf("batch %+v", batch)
	}
	if !q.offerEvent(&ev) {
		t.Fatal("room again, yet refused")
	}
	batch, _, _ = q.take(batch[:0], nil)
	if len(batch) != 1 || batch[0].msg.Op != api.OpPublish {
		t.Fatalf("second batch %+v: the gap was reported twice", batch)
	}
	q.abort()
	if q.offerEvent(&ev) {
		t.Fatal("offer after abort")
	}
	if q.gap != 0 {
		t.Fatal("a drop after abort counted for a GAP nobody will read")
	}
}
