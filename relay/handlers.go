package relay

import (
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/iris-mesh/iris/api"
	"github.com/iris-mesh/iris/cluster"
	"github.com/iris-mesh/iris/internal/deadline"
)

// Faults the relay itself puts in REPLY messages.
const (
	faultTooManyPending = "iris: too many pending requests"
	faultServiceClosed  = "iris: service closed"
)

// maxTimeoutMs is the largest timeout that fits a time.Duration.
const maxTimeoutMs = math.MaxInt64 / int64(time.Millisecond)

// timeoutOf converts a wire timeout to a Duration. A timeout of 0 (which
// no v1 binding sends on purpose) is treated as the minimum, 1 ms: the
// request or build then times out at once rather than never. Huge values
// saturate; the cluster caps them further (cluster.Config.MaxRequestTimeout).
func timeoutOf(ms uint64) time.Duration {
	return time.Duration(min(max(ms, 1), uint64(maxTimeoutMs))) * time.Millisecond
}

// reserveAnswer takes an answer slot for a request or tunnel build of the
// app, if MaxPendingRequests allows. Only the read loop takes slots; the
// write loop releases them.
func (c *conn) reserveAnswer() bool {
	if c.answers.Load() >= int64(c.srv.cfg.MaxPendingRequests) {
		c.srv.stats.tooManyPending.Add(1)
		return false
	}
	c.answers.Add(1)
	return true
}

// handleRequest sends the app's REQUEST to its cluster. The callback queues
// exactly one REPLY: the result, a fault, or timed out at the deadline.
func (c *conn) handleRequest(m *api.Message) error {
	id := m.ID
	c.mu.Lock()
	_, dup := c.inflight[id]
	ok := !dup && c.reserveAnswer()
	if ok {
		c.inflight[id] = struct{}{}
	}
	c.mu.Unlock()
	if dup {
		return fmt.Errorf("relay: %w: request id %d already in flight", api.ErrProtocol, id)
	}
	if ok && c.noMembers(api.OpRequest, id, m.Cluster) {
		c.mu.Lock()
		delete(c.inflight, id)
		c.mu.Unlock()
		c.answers.Add(-1)
		return nil
	}
	if !ok {
		fault := api.Message{Op: api.OpReply, ID: id, Fault: faultTooManyPending}
		c.q.pushControl(&fault)
		return nil
	}
	// The callback may run before Request returns, on this goroutine or on
	// another connection's (a local service replying at once).
	cid := c.srv.node.Request(m.Cluster, m.Payload, timeoutOf(m.TimeoutMs), func(res cluster.Result) {
		c.answer(id, res)
	})
	if c.x.on {
		c.mu.Lock()
		if _, live := c.inflight[id]; live {
			c.x.cluster[id] = cid // for CANCEL
		}
		c.mu.Unlock()
	}
	return nil
}

// answer queues the one REPLY to the app's request id.
func (c *conn) answer(id uint64, res cluster.Result) {
	c.mu.Lock()
	delete(c.inflight, id)
	delete(c.x.cluster, id)
	c.mu.Unlock()
	m := api.Message{Op: api.OpReply, ID: id}
	switch {
	case res.Status == cluster.StatusOK:
		m.Success, m.Payload = true, res.Payload
	case res.Status == cluster.StatusFault && res.Fault != "":
		m.Fault = res.Fault
	default: // a timeout, or a fault without text, which v1 reads as a timeout
		m.TimedOut = true
	}
	ok, fault := c.q.push(&m)
	if !ok {
		c.answers.Add(-1) // the session is over; nobody will take it
	} else if fault != "" {
		c.srv.stats.droppedReplies.Add(1)
		c.srv.warn(c, nil, "reply replaced by a fault: "+fault)
	}
}

// delivery is a request delivered to a service connection, awaiting its
// REPLY until the request's deadline.
type delivery struct {
	slot deadline.Slot // in conn.deadlines while delivered
	id   uint64
	req  *cluster.Request
}

// DeadlineSlot implements deadline.Item.
func (d *delivery) DeadlineSlot() *deadline.Slot { return &d.slot }

// HandleRequest implements cluster.Member: it queues the request for the
// service under the next delivered-request id, or returns false if the
// connection cannot take it now (queue full, too many unanswered requests,
// closing), and the cluster places it elsewhere. It never blocks.
func (c *conn) HandleRequest(r *cluster.Request) bool { return c.deliver(r, api.OpRequest) }

// deliver queues a request or survey question (op) for the service.
func (c *conn) deliver(r *cluster.Request, op api.Opcode) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing.Load() || len(c.delivered) >= c.srv.cfg.MaxPendingRequests {
		c.srv.stats.refused.Add(1)
		return false
	}
	id := c.lastDelivered + 1
	m := api.Message{Op: op, ID: id, Payload: r.Payload, TimeoutMs: r.TimeoutMs}
	if !c.q.offer(&m, kindDelivery) {
		c.srv.stats.refused.Add(1)
		return false
	}
	c.lastDelivered = id
	d := &delivery{id: id, req: r}
	c.delivered[id] = d
	c.deadlines.Add(d, r.Deadline)
	return true
}

// expire abandons the delivered requests whose deadline has passed; a later
// REPLY to one is dropped. The deadline Set's timer calls it.
func (c *conn) expire() {
	c.mu.Lock()
	due := c.deadlines.Expired(time.Now(), nil)
	for _, d := range due {
		delete(c.delivered, d.id)
	}
	c.mu.Unlock()
	for _, d := range due {
		c.srv.stats.expired.Add(1)
		d.req.Abandon()
	}
}

// handleReply ends a request delivered to this service. A reply to an id
// that was issued but is no longer pending (it expired) is dropped; one to
// an id never issued breaks the protocol.
func (c *conn) handleReply(m *api.Message) error {
	c.mu.Lock()
	d := c.delivered[m.ID]
	if d != nil {
		delete(c.delivered, m.ID)
		c.deadlines.Remove(d)
	}
	issued := m.ID != 0 && m.ID <= c.lastDelivered
	c.mu.Unlock()
	switch {
	case d != nil:
		if m.Success {
			d.req.Reply(m.Payload)
		} else {
			d.req.Fail(m.Fault) // "" reads as a timeout to the requester
		}
	case issued:
		c.srv.stats.lateReplies.Add(1)
	default:
		return fmt.Errorf("relay: %w: reply to request %d, which was never delivered", api.ErrProtocol, m.ID)
	}
	return nil
}

// HandleBroadcast implements cluster.Member: it queues the broadcast, or
// drops and counts it when the app is not keeping up. It never blocks.
func (c *conn) HandleBroadcast(msg []byte) {
	if c.closing.Load() {
		return
	}
	m := api.Message{Op: api.OpBroadcast, Payload: msg}
	if !c.q.offer(&m, kindBulk) {
		c.srv.stats.droppedBroadcasts.Add(1)
		c.slowConsumer()
	}
}

// slowConsumer warns, once per connection and rate-limited, that the app
// does not keep up and its broadcasts or events are being dropped.
func (c *conn) slowConsumer() {
	if !c.slow.Swap(true) {
		c.srv.warn(c, nil, "slow consumer: dropping broadcasts and events for this app")
	}
}

// topicSub is one subscription of a connection. Each SUBSCRIBE gets its own,
// so an event still on its way through an old subscription is told apart
// from the current one.
type topicSub struct {
	c      *conn
	sub    *cluster.Subscription
	active atomic.Bool
}

// HandleEvent implements cluster.Subscriber: it queues the event, or drops
// and counts it when the app is not keeping up. Past the queue's high
// water it waits, at most stallMax, for the writer (pressure.go).
func (ts *topicSub) HandleEvent(topic string, event []byte) {
	ts.handle(topic, event)
}

// HandleTransientEvent implements cluster.TransientSubscriber (see
// eventSink's).
func (ts *topicSub) HandleTransientEvent(topic string, event []byte) {
	ts.handle(topic, keptEvent(event))
}

func (ts *topicSub) handle(topic string, event []byte) {
	if !ts.active.Load() {
		return // unsubscribed: the cluster may still be finishing a delivery
	}
	m := api.Message{Op: api.OpPublish, Topic: topic, Payload: event}
	ok, waited := ts.c.q.offerPub(&m, false)
	if waited {
		ts.c.srv.stats.publisherStalls.Add(1)
	}
	if !ok {
		ts.c.srv.stats.droppedEvents.Add(1)
		ts.c.slowConsumer()
	}
}

// close ends the subscription: no event is queued afterwards.
func (ts *topicSub) close() {
	ts.active.Store(false)
	ts.sub.Close()
}

// handleSubscribe subscribes the connection to topic; subscribing twice is
// the same as once. A topic the cluster refuses as a name (the empty one)
// is ignored: SUBSCRIBE has no answer to carry an error. A subscription
// beyond the app's MaxAppInterest or the daemon's interest table limit
// ends the session with CLOSE and the reason (v1.0 has no other way to
// tell the app); the app's other subscriptions go with it, and other apps
// are unaffected.
func (c *conn) handleSubscribe(topic string) error {
	return c.subscribe(topic, func(ts *topicSub) (*cluster.Subscription, error) {
		return c.srv.node.Subscribe(topic, ts)
	})
}

// subscribe subscribes the connection to topic with join, within the
// app's (MaxAppInterest) and the daemon's interest limits; past either it
// returns the refusal that ends the session. A topic already subscribed is
// left as it is.
func (c *conn) subscribe(topic string, join func(*topicSub) (*cluster.Subscription, error)) error {
	c.mu.Lock()
	_, dup := c.subs[topic]
	cost := len(topic) + cluster.InterestEntryCost
	over := !dup && c.interest+cost > c.srv.cfg.MaxAppInterest
	c.mu.Unlock()
	if dup {
		return nil
	}
	if over {
		c.srv.stats.interestRefused.Add(1)
		return &refusal{
			reason: fmt.Sprintf("iris: subscriptions exceed this app's limit of %d bytes of topic names (-max-app-interest)", c.srv.cfg.MaxAppInterest),
			err:    errAppInterest,
		}
	}
	ts := &topicSub{c: c}
	ts.active.Store(true)
	sub, err := join(ts)
	if errors.Is(err, cluster.ErrInterestFull) {
		c.srv.stats.interestRefused.Add(1)
		return &refusal{reason: reasonInterestFull, err: err}
	}
	if err != nil {
		c.log.Debug().Err(err).Msg("subscribe refused")
		return nil
	}
	ts.sub = sub
	c.mu.Lock()
	if c.subs == nil { // leave ran meanwhile
		c.mu.Unlock()
		ts.close()
		return nil
	}
	c.subs[topic] = ts
	c.interest += cost
	c.mu.Unlock()
	return nil
}

// reasonInterestFull is the CLOSE or DENY reason when the daemon's interest
// table is full.
const reasonInterestFull = "iris: the daemon's table of services and subscriptions is full (-max-interest)"

// errAppInterest ends a session whose subscriptions exceed MaxAppInterest.
var errAppInterest = errors.New("relay: app subscriptions over MaxAppInterest")

// handleUnsubscribe ends the subscription to topic, if any. Events
// published after it (by this app or, as far as this daemon can tell, any
// other) are not delivered.
func (c *conn) handleUnsubscribe(topic string) {
	c.mu.Lock()
	ts := c.subs[topic]
	if ts != nil {
		delete(c.subs, topic)
		c.interest -= len(topic) + cluster.InterestEntryCost
	}
	c.mu.Unlock()
	if ts != nil {
		ts.close()
	}
}
