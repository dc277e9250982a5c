package sdk

import (
	"context"
	"errors"
	"fmt"

	"github.com/iris-mesh/iris/api"
)

// Errors of Subscribe and Unsubscribe.
var (
	// ErrSubscribed is returned by Subscribe for a topic the connection is
	// already subscribed to.
	ErrSubscribed = errors.New("sdk: already subscribed")
	// ErrNotSubscribed is returned by Unsubscribe for a topic the
	// connection is not subscribed to.
	ErrNotSubscribed = errors.New("sdk: not subscribed")
)

// TopicHandler receives the events published to a subscribed topic.
type TopicHandler interface {
	// HandleEvent handles one event. It is called by up to
	// TopicLimits.EventThreads goroutines at once; a panic is recovered and
	// logged. The event slice belongs to the handler.
	HandleEvent(event []byte)
}

// TopicHandlerFunc adapts a function to the TopicHandler interface.
type TopicHandlerFunc func(event []byte)

// HandleEvent calls f(event).
func (f TopicHandlerFunc) HandleEvent(event []byte) { f(event) }

// Broadcast sends message to every member of cluster, this connection
// included if it is a member. It returns once the message is queued for
// sending (message may then be reused); delivery is best effort and
// nothing is returned by the members. It blocks only while the send queue
// is full, until ctx ends.
func (c *Conn) Broadcast(ctx context.Context, cluster string, message []byte) error {
	if err := c.checkSend("broadcast", cluster, len(message)); err != nil {
		return err
	}
	return c.send(ctx, &api.Message{Op: api.OpBroadcast, Cluster: cluster, Payload: message})
}

// Publish sends event to every subscriber of topic, this connection
// included if it is subscribed. It returns once the event is queued for
// sending (event may then be reused); delivery is best effort. The daemon
// keeps each connection's publishes in order. It blocks only while the send
// queue is full, until ctx ends.
func (c *Conn) Publish(ctx context.Context, topic string, event []byte) error {
	if err := c.checkSend("publish", topic, len(event)); err != nil {
		return err
	}
	return c.send(ctx, &api.Message{Op: api.OpPublish, Topic: topic, Payload: event})
}

// Subscribe subscribes the connection to topic: the events published there
// from then on are passed to handler, within limits (nil means
// DefaultTopicLimits). The handler is in place before the subscription is
// sent. The daemon does not acknowledge subscriptions, so an event published
// right after Subscribe returns may still miss it.
func (c *Conn) Subscribe(ctx context.Context, topic string, handler TopicHandler, limits *TopicLimits) error {
	if handler == nil {
		return errors.New("sdk: subscribe: nil handler")
	}
	lim, err := resolveTopicLimits(limits)
	if err != nil {
		return err
	}
	if err := c.checkSend("subscribe", topic, 0); err != nil {
		return err
	}
	p := newPool(lim.EventThreads, lim.EventMemory, &c.handlers, func(d *delivery) {
		defer c.recoverHandler("event")
		handler.HandleEvent(d.payload)
	})
	c.mu.Lock()
	if err := c.checkOpenLocked(); err != nil {
		c.mu.Unlock()
		return err
	}
	if _, dup := c.subs[topic]; dup {
		c.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrSubscribed, topic)
	}
	c.subs[topic] = p
	c.mu.Unlock()
	if err := c.send(ctx, &api.Message{Op: api.OpSubscribe, Topic: topic}); err != nil {
		c.removeSub(topic, p)
		return err
	}
	return nil
}

// Unsubscribe ends the subscription to topic. Events still queued for its
// handler are discarded; handlers already running are not interrupted.
func (c *Conn) Unsubscribe(ctx context.Context, topic string) error {
	c.mu.Lock()
	if err := c.checkOpenLocked(); err != nil {
		c.mu.Unlock()
		return err
	}
	p, ok := c.subs[topic]
	delete(c.subs, topic)
	c.mu.Unlock()
	if !ok {
		return fmt.Errorf("%w: %q", ErrNotSubscribed, topic)
	}
	p.close()
	return c.send(ctx, &api.Message{Op: api.OpUnsubscribe, Topic: topic})
}

// removeSub removes and closes the subscription p of topic, if it is still
// the current one.
func (c *Conn) removeSub(topic string, p *pool) {
	c.mu.Lock()
	if c.subs[topic] == p {
		delete(c.subs, topic)
	}
	c.mu.Unlock()
	p.close()
}

// handlePublish queues a delivered event for its subscription's handler.
func (c *Conn) handlePublish(m *api.Message) {
	c.mu.Lock()
	p := c.subs[m.Topic]
	c.mu.Unlock()
	if p == nil || !p.push(delivery{payload: m.Payload}) {
		c.stats.eventsDropped.Add(1)
	}
}
