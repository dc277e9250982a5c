package relay

import (
	"fmt"
	"sync"
	"time"

	"github.com/iris-mesh/iris/api"
)

// tunnels is the seam between a connection and the tunnel layer. The read
// loop hands it every TUN_* message; the connection closes it when the
// session ends (after which it must queue nothing). An error it returns
// ends the session, so it is for protocol violations only.
//
// To answer the app it uses the connection's queue: conn.reserveAnswer and
// q.push for an answer the app awaits (TUN_CONFIRM), q.pushControl for one
// the read loop makes at once, q.offer for bulk (TUN_TRANSFER).
type tunnels interface {
	handle(m *api.Message) error
	close()
}

// newTunnels returns a connection's tunnel handler. Replace it with the
// tunnel layer.
func newTunnels(c *conn) tunnels {
	return &noTunnels{c: c, builds: make(map[uint64]*time.Timer)}
}

// noTunnels stands in for the tunnel layer until it exists: every build
// times out at its deadline, as a build to a cluster with no member does,
// and every other tunnel message names an unknown tunnel and is ignored.
type noTunnels struct {
	c *conn

	mu     sync.Mutex // protects following
	closed bool
	builds map[uint64]*time.Timer // tunId → the timer answering its TUN_INIT
}

func (t *noTunnels) handle(m *api.Message) error {
	if m.Op != api.OpTunInit {
		return nil // no tunnel exists, so the tunnel it names is unknown
	}
	id := m.ID
	t.mu.Lock()
	_, dup := t.builds[id]
	closed := t.closed
	ok := !dup && !closed && t.c.reserveAnswer()
	if ok {
		t.builds[id] = time.AfterFunc(timeoutOf(m.TimeoutMs), func() { t.expire(id) })
	}
	t.mu.Unlock()
	switch {
	case dup:
		return fmt.Errorf("relay: %w: tunnel id %d already being built", api.ErrProtocol, id)
	case !ok && !closed: // MaxPendingRequests reached: fail the build at once
		failed := api.Message{Op: api.OpTunConfirm, ID: id, TimedOut: true}
		t.c.q.pushControl(&failed)
	}
	return nil
}

// expire answers build id as timed out, once, unless the session is over.
func (t *noTunnels) expire(id uint64) {
	t.mu.Lock()
	_, ok := t.builds[id]
	if ok {
		delete(t.builds, id)
	}
	t.mu.Unlock()
	if !ok {
		return
	}
	m := api.Message{Op: api.OpTunConfirm, ID: id, TimedOut: true}
	if !t.c.q.push(&m) {
		t.c.answers.Add(-1)
	}
}

func (t *noTunnels) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	for id, tm := range t.builds {
		tm.Stop()
		delete(t.builds, id)
	}
}
