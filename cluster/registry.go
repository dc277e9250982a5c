package cluster

import (
	"fmt"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"github.com/iris-mesh/iris/overlay"
)

// Member is a local member of a cluster: an app connection that registered
// as a service. Its methods are called from daemon goroutines and must not
// block.
type Member interface {
	// HandleRequest offers a request. It returns false if the member cannot
	// take it now (its queue is full); the request then goes elsewhere.
	// Having taken it, the member must end it exactly once with Reply, Fail
	// or Abandon.
	HandleRequest(r *Request) bool
	// HandleBroadcast delivers a broadcast message. The member drops and
	// counts what it cannot queue.
	HandleBroadcast(msg []byte)
}

// member is one registration of a Member.
type member struct {
	m        Member
	cluster  string
	name     string // unique in the cluster as far as this daemon knows
	capacity int64
	inflight atomic.Int64
}

func (m *member) load() int64 { return m.inflight.Load() * 1024 / m.capacity }

// Registration is a Member's membership in a cluster.
type Registration struct {
	n *Node
	m *member
}

// Register makes m a member of cluster under a default name (see
// RegisterNamed). The member is reachable from this daemon when Register
// returns and from the others once its table update reaches them. capacity
// is how many requests it may have in flight before it counts as
// saturated; 0 means the configured default.
func (n *Node) Register(cluster string, m Member, capacity int) (*Registration, error) {
	return n.RegisterNamed(cluster, "", m, capacity)
}

// Close removes the member from its cluster: no delivery is started after
// Close returns, but one already under way on another goroutine may still
// reach the member just after; a member that must not see any drops them.
// Requests it already holds stay its to answer. Idempotent.
func (r *Registration) Close() {
	n := r.n
	n.mu.Lock()
	defer n.mu.Unlock()
	if cowRemove(n.local, r.m.cluster, r.m) {
		n.interest -= interestCost(r.m.name)
		if _, ok := n.local[r.m.cluster]; !ok {
			n.interest -= interestCost(r.m.cluster)
		}
		n.rebuildLocked(r.m.cluster)
		n.markDirtyLocked()
	}
}

// interestCost is what name costs in Config.MaxInterestBytes.
func interestCost(name string) int { return len(name) + InterestEntryCost }

// addInterestLocked accounts for a new local name, or fails with
// ErrInterestFull. Topics may use at most three quarters of
// MaxInterestBytes, so subscriptions never leave no room for services.
// n.mu must be held.
func (n *Node) addInterestLocked(name string, topic bool) error {
	c := interestCost(name)
	full := n.interest+c > n.cfg.MaxInterestBytes
	if topic {
		full = full || n.topicInterest+c > n.cfg.MaxInterestBytes/4*3
	}
	if full {
		n.stats.interestRefused.Add(1)
		return fmt.Errorf("%w: %d of %d bytes used", ErrInterestFull, n.interest, n.cfg.MaxInterestBytes)
	}
	n.interest += c
	if topic {
		n.topicInterest += c
	}
	return nil
}

// cowAdd appends v to m[k] in a new array: readers that took m[k] under the
// lock keep iterating their own copy without it.
func cowAdd[T any](m map[string][]T, k string, v T) {
	m[k] = append(slices.Clip(m[k]), v)
}

// cowRemove removes v from m[k] likewise, deleting the key when nothing is
// left. It reports whether v was there.
func cowRemove[T comparable](m map[string][]T, k string, v T) bool {
	list := m[k]
	i := slices.Index(list, v)
	if i < 0 {
		return false
	}
	if len(list) == 1 {
		delete(m, k)
	} else {
		m[k] = slices.Delete(slices.Clone(list), i, i+1)
	}
	return true
}

// remoteNode is what this daemon knows of another daemon's interests.
type remoteNode struct {
	id        string
	zone      string
	tbl       *table        // nil until pulled
	requested uint64        // table version last asked for
	state     overlay.State // the overlay's last word on it
	linkBroke bool          // a link to it broke since it was last alive
	reported  bool          // the overlay has reported it (state is valid)
	inflight  atomic.Int64
	unhealthy atomic.Int64 // unix nanos until which the balancer avoids it
	deltas    atomic.Bool  // it applies table deltas (said so in an fTableAck)
	// wholeNext: it was sent this daemon's whole table outside the
	// pusher's rounds (a pull, a resync), at a version the next delta may
	// not start from: the pusher's next round sends it the whole table.
	wholeNext atomic.Bool
}

func (r *remoteNode) version() uint64 {
	if r.tbl == nil {
		return 0
	}
	return r.tbl.Version
}

func (r *remoteNode) healthy(now int64) bool { return r.unhealthy.Load() <= now }

// markUnhealthy avoids r for d, unless it is already avoided for longer:
// one event never shortens another's verdict.
func (r *remoteNode) markUnhealthy(d time.Duration) {
	until := time.Now().Add(d).UnixNano()
	for {
		cur := r.unhealthy.Load()
		if cur >= until || r.unhealthy.CompareAndSwap(cur, until) {
			return
		}
	}
}

func (r *remoteNode) markHealthy() {
	if r.unhealthy.Load() != 0 {
		r.unhealthy.Store(0)
	}
}

// remoteTarget is a remote daemon serving a cluster.
type remoteTarget struct {
	node     *remoteNode
	members  int
	capacity int64
}

func (t *remoteTarget) load() int64 { return t.node.inflight.Load() * 1024 / t.capacity }

// targets is the immutable balancing view of one cluster, rebuilt on every
// change and read without locks.
type targets struct {
	local []*member
	near  []remoteTarget // remote daemons in this daemon's zone
	far   []remoteTarget
}

// rebuildLocked recomputes the targets of cluster. n.mu must be held.
func (n *Node) rebuildLocked(cluster string) {
	t := &targets{local: n.local[cluster]}
	zone := ""
	if n.ov != nil {
		zone = n.ov.Zone()
	}
	for _, r := range n.remotes {
		if r.tbl == nil {
			continue
		}
		e, ok := r.tbl.Clusters[cluster]
		if !ok || e.Members == 0 {
			continue
		}
		rt := remoteTarget{node: r, members: int(e.Members), capacity: max(int64(e.Capacity), 1)}
		if zone != "" && r.zone == zone {
			t.near = append(t.near, rt)
		} else {
			t.far = append(t.far, rt)
		}
	}
	sortTargets := func(a, b remoteTarget) int {
		if a.node.id < b.node.id {
			return -1
		}
		return 1
	}
	slices.SortFunc(t.near, sortTargets)
	slices.SortFunc(t.far, sortTargets)
	if len(t.local)+len(t.near)+len(t.far) == 0 {
		delete(n.clusters, cluster)
		return
	}
	n.clusters[cluster] = t
}

// rebuildTopicLocked recomputes the remote daemons subscribed to topic.
func (n *Node) rebuildTopicLocked(topic string) {
	n.invalidateLocked()
	var list []*remoteNode
	for _, r := range n.remotes {
		if r.tbl != nil && r.tbl.Topics[topic] > 0 {
			list = append(list, r)
		}
	}
	if len(list) == 0 {
		delete(n.topics, topic)
		return
	}
	slices.SortFunc(list, func(a, b *remoteNode) int {
		if a.id < b.id {
			return -1
		}
		return 1
	})
	n.topics[topic] = list
}

// rebuildForLocked rebuilds every cluster and topic a table mentions.
func (n *Node) rebuildForLocked(t *table) {
	if t == nil {
		return
	}
	for c := range t.Clusters {
		n.rebuildLocked(c)
	}
	for tp := range t.Topics {
		n.rebuildTopicLocked(tp)
	}
}

// peerAlive records a peer the overlay reports alive or suspect. When it
// (re)appears alive, after being unknown or gone, or after a link to it
// broke, the interest tables are resynchronised at once both ways: this
// daemon pushes its table and asks for the peer's, since either may have
// changed, or been lost with the link, meanwhile. (A peer that was only
// quiet lost nothing.)
func (n *Node) peerAlive(p overlay.Peer) {
	n.mu.Lock()
	if n.closed || !n.started {
		n.mu.Unlock()
		return
	}
	r := n.remotes[p.ID]
	fresh := r == nil
	if fresh {
		r = &remoteNode{id: p.ID}
		n.remotes[p.ID] = r
		n.setRemotesViewLocked()
	}
	// (A node first created by a table that beat the gossip is not known
	// to the overlay yet: its first report counts as an appearance.)
	reappeared := p.State == overlay.StateAlive && (fresh || !r.reported || (r.state != overlay.StateAlive && r.linkBroke))
	r.state, r.reported = p.State, true
	if p.State == overlay.StateAlive {
		r.linkBroke = false
	}
	zoneChanged := r.zone != p.Zone
	r.zone = p.Zone
	if p.State == overlay.StateSuspect {
		// Its link is down or quiet: avoid it until it is alive again (a
		// frame from it, or the overlay's word) rather than for UnhealthyFor.
		r.unhealthy.Store(math.MaxInt64)
	} else {
		r.markHealthy()
	}
	if zoneChanged {
		n.rebuildForLocked(r.tbl)
	}
	// A daemon whose table never changed (version 0) has nothing to send,
	// and one known to hold none nothing to pull: an idle network of
	// daemons without services or subscriptions opens no data links. (A
	// peer that restarts empty gossips version 0, which differs from the
	// old table's: holders of that table pull the new, empty one.)
	ask := (reappeared && (p.AppVersion != 0 || r.tbl != nil)) || wantTable(p, r)
	if ask {
		r.requested = p.AppVersion
	}
	var mine []byte
	if reappeared && n.version > 0 {
		mine, _ = n.localTableLocked().encode()
	}
	ov := n.ov
	n.mu.Unlock()
	if mine != nil {
		r.wholeNext.Store(true)
		_ = ov.Send(p.ID, overlay.Control, []byte{byte(fTable)}, mine)
	}
	if ask {
		_ = ov.Send(p.ID, overlay.Control, []byte{byte(fTableReq)}, nil)
	}
}

// wantTable reports whether gossip shows a table of p this daemon should
// pull. Of the instance it holds, only a newer version is news: an older
// one is gossip lagging the deltas pushed over the link (issue 11), and
// pulling it would cost the whole table per gossiped version. Otherwise
// (another instance, or a daemon that does not gossip its instance) any
// other version is, unless already asked for.
func wantTable(p overlay.Peer, r *remoteNode) bool {
	if p.AppInstance != 0 && r.tbl != nil && r.tbl.Instance == p.AppInstance {
		return p.AppVersion > r.tbl.Version && p.AppVersion != r.requested
	}
	return p.AppVersion != r.version() && (p.AppVersion != r.requested || p.AppVersion == 0)
}

func (n *Node) peerGone(id string) {
	n.mu.Lock()
	r := n.remotes[id]
	if r != nil {
		delete(n.remotes, id)
		n.setRemotesViewLocked()
		n.rebuildForLocked(r.tbl)
		n.repatternLocked(r, r.tbl, nil)
	}
	n.mu.Unlock()
	n.confirmPeerGone(id)
	n.failPending(func(p *pending) bool { return p.node == id }, "iris: serving daemon failed")
	n.failTunnels(id, "iris: far daemon failed")
	n.extPeerDown(id)
}
