package overlay

import (
	"bytes"
	"errors"
	"sync"

	"github.com/hashicorp/memberlist"
	"github.com/rs/zerolog"
)

// nodeMeta is gossiped with every node (memberlist caps it at 512 bytes).
// Only small, slowly changing facts belong here; interest tables travel
// over data links.
type nodeMeta struct {
	Version uint8  `codec:"v"`            // data-link protocol version
	Zone    string `codec:"z,omitempty"`  // locality label
	App     uint64 `codec:"a,omitempty"`  // upper-layer state version
	AppInst uint64 `codec:"ai,omitempty"` // upper-layer state instance (issue 11; 0 from older daemons)
	// Leaving is gossiped just before a graceful leave, so that peers can
	// tell a departure from a failure (memberlist reports both as a leave).
	Leaving bool `codec:"l,omitempty"`
}

func (m *nodeMeta) decode(b []byte) error {
	if len(b) == 0 {
		return errors.New("empty")
	}
	return decodeMsgpack(b, m)
}

// mlDelegate adapts Overlay to memberlist.Delegate.
type mlDelegate Overlay

// NodeMeta implements memberlist.Delegate.
func (d *mlDelegate) NodeMeta(limit int) []byte {
	o := (*Overlay)(d)
	o.metaMu.Lock()
	m := o.meta
	o.metaMu.Unlock()
	b, err := encodeMsgpack(&m)
	if err != nil || len(b) > limit {
		o.log.Error().Int("size", len(b)).Msg("node metadata does not fit; sending none")
		return nil
	}
	return b
}

// NotifyMsg implements memberlist.Delegate. User messages are not used.
func (d *mlDelegate) NotifyMsg([]byte) {}

// GetBroadcasts implements memberlist.Delegate.
func (d *mlDelegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }

// LocalState implements memberlist.Delegate.
func (d *mlDelegate) LocalState(join bool) []byte { return nil }

// MergeRemoteState implements memberlist.Delegate.
func (d *mlDelegate) MergeRemoteState(buf []byte, join bool) {}

// mlEvents adapts Overlay to memberlist.EventDelegate. Memberlist calls it
// with its node lock held, so it only records and queues.
type mlEvents Overlay

// NotifyJoin implements memberlist.EventDelegate.
func (e *mlEvents) NotifyJoin(n *memberlist.Node) {
	o := (*Overlay)(e)
	if n.Name != o.id && o.setMember(n, StateAlive) {
		o.log.Info().Str("peer", n.Name).Str("addr", n.Address()).Msg("peer joined")
	}
}

// NotifyUpdate implements memberlist.EventDelegate.
func (e *mlEvents) NotifyUpdate(n *memberlist.Node) {
	o := (*Overlay)(e)
	if n.Name != o.id {
		o.setMember(n, StateAlive)
	}
}

// NotifyLeave implements memberlist.EventDelegate. Memberlist reports
// failures and departures alike and does not export which it was, so a
// departing node first gossips metadata with Leaving set (see Leave).
func (e *mlEvents) NotifyLeave(n *memberlist.Node) {
	o := (*Overlay)(e)
	if n.Name == o.id {
		return
	}
	st := StateDead
	var meta nodeMeta
	if meta.decode(n.Meta) == nil && meta.Leaving {
		st = StateLeft
	}
	if st == StateDead && o.holdDead(n) {
		// Our own link to it works: gossip's verdict may be stale (from a
		// host that was cut off), and the peer refutes it within a gossip
		// round or two. Keep the link; the watchdog applies the verdict if
		// the link fails or the grace runs out first.
		o.log.Warn().Str("peer", n.Name).Msg("gossip says the peer is dead but its data link is live; holding the verdict")
		return
	}
	if o.setMember(n, st) {
		o.log.Info().Str("peer", n.Name).Stringer("state", st).Msg("peer gone")
	}
}

// eventQueue delivers peer events to the delegate from one goroutine. It
// keeps at most one pending record per peer (the latest state), so it is
// bounded by the number of peers however fast membership churns.
type eventQueue struct {
	o      *Overlay
	wakeCh chan struct{}

	mu      sync.Mutex // protects following
	pending map[string]*pendingEvent
	order   []string
}

type pendingEvent struct {
	peer     *Peer
	linkDown bool
}

func newEventQueue(o *Overlay) *eventQueue {
	return &eventQueue{o: o, wakeCh: make(chan struct{}, 1), pending: map[string]*pendingEvent{}}
}

func (q *eventQueue) get(id string) *pendingEvent {
	ev := q.pending[id]
	if ev == nil {
		ev = &pendingEvent{}
		q.pending[id] = ev
		q.order = append(q.order, id)
	}
	return ev
}

func (q *eventQueue) wake() {
	select {
	case q.wakeCh <- struct{}{}:
	default:
	}
}

func (q *eventQueue) peer(p Peer) {
	q.mu.Lock()
	q.get(p.ID).peer = &p
	q.mu.Unlock()
	q.wake()
}

func (q *eventQueue) linkDown(id string) {
	q.mu.Lock()
	q.get(id).linkDown = true
	q.mu.Unlock()
	q.wake()
}

func (q *eventQueue) run() {
	d := q.o.cfg.Delegate
	for {
		select {
		case <-q.wakeCh:
		case <-q.o.shutdownCh:
			return
		}
		q.mu.Lock()
		pending, order := q.pending, q.order
		q.pending, q.order = map[string]*pendingEvent{}, nil
		q.mu.Unlock()
		for _, id := range order {
			ev := pending[id]
			if ev.peer != nil {
				d.HandlePeer(*ev.peer)
			}
			if ev.linkDown {
				d.HandleLinkDown(id)
			}
		}
	}
}

// logBridge turns memberlist's "[LEVEL] memberlist: text" lines into
// zerolog events at the matching level. Memberlist's Shutdown does not wait
// for its goroutines, so lines arriving after Close are dropped.
type logBridge struct {
	l     zerolog.Logger
	state *bridgeState
}

type bridgeState struct {
	mu   sync.RWMutex // held while writing, so that stop waits for writers
	done bool
}

func (s *bridgeState) stop() {
	s.mu.Lock()
	s.done = true
	s.mu.Unlock()
}

func (b logBridge) Write(p []byte) (int, error) {
	b.state.mu.RLock()
	defer b.state.mu.RUnlock()
	if b.state.done {
		return len(p), nil
	}
	line := bytes.TrimSpace(p)
	lvl := zerolog.InfoLevel
	for _, m := range []struct {
		tag string
		lvl zerolog.Level
	}{{"[DEBUG]", zerolog.DebugLevel}, {"[INFO]", zerolog.InfoLevel}, {"[WARN]", zerolog.WarnLevel}, {"[ERR]", zerolog.ErrorLevel}, {"[ERROR]", zerolog.ErrorLevel}} {
		if rest, ok := bytes.CutPrefix(line, []byte(m.tag)); ok {
			lvl, line = m.lvl, bytes.TrimSpace(rest)
			break
		}
	}
	line = bytes.TrimPrefix(line, []byte("memberlist: "))
	b.l.WithLevel(lvl).Msg(string(line))
	return len(p), nil
}
