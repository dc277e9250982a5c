package cluster

import (
	"fmt"

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
	t := &table{Version: n.version, Clusters: make(map[string]tableEntry, len(n.local)), Topics: make(map[string]uint32, len(n.subs))}
	for name, ms := range n.local {
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

// tableLoop pushes the local table to every known daemon whenever it
// changes (bursts coalesce) and publishes its version in gossip, which
// lets daemons that missed a push pull it.
func (n *Node) tableLoop() {
	for {
		select {
		case <-n.tableCh:
		case <-n.shutdownCh:
			return
		}
		n.mu.RLock()
		t := n.localTableLocked()
		peers := make([]string, 0, len(n.remotes))
		for id := range n.remotes {
			peers = append(peers, id)
		}
		ov := n.ov
		n.mu.RUnlock()
		b, err := t.encode()
		if err != nil {
			n.log.Error().Err(err).Msg("encode interest table")
			continue
		}
		head := []byte{byte(fTable)}
		for _, id := range peers {
			_ = ov.Send(id, overlay.Control, head, b)
		}
		ov.SetAppVersion(t.Version)
	}
}

// sendTable answers a table request.
func (n *Node) sendTable(to string) {
	n.mu.RLock()
	t := n.localTableLocked()
	ov := n.ov
	n.mu.RUnlock()
	b, err := t.encode()
	if err != nil {
		return
	}
	_ = ov.Send(to, overlay.Control, []byte{byte(fTable)}, b)
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
	}
	if r.tbl != nil && t.Version <= r.tbl.Version {
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
