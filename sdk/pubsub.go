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
// DefaultTopicLimits). It is SubscribeAcked without its result: with a
// daemon that speaks protocol v1.1 it returns once every daemon of the
// network knows the subscription (or a bounded wait ended), so an event
// published anywhere after it returns reaches handler; topic may then be a
// subject with wildcards ("news.*", "news.>"). With an older daemon it
// returns once the subscription is sent, and an event published right
// after may still miss it.
func (c *Conn) Subscribe(ctx context.Context, topic string, handler TopicHandler, limits *TopicLimits) error {
	_, err := c.SubscribeAcked(ctx, topic, handler, limits)
	return err
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
	if c.x.on {
		delete(c.x.patterns, topic)
	}
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
		if c.x.on {
			delete(c.x.patterns, topic)
		}
	}
	c.mu.Unlock()
	p.close()
}

// handlePublish queues a delivered event for its subscription's handler:
// in a v1.1 session, for the handler of every subscription whose subject
// matches the event's topic (subs.go).
func (c *Conn) handlePublish(m *api.Message) {
	if c.x.on {
		c.routeEvent(m)
		return
	}
	c.mu.Lock()
	p := c.subs[m.Topic]
	c.mu.Unlock()
	if p == nil || !p.push(delivery{payload: m.Payload, topic: m.Topic}) {
		c.stats.eventsDropped.Add(1)
	}
}
