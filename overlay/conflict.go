package overlay

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/memberlist"
)

// ErrNodeIDConflict is the fatal error of a daemon that tried to join a
// network in which its node id is already alive at another address.
var ErrNodeIDConflict = errors.New("overlay: node id already in use in the network")

// idConflict records node id conflicts that memberlist reports: a node
// claiming a name that is alive at another address.
//
// Memberlist keeps the node it knew and ignores the claimant, so the first
// daemon with a name keeps it. Both sides hear of it: the established one
// when the newcomer's announcement reaches it, the newcomer while it
// merges the network's state in Join. The newcomer (a conflict about its
// own id reported during a Join that has not succeeded before) gets
// ErrNodeIDConflict from Join and on Fatal, and should shut down; the
// established one logs an error naming the newcomer's address.
type idConflict struct {
	joining atomic.Bool // inside Join, and no Join has succeeded yet
	joined  atomic.Bool // a Join has succeeded
	count   atomic.Uint64

	mu    sync.Mutex // protects err
	err   error
	fatal chan error // cap 1; receives err once
}

// mlConflict implements memberlist.ConflictDelegate.
type mlConflict Overlay

// NotifyConflict implements memberlist.ConflictDelegate.
func (d *mlConflict) NotifyConflict(existing, other *memberlist.Node) {
	o := (*Overlay)(d)
	c := &o.conflict
	c.count.Add(1)
	theirs := net.JoinHostPort(other.Addr.String(), strconv.Itoa(int(other.Port)))
	if existing.Name != o.id {
		o.log.Error().Str("node", existing.Name).Str("addr", existing.Address()).Str("other_addr", theirs).
			Msg("two daemons claim the same node id; the one seen first keeps it, the other is ignored: give every daemon a unique -node")
		return
	}
	if c.joining.Load() && !c.joined.Load() {
		c.mu.Lock()
		if c.err == nil {
			c.err = fmt.Errorf("%w: node id %q is alive at %s; give this daemon another -node", ErrNodeIDConflict, o.id, theirs)
			c.fatal <- c.err
		}
		c.mu.Unlock()
		o.log.Error().Str("node", o.id).Str("other_addr", theirs).
			Msg("our node id is already alive in the network: refusing to join; give this daemon a unique -node")
		return
	}
	o.log.Error().Str("node", o.id).Str("other_addr", theirs).
		Msg("another daemon tried to join with our node id; it was refused and should shut down: give it a unique -node")
}

// Fatal delivers, at most once, an error after which the overlay cannot
// serve: ErrNodeIDConflict when this daemon's node id turned out to be
// in use. The daemon should then shut down.
func (o *Overlay) Fatal() <-chan error { return o.conflict.fatal }

// joinStarted and joinDone bracket a Join; joinDone returns the conflict
// error if one was found.
func (o *Overlay) joinStarted() { o.conflict.joining.Store(true) }

func (o *Overlay) joinDone(ok bool) error {
	c := &o.conflict
	c.joining.Store(false)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	if ok {
		c.joined.Store(true)
	}
	return nil
}
