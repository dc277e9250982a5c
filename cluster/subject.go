package cluster

import (
	"reflect"
	"slices"
)

// SubscribeSubject subscribes s to subject, a topic that may have wildcard
// tokens ("*" one token, ">" one or more trailing tokens; see sublist.go).
// A subject without wildcards is the same subscription as Subscribe's. It
// takes effect like Subscribe: locally at once, elsewhere once the table
// update reaches the other daemons (see Confirm). Events reach s with the
// topic they were published to. When several subscriptions of the same
// Subscriber (compared with ==, if its type is comparable) match an event,
// s gets it once; every daemon with matching patterns gets one copy.
func (n *Node) SubscribeSubject(subject string, s Subscriber) (*Subscription, error) {
	if err := validSubject(subject); err != nil {
		return nil, err
	}
	if !isPattern(subject) {
		return n.Subscribe(subject, s)
	}
	sub := &subscription{s: s, topic: subject, pattern: true, key: keyOf(s)}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, ErrClosed
	}
	cowAdd(n.pats, subject, sub)
	n.psubs.insert(subject, sub)
	n.markDirtyLocked()
	return &Subscription{n: n, sub: sub}, nil
}

// keyOf is the key subscriptions are told apart by when several match one
// event: the Subscriber itself if it can be compared, else nil (never
// merged).
func keyOf(s Subscriber) any {
	if s == nil || !reflect.TypeOf(s).Comparable() {
		return nil
	}
	return s
}

// closePatternLocked ends a pattern subscription. n.mu must be held.
func (n *Node) closePatternLocked(sub *subscription) {
	if cowRemove(n.pats, sub.topic, sub) {
		n.psubs.remove(sub.topic, sub)
		n.markDirtyLocked()
	}
}

// matchLocalLocked adds to subs (the exact subscribers of topic, a copy on
// write slice left untouched) the local pattern subscriptions topic
// matches, each Subscriber once. n.mu must be held.
func (n *Node) matchLocalLocked(topic string, subs []*subscription) []*subscription {
	if n.psubs.n == 0 {
		return subs
	}
	k := len(subs)
	subs = n.psubs.match(topic, slices.Clip(subs))
	if len(subs) == k {
		return subs
	}
	// subs is a new array: compact it in place, keeping the first
	// subscription of each Subscriber.
	out := subs[:0]
	for i, s := range subs {
		dup := false
		if s.key != nil {
			for _, o := range subs[:i] {
				if o.key == s.key {
					dup = true
					break
				}
			}
		}
		if !dup {
			out = append(out, s)
		}
	}
	return out
}

// matchRemoteLocked adds to remotes (the daemons with exact subscribers of
// topic, left untouched) the daemons with patterns topic matches, each
// daemon once. n.mu must be held.
func (n *Node) matchRemoteLocked(topic string, remotes []*remoteNode) []*remoteNode {
	if n.rpats.n == 0 {
		return remotes
	}
	k := len(remotes)
	remotes = n.rpats.match(topic, slices.Clip(remotes))
	if len(remotes) == k {
		return remotes
	}
	out := remotes[:0]
	for i, r := range remotes {
		if !slices.Contains(remotes[:i], r) {
			out = append(out, r)
		}
	}
	return out
}

// repatternLocked replaces the patterns of remote r from table old by those
// of table t (either may be nil) in the remote pattern trie.
func (n *Node) repatternLocked(r *remoteNode, old, t *table) {
	var oldP, newP map[string]uint32
	if old != nil {
		oldP = old.Patterns
	}
	if t != nil {
		newP = t.Patterns
	}
	for p, c := range oldP {
		if c > 0 && newP[p] == 0 {
			n.rpats.remove(p, r)
		}
	}
	for p, c := range newP {
		if c > 0 && oldP[p] == 0 {
			n.rpats.insert(p, r)
		}
	}
}
