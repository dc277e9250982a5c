package relay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/iris-mesh/iris/api"
	"github.com/iris-mesh/iris/cluster"
	"github.com/iris-mesh/iris/internal/deadline"
)

// Write batching: the writer flushes once this much is encoded, and drops a
// buffer that grew beyond maxKeptBuf (a huge message) rather than keep it.
const (
	flushSize  = 64 << 10
	maxKeptBuf = 1 << 20
	// directWriteSize is the payload size from which the writer writes a
	// payload from where it is (writev) rather than copying it.
	directWriteSize = 16 << 10
	minKeptQ        = 1024 // an idle queue keeps a batch slice of up to this many messages
	// maxBorrowedEvent is the largest event of a PUBLISH that the read
	// loop fans out from its Decoder's buffer (api.Decoder.SetBorrow):
	// the subscribers' queues copy such events into their slabs.
	maxBorrowedEvent = directWriteSize - 1
)

// writevMax and writevParts bound what one write gathers: bytes, and
// slices (two per large payload).
const (
	writevMax   = 1 << 20
	writevParts = 128
)

// errAppClose ends the read loop when the app sends CLOSE.
var errAppClose = errors.New("relay: closed by the app")

// errDenied ends a session refused with DENY.
var errDenied = errors.New("relay: handshake denied")

// conn is one app connection. Its read loop (serve, on the caller's
// goroutine) decodes and dispatches messages; its write loop drains q.
// The cluster calls into it as a Member (service connections) and through
// its topicSubs; those calls never block.
type conn struct {
	srv *Server
	nc  net.Conn
	dec *api.Decoder
	rd  *appReader // between nc and dec: budget and deadline of partly read messages
	log zerolog.Logger
	q   *sendQueue
	tun tunnels
	iov net.Buffers // the write loop's, reused by writeBatch
	// lastChunk is the buffer allocChunk gave the read loop's Decoder
	// last (chunkpool.go).
	lastChunk *byte

	// answers counts the app's requests and tunnel builds whose answer has
	// not been taken by the writer yet (see kindAnswer).
	answers atomic.Int64
	// closing is set when the session starts to end (by leave, under mu,
	// or by kill); from then on the read loop ignores what it reads and
	// nothing new is delivered.
	closing  atomic.Bool
	graceful atomic.Bool // the session ends with CLOSE: tunnels drain rather than abort
	slow     atomic.Bool // a slow-consumer drop was logged

	writerDone chan struct{} // closed when the write loop exits; nil if it never started
	leaveOnce  sync.Once
	killOnce   sync.Once

	mu            sync.Mutex // protects following
	ready         bool       // the INIT answer was written
	reg           *cluster.Registration
	subs          map[string]*topicSub
	interest      int                      // bytes of subs' topics, as MaxAppInterest counts them
	inflight      map[uint64]struct{}      // ids of the app's requests not answered yet
	delivered     map[uint64]*delivery     // requests delivered to the app, awaiting its REPLY
	deadlines     *deadline.Set[*delivery] // times the delivered requests
	lastDelivered uint64                   // the last delivered request id issued

	x v11state // protocol v1.1 (v11.go)
}

func newConn(s *Server, nc net.Conn, id uint64) *conn {
	c := &conn{
		srv:       s,
		nc:        nc,
		log:       s.log.With().Uint64("conn", id).Str("peer", nc.RemoteAddr().String()).Logger(),
		q:         newSendQueue(s.cfg.SendQueueLen, s.cfg.SendQueueBytes, s.cfg.MaxReplyBytes, s.cfg.MaxPendingRequests, &s.memQueue),
		subs:      make(map[string]*topicSub),
		inflight:  make(map[uint64]struct{}),
		delivered: make(map[uint64]*delivery),
	}
	c.deadlines = deadline.New[*delivery](c.expire)
	c.rd = &appReader{c: c}
	c.dec = api.NewDecoder(c.rd, s.cfg.Limits)
	c.dec.SetAlloc(c.allocChunk)
	c.dec.SetBorrow(maxBorrowedEvent)
	c.tun = newTunnels(c)
	c.q.gapStat = &s.stats.gapNotices
	return c
}

// serve runs the session: handshake, then the read loop until the session
// ends, then the teardown. It returns when the write loop has exited and
// the socket is closed.
func (c *conn) serve(ctx context.Context) error {
	killed := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(killed)
		c.kill()
	})
	defer func() {
		if !stop() { // ctx fired: wait for its kill to return
			<-killed
		}
	}()
	err := c.handshake()
	if err == nil {
		c.writerDone = make(chan struct{})
		go c.writeLoop()
		err = c.readLoop()
	}
	c.rd.release()
	var ref *refusal
	switch {
	case errors.Is(err, errAppClose):
		c.closeGracefully("")
	case errors.As(err, &ref) && c.isReady():
		c.refuse(ref.reason)
	default:
		c.leave()
		c.kill()
	}
	if c.writerDone != nil {
		<-c.writerDone
	}
	err = c.logEnd(err)
	if ref != nil {
		c.drain()
	}
	c.nc.Close()
	return err
}

// refuse ends the session with CLOSE(reason) at once: what is queued for
// the app is dropped, and a writer blocked on an app that does not read
// gives up after HandshakeTimeout.
func (c *conn) refuse(reason string) {
	c.leave()
	_ = c.nc.SetWriteDeadline(time.Now().Add(c.srv.cfg.HandshakeTimeout))
	c.q.replace(&api.Message{Op: api.OpClose, Fault: reason})
}

// drain reads and discards what the app still sends, for at most
// HandshakeTimeout, after a refusal: closing a socket with unread bytes
// resets it, and the app could lose the CLOSE that says why.
func (c *conn) drain() {
	_ = c.nc.SetReadDeadline(time.Now().Add(c.srv.cfg.HandshakeTimeout))
	buf := make([]byte, 4096)
	for {
		if _, err := c.nc.Read(buf); err != nil {
			return
		}
	}
}

// logEnd counts and logs how a session ended, and returns the error
// ServeConn reports (nil for a clean end).
func (c *conn) logEnd(err error) error {
	switch {
	case errors.Is(err, errAppClose), errors.Is(err, io.EOF):
		c.log.Debug().Msg("app disconnected")
		return nil
	case errors.Is(err, os.ErrDeadlineExceeded) && c.isReady():
		// The only read deadline after the handshake is endWrites'.
		c.log.Debug().Msg("app did not hang up after CLOSE")
		return nil
	case errors.Is(err, errMemoryBudget):
		c.srv.stats.budgetClosed.Add(1)
		c.srv.warn(c, err, "closing app connection: memory budget for apps exhausted")
	case errors.Is(err, errStalled):
		c.srv.stats.stalled.Add(1)
		c.srv.warn(c, err, "closing app connection: message not completed in time")
	case errors.Is(err, errAppInterest), errors.Is(err, cluster.ErrInterestFull):
		c.srv.warn(c, err, "closing app connection: subscription refused")
	case errors.Is(err, errDenied):
		c.srv.stats.denied.Add(1)
		c.log.Debug().Err(err).Msg("app denied")
	case errors.Is(err, net.ErrClosed), errors.Is(err, io.ErrClosedPipe), errors.Is(err, ErrClosed):
		// The daemon closed the socket: Close, Shutdown, ctx, or a failed write.
		c.log.Debug().Msg("connection closed by the daemon")
		return nil
	case !c.isReady():
		c.srv.stats.handshakeFailures.Add(1)
		c.log.Debug().Err(err).Msg("handshake failed")
	case errors.Is(err, api.ErrProtocol):
		c.srv.stats.violation.Add(1)
		c.srv.warn(c, err, "closing app connection: protocol violation")
		return err
	default:
		c.log.Debug().Err(err).Msg("app connection lost")
	}
	return err
}

func (c *conn) isReady() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ready
}

// handshake reads the INIT, registers a service, and answers INIT or DENY,
// all within HandshakeTimeout.
func (c *conn) handshake() error {
	_ = c.nc.SetDeadline(time.Now().Add(c.srv.cfg.HandshakeTimeout))
	var m api.Message
	err := c.dec.ReadClient(&m)
	c.rd.messageDone(c.dec.Buffered())
	if err != nil {
		return fmt.Errorf("relay: handshake: %w", err)
	}
	c.srv.stats.msgsIn.Add(1)
	switch {
	case m.Op != api.OpInit:
		return fmt.Errorf("relay: handshake: %w: %s before INIT", api.ErrProtocol, m.Op)
	case m.Magic != api.ClientMagic:
		return fmt.Errorf("relay: handshake: %w: bad magic %.32q", api.ErrProtocol, m.Magic)
	case m.Version != api.ProtocolVersion && m.Version != api.ProtocolV11:
		return c.deny(api.DenyVersionReason(m.Version))
	}
	name := ""
	if m.Version == api.ProtocolV11 {
		var err error
		if name, err = c.handshakeV11(&m); err != nil {
			return err
		}
	}
	if m.Cluster != "" {
		if err := c.register(m.Cluster, name); err != nil {
			return err
		}
		if c.x.on {
			c.x.unconfirmed = c.confirmRegistration() // subs.go
		}
	}
	// Ready before the answer is written: from now on a graceful close
	// queues CLOSE, which the write loop sends after this INIT.
	c.mu.Lock()
	closing := c.closing.Load()
	c.ready = !closing
	c.mu.Unlock()
	if closing {
		return fmt.Errorf("relay: handshake: %w", ErrClosed)
	}
	accept := c.initAnswer(m.Version)
	if err := c.writeNow(&accept); err != nil {
		return fmt.Errorf("relay: handshake: write INIT: %w", err)
	}
	_ = c.nc.SetDeadline(time.Time{})
	c.rd.active = true
	c.log.Debug().Str("cluster", m.Cluster).Msg("app connected")
	return nil
}

// register makes the connection a member of cluster before the INIT answer
// is written, so a request sent right after it can reach the service.
func (c *conn) register(name, member string) error {
	reg, err := c.srv.node.RegisterNamed(name, member, c, c.srv.cfg.MemberCapacity)
	if err != nil {
		if errors.Is(err, cluster.ErrInterestFull) {
			c.srv.stats.interestRefused.Add(1)
		}
		return c.deny(registerDenyReason(err))
	}
	c.x.name = reg.Name()
	c.mu.Lock()
	if c.closing.Load() { // closed meanwhile; leave has run without it
		c.mu.Unlock()
		reg.Close()
		return fmt.Errorf("relay: handshake: %w", ErrClosed)
	}
	c.reg = reg
	c.mu.Unlock()
	c.srv.stats.services.Add(1)
	return nil
}

// deny answers DENY(reason); the session then ends.
func (c *conn) deny(reason string) error {
	m := api.Message{Op: api.OpDeny, Magic: api.RelayMagic, Fault: reason}
	if err := c.writeNow(&m); err != nil {
		return fmt.Errorf("relay: handshake: write DENY: %w", err)
	}
	return fmt.Errorf("%w: %s", errDenied, reason)
}

// writeNow writes m directly; only the handshake does, before the write
// loop starts.
func (c *conn) writeNow(m *api.Message) error {
	b := api.AppendDaemon(nil, m)
	n, err := c.nc.Write(b)
	c.srv.stats.bytesOut.Add(uint64(n))
	if err == nil {
		c.srv.stats.msgsOut.Add(1)
	}
	return err
}

// readLoop decodes and dispatches the app's messages until the session ends.
func (c *conn) readLoop() error {
	var m api.Message
	// read counts the messages decoded since the last read from the socket:
	// they are added to the shared counter once the decoder has nothing
	// buffered (before it waits for the socket), not one by one, which
	// made the counter's cache line bounce between the reader and writers.
	read := uint64(0)
	defer func() { c.srv.stats.msgsIn.Add(read) }()
	for {
		err := c.dec.ReadClient(&m)
		buffered := c.dec.Buffered()
		c.rd.messageDone(buffered)
		if err != nil {
			return c.refusalOf(err)
		}
		if read++; buffered == 0 {
			c.srv.stats.msgsIn.Add(read)
			read = 0
		}
		if c.closing.Load() {
			continue // the daemon is closing the session: drain until the socket closes
		}
		if err := c.dispatch(&m); err != nil {
			return c.refusalOf(err)
		}
	}
}

// refusalOf wraps a read error that deserves a CLOSE reason: the app is
// told why its connection ends rather than seeing a bare EOF.
func (c *conn) refusalOf(err error) error {
	var reason string
	switch {
	case errors.Is(err, errMemoryBudget):
		reason = reasonMemoryBudget
	case errors.Is(err, errStalled):
		reason = fmt.Sprintf("%s: no progress for %v", reasonStalled, c.srv.cfg.MessageTimeout)
	case errors.Is(err, api.ErrProtocol):
		reason = "iris: protocol violation: " + strings.TrimPrefix(
			strings.ReplaceAll(err.Error(), api.ErrProtocol.Error()+": ", ""), "relay: ")
		var big *api.TooLargeError
		if errors.As(err, &big) {
			flag := "-max-message"
			if big.Limit != c.srv.cfg.Limits.MaxMessageLen {
				flag = "names and strings"
			}
			reason = fmt.Sprintf("iris: message field of %d bytes exceeds the daemon's limit of %d bytes (%s)", big.Len, big.Limit, flag)
		}
	default:
		return err
	}
	return &refusal{reason: reason, err: err}
}

// dispatch hands one message to its handler.
func (c *conn) dispatch(m *api.Message) error {
	switch m.Op {
	case api.OpClose:
		return errAppClose
	case api.OpBroadcast:
		c.srv.node.Broadcast(m.Cluster, m.Payload)
	case api.OpRequest:
		return c.handleRequest(m)
	case api.OpReply:
		return c.handleReply(m)
	case api.OpSubscribe:
		if c.x.on {
			return c.subscribeV11(m.Topic) // subs.go
		}
		return c.handleSubscribe(m.Topic)
	case api.OpUnsubscribe:
		c.handleUnsubscribe(m.Topic)
	case api.OpPublish:
		// Up to maxBorrowedEvent the event lies in the Decoder's buffer.
		if len(m.Payload) <= maxBorrowedEvent {
			c.srv.node.PublishTransient(m.Topic, m.Payload)
		} else {
			c.srv.node.Publish(m.Topic, m.Payload)
		}
	case api.OpTunInit, api.OpTunConfirm, api.OpTunAllow, api.OpTunTransfer, api.OpTunClose:
		if m.Op == api.OpTunInit && c.noMembers(api.OpTunInit, m.ID, m.Cluster) {
			return nil
		}
		return c.tun.handle(m)
	case api.OpSurvey, api.OpPush, api.OpPull, api.OpCancel: // v1.1 sessions only (the Decoder)
		return c.dispatchV11(m)
	default: // INIT again; the Decoder rejects the rest
		return fmt.Errorf("relay: %w: %s after the handshake", api.ErrProtocol, m.Op)
	}
	return nil
}

// writeLoop writes what the queue holds, many messages per write, until
// the queue is aborted or sealed and drained, or a write fails. Then it
// ends the connection (see endWrites).
func (c *conn) writeLoop() {
	defer close(c.writerDone)
	buf := make([]byte, 0, flushSize)
	var batch []outMsg
	var blocks []*slabBuf // the slab blocks of batch (slab.go)
	// Batch slices are recycled, however large a burst made them, while
	// the connection is busy: a growing slice per batch was 17% of the
	// daemon's CPU under load. Their slots are charged to the queue's byte
	// bounds (msgOverhead) while in use, and take drops a large one when the
	// queue runs empty.
	for {
		var ok bool
		batch, blocks, ok = c.q.take(batch, blocks)
		if !ok {
			c.endWrites()
			return
		}
		var err error
		buf, err = c.writeBatch(buf, batch)
		c.q.written(batch)
		clear(batch) // drop the payloads
		if cap(buf) > maxKeptBuf {
			buf = make([]byte, 0, flushSize)
		}
		if err != nil {
			c.q.abort()
			c.nc.Close() // ends the read loop
			if !c.closing.Load() {
				c.log.Debug().Err(err).Msg("write to app failed")
			}
			return
		}
	}
}

// endWrites ends the connection once nothing more will be written. After a
// graceful close (CLOSE written last) a TCP connection is only half-closed,
// and the read loop drains what the app still sends until it hangs up, for
// at most HandshakeTimeout: closing with the app's bytes unread would reset
// the connection, and the app could lose the CLOSE. Otherwise the socket
// is closed, which ends the read loop.
func (c *conn) endWrites() {
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok && c.q.sealed() {
		_ = c.nc.SetReadDeadline(time.Now().Add(c.srv.cfg.HandshakeTimeout))
		if cw.CloseWrite() == nil {
			return
		}
	}
	c.nc.Close()
}

// writeBatch encodes batch into buf and writes it, in as few calls as it
// can: large payloads are written from where they are (writev), several per
// call, and a call is made whenever flushSize bytes are encoded, writevMax
// bytes are gathered, and at the end. It releases the answer slots of the
// batch first: the app cannot have seen an answer before it is written.
func (c *conn) writeBatch(buf []byte, batch []outMsg) ([]byte, error) {
	answers, tunBytes := 0, 0
	for i := range batch {
		switch batch[i].kind {
		case kindAnswer:
			answers++
		case kindTunnel:
			if batch[i].msg.Op == api.OpTunTransfer {
				tunBytes += len(batch[i].msg.Payload)
			}
		}
	}
	if answers > 0 {
		c.answers.Add(-int64(answers))
	}
	if tunBytes > 0 {
		c.tun.written(tunBytes)
	}
	c.srv.stats.msgsOut.Add(uint64(len(batch)))
	// iov holds what is gathered for the next write: the parts of buf
	// before each large payload, and the payloads. buf[from:] is encoded
	// but not in iov yet; gathered counts the bytes in iov.
	iov := c.iov[:0]
	from, gathered := 0, 0
	for i := range batch {
		m := &batch[i].msg
		direct := false
		if batch[i].enc {
			// Already encoded in the slab: gathered as it lies, in one
			// part with the previous event when it follows it there.
			if len(buf) > from {
				iov = append(iov, buf[from:])
				from = len(buf)
			}
			if k := len(iov) - 1; k >= 0 && batch[i-1].enc && adjacent(iov[k], m.Payload) {
				iov[k] = iov[k][:len(iov[k])+len(m.Payload)]
			} else {
				iov = append(iov, m.Payload)
			}
			gathered += len(m.Payload)
		} else if len(m.Payload) >= directWriteSize {
			buf, direct = api.AppendDaemonHead(buf, m)
		}
		if direct {
			iov = append(iov, buf[from:], m.Payload)
			gathered += len(buf) - from + len(m.Payload)
			from = len(buf)
		} else if !batch[i].enc {
			buf = api.AppendDaemon(buf, m)
		}
		if i < len(batch)-1 && len(buf)-from < flushSize && gathered < writevMax && len(iov) < writevParts {
			continue
		}
		if len(buf) > from {
			iov = append(iov, buf[from:])
		}
		w := iov // WriteTo consumes w
		n, err := w.WriteTo(c.nc)
		c.srv.stats.bytesOut.Add(uint64(n))
		clear(iov) // drop the payloads
		iov, buf, from, gathered = iov[:0], buf[:0], 0, 0
		if err != nil {
			c.iov = iov
			return buf, err
		}
	}
	c.iov = iov
	return buf, nil
}

// adjacent reports whether b starts where a ends, in a's array.
func adjacent(a, b []byte) bool {
	return len(b) > 0 && cap(a) > len(a) && &a[:len(a)+1][len(a)] == &b[0]
}

// leave takes the connection out of the cluster, once: no delivery starts
// afterwards. It unregisters the service, ends its subscriptions, fails
// every request delivered to it that it has not answered, and drops its
// tunnels. Nothing is queued for the app by leave itself.
func (c *conn) leave() {
	c.leaveOnce.Do(func() {
		c.mu.Lock()
		c.closing.Store(true)
		reg, subs, delivered := c.reg, c.subs, c.delivered
		c.reg, c.subs, c.delivered = nil, nil, nil
		c.deadlines.Drain(nil)
		c.mu.Unlock()
		if reg != nil {
			reg.Close() // first: the service is gone before CLOSE is answered
			c.srv.stats.services.Add(-1)
		}
		for _, ts := range subs {
			ts.close()
		}
		for _, d := range delivered {
			d.req.Fail(faultServiceClosed)
		}
		c.tun.close()
		c.leaveV11()
	})
}

// closeGracefully ends the session with CLOSE(reason) after what is queued:
// the write loop drains the queue, writes CLOSE and closes the socket.
// A connection still in its handshake is dropped instead.
func (c *conn) closeGracefully(reason string) {
	c.graceful.Store(true)
	c.leave()
	c.mu.Lock()
	ready := c.ready
	c.mu.Unlock()
	if !ready {
		c.kill()
		return
	}
	c.q.seal(&api.Message{Op: api.OpClose, Fault: reason})
}

// kill drops the connection at once: the queue is discarded and the socket
// closed, which ends both loops. serve then runs leave.
func (c *conn) kill() {
	c.killOnce.Do(func() {
		c.closing.Store(true)
		c.q.abort()
		c.nc.Close()
	})
}
