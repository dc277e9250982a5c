package cluster

import (
	"encoding/binary"
	"fmt"
	"maps"
	"slices"

	"github.com/hashicorp/go-msgpack/v2/codec"

	"github.com/iris-mesh/iris/overlay"
)

// tableDelta is the change of a daemon's interest table from one version
// to the next (issue 11): what a subscribe, unsubscribe or registration
// costs each peer is the size of the change, not of the table. It is sent
// as msgpack in fTableDelta, only to peers that said they understand it
// (their fTableAck carries deltaCapable). A receiver applies it when it
// holds the sender's table at exactly From (same instance); otherwise it
// asks for the whole table (fTableReq), as it does when gossip shows a
// newer version than it holds, which repairs a delta lost with a link.
type tableDelta struct {
	Instance uint64                `codec:"i"`
	From     uint64                `codec:"f"`
	To       uint64                `codec:"v"`
	Clusters map[string]tableEntry `codec:"c,omitempty"` // added or changed
	Gone     []string              `codec:"g,omitempty"` // clusters removed
	Topics   map[string]uint32     `codec:"t,omitempty"` // local subscribers; 0: removed
	Patterns map[string]uint32     `codec:"w,omitempty"` // local subscriptions; 0: removed
}

// deltaCapable is the flag byte after the version in an fTableAck from a
// daemon that applies fTableDelta. Daemons that predate deltas send no
// byte after the version and ignore it when they receive one.
const deltaCapable = 1

// maxDeltaEntries bounds the names a peer's table may reach through
// deltas: a whole table is bounded by the frame it comes in, a table grown
// by deltas by this (the entries MaxInterestBytesLimit allows at
// InterestEntryCost each). Beyond it the peer's table is pulled whole.
const maxDeltaEntries = MaxInterestBytesLimit / InterestEntryCost

// diffTables returns the change from old to t; nil when there is none.
func diffTables(old, t *table) *tableDelta {
	d := &tableDelta{Instance: t.Instance, From: old.Version, To: t.Version}
	for name, e := range t.Clusters {
		if o, ok := old.Clusters[name]; !ok || o.Members != e.Members || o.Capacity != e.Capacity || !slices.Equal(o.Names, e.Names) {
			if d.Clusters == nil {
				d.Clusters = map[string]tableEntry{}
			}
			d.Clusters[name] = e
		}
	}
	for name := range old.Clusters {
		if _, ok := t.Clusters[name]; !ok {
			d.Gone = append(d.Gone, name)
		}
	}
	d.Topics = diffCounts(old.Topics, t.Topics)
	d.Patterns = diffCounts(old.Patterns, t.Patterns)
	return d
}

func diffCounts(old, cur map[string]uint32) map[string]uint32 {
	var out map[string]uint32
	set := func(k string, v uint32) {
		if out == nil {
			out = map[string]uint32{}
		}
		out[k] = v
	}
	for k, v := range cur {
		if old[k] != v {
			set(k, v)
		}
	}
	for k := range old {
		if _, ok := cur[k]; !ok {
			set(k, 0)
		}
	}
	return out
}

func (d *tableDelta) encode() ([]byte, error) {
	var b []byte
	err := codec.NewEncoderBytes(&b, msgpackHandle).Encode(d)
	return b, err
}

func decodeDelta(b []byte) (*tableDelta, error) {
	var d tableDelta
	if err := codec.NewDecoderBytes(b, msgpackHandle).Decode(&d); err != nil {
		return nil, fmt.Errorf("%w: table delta: %v", errBadFrame, err)
	}
	if d.To <= d.From {
		return nil, fmt.Errorf("%w: table delta: version %d to %d", errBadFrame, d.From, d.To)
	}
	for name := range d.Clusters {
		if validName(name) != nil {
			return nil, fmt.Errorf("%w: table delta: bad cluster name", errBadFrame)
		}
	}
	for _, name := range d.Gone {
		if validName(name) != nil {
			return nil, fmt.Errorf("%w: table delta: bad cluster name", errBadFrame)
		}
	}
	for name := range d.Topics {
		if validName(name) != nil {
			return nil, fmt.Errorf("%w: table delta: bad topic", errBadFrame)
		}
	}
	for p := range d.Patterns {
		if validSubject(p) != nil || !isPattern(p) {
			return nil, fmt.Errorf("%w: table delta: bad subject pattern", errBadFrame)
		}
	}
	return &d, nil
}

// handleTableDelta applies a peer's table delta when it follows the
// version held, and otherwise asks for the whole table. Only the clusters
// and topics the delta names are re-indexed, so the node's lock is held
// for the size of the change, not of the table.
func (n *Node) handleTableDelta(from string, b []byte) error {
	d, err := decodeDelta(b)
	if err != nil {
		return err
	}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil
	}
	r := n.remotes[from]
	if r == nil || r.tbl == nil || r.tbl.Instance != d.Instance || r.tbl.Version != d.From ||
		len(r.tbl.Clusters)+len(r.tbl.Topics)+len(r.tbl.Patterns)+len(d.Clusters)+len(d.Topics)+len(d.Patterns) > maxDeltaEntries {
		held := r != nil && r.tbl != nil && r.tbl.Instance == d.Instance && r.tbl.Version >= d.To
		ask := !held && (r == nil || r.requested != d.To)
		if ask && r != nil {
			r.requested = d.To
		}
		ov := n.ov
		n.mu.Unlock()
		n.stats.deltaGaps.Add(1)
		if held {
			n.ackTable(from)
		} else if ask {
			_ = ov.Send(from, overlay.Control, []byte{byte(fTableReq)}, nil)
		}
		return nil
	}
	t := r.tbl // this node's own copy: readers hold n.mu
	for name, e := range d.Clusters {
		if t.Clusters == nil {
			t.Clusters = map[string]tableEntry{}
		}
		t.Clusters[name] = e
	}
	for _, name := range d.Gone {
		delete(t.Clusters, name)
	}
	applyCounts(&t.Topics, d.Topics)
	oldP := maps.Clone(t.Patterns)
	applyCounts(&t.Patterns, d.Patterns)
	t.Version = d.To
	for name := range d.Clusters {
		n.rebuildLocked(name)
	}
	for _, name := range d.Gone {
		n.rebuildLocked(name)
	}
	for topic := range d.Topics {
		n.rebuildTopicLocked(topic)
	}
	if len(d.Patterns) > 0 {
		n.repatternLocked(r, &table{Patterns: oldP}, t)
	}
	n.mu.Unlock()
	n.ackTable(from)
	return nil
}

func applyCounts(m *map[string]uint32, d map[string]uint32) {
	for k, v := range d {
		if v == 0 {
			delete(*m, k)
			continue
		}
		if *m == nil {
			*m = map[string]uint32{}
		}
		(*m)[k] = v
	}
}

// appendAck is the fTableAck frame for version v.
func appendAck(v uint64) []byte {
	return append(binary.AppendUvarint([]byte{byte(fTableAck)}, v), deltaCapable)
}
