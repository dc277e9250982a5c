package relay

import (
	"testing"

	"github.com/iris-mesh/iris/api"
)

func msg(op api.Opcode, payload int) *api.Message {
	return &api.Message{Op: op, Payload: make([]byte, payload)}
}

func TestQueueBulkBudget(t *testing.T) {
	q := newSendQueue(3, 100, 2)
	for i := range 3 {
		if !q.offer(msg(api.OpPublish, 10), kindBulk) {
			t.Fatalf("offer %d refused", i)
		}
	}
	if q.offer(msg(api.OpPublish, 1), kindBulk) || q.offer(msg(api.OpRequest, 1), kindDelivery) {
		t.Fatal("offer beyond SendQueueLen admitted")
	}
	if !q.push(msg(api.OpReply, 0)) {
		t.Fatal("answer refused by a full bulk budget")
	}
	batch, ok := q.take(nil)
	if !ok || len(batch) != 4 || batch[3].kind != kindAnswer {
		t.Fatalf("take = %d messages, %v", len(batch), ok)
	}
	// The budget is free again once the writer took the batch; bytes count too.
	if !q.offer(msg(api.OpPublish, 90), kindBulk) {
		t.Fatal("offer refused after take")
	}
	if q.offer(msg(api.OpPublish, 20), kindBulk) {
		t.Fatal("offer beyond SendQueueBytes admitted")
	}
	q.take(batch)
	if !q.offer(msg(api.OpPublish, 1000), kindBulk) {
		t.Fatal("a message larger than SendQueueBytes refused on an empty queue")
	}
}

func TestQueueControlWaitsForRoom(t *testing.T) {
	q := newSendQueue(1, 100, 1) // hard cap 2
	q.push(msg(api.OpReply, 0))
	q.push(msg(api.OpReply, 0))
	pushed := make(chan bool)
	go func() { pushed <- q.pushControl(msg(api.OpReply, 0)) }()
	// pushControl is blocked until the writer takes the batch.
	if batch, _ := q.take(nil); len(batch) != 2 {
		t.Fatalf("take = %d, want 2", len(batch))
	}
	if !<-pushed {
		t.Fatal("pushControl failed")
	}
	q.push(msg(api.OpReply, 0)) // with the control message: full again
	go func() { pushed <- q.pushControl(msg(api.OpReply, 0)) }()
	q.abort() // a waiting pushControl fails on abort
	if <-pushed {
		t.Fatal("pushControl succeeded on an aborted queue")
	}
	if _, ok := q.take(nil); ok {
		t.Fatal("take succeeded on an aborted queue")
	}
}

func TestQueueSeal(t *testing.T) {
	q := newSendQueue(4, 100, 4)
	q.offer(msg(api.OpBroadcast, 1), kindBulk)
	q.seal(&api.Message{Op: api.OpClose})
	if q.push(msg(api.OpReply, 0)) || q.offer(msg(api.OpBroadcast, 1), kindBulk) || q.pushControl(msg(api.OpReply, 0)) {
		t.Fatal("push after seal admitted")
	}
	batch, ok := q.take(nil)
	if !ok || len(batch) != 2 || batch[1].msg.Op != api.OpClose {
		t.Fatalf("take after seal = %+v, %v", batch, ok)
	}
	if _, ok := q.take(nil); ok {
		t.Fatal("take after draining a sealed queue succeeded")
	}
}

func TestTimeoutOf(t *testing.T) {
	for _, tt := range []struct {
		ms   uint64
		want int64
	}{{0, 1}, {1, 1}, {200, 200}, {1 << 63, maxTimeoutMs}, {^uint64(0), maxTimeoutMs}} {
		if got := timeoutOf(tt.ms).Milliseconds(); got != tt.want {
			t.Errorf("timeoutOf(%d) = %d ms, want %d", tt.ms, got, tt.want)
		}
	}
}
