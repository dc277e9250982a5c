package cluster

import (
	"errors"
	"fmt"
	"hash/maphash"
	"maps"
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"github.com/rs/zerolog"

	"github.com/iris-mesh/iris/internal/deadline"
	"github.com/iris-mesh/iris/overlay"
)

// Errors returned by the cluster layer.
var (
	ErrClosed   = errors.New("cluster: closed")
	ErrBadName  = errors.New("cluster: bad cluster or topic name")
	ErrNotReady = errors.New("cluster: not started")
	// ErrInterestFull refuses a new cluster name or topic beyond
	// Config.MaxInterestBytes.
	ErrInterestFull = errors.New("cluster: interest table full")
)

// Overlay is what a Node needs from the overlay below it. *overlay.Overlay
// implements it.
type Overlay interface {
	ID() string
	Zone() string
	Send(id string, prio overlay.Priority, head, body []byte) error
	// SendIfUp is Send, except that it fails rather than queue while the
	// peer is down: for events, which are worthless late.
	SendIfUp(id string, prio overlay.Priority, head, body []byte) error
	SetAppVersion(v uint64)
	// SetAppInstance gossips the instance beside the version.
	SetAppInstance(i uint64)
	Peers() []overlay.Peer
}

// Node is one daemon's view of the network's clusters and topics. It
// implements overlay.Delegate; create it first, pass it to overlay.New, then
// call Start with the overlay.
type Node struct {
	cfg Config
	log zerolog.Logger
	ov  Overlay
	id  string

	shutdownCh chan struct{}
	closeOnce  sync.Once
	wg         sync.WaitGroup
	tableCh    chan struct{} // wakes the table pusher; cap 1

	instance uint64 // random per process; see table.Instance

	// live is started && !closed, for ready without the lock (ov does not
	// change once started). remotesView is a copy of remotes, replaced
	// under mu whenever remotes changes, for lookups per frame.
	live        atomic.Bool
	remotesView atomic.Pointer[map[string]*remoteNode]

	mu            sync.RWMutex // protects following
	started       bool
	closed        bool
	draining      bool                       // see Drain
	version       uint64                     // local interest table version
	local         map[string][]*member       // cluster → local members (copy on write)
	subs          map[string][]*subscription // topic → local subscribers (copy on write)
	remotes       map[string]*remoteNode     // peer id → what it serves
	clusters      map[string]*targets        // cluster → balancing targets (rebuilt on change)
	topics        map[string][]*remoteNode   // topic → remote nodes with subscribers
	interest      int                        // bytes of local names, as MaxInterestBytes counts them
	topicInterest int                        // of which topics
	pats          map[string][]*subscription // subject pattern → local subscriptions (copy on write)
	psubs         sublist[*subscription]     // the same patterns, for matching
	rpats         sublist[*remoteNode]       // remote daemons' patterns

	mcache *matchCache // Publish's match results while patterns exist (subject.go)
	heads  headCache   // frame headers of recent publishes and broadcasts (headcache.go)
	conf   confirms    // waits for the other daemons to confirm the table (confirm.go)

	tun tunnels
	ext ext // surveys, pushes and cancels (ext.go)

	pmu     sync.Mutex // protects following
	pending map[uint64]*pending
	// deadlines times the pending requests (one timer for all of them).
	deadlines *deadline.Set[*pending]
	nextID    uint64

	stats counters
}

type counters struct {
	requests, replies, faults, timeouts    atomic.Uint64
	broadcastsOut, publishesOut            atomic.Uint64
	delivered, dropped, badFrames, retries atomic.Uint64
	interestRefused, tableFailures         atomic.Uint64
	tooManyPending                         atomic.Uint64
	tableLogAt                             atomic.Int64  // unix nanos of the last table failure logged
	unconfirmed                            atomic.Uint64 // Confirm calls that timed out
	eventsDropped                          atomic.Uint64 // event copies to other daemons dropped (link queue full)
	deltaGaps                              atomic.Uint64 // table deltas that did not follow the version held
}

// New returns a Node. It serves nothing until Start.
func New(cfg *Config) (*Node, error) {
	if cfg == nil {
		cfg = DefaultConfig()
	}
	c := *cfg
	if err := c.Validate(); err != nil {
		return nil, err
	}
	n := &Node{
		heads:      headCache{seed: maphash.MakeSeed()},
		instance:   rand.Uint64() | 1,
		cfg:        c,
		log:        c.Logger.With().Str("component", "cluster").Logger(),
		shutdownCh: make(chan struct{}),
		tableCh:    make(chan struct{}, 1),
		local:      map[string][]*member{},
		subs:       map[string][]*subscription{},
		remotes:    map[string]*remoteNode{},
		clusters:   map[string]*targets{},
		topics:     map[string][]*remoteNode{},
		pats:       map[string][]*subscription{},
		mcache:     newMatchCache(),
		pending:    map[uint64]*pending{},
		tun:        tunnels{ends: map[uint64]*Tunnel{}, opens: map[uint64]*tunOpen{}},
	}
	n.deadlines = deadline.New[*pending](n.expirePending)
	return n, nil
}

// Start attaches the overlay and starts the node's goroutines. Frames or
// events that arrive before Start are dropped.
func (n *Node) Start(ov Overlay) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return ErrClosed
	}
	if n.started {
		return errors.New("cluster: already started")
	}
	n.ov, n.id, n.started = ov, ov.ID(), true
	n.live.Store(true)
	ov.SetAppInstance(n.instance)
	n.wg.Go(n.tableLoop)
	// The table stays at version 0 until its first change: peers neither
	// push to nor pull from a daemon with nothing to tell (see peerAlive).
	return nil
}

// Close fails every pending request with a fault, stops the node's
// goroutines and waits for them. Close the overlay after the node.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		n.mu.Lock()
		n.closed = true
		n.live.Store(false)
		n.mu.Unlock()
		close(n.shutdownCh)
		n.wg.Wait()
		n.failPending(func(*pending) bool { return true }, "iris: daemon shutting down")
		n.pmu.Lock()
		n.deadlines.Stop()
		n.pmu.Unlock()
		n.failTunnels("*", "iris: daemon shutting down")
		n.extClose()
		n.confirmClose()
	})
	return nil
}

// Drain stops taking new work for local members, ahead of a graceful
// shutdown: this daemon's interest table goes out to every peer without its
// clusters, so they stop routing requests here; requests that still arrive
// from other daemons are turned back (the requester places them elsewhere);
// requests from local apps go to other daemons whenever one serves the
// cluster. Requests already delivered to local members stay theirs to
// answer, and the answers still go out; see Busy. Subscriptions, broadcasts
// and tunnels are unchanged. Drain cannot be undone.
func (n *Node) Drain() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed || n.draining {
		return
	}
	n.draining = true
	n.markDirtyLocked()
}

// Busy reports the requests not answered yet that a drain waits for:
// delivered is how many requests local members hold, originated how many
// requests this daemon's apps sent that are still pending.
func (n *Node) Busy() (delivered, originated int) {
	n.mu.RLock()
	for _, ms := range n.local {
		for _, m := range ms {
			delivered += int(m.inflight.Load())
		}
	}
	n.mu.RUnlock()
	n.pmu.Lock()
	originated = len(n.pending)
	n.pmu.Unlock()
	return delivered, originated
}

// ready returns the overlay once started and not closed.
func (n *Node) ready() (Overlay, bool) {
	if !n.live.Load() {
		return nil, false
	}
	return n.ov, true
}

// HandleFrame implements overlay.Delegate. It runs on the link's reader
// goroutine and never blocks: deliveries to apps go through their bounded
// queues.
func (n *Node) HandleFrame(from string, payload []byte) {
	n.handleFrame(from, payload, nil, false)
}

// HandleTransientFrame implements overlay.TransientFrameHandler: an event
// is fanned out to its subscribers from where it lies in the link's buffer
// (a TransientSubscriber copies it into its queue); other frames are left
// to HandleFrame.
func (n *Node) HandleTransientFrame(from string, payload []byte) bool {
	if len(payload) == 0 || frameType(payload[0]) != fPublish {
		return false
	}
	n.handleFrame(from, payload, nil, true)
	return true
}

// HandleOwnedFrame implements overlay.OwnedFrameHandler: release is passed
// on with tunnel data, and dropped with other frames.
func (n *Node) HandleOwnedFrame(from string, payload []byte, release func()) {
	n.handleFrame(from, payload, release, false)
}

// handleFrame handles one frame; a transient one is valid only during the
// call (only events come so: HandleTransientFrame).
func (n *Node) handleFrame(from string, payload []byte, release func(), transient bool) {
	if _, ok := n.ready(); !ok || len(payload) == 0 {
		return
	}
	if r := n.remote(from); r != nil {
		r.markHealthy()
	}
	rd := reader{b: payload[1:]}
	var err error
	switch frameType(payload[0]) {
	case fRequest:
		err = n.handleRemoteRequest(from, &rd)
	case fReply:
		err = n.handleReply(from, &rd)
	case fTable:
		if err = n.handleTable(from, rd.rest()); err == nil {
			n.ackTable(from)
		}
	case fTableReq:
		n.sendTable(from)
	case fBroadcast:
		err = n.handleBroadcast(&rd)
	case fPublish:
		err = n.handlePublish(&rd, transient)
	case fTunOpen:
		err = n.handleTunOpen(from, &rd)
	case fTunOpened:
		err = n.handleTunOpened(from, &rd)
	case fTunData, fTunCredit, fTunClose:
		err = n.handleTunFrame(from, frameType(payload[0]), &rd, release)
	default:
		err = n.handleExtFrame(from, frameType(payload[0]), &rd) // skips unknown ones
	}
	if err != nil {
		n.stats.badFrames.Add(1)
		n.log.Warn().Str("peer", from).Err(err).Msg("dropped bad frame")
	}
}

// HandlePeer implements overlay.Delegate.
func (n *Node) HandlePeer(p overlay.Peer) {
	if p.State == overlay.StateAlive || p.State == overlay.StateSuspect {
		n.peerAlive(p)
		return
	}
	n.peerGone(p.ID)
}

// HandleLinkDown implements overlay.Delegate: requests in flight to that
// daemon may be lost, so they are faulted now rather than at their deadline.
func (n *Node) HandleLinkDown(id string) {
	var mine []byte
	n.mu.Lock()
	r := n.remotes[id]
	if r != nil {
		r.markUnhealthy(n.cfg.UnhealthyFor)
		r.requested = 0 // a table request may have been lost with the link: ask again
		r.linkBroke = true
		if r.reported && r.state == overlay.StateAlive && !n.closed && n.started && (n.version > 0 || r.tbl != nil) {
			// Already reported alive again (events coalesce): resync now,
			// as peerAlive would have.
			r.linkBroke = false
			mine, _ = n.localTableLocked().encode()
		}
	}
	ov := n.ov
	n.mu.Unlock()
	if mine != nil {
		r.wholeNext.Store(true)
		_ = ov.Send(id, overlay.Control, []byte{byte(fTable)}, mine)
		_ = ov.Send(id, overlay.Control, []byte{byte(fTableReq)}, nil)
	}
	n.failPending(func(p *pending) bool { return p.node == id }, "iris: link to the serving daemon broke")
	n.failTunnels(id, "iris: link to the far daemon broke")
	n.extPeerDown(id)
}

func (n *Node) remote(id string) *remoteNode {
	if v := n.remotesView.Load(); v != nil {
		return (*v)[id]
	}
	return nil
}

// setRemotesViewLocked publishes a copy of remotes for remote. n.mu must be
// held for writing.
func (n *Node) setRemotesViewLocked() {
	v := maps.Clone(n.remotes)
	n.remotesView.Store(&v)
}

func validName(s string) error {
	if s == "" || len(s) > maxNameLen {
		return fmt.Errorf("%w: %q", ErrBadName, s)
	}
	return nil
}
