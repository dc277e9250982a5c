package relay

import (
	"fmt"

	"github.com/iris-mesh/iris/api"
	"github.com/iris-mesh/iris/cluster"
)

// Subscriptions of protocol v1.1 sessions (issue 10): acknowledged
// SUBSCRIBEs and registrations, wildcard subjects, and GAP notices. A
// v1.0-draft2 session never reaches this code: its subscriptions are exact
// topics, unacknowledged, and its lost events are only counted.

// eventSink is the one cluster.Subscriber of all the subscriptions of a v1.1
// connection: the cluster hands it each event once, however many of the
// connection's subjects match, with the topic the event was published to.
// The SDK passes it to every subscription of the app that matches.
type eventSink struct{ c *conn }

// HandleEvent implements cluster.Subscriber: it queues the event, or drops
// it and counts it for the next GAP when the app is not keeping up. Past
// the queue's high water it waits, at most stallMax, for the writer
// (pressure.go).
func (s *eventSink) HandleEvent(topic string, event []byte) {
	s.handle(topic, event)
}

// HandleTransientEvent implements cluster.TransientSubscriber: an event
// smaller than directWriteSize is copied into the send queue's slab, and
// a larger one is copied here.
func (s *eventSink) HandleTransientEvent(topic string, event []byte) {
	s.handle(topic, keptEvent(event))
}

func (s *eventSink) handle(topic string, event []byte) {
	c := s.c
	if c.closing.Load() {
		return
	}
	m := api.Message{Op: api.OpPublish, Topic: topic, Payload: event}
	ok, waited := c.q.offerPub(&m, true)
	if waited {
		c.srv.stats.publisherStalls.Add(1)
	}
	if !ok {
		c.srv.stats.droppedEvents.Add(1)
		c.slowConsumer()
	}
}

// subscribeV11 subscribes the connection to subject, then answers SUBSCRIBED
// once every daemon alive knows the subscription, or after ConfirmTimeout
// naming those that had not confirmed it. Subscribing twice is the same as
// once, and is answered too. A subject with an empty token or a misplaced
// wildcard breaks the protocol (the SDK refuses it before sending).
func (c *conn) subscribeV11(subject string) error {
	if err := api.ValidSubject(subject); err != nil {
		return fmt.Errorf("relay: %w: SUBSCRIBE: %v", api.ErrProtocol, err)
	}
	err := c.subscribe(subject, func(*topicSub) (*cluster.Subscription, error) {
		// Events reach a v1.1 connection once, through its sink.
		return c.srv.node.SubscribeSubject(subject, c.x.sink)
	})
	if err != nil {
		return err
	}
	c.confirmThen(func(unconfirmed []string) {
		c.srv.stats.subscribesConfirmed.Add(1)
		if len(unconfirmed) > 0 {
			c.srv.stats.unconfirmed.Add(1)
		}
	}, &api.Message{Op: api.OpSubscribed, Topic: subject})
	return nil
}

// confirmThen queues ans (with Daemons set to those that did not confirm)
// once every daemon alive knows this daemon's interest table as it is now.
// The answer takes an answer slot (MaxPendingRequests), so it is never
// dropped; with none left the read loop waits for the confirmation itself
// and the app stops being read from meanwhile.
func (c *conn) confirmThen(count func([]string), ans *api.Message) {
	m := *ans
	if c.answers.Load() < int64(c.srv.cfg.MaxPendingRequests) {
		c.answers.Add(1)
		c.srv.node.Confirm(c.srv.cfg.ConfirmTimeout, func(unconfirmed []string) {
			count(unconfirmed)
			m.Daemons = unconfirmed
			if ok, _ := c.q.push(&m); !ok {
				c.answers.Add(-1)
			}
		})
		return
	}
	done := make(chan []string, 1)
	c.srv.node.Confirm(c.srv.cfg.ConfirmTimeout, func(u []string) { done <- u })
	m.Daemons = <-done
	count(m.Daemons)
	c.q.pushControl(&m)
}

// confirmRegistration waits, before a v1.1 service's INIT is answered, for
// every daemon alive to know the new member, for at most ConfirmTimeout
// (and half the handshake's own timeout). It returns the daemons that had
// not confirmed it.
func (c *conn) confirmRegistration() []string {
	done := make(chan []string, 1)
	c.srv.node.Confirm(min(c.srv.cfg.ConfirmTimeout, c.srv.cfg.HandshakeTimeout/2), func(u []string) { done <- u })
	u := <-done
	c.srv.stats.registersConfirmed.Add(1)
	if len(u) > 0 {
		c.srv.stats.unconfirmed.Add(1)
	}
	return u
}

// offerEvent queues an event like offer, and when the bulk budget refuses
// it, counts it for the connection's next GAP (v1.1 sessions): the writer
// sends GAP(count) after the messages it takes next, so the notice is never
// dropped and counts coalesce while the app does not read.
func (q *sendQueue) offerEvent(m *api.Message) bool {
	q.mu.Lock()
	ok := q.offerLocked(m, kindBulk)
	if !ok && q.state == queueOpen {
		q.gap++
		if q.gap == 1 {
			// Wake the writer even if nothing is queued (the budget, not
			// the queue, refused the event), so the GAP goes out.
			signal(q.wakeCh)
		}
	}
	q.mu.Unlock()
	return ok
}

// takeGapLocked appends to batch the GAP of the events dropped since the
// last one, if any. q.mu must be held.
func (q *sendQueue) takeGapLocked(batch []outMsg) []outMsg {
	if q.gap == 0 {
		return batch
	}
	batch = append(batch, outMsg{msg: api.Message{Op: api.OpGap, Size: q.gap}, kind: kindControl})
	q.gap = 0
	if q.gapStat != nil {
		q.gapStat.Add(1)
	}
	return batch
}

// keptEvent returns an event that is valid only during the call as the
// send queue may keep it: the event itself when the queue copies it into
// its slab (offerPub), else a copy.
func keptEvent(event []byte) []byte {
	if len(event) < directWriteSize {
		return event
	}
	return append(make([]byte, 0, len(event)), event...)
}
