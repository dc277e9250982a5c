package sdk

import (
	"context"
	"fmt"

	"github.com/iris-mesh/iris/api"
)

// TunnelHandler is implemented by a Handler that also accepts the tunnels
// built to its cluster (Conn.Tunnel on another connection). Register checks
// for it with a type assertion; the daemon's tunnel offers to a service
// whose handler lacks it are not confirmed, so the builder's Tunnel fails
// with ErrTimeout, and are counted in Stats.TunnelsRefused.
type TunnelHandler interface {
	// HandleTunnel serves one inbound tunnel for as long as it needs. Each
	// call runs in its own goroutine, at most ServiceLimits.MaxTunnels at
	// once (further offers are refused), and may block. The SDK closes the
	// tunnel when HandleTunnel returns, so it must not hand t to another
	// goroutine and return. When the service's connection closes, the
	// tunnel's calls fail (with errors matching ErrTunnelClosed) and
	// HandleTunnel must return: Close waits for it. A panic is recovered
	// and logged.
	HandleTunnel(t *Tunnel)
}

// tunnelTable is a connection's tunnel state, protected by Conn.mu. Our
// tunIds come from one counter for both directions, so an id at or above
// nextID names no tunnel of ours, while a lower one may name a tunnel
// closed since, whose late messages are ignored.
type tunnelTable struct {
	nextID  uint64
	builds  map[uint64]*build  // outbound builds awaiting TUN_CONFIRM; nil: abandoned by its caller, answer still due
	open    map[uint64]*Tunnel // tunnels confirmed and not yet closed at the daemon
	inbound int                // inbound tunnels being served
}

// build is an outbound tunnel build waiting for the daemon's TUN_CONFIRM.
// The reader (or shutdown) sends exactly one result on done.
type build struct {
	cluster string
	done    chan buildResult
}

type buildResult struct {
	t   *Tunnel
	err error
}

// Tunnel builds a tunnel to one member of cluster, chosen by the daemon,
// which must accept it (see TunnelHandler), and returns it once built.
//
// The build's timeout is ctx's deadline, or Config.DefaultTunnelTimeout when
// ctx has none; it is sent to the daemon, which owns it: a build that no
// member accepts in time, or to a cluster with no members, fails with an
// error wrapping ErrTimeout. When ctx ends first Tunnel returns at once,
// and a tunnel the daemon builds later is closed on arrival. If the
// connection is closed or lost meanwhile the error wraps ErrClosed.
//
// The tunnel belongs to the caller, who must Close it; closing the
// connection closes it too.
func (c *Conn) Tunnel(ctx context.Context, cluster string) (*Tunnel, error) {
	if err := c.checkName("tunnel", cluster); err != nil {
		return nil, err
	}
	timeoutMs, err := timeoutMs(ctx, c.cfg.DefaultTunnelTimeout)
	if err != nil {
		return nil, fmt.Errorf("sdk: tunnel to %q: %w", cluster, err)
	}
	b := &build{cluster: cluster, done: make(chan buildResult, 1)}
	id, err := c.registerBuild(b)
	if err != nil {
		return nil, err
	}
	m := api.Message{Op: api.OpTunInit, ID: id, Cluster: cluster, TimeoutMs: timeoutMs}
	if err := c.send(ctx, &m); err != nil {
		// Not sent, so no answer will come.
		if r, ok := c.unregisterBuild(id, b, false); ok {
			return nil, r.err // shutdown's
		}
		if ctx.Err() != nil {
			err = ctxError(ctx)
		}
		return nil, fmt.Errorf("sdk: tunnel to %q: %w", cluster, err)
	}
	select {
	case r := <-b.done:
		return c.finishBuild(ctx, r)
	case <-ctx.Done():
		// Sent: the daemon owes an answer, which the reader will handle.
		if r, ok := c.unregisterBuild(id, b, true); ok {
			return c.finishBuild(ctx, r) // the answer raced the cancellation
		}
		return nil, fmt.Errorf("sdk: tunnel to %q: %w", cluster, ctxError(ctx))
	}
}

// finishBuild grants the daemon the new tunnel's receive credit.
func (c *Conn) finishBuild(ctx context.Context, r buildResult) (*Tunnel, error) {
	if r.err != nil {
		return nil, r.err
	}
	if err := r.t.grant(ctx, nil, c.cfg.TunnelWindow, "build"); err != nil {
		_ = r.t.Close()
		return nil, err
	}
	return r.t, nil
}

// registerBuild adds b to the pending builds under a fresh tunnel id.
func (c *Conn) registerBuild(b *build) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.checkOpenLocked(); err != nil {
		return 0, err
	}
	id := c.tun.nextID
	c.tun.nextID++
	c.tun.builds[id] = b
	return id, nil
}

// unregisterBuild takes b out of the pending builds, leaving a tombstone if
// the daemon still owes an answer. If the reader or shutdown took b first,
// its result is on the way: unregisterBuild waits for it and returns it.
func (c *Conn) unregisterBuild(id uint64, b *build, tombstone bool) (r buildResult, ok bool) {
	c.mu.Lock()
	if cur, found := c.tun.builds[id]; found && cur == b {
		if tombstone {
			c.tun.builds[id] = nil
		} else {
			delete(c.tun.builds, id)
		}
		c.mu.Unlock()
		return buildResult{}, false
	}
	c.mu.Unlock()
	return <-b.done, true
}

// checkChunkLimit checks the chunk limit the daemon announced.
func checkChunkLimit(op api.Opcode, id, limit uint64) error {
	if limit == 0 || limit > maxChunkLimit {
		return fmt.Errorf("%w: %s %d announces chunk limit %d, want 1 to %d",
			api.ErrProtocol, op, id, limit, maxChunkLimit)
	}
	return nil
}

// handleTunConfirm completes the build a TUN_CONFIRM answers. A tunnel is
// registered at once, since the daemon's credit grant follows right away.
func (c *Conn) handleTunConfirm(m *api.Message) error {
	if !m.TimedOut {
		if err := checkChunkLimit(m.Op, m.ID, m.Size); err != nil {
			return err
		}
	}
	c.mu.Lock()
	b, found := c.tun.builds[m.ID]
	if found {
		delete(c.tun.builds, m.ID)
	}
	var t *Tunnel
	if found && !m.TimedOut && c.tun.open != nil {
		cluster := ""
		if b != nil {
			cluster = b.cluster
		}
		t = newTunnel(c, m.ID, cluster, int(m.Size))
		c.tun.open[m.ID] = t
	}
	c.mu.Unlock()
	switch {
	case !found:
		c.stats.unknownReplies.Add(1)
		c.log.Warn("sdk: tunnel build result for an unknown tunnel id", "id", m.ID)
	case b == nil:
		c.stats.lateReplies.Add(1)
		if t != nil {
			c.handlers.Go(func() { _ = t.Close() }) // built for nobody
		}
	case t != nil:
		b.done <- buildResult{t: t}
	case m.TimedOut:
		b.done <- buildResult{err: fmt.Errorf("sdk: tunnel to %q: %w", b.cluster, ErrTimeout)}
	default: // built, but the connection is finishing
		b.done <- buildResult{err: fmt.Errorf("sdk: tunnel to %q: %w", b.cluster, ErrClosed)}
	}
	return nil
}

// handleTunOffer accepts an inbound tunnel offer: it registers the tunnel
// under a fresh id and starts the goroutine that confirms it, grants the
// daemon its credit and runs the handler. Offers it cannot serve are not
// confirmed; the daemon fails the build. It never blocks.
func (c *Conn) handleTunOffer(m *api.Message) error {
	if err := checkChunkLimit(m.Op, m.ID, m.Size); err != nil {
		return err
	}
	buildID := m.ID
	c.mu.Lock()
	if c.svc == nil || c.svc.tunnels == nil || c.checkOpenLocked() != nil ||
		c.tun.inbound >= c.svc.limits.MaxTunnels {
		c.mu.Unlock()
		c.stats.tunnelsRefused.Add(1)
		return nil
	}
	t := newTunnel(c, c.tun.nextID, c.cluster, int(m.Size))
	c.tun.nextID++
	c.tun.open[t.id] = t
	c.tun.inbound++
	c.mu.Unlock()
	c.handlers.Go(func() { c.serveTunnel(t, buildID) })
	return nil
}

// serveTunnel confirms an inbound tunnel, grants the daemon its credit,
// runs the handler and closes the tunnel when it returns.
func (c *Conn) serveTunnel(t *Tunnel, buildID uint64) {
	defer func() {
		c.mu.Lock()
		c.tun.inbound--
		c.mu.Unlock()
	}()
	defer func() { _ = t.Close() }()
	confirm := api.Message{Op: api.OpTunConfirm, ID: buildID, ID2: t.id}
	if err := t.queue(c.baseCtx, nil, &confirm, "confirm"); err != nil {
		return // the connection ended
	}
	if err := t.grant(c.baseCtx, nil, c.cfg.TunnelWindow, "confirm"); err != nil {
		return
	}
	defer c.recoverHandler("tunnel")
	c.svc.tunnels.HandleTunnel(t)
}

// lookupTunnel returns the open tunnel id names. It returns nil for a
// tunnel closed since (its message is late, and counted as ignored), and a
// protocol error for an id that never named a tunnel of ours.
func (c *Conn) lookupTunnel(op api.Opcode, id uint64) (*Tunnel, error) {
	c.mu.Lock()
	t := c.tun.open[id]
	known := id < c.tun.nextID
	c.mu.Unlock()
	switch {
	case t != nil:
		return t, nil
	case known:
		c.stats.ignored.Add(1)
		return nil, nil
	default:
		return nil, fmt.Errorf("%w: %s for tunnel %d, never opened", api.ErrProtocol, op, id)
	}
}

// handleTunAllow adds the send credit the daemon grants.
func (c *Conn) handleTunAllow(m *api.Message) error {
	t, err := c.lookupTunnel(m.Op, m.ID)
	if t != nil {
		t.onAllow(m.Size)
	}
	return err
}

// handleTunTransfer passes a chunk to its tunnel, which buffers it within
// the credit granted.
func (c *Conn) handleTunTransfer(m *api.Message) error {
	t, err := c.lookupTunnel(m.Op, m.ID)
	if t != nil {
		err = t.onTransfer(m.Size, m.Payload)
	}
	return err
}

// handleTunClose ends a tunnel the daemon closed: the answer to our Close,
// or the far end closing it.
func (c *Conn) handleTunClose(m *api.Message) error {
	t, err := c.lookupTunnel(m.Op, m.ID)
	if t != nil {
		c.dropTunnel(t)
		t.onClose(m.Fault)
	}
	return err
}

// dropTunnel removes t from the open tunnels: messages for it are ignored
// from now on.
func (c *Conn) dropTunnel(t *Tunnel) {
	c.mu.Lock()
	if c.tun.open[t.id] == t {
		delete(c.tun.open, t.id)
	}
	c.mu.Unlock()
}

// endTunnels ends every open tunnel with err, which wraps ErrClosed, once
// nothing more will arrive for them: the daemon answered CLOSE (it closes
// the connection's tunnels then) or the connection is finished.
func (c *Conn) endTunnels(err error) {
	c.mu.Lock()
	open := c.tun.open
	c.tun.open = nil
	c.mu.Unlock()
	for _, t := range open {
		t.onConnEnd(err)
	}
}

// failBuilds fails every pending build with err; shutdown calls it.
func (c *Conn) failBuilds(builds map[uint64]*build, err error) {
	for _, b := range builds {
		if b != nil {
			b.done <- buildResult{err: err}
		}
	}
}
