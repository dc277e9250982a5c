package cluster

import (
	"maps"
	"slices"
)

// ClusterStatus describes one cluster as this daemon sees it.
type ClusterStatus struct {
	Name         string         `json:"name"`
	LocalMembers int            `json:"local_members"`
	Remote       map[string]int `json:"remote"` // daemon id → members there
	// Members names every member known here, by daemon then name
	// (members of daemons that predate v1.1 have no names).
	Members []MemberInfo `json:"members,omitempty"`
}

// TopicStatus describes one topic as this daemon sees it.
type TopicStatus struct {
	Name             string   `json:"name"`
	LocalSubscribers int      `json:"local_subscribers"`
	Remote           []string `json:"remote"` // daemons with subscribers
	// Pattern marks a wildcard subject (v1.1), listed apart from an exact
	// topic of the same name.
	Pattern bool `json:"pattern,omitempty"`
}

// Stats counts the node's traffic since it started.
type Stats struct {
	Requests, Replies, Faults, Timeouts uint64
	Delivered, Retries                  uint64
	Broadcasts, Publishes, Dropped      uint64
	BadFrames                           uint64
	Pending                             int

	InterestRefused uint64 // new names refused by MaxInterestBytes
	TableFailures   uint64 // interest tables that could not be encoded or sent to a peer
	TableDeltaGaps  uint64 // table deltas that did not follow the version held (the table was pulled whole)
	TooManyPending  uint64 // requests refused by MaxPendingRequests
	InterestBytes   int    // bytes of MaxInterestBytes in use (gauge)
}

// Clusters returns every cluster known here, sorted by name.
func (n *Node) Clusters() []ClusterStatus {
	n.mu.RLock()
	defer n.mu.RUnlock()
	byName := map[string]*ClusterStatus{}
	get := func(name string) *ClusterStatus {
		c := byName[name]
		if c == nil {
			c = &ClusterStatus{Name: name, Remote: map[string]int{}}
			byName[name] = c
		}
		return c
	}
	for name, ms := range n.local {
		get(name).LocalMembers = len(ms)
	}
	for id, r := range n.remotes {
		if r.tbl == nil {
			continue
		}
		for name, cnt := range r.tbl.clusterCounts() {
			get(name).Remote[id] = cnt
		}
	}
	out := make([]ClusterStatus, 0, len(byName))
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		c := *byName[name]
		c.Members = n.membersLocked(name)
		out = append(out, c)
	}
	return out
}

// Topics returns every topic with a subscriber known here, sorted by name.
func (n *Node) Topics() []TopicStatus {
	n.mu.RLock()
	defer n.mu.RUnlock()
	byName := map[string]*TopicStatus{}
	get := func(name string) *TopicStatus {
		t := byName[name]
		if t == nil {
			t = &TopicStatus{Name: name, Remote: []string{}}
			byName[name] = t
		}
		return t
	}
	for name, ss := range n.subs {
		get(name).LocalSubscribers = len(ss)
	}
	for name, rs := range n.topics {
		t := get(name)
		for _, r := range rs {
			t.Remote = append(t.Remote, r.id)
		}
	}
	out := make([]TopicStatus, 0, len(byName))
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		out = append(out, *byName[name])
	}
	return append(out, n.patternStatusLocked()...)
}

// Stats returns the node's counters.
func (n *Node) Stats() Stats {
	n.pmu.Lock()
	pend := len(n.pending)
	n.pmu.Unlock()
	n.mu.RLock()
	interest := n.interest
	n.mu.RUnlock()
	return Stats{
		InterestRefused: n.stats.interestRefused.Load(), TableFailures: n.stats.tableFailures.Load(), TableDeltaGaps: n.stats.deltaGaps.Load(),
		TooManyPending: n.stats.tooManyPending.Load(), InterestBytes: interest,
		Requests: n.stats.requests.Load(), Replies: n.stats.replies.Load(),
		Faults: n.stats.faults.Load(), Timeouts: n.stats.timeouts.Load(),
		Delivered: n.stats.delivered.Load(), Retries: n.stats.retries.Load(),
		Broadcasts: n.stats.broadcastsOut.Load(), Publishes: n.stats.publishesOut.Load(),
		Dropped: n.stats.dropped.Load(), BadFrames: n.stats.badFrames.Load(),
		Pending: pend,
	}
}
