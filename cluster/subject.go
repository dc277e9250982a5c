package cluster

import (
	"hash/maphash"
	"maps"
	"reflect"
	"slices"
	"sync/atomic"
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
	if _, ok := n.pats[subject]; !ok {
		if err := n.addInterestLocked(subject, true); err != nil {
			return nil, err
		}
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
		if _, ok := n.pats[sub.topic]; !ok {
			n.interest -= interestCost(sub.topic)
			n.topicInterest -= interestCost(sub.topic)
		}
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
	n.invalidateLocked()
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

// matchCacheSize is the number of topics whose match results a node keeps
// (direct-mapped by hash): publishers reuse their topics, and a hit costs
// a hash and a compare rather than a walk of the trie.
const matchCacheSize = 4096

// matchCache caches the full match results of published topics (exact and
// pattern subscribers, local and remote) while patterns exist. Entries are
// immutable and tagged with the generation they were computed in; every
// change to what a topic may match bumps gen (under n.mu.Lock), which
// invalidates them all. Publish reads and fills it under n.mu.RLock.
type matchCache struct {
	seed    maphash.Seed
	gen     atomic.Uint64
	entries [matchCacheSize]atomic.Pointer[matchEntry]
}

type matchEntry struct {
	gen     uint64
	topic   string
	subs    []*subscription
	remotes []*remoteNode
}

func newMatchCache() *matchCache { return &matchCache{seed: maphash.MakeSeed()} }

// invalidateLocked drops every cached result. n.mu must be held for
// writing.
func (n *Node) invalidateLocked() { n.mcache.gen.Add(1) }

// matchLocked returns the local subscriptions and the remote daemons an
// event published to topic goes to. n.mu must be held (read).
func (n *Node) matchLocked(topic string) ([]*subscription, []*remoteNode) {
	if n.psubs.n+n.rpats.n == 0 {
		return n.subs[topic], n.topics[topic]
	}
	c := n.mcache
	gen := c.gen.Load()
	slot := &c.entries[maphash.String(c.seed, topic)%matchCacheSize]
	e := slot.Load()
	if e != nil && e.gen == gen && e.topic == topic {
		return e.subs, e.remotes
	}
	subs := n.matchLocalLocked(topic, n.subs[topic])
	remotes := n.matchRemoteLocked(topic, n.topics[topic])
	if e == nil || e.gen != gen {
		// A slot is filled once per generation and never evicted within
		// it: when topics outnumber the slots, the topics cached first
		// keep theirs and the others pay the walk (bounded by the
		// topic's depth), not an allocation per publish.
		slot.Store(&matchEntry{gen: gen, topic: topic, subs: subs, remotes: remotes})
	}
	return subs, remotes
}

// SubjectStats counts subjects and confirmations (issue 10).
type SubjectStats struct {
	Patterns       int    // wildcard subscriptions on this daemon
	RemotePatterns int    // wildcard subjects of other daemons, one per daemon and subject
	EventsDropped  uint64 // event copies to other daemons dropped: the link's queue was full
	Unconfirmed    uint64 // Confirm waits that ended with daemons that had not confirmed
}

// SubjectStats returns the node's subject counters.
func (n *Node) SubjectStats() SubjectStats {
	n.mu.RLock()
	p, rp := n.psubs.n, n.rpats.n
	n.mu.RUnlock()
	return SubjectStats{Patterns: p, RemotePatterns: rp,
		EventsDropped: n.stats.eventsDropped.Load(), Unconfirmed: n.stats.unconfirmed.Load()}
}

// patternStatusLocked lists the wildcard subjects known here, sorted, for
// Topics. n.mu must be held.
func (n *Node) patternStatusLocked() []TopicStatus {
	byName := map[string]*TopicStatus{}
	get := func(name string) *TopicStatus {
		t := byName[name]
		if t == nil {
			t = &TopicStatus{Name: name, Remote: []string{}, Pattern: true}
			byName[name] = t
		}
		return t
	}
	for name, ss := range n.pats {
		get(name).LocalSubscribers = len(ss)
	}
	for _, r := range n.remotes {
		if r.tbl == nil {
			continue
		}
		for name, c := range r.tbl.Patterns {
			if c > 0 {
				t := get(name)
				t.Remote = append(t.Remote, r.id)
			}
		}
	}
	out := make([]TopicStatus, 0, len(byName))
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		t := byName[name]
		slices.Sort(t.Remote)
		out = append(out, *t)
	}
	return out
}
