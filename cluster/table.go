package cluster

import (
	"fmt"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"

	"github.com/iris-mesh/iris/overlay"
)

// table is a daemon's interest table, sent as msgpack. New fields must mean
// the old behaviour when zero.
type table struct {
	Version  uint64                `codec:"v"`
	Clusters map[string]tableEntry `codec:"c,omitempty"`
	Topics   map[string]uint32     `codec:"t,omitempty"` // topic → local subscribers
	Patterns map[string]uint32     `codec:"w,omitempty"` // wildcard subject → local subscriptions (v1.1)
	// Instance is random per daemon process: a table from a new instance
	// (a daemon restarted under the same node id) replaces the one held
	// whatever its version. Zero from older daemons.
	Instance uint64 `codec:"i,omitempty"`
}

type tableEntry struct {
	Members  uint32   `codec:"m"`
	Capacity uint32   `codec:"p"`           // sum of the members' capacities
	Names    []string `codec:"n,omitempty"` // the members' names (daemons before v1.1 send none)
}

var msgpackHandle = &codec.MsgpackHandle{}

func (t *table) encode() ([]byte, error) {
	var b []byte
	err := codec.NewEncoderBytes(&b, msgpackHandle).Encode(t)
	return b, err
}

func decodeTable(b []byte) (*table, error) {
	var t table
	if err := codec.NewDecoderBytes(b, msgpackHandle).Decode(&t); err != nil {
		return nil, fmt.Errorf("%w: table: %v", errBadFrame, err)
	}
	for name := range t.Clusters {
		if validName(name) != nil {
			return nil, fmt.Errorf("%w: table: bad cluster name", errBadFrame)
		}
	}
	for name := range t.Topics {
		if validName(name) != nil {
			return nil, fmt.Errorf("%w: table: bad topic", errBadFrame)
		}
	}
	for p := range t.Patterns {
		if validSubject(p) != nil || !isPattern(p) {
			return nil, fmt.Errorf("%w: table: bad subject pattern", errBadFrame)
		}
	}
	return &t, nil
}

// localTableLocked builds this daemon's table. n.mu must be held.
func (n *Node) localTableLocked() *table {
	t := &table{Version: n.version, Instance: n.instance, Clusters: make(map[string]tableEntry, len(n.local)), Topics: make(map[string]uint32, len(n.subs))}
	for name, ms := range n.local {
		if n.draining {
			break // peers stop routing requests here
		}
		var capSum int64
		for _, m := range ms {
			capSum += m.capacity
		}
		t.Clusters[name] = tableEntry{Members: uint32(len(ms)), Capacity: uint32(min(capSum, 1<<31)), Names: memberNames(ms)}
	}
	for topic, ss := range n.subs {
		t.Topics[topic] = uint32(len(ss))
	}
	if len(n.pats) > 0 {
		t.Patterns = make(map[string]uint32, len(n.pats))
		for p, ss := range n.pats {
			t.Patterns[p] = uint32(len(ss))
		}
	}
	return t
}

// markDirtyLocked bumps the table version and wakes the pusher.
func (n *Node) markDirtyLocked() {
	n.version++
	n.invalidateLocked()
	select {
	case n.tableCh <- struct{}{}:
	default:
	}
}

// tablePushRate bounds the bytes per second of interest tables pushed to
// each peer: a 4 MiB table (the default limit) waits 250 ms before the
// next push, a table of a few KiB not at all.
const tablePushRate = 16 << 20

// tableLoop pushes the local table's changes to every known daemon whenever
// it changes (bursts coalesce) and publishes its version in gossip, which
// lets daemons that missed a push pull it. Peers that apply deltas get the
// change since the table last pushed (fTableDelta); others the whole table.
func (n *Node) tableLoop() {
	var pushed *table // the table as last pushed
	for {
		select {
		case <-n.tableCh:
		case <-n.shutdownCh:
			return
		}
		n.mu.RLock()
		t := n.localTableLocked()
		peers := make([]*remoteNode, 0, len(n.remotes))
		for _, r := range n.remotes {
			peers = append(peers, r)
		}
		ov := n.ov
		n.mu.RUnlock()
		changed := pushed == nil || pushed.Version < t.Version
		var db []byte // the delta, when there is one to send
		if pushed != nil && changed {
			db, _ = diffTables(pushed, t).encode()
		}
		pushed = t
		var b []byte // the whole table, encoded for the first peer that needs it
		sent := 0
		for _, r := range peers {
			whole := r.wholeNext.Swap(false)
			if !changed && !whole {
				continue // woken by a pull: only those who asked need the table
			}
			if db != nil && r.deltas.Load() && !whole {
				if err := ov.Send(r.id, overlay.Control, []byte{byte(fTableDelta)}, db); err != nil {
					n.tableFailed(r.id, err, len(db))
				}
				sent = max(sent, len(db))
				continue
			}
			if b == nil {
				var err error
				if b, err = t.encode(); err != nil {
					n.tableFailed("", err, 0)
					break
				}
			}
			if err := ov.Send(r.id, overlay.Control, []byte{byte(fTable)}, b); err != nil {
				n.tableFailed(r.id, err, len(b))
			}
			sent = len(b)
		}
		ov.SetAppVersion(t.Version)
		// Pace large tables: changes meanwhile coalesce into the next push,
		// so an app toggling a subscription beside many long names cannot
		// make this daemon send more than tablePushRate to each peer.
		if pause := time.Duration(sent) * time.Second / tablePushRate; pause > time.Millisecond {
			timer := time.NewTimer(pause)
			select {
			case <-timer.C:
			case <-n.shutdownCh:
				timer.Stop()
				return
			}
		}
	}
}

// sendTable answers a table request. A large table is left to the paced
// pusher, which sends the current one to the peers that asked soon, so
// that pulls cannot get around its pacing. Either way the pusher's next
// round sends this peer the whole table rather than a delta: the one sent
// here may be of a version the next delta does not start from.
func (n *Node) sendTable(to string) {
	n.mu.RLock()
	t := n.localTableLocked()
	ov := n.ov
	r := n.remotes[to]
	n.mu.RUnlock()
	if r != nil {
		r.wholeNext.Store(true)
	}
	b, err := t.encode()
	if err != nil {
		n.tableFailed(to, err, 0)
		return
	}
	if len(b) > tablePushRate/1000 { // it would pause the pusher over a millisecond
		select {
		case n.tableCh <- struct{}{}:
		default: // a push is due anyway
		}
		return
	}
	if err := ov.Send(to, overlay.Control, []byte{byte(fTable)}, b); err != nil {
		n.tableFailed(to, err, len(b))
	}
}

// tableFailed counts and logs (at most one line a second) a table that
// could not be encoded or sent. The peer then holds an older table until
// the next push or until it pulls the current one (it sees the version in
// gossip).
func (n *Node) tableFailed(peer string, err error, size int) {
	total := n.stats.tableFailures.Add(1)
	now := time.Now().UnixNano()
	if last := n.stats.tableLogAt.Load(); now-last >= int64(time.Second) && n.stats.tableLogAt.CompareAndSwap(last, now) {
		n.log.Warn().Err(err).Str("peer", peer).Int("bytes", size).Uint64("failures_total", total).
			Msg("interest table not sent; that peer may not see this daemon's latest services and subscriptions")
	}
}

// handleTable installs a peer's table if it is newer than the one held.
func (n *Node) handleTable(from string, b []byte) error {
	t, err := decodeTable(b)
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil
	}
	r := n.remotes[from]
	if r == nil {
		// The link can beat the gossip: keep it; HandlePeer fills the zone.
		r = &remoteNode{id: from}
		n.remotes[from] = r
		n.setRemotesViewLocked()
	}
	if r.tbl != nil && t.Instance == r.tbl.Instance && t.Version <= r.tbl.Version {
		return nil
	}
	old := r.tbl
	r.tbl = t
	n.rebuildForLocked(old)
	n.rebuildForLocked(t)
	n.repatternLocked(r, old, t)
	return nil
}

// tableCopy returns a copy of a remote's table, for status.
func (t *table) clusterCounts() map[string]int {
	out := make(map[string]int, len(t.Clusters))
	for k, v := range t.Clusters {
		out[k] = int(v.Members)
	}
	return out
}
