package sdk

import (
	"context"
	"fmt"
	"io"
	"math"
	"sync"
	"time"

	"github.com/iris-mesh/iris/api"
)

// Tunnel limits.
const (
	// maxChunkLimit is the largest chunk the protocol allows: "chunkLimit
	// is at most 64 KiB".
	maxChunkLimit = 64 << 10
	// queuedMsgCost is what a message waiting for Recv is charged on top of
	// its payload when bounding the number of waiting messages: at most
	// TunnelWindow/queuedMsgCost wait, so that a flood of tiny or empty
	// messages (which cost the sender little or no credit) is bounded too.
	queuedMsgCost = 64
	// asmInitialCap caps the buffer first allocated for a message being
	// assembled; a larger message grows it as its chunks arrive, so a first
	// chunk announcing a large size does not allocate it up front.
	asmInitialCap = 1 << 20
	// grantDivisor sets when consumed credit is returned to the daemon while
	// the app keeps finding messages waiting: once TunnelWindow/grantDivisor
	// bytes are owed. A receiver about to block returns all it owes.
	grantDivisor = 4
)

// Tunnel is an ordered, flow-controlled stream of messages between two
// apps, through their daemons: Conn.Tunnel builds one to a member of a
// cluster, and a service's TunnelHandler receives the ones built to it.
// Messages arrive whole and in order. Both directions are throttled by
// byte credit: Send waits while the far end is not reading, and a tunnel
// buffers at most Config.TunnelWindow bytes that the app has not read.
//
// Send, Recv and Close may be called concurrently; concurrent Sends are
// serialized (the chunks of two messages never interleave), and concurrent
// Recvs each get different messages. NetConn gives a net.Conn view of the
// tunnel as a byte stream.
type Tunnel struct {
	c          *Conn
	id         uint64 // our tunId, the only one used after confirmation
	cluster    string // the target cluster (outbound) or the service's own (inbound)
	chunkLimit int
	window     int // Config.TunnelWindow

	// sendSem is held by the Send writing a message's chunks, and by Close
	// while it queues TUN_CLOSE, so that chunks precede it.
	sendSem chan struct{}
	// endCh is closed when the tunnel can no longer send: Close was called,
	// or the daemon or the connection ended the tunnel.
	endCh chan struct{}
	// goneCh is closed when the daemon is done with the tunnel: its
	// TUN_CLOSE arrived (an answer to ours, or the far end closing) or the
	// connection ended.
	goneCh chan struct{}

	closeOnce sync.Once
	closeErr  error

	netOnce sync.Once
	netConn *tunnelConn

	mu         sync.Mutex // protects the following
	credit     uint64     // send credit: payload bytes the daemon lets us send
	creditWake chan struct{}
	recvWake   chan struct{} // closed and replaced when a message arrives, credit is owed or the tunnel ends
	msgs       [][]byte      // whole messages waiting for Recv, oldest first
	asm        []byte        // the message being assembled
	asmSize    uint64        // its announced size; 0 when none is being assembled
	discarding bool          // dropping the rest of a message that cannot be delivered
	allowance  int           // receive credit the daemon still holds
	owed       int           // bytes consumed or discarded whose credit is not yet returned
	closing    bool          // Close was called
	ended      bool          // the daemon or the connection ended the tunnel
	endErr     error         // Recv's error once drained: io.EOF, *TunnelError or a connection error
	ackReason  string        // reason of the daemon's TUN_CLOSE answering our Close
}

func newTunnel(c *Conn, id uint64, cluster string, chunkLimit int) *Tunnel {
	return &Tunnel{
		c:          c,
		id:         id,
		cluster:    cluster,
		chunkLimit: chunkLimit,
		window:     c.cfg.TunnelWindow,
		sendSem:    make(chan struct{}, 1),
		endCh:      make(chan struct{}),
		goneCh:     make(chan struct{}),
		creditWake: make(chan struct{}),
		recvWake:   make(chan struct{}),
	}
}

// ChunkLimit returns the largest chunk the daemon accepts on this tunnel,
// in bytes (at most 64 KiB). Send splits longer messages into chunks of
// this size; it is also the size of the messages NetConn writes.
func (t *Tunnel) ChunkLimit() int { return t.chunkLimit }

// Cluster returns the cluster the tunnel was built to, for a tunnel from
// Conn.Tunnel, or the service's own cluster for a tunnel it accepted.
func (t *Tunnel) Cluster() string { return t.cluster }

// Send sends msg over the tunnel as one message, which the far end receives
// whole and in order. It returns once every chunk is queued for sending (msg
// may then be reused); it blocks while the send credit granted by the daemon
// does not cover the next chunk (the far end is not reading fast enough), or
// while the connection's send queue is full, until ctx ends: it then returns
// an error wrapping ErrTimeout (the deadline passed) or ctx.Err(). A message
// interrupted after its first chunk is discarded by the far end when the
// next message starts.
//
// The far end must be able to buffer msg whole: a message larger than its
// window (Config.TunnelWindow there, 64 MiB by default) is dropped by it.
// An empty message is sent as one empty chunk with sizeOrCont 0, which
// this SDK receives as an empty message (a continuation chunk is never
// empty); the Iris v1 bindings never send one and may mishandle it, so
// avoid empty messages towards them. After the tunnel was closed, by either
// end or with its connection, Send returns an error matching
// ErrTunnelClosed.
func (t *Tunnel) Send(ctx context.Context, msg []byte) error {
	return t.send(ctx, nil, msg)
}

// Recv returns the next message, blocking until one arrives, the tunnel
// ends or ctx ends (the error then wraps ErrTimeout or ctx.Err()). The
// returned slice belongs to the caller; an empty message is an empty,
// non-nil slice. Consuming messages returns their credit to the daemon, so
// that the far end may send more: in batches of a quarter of
// Config.TunnelWindow, and all that is owed before Recv waits.
//
// When the far end closes the tunnel, Recv returns the messages already
// buffered, then io.EOF (a graceful close) or a *TunnelError carrying the
// daemon's reason. When the connection ends it does the same, then returns
// an error wrapping ErrTunnelClosed and ErrClosed. After Close it returns
// ErrTunnelClosed at once.
func (t *Tunnel) Recv(ctx context.Context) ([]byte, error) {
	msg, err := t.take(ctx, nil, "recv")
	if err != nil {
		return nil, err
	}
	t.consumed(ctx, nil, len(msg))
	return msg, nil
}

// Close closes the tunnel: it sends TUN_CLOSE and waits for the daemon's
// answer, at most Config.CloseTimeout; the far end's Recv returns io.EOF
// after the messages it has received. Chunks already queued are sent
// first; a Send waiting for credit or room is interrupted (the far end
// discards its partial message). Pending and later Send and Recv calls fail
// with ErrTunnelClosed, and unread messages are discarded. Close returns an error if the daemon answered with a reason or
// did not answer in time, and nil when the tunnel had already been closed
// by the far end or with its connection. It may be called more than once
// and concurrently; later calls wait for the first and return its result.
func (t *Tunnel) Close() error {
	t.closeOnce.Do(func() { t.closeErr = t.close() })
	return t.closeErr
}

func (t *Tunnel) close() error {
	t.mu.Lock()
	ended := t.ended
	if !ended {
		close(t.endCh)
	}
	t.closing = true
	t.msgs, t.asm, t.asmSize = nil, nil, 0
	wake(&t.recvWake)
	wake(&t.creditWake)
	t.mu.Unlock()
	if ended {
		return nil
	}
	timer := time.NewTimer(t.c.cfg.CloseTimeout)
	defer timer.Stop()
	if !t.closeSend(timer.C) {
		t.c.dropTunnel(t)
		return fmt.Errorf("sdk: tunnel close: could not send within %v", t.c.cfg.CloseTimeout)
	}
	select {
	case <-t.goneCh:
	case <-timer.C:
		t.c.dropTunnel(t)
		return fmt.Errorf("sdk: tunnel close: daemon did not answer within %v", t.c.cfg.CloseTimeout)
	}
	t.mu.Lock()
	reason := t.ackReason
	t.mu.Unlock()
	if reason != "" {
		return fmt.Errorf("sdk: tunnel close: daemon answered with reason %q", reason)
	}
	return nil
}

// closeSend queues TUN_CLOSE once the Send in progress (if any) has left.
// It reports false if expired fired first; true also when the tunnel or the
// connection ended meanwhile, so that nothing is left to close.
func (t *Tunnel) closeSend(expired <-chan time.Time) bool {
	select {
	case t.sendSem <- struct{}{}:
		defer func() { <-t.sendSem }()
	case <-t.goneCh:
		return true
	case <-expired:
		return false
	}
	m := api.Message{Op: api.OpTunClose, ID: t.id}
	for room := t.c.out.put(&m); room != nil; room = t.c.out.put(&m) {
		select {
		case <-room:
		case <-t.goneCh:
			return true
		case <-t.c.deadCh:
			return true
		case <-expired:
			return false
		}
	}
	return true
}

// wake closes *ch, waking its waiters, and replaces it. The lock that
// protects *ch must be held.
func wake(ch *chan struct{}) {
	close(*ch)
	*ch = make(chan struct{})
}

// stopErr returns the error of a tunnel call that stopped because ctx
// ended or, when ctx has not, because its net.Conn deadline passed.
func stopErr(ctx context.Context, op string) error {
	if ctx.Err() != nil {
		return fmt.Errorf("sdk: tunnel %s: %w", op, ctxError(ctx))
	}
	return errDeadline
}

// sendErr returns the error of a send on a tunnel that can no longer send.
func (t *Tunnel) sendErr() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sendErrLocked()
}

func (t *Tunnel) sendErrLocked() error {
	switch {
	case t.closing:
		return ErrTunnelClosed
	case t.endErr == io.EOF:
		return fmt.Errorf("%w by the far end", ErrTunnelClosed)
	default:
		return t.endErr // a *TunnelError, or it wraps ErrTunnelClosed
	}
}

// send sends msg as one message, chunk by chunk, each once the credit
// covers it. It stops when ctx ends or dl (a net.Conn deadline, nil for
// none) is closed.
func (t *Tunnel) send(ctx context.Context, dl <-chan struct{}, msg []byte) error {
	select {
	case t.sendSem <- struct{}{}:
	case <-t.endCh:
		return t.sendErr()
	case <-ctx.Done():
		return stopErr(ctx, "send")
	case <-dl:
		return stopErr(ctx, "send")
	}
	defer func() { <-t.sendSem }()
	m := api.Message{Op: api.OpTunTransfer, ID: t.id, Size: uint64(len(msg))}
	for first := true; first || len(msg) > 0; first = false {
		n := min(len(msg), t.chunkLimit)
		if err := t.takeCredit(ctx, dl, n); err != nil {
			return err
		}
		m.Payload = msg[:n]
		if err := t.queue(ctx, dl, &m, "send"); err != nil {
			t.onAllow(uint64(n)) // not sent: the credit is still ours
			return err
		}
		m.Size = 0 // the rest are continuations
		msg = msg[n:]
	}
	return nil
}

// takeCredit waits until the send credit covers n bytes and takes them.
func (t *Tunnel) takeCredit(ctx context.Context, dl <-chan struct{}, n int) error {
	for {
		t.mu.Lock()
		if t.closing || t.ended {
			err := t.sendErrLocked()
			t.mu.Unlock()
			return err
		}
		if t.credit >= uint64(n) {
			t.credit -= uint64(n)
			t.mu.Unlock()
			return nil
		}
		woken := t.creditWake
		t.mu.Unlock()
		select {
		case <-woken:
		case <-ctx.Done():
			return stopErr(ctx, "send")
		case <-dl:
			return stopErr(ctx, "send")
		}
	}
}

// queue encodes m and queues it for the writer, waiting for room until
// ctx ends, dl is closed or the tunnel can no longer send.
func (t *Tunnel) queue(ctx context.Context, dl <-chan struct{}, m *api.Message, op string) error {
	for {
		room := t.c.out.put(m)
		if room == nil {
			return nil
		}
		select {
		case <-room:
		case <-t.endCh:
			return t.sendErr()
		case <-t.c.deadCh:
			return fmt.Errorf("%w: %w", ErrTunnelClosed, t.c.Err())
		case <-ctx.Done():
			return stopErr(ctx, op)
		case <-dl:
			return stopErr(ctx, op)
		}
	}
}

// take returns the next whole message without returning its credit (see
// consumed). Before it blocks it returns all the credit owed, so that the
// daemon is never left without credit while the app waits.
func (t *Tunnel) take(ctx context.Context, dl <-chan struct{}, op string) ([]byte, error) {
	for {
		t.mu.Lock()
		switch {
		case t.closing:
			t.mu.Unlock()
			return nil, ErrTunnelClosed
		case len(t.msgs) > 0:
			msg := t.msgs[0]
			t.msgs[0] = nil
			t.msgs = t.msgs[1:]
			t.mu.Unlock()
			return msg, nil
		case t.ended:
			err := t.endErr
			t.mu.Unlock()
			return nil, err
		}
		owed := t.owed
		t.owed = 0
		woken := t.recvWake
		t.mu.Unlock()
		if owed > 0 {
			if err := t.grant(ctx, dl, owed, op); err != nil && t.stopped(ctx, dl) {
				t.owe(owed)
				return nil, err
			}
		}
		select {
		case <-woken:
		case <-ctx.Done():
			return nil, stopErr(ctx, op)
		case <-dl:
			return nil, stopErr(ctx, op)
		}
	}
}

// stopped reports whether ctx has ended or dl is closed.
func (t *Tunnel) stopped(ctx context.Context, dl <-chan struct{}) bool {
	select {
	case <-dl:
		return true
	default:
		return ctx.Err() != nil
	}
}

// consumed records that the app has read n bytes, and returns the owed
// credit to the daemon once it reaches a quarter of the window. A failed
// grant leaves the credit owed, for the next call.
func (t *Tunnel) consumed(ctx context.Context, dl <-chan struct{}, n int) {
	t.mu.Lock()
	t.owed += n
	owed := 0
	if t.owed >= t.window/grantDivisor && !t.closing && !t.ended {
		owed, t.owed = t.owed, 0
	}
	t.mu.Unlock()
	if owed > 0 && t.grant(ctx, dl, owed, "recv") != nil {
		t.owe(owed)
	}
}

// owe puts back credit that could not be returned.
func (t *Tunnel) owe(n int) {
	t.mu.Lock()
	t.owed += n
	t.mu.Unlock()
}

// grant sends TUN_ALLOW for n bytes. The allowance grows before the grant
// is queued, since the daemon may use it as soon as it is written.
func (t *Tunnel) grant(ctx context.Context, dl <-chan struct{}, n int, op string) error {
	t.mu.Lock()
	if t.closing || t.ended {
		t.mu.Unlock()
		return nil // nothing more will be read
	}
	t.allowance += n
	t.mu.Unlock()
	err := t.queue(ctx, dl, &api.Message{Op: api.OpTunAllow, ID: t.id, Size: uint64(n)}, op)
	if err != nil {
		t.mu.Lock()
		t.allowance -= n
		t.mu.Unlock()
	}
	return err
}

// onAllow adds send credit granted by the daemon (or not used after all).
func (t *Tunnel) onAllow(n uint64) {
	t.mu.Lock()
	t.credit += min(n, math.MaxUint64-t.credit)
	wake(&t.creditWake)
	t.mu.Unlock()
}

// onTransfer takes a chunk the daemon forwarded; the reader calls it and it
// never blocks. It returns an error wrapping api.ErrProtocol if the daemon
// broke the tunnel's rules: a chunk over the chunk limit or beyond the
// credit granted. Messages that cannot be delivered (see drop) are
// discarded and their credit returned.
func (t *Tunnel) onTransfer(size uint64, chunk []byte) error {
	n := len(chunk)
	if n > t.chunkLimit {
		return fmt.Errorf("%w: tunnel %d: chunk of %d bytes, limit %d", api.ErrProtocol, t.id, n, t.chunkLimit)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing || t.ended {
		return nil // closed here: nothing will read it
	}
	if n > t.allowance {
		return fmt.Errorf("%w: tunnel %d: chunk of %d bytes beyond the %d bytes of credit granted",
			api.ErrProtocol, t.id, n, t.allowance)
	}
	t.allowance -= n
	switch {
	case size == 0 && n == 0:
		// An empty message. A continuation is never empty, so this is
		// unambiguous even while a message is being assembled (its sender
		// gave up on it): that one is dropped.
		t.dropPartial()
		t.discarding = false
		t.deliver([]byte{})
	case size != 0:
		t.dropPartial()
		t.discarding = false
		t.startMessage(size, chunk)
	case t.asmSize == 0:
		// A continuation without a first chunk: the rest of a message
		// dropped already, or a broken sender.
		if !t.discarding {
			t.drop(0)
		}
		t.discard(n)
	default:
		t.appendChunk(chunk)
	}
	return nil
}

// startMessage starts assembling a message of size bytes with its first
// chunk, or delivers it if that is all of it.
func (t *Tunnel) startMessage(size uint64, chunk []byte) {
	switch {
	case size > uint64(t.window) || uint64(len(chunk)) > size:
		t.drop(len(chunk)) // could never be buffered whole, or is malformed
	case uint64(len(chunk)) == size:
		t.deliver(chunk) // the decoder's slice is ours to keep
	default:
		t.asm = append(make([]byte, 0, min(size, asmInitialCap)), chunk...)
		t.asmSize = size
	}
}

// appendChunk adds a continuation chunk to the message being assembled and
// delivers it when complete.
func (t *Tunnel) appendChunk(chunk []byte) {
	if uint64(len(t.asm)+len(chunk)) > t.asmSize {
		t.drop(len(t.asm) + len(chunk)) // longer than announced
		t.asm, t.asmSize = nil, 0
		return
	}
	t.asm = append(t.asm, chunk...)
	if uint64(len(t.asm)) == t.asmSize {
		msg := t.asm
		t.asm, t.asmSize = nil, 0
		t.deliver(msg)
	}
}

// dropPartial drops the message being assembled, if any: a new one starts.
func (t *Tunnel) dropPartial() {
	if t.asmSize != 0 {
		t.drop(len(t.asm))
		t.asm, t.asmSize = nil, 0
	}
}

// drop counts a message that will not be delivered, discards its n bytes
// received so far, and discards the rest of it as it arrives.
func (t *Tunnel) drop(n int) {
	t.c.stats.tunnelMessagesDropped.Add(1)
	t.discarding = true
	t.discard(n)
}

// discard returns the credit of n bytes that will not be delivered; a
// receiver waiting in Recv returns it to the daemon.
func (t *Tunnel) discard(n int) {
	if n > 0 {
		t.owed += n
		wake(&t.recvWake)
	}
}

// deliver queues a whole message for Recv, or drops it when too many wait.
func (t *Tunnel) deliver(msg []byte) {
	if len(t.msgs) >= t.window/queuedMsgCost {
		t.drop(len(msg))
		t.discarding = false
		return
	}
	t.msgs = append(t.msgs, msg)
	wake(&t.recvWake)
}

// onClose handles the daemon's TUN_CLOSE: the answer to our Close, or the
// far end closing (reason "" when gracefully).
func (t *Tunnel) onClose(reason string) {
	var err error = io.EOF
	if reason != "" {
		err = &TunnelError{Reason: reason}
	}
	t.end(err, reason)
}

// onConnEnd ends the tunnel with its connection; err wraps ErrClosed.
func (t *Tunnel) onConnEnd(err error) {
	t.end(fmt.Errorf("%w: %w", ErrTunnelClosed, err), "")
}

// end marks the tunnel as finished at the daemon, once. Recv returns err
// once the buffered messages are read; a pending Close gets reason.
func (t *Tunnel) end(err error, reason string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ended {
		return
	}
	t.ended = true
	if t.closing {
		t.ackReason = reason
	} else {
		close(t.endCh)
		t.endErr = err
	}
	t.asm, t.asmSize = nil, 0 // never completed
	close(t.goneCh)
	wake(&t.recvWake)
	wake(&t.creditWake)
}
