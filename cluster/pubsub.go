package cluster

import "github.com/iris-mesh/iris/overlay"

// Subscriber receives the events of a topic. HandleEvent is called from
// daemon goroutines (a local publisher's, a link's reader) with no lock
// held. It must not block for long: it may wait briefly for room, which
// slows the publisher or the link, but drops and counts what it cannot
// queue.
type Subscriber interface {
	HandleEvent(topic string, event []byte)
}

// A TransientSubscriber is a Subscriber that copies what it keeps of an
// event: PublishTransient hands it events that are valid only during
// HandleTransientEvent, where other Subscribers get a copy of their own.
type TransientSubscriber interface {
	Subscriber
	HandleTransientEvent(topic string, event []byte)
}

type subscription struct {
	s       Subscriber
	topic   string
	pattern bool // a wildcard subject (SubscribeSubject)
	key     any  // tells apart the subscribers of one event (keyOf)
}

// Subscription is a Subscriber's interest in one topic.
type Subscription struct {
	n   *Node
	sub *subscription
}

// Subscribe delivers every event published to topic, anywhere in the
// network, to s. It takes effect locally at once and on other daemons once
// the table update reaches them.
func (n *Node) Subscribe(topic string, s Subscriber) (*Subscription, error) {
	if err := validName(topic); err != nil {
		return nil, err
	}
	sub := &subscription{s: s, topic: topic, key: keyOf(s)}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, ErrClosed
	}
	if _, ok := n.subs[topic]; !ok {
		if err := n.addInterestLocked(topic, true); err != nil {
			return nil, err
		}
	}
	cowAdd(n.subs, topic, sub)
	n.markDirtyLocked()
	return &Subscription{n: n, sub: sub}, nil
}

// Close ends the subscription: no delivery is started after Close returns,
// but one already under way on another goroutine may still reach the
// subscriber just after; a subscriber that must not see any drops them.
// Idempotent.
func (s *Subscription) Close() {
	n := s.n
	n.mu.Lock()
	defer n.mu.Unlock()
	if s.sub.pattern {
		n.closePatternLocked(s.sub)
		return
	}
	if cowRemove(n.subs, s.sub.topic, s.sub) {
		if _, ok := n.subs[s.sub.topic]; !ok {
			n.interest -= interestCost(s.sub.topic)
			n.topicInterest -= interestCost(s.sub.topic)
		}
		n.markDirtyLocked()
	}
}

// Broadcast delivers msg to every member of cluster: local members directly,
// and one copy to each other daemon with members, which fans it out. The
// caller must not modify msg afterwards.
func (n *Node) Broadcast(cluster string, msg []byte) {
	n.mu.RLock()
	t := n.clusters[cluster]
	ov := n.ov
	n.mu.RUnlock()
	if t == nil {
		return
	}
	n.stats.broadcastsOut.Add(1)
	for _, m := range t.local {
		m.m.HandleBroadcast(msg)
	}
	if len(t.near)+len(t.far) == 0 {
		return
	}
	head := n.heads.get(fBroadcast, cluster)
	for _, ts := range [][]remoteTarget{t.near, t.far} {
		for i := range ts {
			if ov.SendIfUp(ts[i].node.id, overlay.Bulk, head, msg) != nil {
				n.stats.dropped.Add(1)
			}
		}
	}
}

// Publish delivers event to every subscriber of topic, and of a subject
// pattern topic matches: local ones directly and one copy to each other
// daemon with subscribers. The caller must not modify event afterwards.
// When the link to such a daemon is backlogged, Publish waits for it
// briefly (overlay.WaitBacklog), so a publisher slows rather than lose
// events.
func (n *Node) Publish(topic string, event []byte) {
	n.publish(topic, event, false)
}

// PublishTransient is Publish for an event that is valid only during the
// call (a slice of a connection's read buffer): TransientSubscribers get it
// as it is, and what is kept beyond the call (the other subscribers'
// events, the frames to other daemons) is one copy of it.
func (n *Node) PublishTransient(topic string, event []byte) {
	n.publish(topic, event, true)
}

func (n *Node) publish(topic string, event []byte, transient bool) {
	n.mu.RLock()
	subs, remotes := n.matchLocked(topic)
	ov := n.ov
	n.mu.RUnlock()
	n.stats.publishesOut.Add(1)
	ec := eventCopy{event: event, transient: transient}
	ec.deliver(subs, topic)
	if len(remotes) == 0 {
		return
	}
	head := n.heads.get(fPublish, topic)
	cs, copies := ov.(copySender)
	if copies = copies && transient; !copies {
		event = ec.kept()
	}
	for _, r := range remotes {
		var err error
		if copies {
			err = cs.SendIfUpCopy(r.id, overlay.Bulk, head, event)
		} else {
			err = ov.SendIfUp(r.id, overlay.Bulk, head, event)
		}
		if err != nil {
			n.stats.dropped.Add(1)
			n.stats.eventsDropped.Add(1)
		}
	}
	// The publisher (an app's read loop) slows to the links' pace rather
	// than have its next events dropped; bounded (overlay.MaxSendWait).
	if w, ok := ov.(backlogWaiter); ok {
		for _, r := range remotes {
			w.WaitBacklog(r.id)
		}
	}
}

// copySender is the part of *overlay.Overlay PublishTransient uses to
// queue a transient event for other daemons without a copy of its own:
// the overlay copies it into its send blocks.
type copySender interface {
	SendIfUpCopy(id string, prio overlay.Priority, head, body []byte) error
}

// backlogWaiter is the part of *overlay.Overlay Publish uses to wait for a
// backlogged link; an Overlay without it never makes publishers wait.
type backlogWaiter interface{ WaitBacklog(id string) bool }

func (n *Node) handleBroadcast(rd *reader) error {
	cluster := rd.name()
	msg := rd.rest()
	if rd.err != nil {
		return rd.err
	}
	n.mu.RLock()
	ms := n.local[string(cluster)]
	n.mu.RUnlock()
	for _, m := range ms {
		m.m.HandleBroadcast(msg)
	}
	return nil
}

// eventCopy is an event and, when it is transient (valid only during the
// call that handed it over), the one copy made of it for what keeps it.
type eventCopy struct {
	event, owned []byte
	transient    bool
}

// kept returns the event as what keeps it may: itself, or its copy.
func (e *eventCopy) kept() []byte {
	if !e.transient {
		return e.event
	}
	if e.owned == nil {
		e.owned = append(make([]byte, 0, len(e.event)), e.event...)
	}
	return e.owned
}

// deliver hands the event to subs: a transient one as it is to
// TransientSubscribers, and kept() to the others.
func (e *eventCopy) deliver(subs []*subscription, topic string) {
	for _, s := range subs {
		if ts, ok := s.s.(TransientSubscriber); ok && e.transient {
			ts.HandleTransientEvent(topic, e.event)
		} else {
			s.s.HandleEvent(topic, e.kept())
		}
	}
}

func (n *Node) handlePublish(rd *reader, transient bool) error {
	topic := rd.name()
	event := rd.rest()
	if rd.err != nil {
		return rd.err
	}
	n.mu.RLock()
	subs := n.subs[string(topic)]
	name := ""
	if len(subs) > 0 {
		name = subs[0].topic // the topic as a string, without a copy
	}
	if n.psubs.n > 0 {
		if name == "" {
			name = string(topic)
		}
		subs = n.matchLocalLocked(name, subs)
	}
	n.mu.RUnlock()
	if len(subs) == 0 {
		return nil
	}
	ec := eventCopy{event: event, transient: transient}
	ec.deliver(subs, name)
	return nil
}
