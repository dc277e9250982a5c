package relay

import (
	"testing"

	"github.com/iris-mesh/iris/api"
)

func msg(op api.Opcode, payload int) *api.Message {
	return &api.Message{Op: op, Payload: make([]byte, payload)}
}

func TestQueueBulkBudget(t *testing.T) {
	q := newSendQueue(3, 100+3*msgOverhead, 1<<20, 2, nil) // bytes count payload and overhead
	for i := range 3 {
		if !q.offer(msg(api.OpPublish, 10), kindBulk) {
			t.Fatalf("offer %d refused", i)
		}
	}
	if q.offer(msg(api.OpPublish, 1), kindBulk) || q.offer(msg(api.OpRequest, 1), kindDelivery) {
		t.Fatal("offer beyond SendQueueLen admitted")
	}
	if ok, _ := q.push(msg(api.OpReply, 0)); !ok {
		t.Fatal("answer refused by a full bulk budget")
	}
	batch, _, ok := q.take(nil, nil)
	if !ok || len(batch) != 4 || batch[3].kind != kindAnswer {
		t.Fatalf("take = %d messages, %v", len(batch), ok)
	}
	q.written(batch)
	// The budget is free again once the writer wrote the batch; bytes count too.
	if !q.offer(msg(api.OpPublish, 60+2*msgOverhead), kindBulk) {
		t.Fatal("offer refused after take")
	}
	if q.offer(msg(api.OpPublish, 50), kindBulk) {
		t.Fatal("offer beyond SendQueueBytes admitted")
	}
	batch, _, _ = q.take(batch, nil)
	q.written(batch)
	if !q.offer(msg(api.OpPublish, 1000), kindBulk) {
		t.Fatal("a message larger than SendQueueBytes refused on an empty queue")
	}
}

func TestQueueControlWaitsForRoom(t *testing.T) {
	q := newSendQueue(1, 100, 1<<20, 1, nil) // hard cap 2
	q.push(msg(api.OpReply, 0))
	q.push(msg(api.OpReply, 0))
	pushed := make(chan bool)
	go func() { pushed <- q.pushControl(msg(api.OpReply, 0)) }()
	// pushControl is blocked until the writer takes the batch.
	if batch, _, _ := q.take(nil, nil); len(batch) != 2 {
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
	if _, _, ok := q.take(nil, nil); ok {
		t.Fatal("take succeeded on an aborted queue")
	}
}

func TestQueueSeal(t *testing.T) {
	q := newSendQueue(4, 100, 1<<20, 4, nil)
	q.offer(msg(api.OpBroadcast, 1), kindBulk)
	q.seal(&api.Message{Op: api.OpClose})
	if ok, _ := q.push(msg(api.OpReply, 0)); ok || q.offer(msg(api.OpBroadcast, 1), kindBulk) || q.pushControl(msg(api.OpReply, 0)) {
		t.Fatal("push after seal admitted")
	}
	batch, _, ok := q.take(nil, nil)
	if !ok || len(batch) != 2 || batch[1].msg.Op != api.OpClose {
		t.Fatalf("take after seal = %+v, %v", batch, ok)
	}
	if _, _, ok := q.take(nil, nil); ok {
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

// TestQueueBytesCountUntilWritten checks that a batch the writer holds
// still counts against SendQueueBytes, MaxReplyBytes and the budget, so an
// app that does not read cannot have twice its share in memory.
func TestQueueBytesCountUntilWritten(t *testing.T) {
	mem := &budget{limit: 1 << 20}
	q := newSendQueue(100, 200<<10, 100<<10, 10, mem)
	if !q.offer(msg(api.OpPublish, 150<<10), kindBulk) {
		t.Fatal("offer refused")
	}
	batch, _, _ := q.take(nil, nil)
	if q.offer(msg(api.OpPublish, 100<<10), kindBulk) {
		t.Fatal("offer beyond SendQueueBytes admitted while the writer holds a batch")
	}
	if got, want := mem.used.Load(), int64(150<<10+msgOverhead-freeAllowance); got != want {
		t.Fatalf("budget used %d, want %d", got, want)
	}
	// Replies: one large one passes alone; the next is a fault.
	if ok, fault := q.push(&api.Message{Op: api.OpReply, ID: 1, Payload: make([]byte, 120<<10)}); !ok || fault != "" {
		t.Fatalf("first reply: %v %q", ok, fault)
	}
	m := &api.Message{Op: api.OpReply, ID: 2, Payload: make([]byte, 1)}
	if ok, fault := q.push(m); !ok || fault != faultReplyQueueFull || m.Fault != fault || m.Payload != nil || m.ID != 2 {
		t.Fatalf("second reply: %v %q %+v", ok, fault, m)
	}
	q.written(batch)
	q.abort()
	if got := mem.used.Load(); got != 0 {
		t.Fatalf("budget used %d after abort, want 0", got)
	}
	// A full budget refuses beyond the allowance.
	mem = &budget{limit: 10}
	q = newSendQueue(100, 1<<20, 1<<20, 10, mem)
	if !q.offer(msg(api.OpPublish, freeAllowance-msgOverhead), kindBulk) {
		t.Fatal("offer within the allowance refused")
	}
	if q.offer(msg(api.OpPublish, 11), kindBulk) || mem.refused.Load() != 1 {
		t.Fatal("offer beyond the budget admitted")
	}
	if _, fault := q.push(&api.Message{Op: api.OpReply, ID: 3, Payload: make([]byte, 11)}); fault != faultReplyBudget {
		t.Fatalf("reply beyond the budget: fault %q", fault)
	}
}
