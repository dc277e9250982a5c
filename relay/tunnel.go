package relay

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iris-mesh/iris/api"
	"github.com/iris-mesh/iris/cluster"
)

// tunnels is the seam between a connection and the tunnel layer. The read
// loop hands it every TUN_* message; the cluster offers it tunnels for a
// service; the writer reports the tunnel bytes it took; the connection
// closes it when the session ends (after which it queues nothing). An error
// from handle ends the session, so it is for protocol violations only.
type tunnels interface {
	handle(m *api.Message) error
	offer(o *cluster.TunnelOffer) bool
	written(bytes int)
	close()
}

func newTunnels(c *conn) tunnels {
	return &connTunnels{
		c:      c,
		builds: make(map[uint64]*appTunnel),
		open:   make(map[uint64]*appTunnel),
		offers: make(map[uint64]*offer),
	}
}

// HandleTunnel implements cluster.TunnelMember for service connections.
func (c *conn) HandleTunnel(o *cluster.TunnelOffer) bool { return c.tun.offer(o) }

// Faults the relay puts in TUN_CLOSE messages.
const (
	reasonOfferExpired = "iris: tunnel offer expired"
	reasonBuildGone    = "iris: tunnel build abandoned"
)

// connTunnels is one connection's tunnels. App ids are the app's own
// (TUN_INIT's tunId, TUN_CONFIRM's tunId); build ids number the offers the
// daemon makes to a service connection.
type connTunnels struct {
	c *conn

	queued atomic.Int64 // chunk bytes queued for the app, not yet taken

	mu        sync.Mutex // protects following
	closed    bool
	builds    map[uint64]*appTunnel // app id → tunnel being built for the app
	open      map[uint64]*appTunnel // app id → open tunnel
	offers    map[uint64]*offer     // build id → offer awaiting the app's confirm
	lastBuild uint64
	waiting   []*appTunnel // tunnels whose chunks wait for queue room
}

// offer is a tunnel offered to the service, awaiting TUN_CONFIRM.
type offer struct {
	o     *cluster.TunnelOffer
	timer *time.Timer
}

// appTunnel is the app's end of a tunnel: a cluster.TunnelSink.
type appTunnel struct {
	ts     *connTunnels
	id     uint64 // the app's tunnel id
	ct     *cluster.Tunnel
	credit atomic.Int64 // bytes the app may still send

	mu        sync.Mutex // protects following
	confirmed bool       // the app has its TUN_CONFIRM (or confirmed itself)
	closeMsg  *string    // a close that arrived before the confirm
	waiting   bool       // in ts.waiting
}

func (ts *connTunnels) count() int { return len(ts.builds) + len(ts.open) + len(ts.offers) }

func (ts *connTunnels) handle(m *api.Message) error {
	switch m.Op {
	case api.OpTunInit:
		return ts.handleInit(m)
	case api.OpTunConfirm:
		return ts.handleConfirm(m.ID, m.ID2)
	case api.OpTunAllow:
		if t := ts.lookup(m.ID); t != nil {
			t.ct.Grant(m.Size)
		}
	case api.OpTunTransfer:
		return ts.handleTransfer(m)
	case api.OpTunClose:
		ts.handleClose(m.ID)
	}
	return nil
}

func (ts *connTunnels) lookup(id uint64) *appTunnel {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	return ts.open[id]
}

// handleInit builds a tunnel for the app; exactly one TUN_CONFIRM answers it.
func (ts *connTunnels) handleInit(m *api.Message) error {
	c := ts.c
	id := m.ID
	t := &appTunnel{ts: ts, id: id}
	ts.mu.Lock()
	_, building := ts.builds[id]
	_, open := ts.open[id]
	full := ts.count() >= c.srv.cfg.MaxTunnels
	ok := !building && !open && !full && !ts.closed && c.reserveAnswer()
	if ok {
		ts.builds[id] = t
	}
	ts.mu.Unlock()
	switch {
	case building || open:
		return fmt.Errorf("relay: %w: tunnel id %d already in use", api.ErrProtocol, id)
	case !ok:
		failed := api.Message{Op: api.OpTunConfirm, ID: id, TimedOut: true}
		c.q.pushControl(&failed)
		return nil
	}
	c.srv.node.OpenTunnel(m.Cluster, timeoutOf(m.TimeoutMs), t, func(ct *cluster.Tunnel, err error) {
		ts.built(t, ct, err)
	})
	return nil
}

// built answers the app's build, and on success grants it credit.
func (ts *connTunnels) built(t *appTunnel, ct *cluster.Tunnel, err error) {
	c := ts.c
	ts.mu.Lock()
	delete(ts.builds, t.id)
	live := !ts.closed
	if live && err == nil {
		t.ct = ct
		ts.open[t.id] = t
	}
	ts.mu.Unlock()
	if !live {
		c.answers.Add(-1)
		if ct != nil {
			ct.Close()
		}
		return
	}
	answer := api.Message{Op: api.OpTunConfirm, ID: t.id, TimedOut: err != nil}
	if err == nil {
		answer.Size = uint64(c.srv.cfg.TunnelChunkLimit)
	}
	if ok, _ := c.q.push(&answer); !ok {
		c.answers.Add(-1)
		return
	}
	if err == nil {
		t.start()
	}
}

// start grants the app its credit once it knows the tunnel, and passes on
// a close that came first.
func (t *appTunnel) start() {
	grant := t.ts.c.srv.cfg.TunnelGrant
	t.credit.Add(int64(grant))
	t.ts.c.q.pushTunnel(&api.Message{Op: api.OpTunAllow, ID: t.id, Size: uint64(grant)})
	t.mu.Lock()
	t.confirmed = true
	pending := t.closeMsg
	t.mu.Unlock()
	if pending != nil {
		t.TunnelClosed(*pending)
	}
}

// offer offers the service a tunnel: TUN_INIT(buildId, chunkLimit), then
// the app has TunnelConfirmTimeout to confirm.
func (ts *connTunnels) offer(o *cluster.TunnelOffer) bool {
	c := ts.c
	if c.closing.Load() {
		return false
	}
	ts.mu.Lock()
	if ts.closed || ts.count() >= c.srv.cfg.MaxTunnels {
		ts.mu.Unlock()
		return false
	}
	ts.lastBuild++
	bid := ts.lastBuild
	of := &offer{o: o}
	ts.offers[bid] = of
	of.timer = time.AfterFunc(c.srv.cfg.TunnelConfirmTimeout, func() { ts.expireOffer(bid) })
	ts.mu.Unlock()
	if !c.q.pushTunnel(&api.Message{Op: api.OpTunInit, ID: bid, Size: uint64(c.srv.cfg.TunnelChunkLimit)}) {
		ts.expireOffer(bid)
	}
	return true
}

// expireOffer withdraws an offer the app did not confirm in time.
func (ts *connTunnels) expireOffer(bid uint64) {
	ts.mu.Lock()
	of := ts.offers[bid]
	delete(ts.offers, bid)
	ts.mu.Unlock()
	if of != nil {
		of.timer.Stop()
		of.o.Reject()
	}
}

// handleConfirm accepts an offer under the app's tunnel id.
func (ts *connTunnels) handleConfirm(bid, id uint64) error {
	c := ts.c
	t := &appTunnel{ts: ts, id: id}
	ts.mu.Lock()
	of := ts.offers[bid]
	_, building := ts.builds[id]
	_, open := ts.open[id]
	issued := bid <= ts.lastBuild
	if of != nil && !building && !open {
		delete(ts.offers, bid)
		ts.open[id] = t // reserved; ct is set below, before any message names it
	}
	ts.mu.Unlock()
	switch {
	case !issued:
		return fmt.Errorf("relay: %w: TUN_CONFIRM for build %d never offered", api.ErrProtocol, bid)
	case building || open:
		return fmt.Errorf("relay: %w: tunnel id %d already in use", api.ErrProtocol, id)
	case of == nil: // expired meanwhile: the app believes in a tunnel that is gone
		c.q.pushControl(&api.Message{Op: api.OpTunClose, ID: id, Fault: reasonOfferExpired})
		return nil
	}
	of.timer.Stop()
	ct := of.o.Accept(t)
	if ct == nil {
		ts.remove(t)
		c.q.pushControl(&api.Message{Op: api.OpTunClose, ID: id, Fault: reasonBuildGone})
		return nil
	}
	ts.mu.Lock()
	t.ct = ct
	ts.mu.Unlock()
	t.start()
	return nil
}

// handleTransfer passes a chunk from the app to the far end.
func (ts *connTunnels) handleTransfer(m *api.Message) error {
	t := ts.lookup(m.ID)
	if t == nil || t.ct == nil {
		return nil // closed meanwhile
	}
	n := len(m.Payload)
	if n > ts.c.srv.cfg.TunnelChunkLimit {
		return fmt.Errorf("relay: %w: tunnel chunk of %d bytes over the announced limit %d",
			api.ErrProtocol, n, ts.c.srv.cfg.TunnelChunkLimit)
	}
	if t.credit.Add(-int64(n)) < 0 {
		return fmt.Errorf("relay: %w: tunnel %d: chunk beyond the granted credit", api.ErrProtocol, m.ID)
	}
	var release func([]byte)
	if ts.c.recycledChunk(m.Payload) {
		release = releaseChunk
	}
	if err := t.ct.SendOwned(m.Size, m.Payload, release); err != nil && !errors.Is(err, cluster.ErrTunnelClosed) {
		return err
	}
	return nil
}

// handleClose closes the app's tunnel and answers TUN_CLOSE(id, "").
func (ts *connTunnels) handleClose(id uint64) {
	t := ts.lookup(id)
	if t == nil {
		return // closed already (the far end's close crossed this one)
	}
	ts.remove(t)
	if t.ct != nil {
		t.ct.Close()
	}
	ts.c.q.pushControl(&api.Message{Op: api.OpTunClose, ID: id})
}

func (ts *connTunnels) remove(t *appTunnel) {
	ts.mu.Lock()
	if ts.open[t.id] == t {
		delete(ts.open, t.id)
	}
	ts.mu.Unlock()
}

// TunnelData implements cluster.TunnelSink: it queues a chunk for the app
// while the connection's tunnel budget allows.
func (t *appTunnel) TunnelData(sc uint64, chunk []byte) bool {
	return t.TunnelDataOwned(sc, chunk, nil)
}

// TunnelDataOwned implements cluster.OwnedTunnelSink: the writer calls done
// once it has written the chunk.
func (t *appTunnel) TunnelDataOwned(sc uint64, chunk []byte, done func()) bool {
	ts := t.ts
	limit := int64(ts.c.srv.cfg.TunnelQueueBytes)
	if q := ts.queued.Load(); q > 0 && q+int64(len(chunk)) > limit {
		ts.wait(t)
		return false
	}
	ts.queued.Add(int64(len(chunk)))
	if !ts.c.q.pushChunk(&api.Message{Op: api.OpTunTransfer, ID: t.id, Size: sc, Payload: chunk}, done) {
		ts.queued.Add(-int64(len(chunk)))
		return false // the session is over
	}
	return true
}

// TunnelAllow implements cluster.TunnelSink: n bytes the app sent were
// passed on, so it may send n more.
func (t *appTunnel) TunnelAllow(n uint64) {
	t.credit.Add(int64(n))
	t.ts.c.q.pushTunnel(&api.Message{Op: api.OpTunAllow, ID: t.id, Size: n})
}

// TunnelClosed implements cluster.TunnelSink: the far end closed or the
// tunnel broke.
func (t *appTunnel) TunnelClosed(reason string) {
	t.mu.Lock()
	if !t.confirmed {
		t.closeMsg = &reason
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	ts := t.ts
	ts.mu.Lock()
	live := ts.open[t.id] == t
	if live {
		delete(ts.open, t.id)
	}
	ts.mu.Unlock()
	if live {
		ts.c.q.pushTunnel(&api.Message{Op: api.OpTunClose, ID: t.id, Fault: reason})
	}
}

// wait records that t has a chunk waiting for queue room.
func (ts *connTunnels) wait(t *appTunnel) {
	t.mu.Lock()
	already := t.waiting
	t.waiting = true
	t.mu.Unlock()
	if already {
		return
	}
	ts.mu.Lock()
	ts.waiting = append(ts.waiting, t)
	ts.mu.Unlock()
	// The writer may have drained everything between the check and now.
	if ts.queued.Load() == 0 {
		ts.written(0)
	}
}

// written is called by the writer with the chunk bytes it took; once the
// queue is half empty, waiting tunnels resume.
func (ts *connTunnels) written(n int) {
	left := ts.queued.Add(-int64(n))
	if left > int64(ts.c.srv.cfg.TunnelQueueBytes)/2 {
		return
	}
	ts.mu.Lock()
	waiting := ts.waiting
	ts.waiting = nil
	cts := make([]*cluster.Tunnel, len(waiting))
	for i, t := range waiting {
		cts[i] = t.ct
	}
	ts.mu.Unlock()
	for i, t := range waiting {
		t.mu.Lock()
		t.waiting = false
		t.mu.Unlock()
		if cts[i] != nil {
			cts[i].Resume()
		}
	}
}

// reasonAppGone is what a far end is told when its app's connection ended
// without a CLOSE.
const reasonAppGone = "iris: the app at the far end disconnected"

// close ends every tunnel of the connection: open ones close, gracefully
// (what the app sent is still delivered) when the session ended with CLOSE,
// at once with a reason when the app vanished or broke the protocol;
// builds are abandoned, offers rejected.
func (ts *connTunnels) close() {
	graceful := ts.c.graceful.Load()
	ts.mu.Lock()
	ts.closed = true
	open, offers := ts.open, ts.offers
	ts.open, ts.offers, ts.waiting = map[uint64]*appTunnel{}, map[uint64]*offer{}, nil
	ts.mu.Unlock()
	for _, t := range open {
		switch {
		case t.ct == nil:
		case graceful:
			t.ct.Close()
		default:
			t.ct.Abort(reasonAppGone)
		}
	}
	for _, of := range offers {
		of.timer.Stop()
		of.o.Reject()
	}
}
