package overlay

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Admission control for inbound TCP connections that have not proved yet
// that they hold the network key. Anyone who can reach the overlay port can
// open such connections, so what they may cost is bounded, and they are
// shed in the order that costs real daemons least:
//
//   - at most MaxPendingHandshakes are pending at once, at most
//     MaxPendingHandshakesPerIP from one source address;
//   - a connection that has sent nothing gets FirstMessageTimeout (a real
//     daemon sends its first Noise message right after connecting), the
//     whole setup HandshakeTimeout;
//   - when a new connection finds its address's or the daemon's slots
//     full, it takes the slot of a pending one, chosen by stage: first one
//     that has sent nothing, then one whose handshake is incomplete, then
//     one that completed the Noise handshake but has not sent its first
//     record (a replayed first message gets that far); the oldest first
//     within a stage. A daemon with the key reaches the last stage within
//     one round trip, so a flood of idle or garbage connections never
//     evicts it.

// Stages of a pending inbound connection, in eviction order.
const (
	stageIdle      int32 = iota // nothing received yet
	stageHandshake              // some handshake bytes received
	stageRecord                 // Noise handshake done; waiting for the first record
)

// errEvicted is the read error of a pending connection whose slot was
// given to a newer one.
var errEvicted = errors.New("overlay: pending connection evicted for a newer one")

// pendingConn is an inbound connection holding an admission slot. Its
// Read tracks the stage and extends the deadline once the first bytes
// arrive.
type pendingConn struct {
	*net.TCPConn
	ip       string
	start    time.Time
	deadline time.Time // start + HandshakeTimeout
	stage    atomic.Int32
	evicted  atomic.Bool
	elem     int // index in admission.list; -1 once released
}

// Read implements io.Reader for the handshake and the first records.
func (c *pendingConn) Read(p []byte) (int, error) {
	n, err := c.TCPConn.Read(p)
	if n > 0 && c.stage.Load() == stageIdle {
		c.stage.Store(stageHandshake)
		_ = c.TCPConn.SetDeadline(c.deadline)
	}
	if err != nil && c.evicted.Load() {
		err = errEvicted
	}
	return n, err
}

// admission tracks the pending inbound connections.
type admission struct {
	max, maxPerIP int

	mu    sync.Mutex // protects following
	list  []*pendingConn
	perIP map[string]int

	evicted         atomic.Uint64 // pending connections closed for a newer one
	idleTimeouts    atomic.Uint64 // connections that sent nothing within FirstMessageTimeout
	recordTimeouts  atomic.Uint64 // Noise done, no first record in time (replays, stalls)
	handshakeErrors atomic.Uint64 // other failures before the first record (timeouts mid-handshake, resets)
}

func newAdmission(max, maxPerIP int) *admission {
	return &admission{max: max, maxPerIP: maxPerIP, perIP: make(map[string]int)}
}

// admit registers conn, evicting a pending connection if its address or
// the daemon is at its limit. It sets conn's deadline.
func (a *admission) admit(conn *net.TCPConn, now time.Time, first, total time.Duration) *pendingConn {
	ip := ""
	if ta, ok := conn.RemoteAddr().(*net.TCPAddr); ok {
		ip = ta.IP.String()
	}
	pc := &pendingConn{TCPConn: conn, ip: ip, start: now, deadline: now.Add(total)}
	_ = conn.SetDeadline(now.Add(min(first, total)))
	var victims []*pendingConn
	a.mu.Lock()
	if a.perIP[ip] >= a.maxPerIP {
		if v := a.victimLocked(ip); v != nil {
			victims = append(victims, v)
		}
	}
	if len(a.list) >= a.max {
		if v := a.victimLocked(""); v != nil {
			victims = append(victims, v)
		}
	}
	pc.elem = len(a.list)
	a.list = append(a.list, pc)
	a.perIP[ip]++
	a.mu.Unlock()
	for _, v := range victims {
		a.evicted.Add(1)
		v.evicted.Store(true)
		_ = v.SetLinger(0)
		_ = v.TCPConn.Close() // its goroutine's read fails; it exits
	}
	return pc
}

// victimLocked picks and releases the connection to evict: from ip if not
// empty, else from anyone; the earliest stage, then the oldest.
func (a *admission) victimLocked(ip string) *pendingConn {
	var best *pendingConn
	bestStage := int32(stageRecord + 1)
	for _, c := range a.list { // oldest first
		if ip != "" && c.ip != ip {
			continue
		}
		st := c.stage.Load()
		if st == stageIdle && hasData(c.TCPConn) {
			// Its goroutine has not run yet (a busy machine), but its first
			// message has arrived: not idle.
			st = stageHandshake
		}
		if st < bestStage {
			best, bestStage = c, st
			if st == stageIdle {
				break
			}
		}
	}
	if best != nil {
		a.releaseLocked(best)
	}
	return best
}

// release frees c's slot. It may be called more than once.
func (a *admission) release(c *pendingConn) {
	a.mu.Lock()
	a.releaseLocked(c)
	a.mu.Unlock()
}

func (a *admission) releaseLocked(c *pendingConn) {
	if c.elem < 0 {
		return
	}
	i := c.elem
	copy(a.list[i:], a.list[i+1:])
	a.list[len(a.list)-1] = nil
	a.list = a.list[:len(a.list)-1]
	for j := i; j < len(a.list); j++ {
		a.list[j].elem = j
	}
	c.elem = -1
	if a.perIP[c.ip]--; a.perIP[c.ip] <= 0 {
		delete(a.perIP, c.ip)
	}
}

// pending reports how many connections hold slots.
func (a *admission) pending() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.list)
}

// failReason classifies why a pending connection failed before its first
// record, counts it, and says whether it is worth a (rate-limited) log
// line as a handshake refusal (wrong key or garbage) rather than load
// shedding or a stall.
func (a *admission) failReason(c *pendingConn, err error) (reason string, authFailure bool) {
	switch {
	case c.evicted.Load() || errors.Is(err, errEvicted):
		return "evicted for a newer connection", false
	case isTimeout(err) && c.stage.Load() == stageIdle:
		a.idleTimeouts.Add(1)
		return "sent nothing in time", false
	case isTimeout(err) && c.stage.Load() == stageRecord:
		a.recordTimeouts.Add(1)
		return "no first record after the handshake (a replay?)", false
	case isTimeout(err), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, net.ErrClosed):
		a.handshakeErrors.Add(1)
		return "connection timed out or closed during the handshake", false
	}
	return "handshake failed (wrong network key or network name, or not an irisd)", true
}

// isTimeout reports whether err is a deadline error.
func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// dialFailReason words a failed outbound handshake for the log: only a
// peer that closes the connection after our first message may have
// another key; a timeout is a slow or overloaded peer.
func dialFailReason(err error) string {
	switch {
	case isTimeout(err):
		return "handshake with peer timed out: the peer is slow, overloaded or shedding connections"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return "peer closed the connection during our handshake: it has another network key or network name, or is shedding load"
	}
	return "handshake with peer failed"
}
