package overlay

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/rs/zerolog"

	"github.com/iris-mesh/iris/crypto"
)

// Errors returned by the overlay.
var (
	ErrClosed        = errors.New("overlay: closed")
	ErrUnknownPeer   = errors.New("overlay: unknown peer")
	ErrBackpressure  = errors.New("overlay: send queue full")
	ErrFrameTooLarge = errors.New("overlay: frame too large")
	// ErrPeerDown is returned by SendIfUp for a peer whose link broke (or
	// could not be established) and has not come back yet; the overlay
	// keeps redialing it.
	ErrPeerDown = errors.New("overlay: peer unreachable")
)

// Overlay is this daemon's membership in a network: it tracks the other
// daemons and moves frames to and from them over encrypted links.
type Overlay struct {
	cfg    Config
	id     string
	addr   string // advertised host:port
	log    zerolog.Logger
	tr     *transport
	ml     *memberlist.Memberlist
	events *eventQueue
	stats  counters
	keys   keyState

	shutdownCh chan struct{}
	closeOnce  sync.Once
	lifeMu     sync.Mutex     // serializes Leave and Close
	logState   bridgeState    // memberlist's log lines are dropped once stopped
	conflict   idConflict     // node id conflicts (conflict.go)
	wg         sync.WaitGroup // every goroutine but the transport's

	metaMu  sync.Mutex // protects following
	meta    nodeMeta
	metaCh  chan struct{} // wakes the meta updater; cap 1
	watchCh chan struct{} // wakes the link watchdog (a link or a held verdict to watch); cap 1

	mu      sync.RWMutex // protects following
	closed  bool
	peers   map[string]*peer
	members map[string]*member // every node ever seen, self excluded, bounded
	heldN   int                // members with a held dead verdict (heldDead set)

	memberGen atomic.Uint64 // bumped on every change of a member's state (MemberGen)

	// view is a copy of peers that the send path reads without a lock
	// (peers change on membership events, frames flow all the time); it
	// is replaced, under mu, whenever peers changes, and nil once closed.
	view atomic.Pointer[map[string]*peer]
}

// setViewLocked publishes a copy of peers for lookups; nil once closed.
// o.mu must be held.
func (o *Overlay) setViewLocked() {
	if o.closed {
		o.view.Store(nil)
		return
	}
	v := maps.Clone(o.peers)
	o.view.Store(&v)
}

// lookup returns the peer for id, nil if unknown, and whether the overlay
// is closed, without taking o.mu.
func (o *Overlay) lookup(id string) (p *peer, closed bool) {
	v := o.view.Load()
	if v == nil {
		return nil, true
	}
	return (*v)[id], false
}

// member is the status view of one node. Peer.State is what upper layers
// see: gossip's verdict (ml), shown as suspect while the peer's data link
// is down or quiet. Each source updates only its own part, so no event
// undoes another's verdict.
type member struct {
	Peer
	since time.Time
	ml    State // gossip's verdict

	// A dead verdict from gossip about a peer whose data link is live is
	// held for deadGrace (see NotifyLeave): heldDead is the node and
	// heldSince when the verdict came.
	heldDead  *memberlist.Node
	heldSince time.Time
}

// maxRememberedGone bounds how many dead or departed nodes are remembered.
const maxRememberedGone = 1024

// New starts an overlay node: it binds the listen address and starts
// gossip. Call Join to contact other daemons.
func New(cfg *Config) (*Overlay, error) {
	if cfg == nil {
		return nil, errors.New("overlay: nil config")
	}
	c := *cfg
	c.SecondaryKeys = append([]crypto.Key(nil), cfg.SecondaryKeys...)
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.NodeID == "" {
		c.NodeID = defaultNodeID()
	}
	o := &Overlay{
		cfg:        c,
		id:         c.NodeID,
		log:        c.Logger.With().Str("component", "overlay").Logger(),
		shutdownCh: make(chan struct{}),
		metaCh:     make(chan struct{}, 1),
		watchCh:    make(chan struct{}, 1),
		peers:      make(map[string]*peer),
		members:    make(map[string]*member),
		meta:       nodeMeta{Version: linkVersion, Zone: c.Zone},
	}
	o.view.Store(&map[string]*peer{})
	o.conflict.fatal = make(chan error, 1)
	o.events = newEventQueue(o)
	if err := o.initKeys(); err != nil {
		return nil, err
	}
	tcp, udp, err := listen(c.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("overlay: listen %s: %w", c.ListenAddr, err)
	}
	o.tr = newTransport(o, tcp, udp)
	ml, err := memberlist.Create(o.memberlistConfig())
	if err != nil {
		o.tr.Shutdown()
		return nil, fmt.Errorf("overlay: start membership: %w", err)
	}
	o.ml = ml
	o.addr = ml.LocalNode().Address() // before anything can update the node
	o.wg.Go(o.events.run)
	o.wg.Go(o.metaLoop)
	o.wg.Go(o.watchLinks)
	o.log.Info().Str("node", o.id).Str("listen", o.Addr()).Msg("overlay started")
	return o, nil
}

func defaultNodeID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "irisd"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return host + "-" + hex.EncodeToString(b[:])
}

func (o *Overlay) memberlistConfig() *memberlist.Config {
	c := memberlist.DefaultLANConfig()
	c.Name = o.id
	c.Transport = o.tr
	c.Delegate = (*mlDelegate)(o)
	c.Events = (*mlEvents)(o)
	c.Conflict = (*mlConflict)(o)
	c.Keyring = o.keys.keyring
	c.Label = crypto.GossipLabel
	o.tr.mlLog.w = logBridge{o.log.With().Str("component", "memberlist").Logger(), &o.logState}
	c.Logger = log.New(&o.tr.mlLog, "", 0)
	g := o.cfg.Gossip
	c.ProbeInterval, c.ProbeTimeout, c.SuspicionMult = g.ProbeInterval, g.ProbeTimeout, g.SuspicionMult
	c.GossipInterval, c.PushPullInterval = g.GossipInterval, g.PushPullInterval
	c.DeadNodeReclaimTime = g.DeadNodeReclaimTime
	if g.RetransmitMult > 0 {
		c.RetransmitMult = g.RetransmitMult
	}
	c.TCPTimeout = o.cfg.DialTimeout
	// memberlist's LZW compression allocates a fresh 16K-entry table per
	// message: at idle it was the largest CPU cost of a daemon (issue 11),
	// for packets that are a few hundred bytes. Receivers still accept
	// compressed messages from older daemons.
	c.EnableCompression = false
	bound := o.tr.tcp.Addr().(*net.TCPAddr)
	c.BindAddr, c.BindPort = bound.IP.String(), bound.Port
	c.AdvertiseAddr, c.AdvertisePort = "", 0 // the transport decides
	if o.cfg.AdvertiseAddr != "" {
		host, port, _ := net.SplitHostPort(o.cfg.AdvertiseAddr)
		c.AdvertiseAddr = host
		c.AdvertisePort, _ = strconv.Atoi(port)
	}
	return c
}

// ID returns this node's id.
func (o *Overlay) ID() string { return o.id }

// Addr returns the host:port other daemons reach this one at.
func (o *Overlay) Addr() string { return o.addr }

// Zone returns this node's zone.
func (o *Overlay) Zone() string { return o.cfg.Zone }

// Join contacts the given daemons (host or host:port, the port defaulting
// to DefaultPort) and merges their view of the network. It returns how many
// answered; an error only if none did.
func (o *Overlay) Join(addrs []string) (int, error) {
	norm := make([]string, 0, len(addrs))
	for _, a := range addrs {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			a = net.JoinHostPort(a, strconv.Itoa(DefaultPort))
		}
		norm = append(norm, a)
	}
	if len(norm) == 0 {
		return 0, nil
	}
	o.joinStarted()
	n, err := o.ml.Join(norm)
	if cerr := o.joinDone(n > 0); cerr != nil {
		return n, cerr
	}
	if n > 0 {
		err = nil
	}
	if err != nil {
		return 0, fmt.Errorf("overlay: join %v: %w", norm, err)
	}
	return n, nil
}

// AnnounceLeaving gossips, ahead of Leave, that this node is about to
// leave, so that peers record it as left rather than failed even if the
// leave itself reaches them first or not at all. It returns at once.
func (o *Overlay) AnnounceLeaving() {
	o.metaMu.Lock()
	o.meta.Leaving = true
	o.metaMu.Unlock()
	select {
	case o.metaCh <- struct{}{}:
	default:
	}
}

// Leave tells the network this node is leaving, so peers see it as left
// rather than failed, waiting at most timeout for the news to go out.
// Close the overlay afterwards.
func (o *Overlay) Leave(timeout time.Duration) error {
	o.lifeMu.Lock() // Close waits: memberlist panics on a leave after shutdown
	defer o.lifeMu.Unlock()
	o.mu.RLock()
	closed := o.closed
	o.mu.RUnlock()
	if closed {
		return ErrClosed
	}
	o.metaMu.Lock()
	o.meta.Leaving = true
	o.metaMu.Unlock()
	if err := o.ml.UpdateNode(timeout / 2); err != nil {
		o.log.Debug().Err(err).Msg("leave notice not confirmed")
	}
	return o.ml.Leave(timeout / 2)
}

// Close shuts the node down at once: membership stops, links close, and
// every goroutine has exited when Close returns. Calling Leave first makes
// the departure graceful. Close may be called more than once.
func (o *Overlay) Close() error {
	o.closeOnce.Do(func() {
		o.lifeMu.Lock()
		defer o.lifeMu.Unlock()
		o.mu.Lock()
		o.closed = true
		peers := o.peers
		o.peers = map[string]*peer{}
		o.setViewLocked()
		o.mu.Unlock()
		_ = o.ml.Shutdown() // shuts the transport down and waits for it
		close(o.shutdownCh)
		for _, p := range peers {
			p.remove()
		}
		o.wg.Wait()
		o.logState.stop()
		o.log.Info().Msg("overlay closed")
	})
	return nil
}

// goIfOpen runs f in a goroutine owned by o, unless o is closed.
func (o *Overlay) goIfOpen(f func()) bool {
	o.mu.RLock()
	defer o.mu.RUnlock()
	if o.closed {
		return false
	}
	o.wg.Go(f)
	return true
}

// Send queues one frame, head then body, for peer id and returns at once.
// The overlay keeps both slices until the frame is written: the caller must
// not modify them. Frames to one peer at one priority arrive in order.
// Send fails with ErrBackpressure when the peer's queue is full, and with
// ErrUnknownPeer when id is not a member of the network.
func (o *Overlay) Send(id string, prio Priority, head, body []byte) error {
	return o.SendOwned(id, prio, head, body, nil)
}

// SendOwned is Send for a body whose buffer the caller gives up: once the
// frame is queued (SendOwned returned nil), release, if not nil, is called
// with body when the link's writer has copied it into a record, and
// nothing reads body after that. A frame dropped from the queue (its peer
// left) is not released. On error nothing is released: the caller still
// owns body.
func (o *Overlay) SendOwned(id string, prio Priority, head, body []byte, release func([]byte)) error {
	return o.send(id, prio, qframe{head: head, body: body, release: release}, false)
}

// send queues f for peer id; with copyBody, f.body is valid only during
// the call, and a copy of it is queued.
func (o *Overlay) send(id string, prio Priority, f qframe, copyBody bool) error {
	head, body := f.head, f.body
	if len(head)+len(body) > o.cfg.MaxFrameSize {
		return ErrFrameTooLarge
	}
	p, closed := o.lookup(id)
	if closed {
		return ErrClosed
	}
	if p == nil {
		return ErrUnknownPeer
	}
	if err := p.enqueue(prio, f, copyBody); err != nil {
		o.stats.framesDropped.Add(1)
		return err
	}
	if !p.hasLink.Load() {
		p.ensureDial()
	}
	return nil
}

// SendIfUp is Send for frames that are worthless late, such as events:
// while the peer is down (its link broke, or a dial failed, and no link
// has worked since) it fails with ErrPeerDown rather than queue the frame
// for the next link, which could reach the peer long after, or reach a
// restarted daemon under the same id that never asked for it. Send queues
// such frames (requests, replies, tunnel data): they are dropped, and the
// upper layer told, if the next dial fails too.
func (o *Overlay) SendIfUp(id string, prio Priority, head, body []byte) error {
	return o.sendIfUp(id, prio, head, body, false)
}

// SendIfUpCopy is SendIfUp for a body that is valid only during the call:
// the overlay queues a copy of it (a small one in a block it shares with
// other frames to the peer), and the caller may reuse body at once. Only
// head must stay unmodified until the frame is written.
func (o *Overlay) SendIfUpCopy(id string, prio Priority, head, body []byte) error {
	return o.sendIfUp(id, prio, head, body, true)
}

func (o *Overlay) sendIfUp(id string, prio Priority, head, body []byte, copyBody bool) error {
	p, _ := o.lookup(id)
	if p != nil && p.down.Load() && !p.hasLink.Load() {
		p.ensureDial()
		o.stats.framesDropped.Add(1)
		return ErrPeerDown
	}
	return o.send(id, prio, qframe{head: head, body: body}, copyBody)
}

// Flushed reports whether every frame queued for a peer with a link has
// been written to it.
func (o *Overlay) Flushed() bool {
	o.mu.RLock()
	defer o.mu.RUnlock()
	for _, p := range o.peers {
		if p.hasLink.Load() && (p.queued() || p.writing.Load()) {
			return false
		}
	}
	return true
}

// peerFor returns the peer for id, creating it if needed; nil when closed.
func (o *Overlay) peerFor(id, addr string) *peer {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closed {
		return nil
	}
	p := o.peers[id]
	if p == nil {
		p = newPeer(o, id, addr)
		o.peers[id] = p
		o.setViewLocked()
	} else if addr != "" {
		p.mu.Lock()
		p.addr = addr
		p.mu.Unlock()
	}
	return p
}

// linkClosed is called once per link after both its loops have exited.
// When it was the peer's current link, the peer is down (shown as suspect,
// avoided for new work) until a new link comes up; the dialer keeps trying.
func (o *Overlay) linkClosed(l *link) {
	p := l.p
	p.mu.Lock()
	current := p.link == l
	if current {
		p.link = nil
		p.hasLink.Store(false)
	}
	removed := p.removed
	p.mu.Unlock()
	if l.idleClose() {
		// Closed by agreement (goodbye): no failure. The peer stays as it
		// was, nothing in flight is faulted; frames queued meanwhile go
		// over a new link.
		o.stats.linkIdleCloses.Add(1)
		o.log.Debug().Str("peer", p.id).Msg("idle data link closed by agreement")
		if current && !removed && p.queued() {
			p.ensureDial()
		}
		return
	}
	if current && !removed {
		if n := p.drop(); n > 0 {
			o.stats.framesDropped.Add(uint64(n))
		}
		o.log.Debug().Str("peer", p.id).Err(l.err).Msg("data link down")
		if l.silent.Load() {
			o.log.Warn().Str("peer", p.id).AnErr("reason", l.err).
				Msg("data link closed: the peer went silent; suspect until a link works again")
		}
		p.quiet.Store(false)
		p.down.Store(true)
		o.refresh(p.id)
	}
	o.stats.linkDowns.Add(1)
	o.events.linkDown(p.id)
	if current && !removed {
		p.ensureDial() // probe: a working link clears the suspicion
	}
}

// linkUp records that a link to p came up: the peer is no longer down or
// quiet.
func (o *Overlay) linkUp(p *peer) {
	p.quiet.Store(false)
	p.down.Store(false)
	o.wakeWatchdog()
	o.refresh(p.id)
}

// refresh recomputes the state upper layers see for peer id from gossip's
// verdict and the data link's health, and queues an event if it changed.
func (o *Overlay) refresh(id string) {
	o.mu.Lock()
	m := o.members[id]
	if m == nil || o.closed {
		o.mu.Unlock()
		return
	}
	st := m.ml
	if pe := o.peers[id]; st == StateAlive && pe != nil && (pe.down.Load() || pe.quiet.Load()) {
		st = StateSuspect
	}
	changed := st != m.State
	if changed {
		m.State, m.since = st, time.Now()
		o.memberGen.Add(1)
	}
	p := m.Peer
	o.mu.Unlock()
	if changed {
		o.events.peer(p)
	}
}

// watchLinks is the link watchdog. A link on which this end sent frames
// (requests, say) but heard nothing for KeepaliveInterval/2 gets a probe,
// which the far end answers with a heartbeat at once. A probe unanswered
// for LinkQuietTimeout, or a link silent for KeepaliveTimeout/2 (the far
// writer sends a heartbeat every KeepaliveInterval when idle), marks the
// peer quiet: shown as suspect, so new work goes elsewhere, until a record
// comes in. A probe unanswered for LinkProbeTimeout closes the link as
// silent, so that what is in flight there fails now rather than at
// KeepaliveTimeout; the peer stays suspect until a new link works. A live
// peer is never silent for long even when this end's own backlog delays
// the probe: its heartbeats come on the other direction of the
// connection. The watchdog also applies held dead verdicts (see
// NotifyLeave).
func (o *Overlay) watchLinks() {
	iv := o.cfg.KeepaliveInterval
	probeAfter, quietAfter := int64(iv/2), int64(o.cfg.KeepaliveTimeout/2)
	probeQuiet, probeClose := int64(o.cfg.LinkQuietTimeout), int64(o.cfg.LinkProbeTimeout)
	period := max(min(iv, o.cfg.LinkQuietTimeout)/10, 5*time.Millisecond)
	tick := time.NewTicker(period)
	defer tick.Stop()
	var peers []*peer
	for {
		select {
		case <-tick.C:
		case <-o.shutdownCh:
			return
		}
		now := time.Now().UnixNano()
		peers = peers[:0]
		o.mu.RLock()
		for _, p := range o.peers {
			if p.hasLink.Load() {
				peers = append(peers, p)
			}
		}
		held := o.heldN
		o.mu.RUnlock()
		if len(peers) == 0 && held == 0 {
			// Nothing to watch: sleep until a link comes up or a dead
			// verdict is held (wakeWatchdog), so that an idle daemon
			// costs no timer wake-ups (issue 11).
			tick.Stop()
			select {
			case <-o.watchCh:
			case <-o.shutdownCh:
				return
			}
			tick.Reset(period)
			continue
		}
		for _, p := range peers {
			p.mu.Lock()
			l := p.link
			p.mu.Unlock()
			if l == nil {
				continue
			}
			recv := l.lastRecv.Load()
			pa := l.probeAt.Load()
			unanswered := int64(0)
			if pa != 0 && pa > recv {
				unanswered = now - pa
			}
			l.checkIdle(now)
			if unanswered > probeClose {
				silence := time.Duration(now - recv).Round(time.Millisecond)
				l.silent.Store(true)
				l.close(fmt.Errorf("probe unanswered for %v; nothing heard for %v", time.Duration(unanswered).Round(time.Millisecond), silence))
				continue
			}
			if pa == 0 && now-recv > probeAfter && l.lastSend.Load() > recv {
				l.probeAt.Store(now)
				l.wantProbe.Store(true)
				l.kick()
			}
			quiet := now-recv > quietAfter || unanswered > probeQuiet
			if quiet && p.quiet.CompareAndSwap(false, true) {
				o.log.Info().Str("peer", p.id).Dur("silent_for", time.Duration(now-recv).Round(time.Millisecond)).
					Msg("data link quiet; sending new work elsewhere until the peer is heard again")
				o.refresh(p.id)
			}
		}
		o.applyHeldDead()
	}
}

// deadGrace is how long a dead verdict from gossip is held for a peer whose
// data link is live, so that the peer can refute it (a host that was cut
// off may gossip stale verdicts when it comes back).
func (o *Overlay) deadGrace() time.Duration { return o.cfg.KeepaliveTimeout }

// applyHeldDead applies the held dead verdicts whose grace ran out or whose
// link failed meanwhile.
func (o *Overlay) applyHeldDead() {
	var apply []*memberlist.Node
	o.mu.Lock()
	if o.heldN == 0 {
		o.mu.Unlock()
		return
	}
	for id, m := range o.members {
		if m.heldDead == nil {
			continue
		}
		pe := o.peers[id]
		live := pe != nil && pe.hasLink.Load() && !pe.quiet.Load()
		if !live || time.Since(m.heldSince) > o.deadGrace() {
			apply = append(apply, m.heldDead)
			m.heldDead = nil
			o.heldN--
		}
	}
	o.mu.Unlock()
	for _, n := range apply {
		if o.setMember(n, StateDead) {
			o.log.Info().Str("peer", n.Name).Msg("peer gone (dead verdict upheld)")
		}
	}
}

// holdDead holds a dead verdict about n if its data link is live and it
// was heard from recently; it reports whether it did.
func (o *Overlay) holdDead(n *memberlist.Node) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	m, pe := o.members[n.Name], o.peers[n.Name]
	if o.closed || m == nil || m.ml != StateAlive || pe == nil || pe.quiet.Load() {
		return false
	}
	pe.mu.Lock()
	l := pe.link
	pe.mu.Unlock()
	if l == nil || time.Since(time.Unix(0, l.lastRecv.Load())) > 2*o.cfg.KeepaliveInterval {
		return false
	}
	if m.heldDead == nil {
		m.heldSince = time.Now()
		o.heldN++
	}
	nc := *n
	m.heldDead = &nc
	o.wakeWatchdog()
	return true
}

// wakeWatchdog wakes the link watchdog if it sleeps for want of anything
// to watch.
func (o *Overlay) wakeWatchdog() {
	select {
	case o.watchCh <- struct{}{}:
	default:
	}
}

// remove forgets the peer: its link closes and its queue is dropped.
func (p *peer) remove() {
	p.mu.Lock()
	p.removed = true
	l := p.link
	p.mu.Unlock()
	if l != nil {
		l.close(errors.New("peer removed"))
	}
	if n := p.drop(); n > 0 {
		p.o.stats.framesDropped.Add(uint64(n))
	}
}

// Peers returns every other node this node knows of, alive or not, sorted
// by id. Dead and departed nodes are remembered for a while.
func (o *Overlay) Peers() []Peer {
	o.mu.RLock()
	out := make([]Peer, 0, len(o.members))
	for _, m := range o.members {
		out = append(out, m.Peer)
	}
	o.mu.RUnlock()
	slices.SortFunc(out, func(a, b Peer) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// MemberGen returns a number that changes whenever the state of any other
// node as Peers reports it may have changed: a caller that derived
// something from Peers need not look again while it stays the same.
func (o *Overlay) MemberGen() uint64 { return o.memberGen.Load() }

// AliveCount returns how many other nodes are alive as upper layers see
// them (Peers without the copy).
func (o *Overlay) AliveCount() int {
	o.mu.RLock()
	defer o.mu.RUnlock()
	n := 0
	for _, m := range o.members {
		if m.State == StateAlive {
			n++
		}
	}
	return n
}

// Peer returns what this node knows of node id.
func (o *Overlay) Peer(id string) (Peer, bool) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	m, ok := o.members[id]
	if !ok {
		return Peer{}, false
	}
	return m.Peer, true
}

// SetAppVersion sets the upper-layer state version gossiped in this node's
// metadata. It returns at once; the gossip goes out in the background.
func (o *Overlay) SetAppVersion(v uint64) {
	o.metaMu.Lock()
	o.meta.App = v
	o.metaMu.Unlock()
	select {
	case o.metaCh <- struct{}{}:
	default:
	}
}

// SetAppInstance sets the upper-layer state instance gossiped beside its
// version (see Peer.AppInstance). Call it once, before SetAppVersion.
func (o *Overlay) SetAppInstance(i uint64) {
	o.metaMu.Lock()
	o.meta.AppInst = i
	o.metaMu.Unlock()
	select {
	case o.metaCh <- struct{}{}:
	default:
	}
}

// appMetaInterval is the least time between two metadata updates that only
// change the upper-layer version: each update is gossiped to every node,
// and the version is only the anti-entropy behind the upper layer's own
// pushes, so a thousand changes a second need not be a thousand gossiped
// updates (issue 11). Other changes (leaving) go out at once.
const appMetaInterval = 250 * time.Millisecond

// paceMeta waits d, or less if a change other than the version comes
// meanwhile; false when the overlay shuts down.
func (o *Overlay) paceMeta(d time.Duration, sent nodeMeta) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return true
		case <-o.metaCh:
			o.metaMu.Lock()
			m := o.meta
			o.metaMu.Unlock()
			if m.Leaving != sent.Leaving || m.Zone != sent.Zone || m.AppInst != sent.AppInst {
				return true
			}
		case <-o.shutdownCh:
			return false
		}
	}
}

// metaLoop pushes metadata changes into gossip, coalescing bursts.
func (o *Overlay) metaLoop() {
	var last time.Time
	var sent nodeMeta
	for {
		select {
		case <-o.metaCh:
		case <-o.shutdownCh:
			return
		}
		o.metaMu.Lock()
		m := o.meta
		o.metaMu.Unlock()
		if m.Leaving == sent.Leaving && m.Zone == sent.Zone && m.AppInst == sent.AppInst {
			if wait := appMetaInterval - time.Since(last); wait > 0 {
				if !o.paceMeta(wait, sent) {
					return
				}
			}
		}
		o.metaMu.Lock()
		sent = o.meta
		o.metaMu.Unlock()
		last = time.Now()
		// The update is queued for gossip before UpdateNode waits for
		// it to go out; waiting (up to the timeout, since memberlist's
		// Shutdown does not interrupt it) would only delay Close.
		_ = o.ml.UpdateNode(time.Nanosecond)
	}
}

// setMember records gossip's verdict about a node and queues the event.
// It reports false once the overlay is closed (memberlist's timers outlive
// Shutdown).
func (o *Overlay) setMember(n *memberlist.Node, st State) bool {
	var meta nodeMeta
	if err := meta.decode(n.Meta); err != nil {
		o.log.Warn().Str("peer", n.Name).Err(err).Msg("bad node metadata")
	}
	p := Peer{ID: n.Name, Addr: n.Address(), Zone: meta.Zone, State: st, AppVersion: meta.App, AppInstance: meta.AppInst}
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return false
	}
	var gone *peer
	if st == StateAlive {
		pe := o.peers[p.ID]
		if pe == nil {
			pe = newPeer(o, p.ID, p.Addr)
			o.peers[p.ID] = pe
			o.setViewLocked()
		} else {
			pe.mu.Lock()
			pe.addr = p.Addr
			pe.mu.Unlock()
		}
		if pe.down.Load() || pe.quiet.Load() {
			p.State = StateSuspect
		}
	} else if pe := o.peers[p.ID]; pe != nil {
		gone = pe
		delete(o.peers, p.ID)
		o.setViewLocked()
	}
	if old := o.members[p.ID]; old != nil && old.heldDead != nil {
		o.heldN-- // the new verdict replaces the held one
	}
	o.members[p.ID] = &member{Peer: p, since: time.Now(), ml: st}
	o.forgetOldestGoneLocked()
	o.memberGen.Add(1)
	o.mu.Unlock()
	if gone != nil {
		gone.remove()
	}
	o.events.peer(p)
	return true
}

func (o *Overlay) forgetOldestGoneLocked() {
	if len(o.members) <= maxRememberedGone {
		return
	}
	var oldest *member
	for _, m := range o.members {
		if m.State != StateAlive && (oldest == nil || m.since.Before(oldest.since)) {
			oldest = m
		}
	}
	if oldest != nil {
		if oldest.heldDead != nil {
			o.heldN--
		}
		delete(o.members, oldest.ID)
	}
}

// Stats is a snapshot of the overlay's counters.
type Stats struct {
	FramesOut, FramesIn, FramesDropped, FramesSkipped uint64
	BytesOut, BytesIn                                 uint64
	LinkDowns                                         uint64
	LinkIdleCloses                                    uint64 // links closed by agreement after LinkIdleTimeout (not counted in LinkDowns)
	HeartbeatsIn                                      uint64 // heartbeat frames from idle peers
	HandshakesRefused, ConnsRefusedBusy               uint64
	// Pending inbound connections evicted for newer ones, and those that
	// timed out or were closed before their first record.
	HandshakesEvicted, HandshakesTimedOut uint64
	LogLinesSuppressed                    uint64 // memberlist log lines dropped by the rate limit
	NodeIDConflicts                       uint64 // nodes seen claiming a node id alive at another address
	// Gossip packet bytes (UDP) sent and received; memberlist's push/pull
	// streams are not counted.
	GossipBytesOut, GossipBytesIn uint64
	Links                         int
}

type counters struct {
	framesOut, framesIn, framesDropped, framesSkipped atomic.Uint64
	bytesOut, bytesIn, linkDowns                      atomic.Uint64
	linkIdleCloses                                    atomic.Uint64
	heartbeatsIn                                      atomic.Uint64
}

// Stats returns the overlay's counters.
func (o *Overlay) Stats() Stats {
	s := Stats{
		FramesOut: o.stats.framesOut.Load(), FramesIn: o.stats.framesIn.Load(),
		FramesDropped: o.stats.framesDropped.Load(), FramesSkipped: o.stats.framesSkipped.Load(),
		BytesOut: o.stats.bytesOut.Load(), BytesIn: o.stats.bytesIn.Load(),
		LinkDowns:         o.stats.linkDowns.Load(),
		LinkIdleCloses:    o.stats.linkIdleCloses.Load(),
		HeartbeatsIn:      o.stats.heartbeatsIn.Load(),
		HandshakesRefused: o.tr.refusedAuth.Load(), ConnsRefusedBusy: o.tr.refusedFull.Load(),
		HandshakesEvicted: o.tr.adm.evicted.Load(),
		HandshakesTimedOut: o.tr.adm.idleTimeouts.Load() + o.tr.adm.recordTimeouts.Load() +
			o.tr.adm.handshakeErrors.Load(),
		LogLinesSuppressed: o.tr.mlLog.suppressed.Load(),
		NodeIDConflicts:    o.conflict.count.Load(),
		GossipBytesOut:     o.tr.gossipOut.Load(),
		GossipBytesIn:      o.tr.gossipIn.Load(),
	}
	o.mu.RLock()
	for _, p := range o.peers {
		if p.hasLink.Load() {
			s.Links++
		}
	}
	o.mu.RUnlock()
	return s
}
