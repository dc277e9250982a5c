package sdk

import (
	"context"
	"errors"
	"fmt"

	"github.com/iris-mesh/iris/api"
)

// ErrBadSubject is returned (wrapped) by Subscribe in a v1.1 session for a
// subject with an empty token ("a..b", ".a", "a.") or a misplaced wildcard
// ("a*", "a.>.b"). It is api.ErrBadSubject.
var ErrBadSubject = api.ErrBadSubject

// SubscribeResult is what SubscribeAcked tells of a subscription.
type SubscribeResult struct {
	// Confirmed is true when the daemon acknowledged the subscription (a
	// daemon that speaks protocol v1.1): it was in place on every daemon
	// of the network when SubscribeAcked returned, except Unconfirmed.
	// False with an older daemon, which does not acknowledge
	// subscriptions.
	Confirmed bool
	// Unconfirmed lists the ids of the daemons that had not confirmed the
	// subscription when the daemon stopped waiting for them (after
	// about 2 s): an event published there right after SubscribeAcked
	// returned may miss it. Daemons that predate v1.1 never confirm.
	Unconfirmed []string
}

// SubscribeAcked subscribes the connection to topic like Subscribe and
// tells whether the daemons confirmed it.
//
// In a v1.1 session topic is a subject: dot-separated tokens where "*"
// matches exactly one token and ">", as the last token, one or more
// ("news.*" matches "news.sport"; "news.>" also "news.sport.local"); a
// subject without wildcards is an exact topic. Each subscription whose
// subject matches an event's topic gets the event, so an event matching
// two of the connection's subscriptions reaches both handlers (each
// handler gets its own copy of the slice); the daemon sends it over the
// connection once. Handlers that implement SubjectHandler are told the
// topic each event was published to. SubscribeAcked returns once the
// daemon answers that every daemon alive knows the subscription.
//
// With a daemon that predates v1.1 (or an early v1.1 daemon, whose INIT
// answer lacks api.InitInfo.Subjects) topic is an exact name (a
// subscription to "news.*" is to that literal topic) and SubscribeAcked
// returns once the subscription is sent, with Confirmed false.
func (c *Conn) SubscribeAcked(ctx context.Context, topic string, handler TopicHandler, limits *TopicLimits) (SubscribeResult, error) {
	if handler == nil {
		return SubscribeResult{}, errors.New("sdk: subscribe: nil handler")
	}
	lim, err := resolveTopicLimits(limits)
	if err != nil {
		return SubscribeResult{}, err
	}
	if err := c.checkSend("subscribe", topic, 0); err != nil {
		return SubscribeResult{}, err
	}
	if c.x.subjects {
		if err := api.ValidSubject(topic); err != nil {
			return SubscribeResult{}, fmt.Errorf("sdk: subscribe: %w", err)
		}
	}
	run := func(d *delivery) {
		defer c.recoverHandler("event")
		if sh, ok := handler.(SubjectHandler); ok {
			sh.HandleSubjectEvent(d.topic, d.payload)
			return
		}
		handler.HandleEvent(d.payload)
	}
	p := newPool(lim.EventThreads, lim.EventMemory, &c.handlers, run)
	if c.cfg.OnGap != nil {
		p.onLost = func(n uint64) { c.cfg.OnGap(Gap{Topic: topic, Lost: n}) }
	}
	var ack chan []string
	c.mu.Lock()
	if err := c.checkOpenLocked(); err != nil {
		c.mu.Unlock()
		return SubscribeResult{}, err
	}
	if _, dup := c.subs[topic]; dup {
		c.mu.Unlock()
		return SubscribeResult{}, fmt.Errorf("%w: %q", ErrSubscribed, topic)
	}
	c.subs[topic] = p
	if c.x.subjects {
		if api.IsPattern(topic) {
			c.x.patterns[topic] = struct{}{}
		}
		ack = make(chan []string, 1)
		c.x.subAcks[topic] = append(c.x.subAcks[topic], ack)
	}
	c.mu.Unlock()
	if err := c.send(ctx, &api.Message{Op: api.OpSubscribe, Topic: topic}); err != nil {
		if ack != nil {
			c.dropAck(topic, ack)
		}
		c.removeSub(topic, p)
		return SubscribeResult{}, err
	}
	if ack == nil {
		return SubscribeResult{}, nil
	}
	select {
	case u := <-ack:
		return SubscribeResult{Confirmed: true, Unconfirmed: u}, nil
	case <-ctx.Done():
		// The subscription stays: it may well be in place already.
		return SubscribeResult{}, fmt.Errorf("sdk: subscribe: waiting for the daemons to confirm: %w", ctx.Err())
	case <-c.deadCh:
		return SubscribeResult{}, c.Err()
	}
}

// SubjectHandler is implemented by a TopicHandler that wants the topic each
// event was published to, which differs from the subscribed subject when
// it has wildcards. SubscribeAcked checks for it with a type assertion and
// then calls HandleSubjectEvent instead of HandleEvent.
type SubjectHandler interface {
	// HandleSubjectEvent handles one event published to topic. The event
	// slice belongs to the handler.
	HandleSubjectEvent(topic string, event []byte)
}

// dropAck forgets the wait of a SUBSCRIBE that was never sent.
func (c *Conn) dropAck(topic string, ack chan []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	q := c.x.subAcks[topic]
	for i, a := range q {
		if a == ack {
			q = append(q[:i:i], q[i+1:]...)
			break
		}
	}
	if len(q) == 0 {
		delete(c.x.subAcks, topic)
	} else {
		c.x.subAcks[topic] = q
	}
}

// handleSubscribed answers the oldest Subscribe of the topic waiting for it.
func (c *Conn) handleSubscribed(m *api.Message) {
	c.mu.Lock()
	q := c.x.subAcks[m.Topic]
	var ack chan []string
	if len(q) > 0 {
		ack = q[0]
		if len(q) == 1 {
			delete(c.x.subAcks, m.Topic)
		} else {
			c.x.subAcks[m.Topic] = q[1:]
		}
	}
	c.mu.Unlock()
	if ack == nil {
		c.stats.ignored.Add(1)
		return
	}
	ack <- m.Daemons // buffered: never blocks
}

// handleGap counts events the daemon dropped for the connection and tells
// Config.OnGap.
func (c *Conn) handleGap(n uint64) {
	c.stats.gapNotices.Add(1)
	c.stats.eventsLost.Add(n)
	if c.cfg.OnGap != nil && n > 0 {
		c.cfg.OnGap(Gap{Lost: n})
	}
}

// routeEvent hands an event of a v1.1 session to every subscription whose
// subject matches its topic: the exact one, then the wildcard ones.
func (c *Conn) routeEvent(m *api.Message) {
	var ps []*pool
	c.mu.Lock()
	if p := c.subs[m.Topic]; p != nil {
		ps = append(ps, p)
	}
	for pat := range c.x.patterns {
		if pat != m.Topic && api.MatchSubject(pat, m.Topic) {
			if p := c.subs[pat]; p != nil {
				ps = append(ps, p)
			}
		}
	}
	c.mu.Unlock()
	if len(ps) == 0 {
		// Unsubscribed meanwhile: the daemon may still have been
		// delivering it.
		c.stats.eventsDropped.Add(1)
		return
	}
	for i, p := range ps {
		payload := m.Payload
		if i > 0 {
			payload = append([]byte(nil), m.Payload...)
		}
		if !p.push(delivery{payload: payload, topic: m.Topic}) {
			c.stats.eventsDropped.Add(1)
		}
	}
}
