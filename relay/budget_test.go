package relay_test

import (
	"encoding/binary"
	"strings"
	"testing"
	"time"

	"github.com/iris-mesh/iris/api"
	"github.com/iris-mesh/iris/internal/leakcheck"
	"github.com/iris-mesh/iris/relay"
)

// startPublish sends the first n bytes of a PUBLISH to topic "t" whose
// payload declares size bytes.
func (c *client) startPublish(size, n int) {
	c.t.Helper()
	b := []byte{byte(api.OpPublish), 1, 't'}
	b = binary.AppendUvarint(b, uint64(size))
	c.nc.Write(b)
	chunk := make([]byte, 64<<10)
	for n > 0 {
		k := min(n, len(chunk))
		if _, err := c.nc.Write(chunk[:k]); err != nil {
			c.t.Fatalf("write: %v", err)
		}
		n -= k
	}
}

// TestStalledMessageTimesOut: an app that starts a message and stops gets
// CLOSE with the reason after MessageTimeout; an idle app does not, and
// others are served meanwhile.
func TestStalledMessageTimesOut(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t, func(c *relay.Config) { c.MessageTimeout = 300 * time.Millisecond })
	svc := connect(t, d, "svc")
	idle := connect(t, d, "")
	stalled := connect(t, d, "")
	stalled.startPublish(1<<20, 1000)
	stalled.expectRefused(api.OpClose, "iris: message not completed in time (-message-timeout): no progress for 300ms")
	waitFor(t, "stalled message counted", func() bool { return d.srv.Stats().StalledMessages == 1 })
	roundTrip(t, idle, svc, "svc", 1) // idle longer than MessageTimeout, still served
}

// TestPartialMessagesBoundedByBudget: partly sent messages draw on the
// read half of the budget; an app sending a large message briskly when it
// is full takes the budget of an app stalled mid-message, which gets CLOSE
// with the reason; the budget is given back when they end, and small
// messages of other apps pass meanwhile.
func TestPartialMessagesBoundedByBudget(t *testing.T) {
	leakcheck.Check(t)
	// 8 MiB for partial messages, which cost twice what has arrived.
	d := startDaemon(t, func(c *relay.Config) { c.MemoryBudget = 16 << 20 })
	svc := connect(t, d, "svc")
	cli := connect(t, d, "")
	var holders []*client
	for range 2 {
		h := connect(t, d, "")
		h.startPublish(16<<20, 768<<10)
		holders = append(holders, h)
	}
	waitFor(t, "two partial messages charged", func() bool { return d.srv.Stats().MemoryUsed >= 2*(768-64)<<10 })
	roundTrip(t, cli, svc, "svc", 1)
	sub := connect(t, d, "")
	sub.send(api.Message{Op: api.OpSubscribe, Topic: "t"})
	roundTrip(t, sub, svc, "svc", 2) // the subscription is in place
	// 3 MiB fits only once one stalled message is evicted.
	brisk := connect(t, d, "")
	event := make([]byte, 3<<20)
	brisk.send(api.Message{Op: api.OpPublish, Topic: "t", Payload: event})
	sub.expectPublish("t", string(event))
	waitFor(t, "one refusal counted", func() bool {
		st := d.srv.Stats()
		return st.BudgetClosed == 1 && st.BudgetRefusals > 0
	})
	// The CLOSE was written before the refusal was counted.
	refused := 0
	for _, h := range holders {
		_ = h.nc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		var m api.Message
		h.br = nil
		if err := api.NewDecoder(h.nc, api.Limits{}).ReadDaemon(&m); err == nil {
			if m.Op != api.OpClose || !strings.Contains(m.Fault, "iris: daemon memory budget for apps exhausted") {
				t.Fatalf("holder got %s %q", m.Op, m.Fault)
			}
			refused++
		}
	}
	if refused != 1 {
		t.Fatalf("%d stalled apps told of the budget, want 1", refused)
	}
	for _, h := range holders {
		h.nc.Close()
	}
	waitFor(t, "budget given back", func() bool { return d.srv.Stats().MemoryUsed == 0 })
}

// TestNeverReadingSubscriberBoundedByBudget: events for a subscriber that
// never reads stop at half the queue budget (and are counted), and a
// subscriber that reads keeps getting them from the other half.

const lowTier = 256 << 10

func TestNeverReadingSubscriberBoundedByBudget(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t, func(c *relay.Config) { c.MemoryBudget = 8 << 20 }) // 4 MiB for queues
	deaf := connect(t, d, "")
	deaf.send(api.Message{Op: api.OpSubscribe, Topic: "t"})
	good := connect(t, d, "")
	good.send(api.Message{Op: api.OpSubscribe, Topic: "t"})
	pub := connect(t, d, "")
	waitFor(t, "subscribed", func() bool { return d.node.Stats().Publishes == 0 })
	event := string(make([]byte, 256<<10))
	for i := range 64 { // 16 MiB, far beyond the budget
		pub.send(api.Message{Op: api.OpPublish, Topic: "t", Payload: []byte(event)})
		good.expectPublish("t", event)
		if i == 0 {
			continue
		}
		if used := d.srv.Stats().MemoryUsed; used > 2<<20+lowTier {
			// half of the 4 MiB for queues, and one event past the tier
			t.Fatalf("budget overdrawn: %d bytes", used)
		}
	}
	st := d.srv.Stats()
	if st.DroppedEvents == 0 || st.BudgetRefusals == 0 {
		t.Fatalf("DroppedEvents %d, BudgetRefusals %d; want both > 0", st.DroppedEvents, st.BudgetRefusals)
	}
}
