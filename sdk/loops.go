package sdk

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/iris-mesh/iris/api"
)

// Writer batching: messages are copied into one buffer of up to
// writeBatchSize bytes while more are queued, then written in one call.
// A message of directWriteSize bytes or more is written from its own
// buffer instead of being copied.
const (
	writeBatchSize  = 64 << 10
	directWriteSize = 32 << 10
	// maxPooledBuf is the largest encoding buffer returned to bufPool, so
	// that one big message does not pin its buffer forever. It holds a
	// 64 KiB tunnel chunk with its header, so bulk tunnels reuse buffers.
	maxPooledBuf = 80 << 10
	// writevMax bounds the bytes one write gathers, and writevMsgs the
	// large messages in it.
	writevMax  = 1 << 20
	writevMsgs = 32
)

// bufPool holds buffers for encoded outgoing messages. Callers encode into
// one (so their payload may be reused as soon as the call returns) and the
// writer returns it after writing.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > maxPooledBuf {
		return
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}

// errDaemonClosed is returned by the read loop when the daemon closed the
// connection on its own initiative.
type errDaemonClosed struct{ reason string }

func (e *errDaemonClosed) Error() string {
	if e.reason == "" {
		return "daemon closed the connection"
	}
	return "daemon closed the connection: " + e.reason
}

// runReader runs the read loop and finishes the connection when it ends,
// unless it ended because the daemon answered our CLOSE: Close finishes it
// then, once the handlers have returned.
func (c *Conn) runReader() {
	defer close(c.readerDone)
	if err := c.readLoop(); err != nil {
		c.lost(err)
	}
}

func (c *Conn) runWriter() {
	defer close(c.writerDone)
	if err := c.writeLoop(); err != nil {
		c.lost(fmt.Errorf("write: %w", err))
	}
}

// lost finishes the connection after its reader or writer failed. After the
// daemon answered CLOSE a failure is expected (the daemon closes the socket)
// and the connection ends as closed.
func (c *Conn) lost(err error) {
	select {
	case <-c.ackCh:
		c.shutdown(ErrClosed)
		return
	default:
	}
	c.mu.Lock()
	logged := c.err == nil
	c.mu.Unlock()
	if logged {
		c.log.Info("sdk: connection to the daemon lost", "err", err)
	}
	c.shutdown(fmt.Errorf("%w: %w", ErrClosed, err))
}

// readLoop decodes what the daemon sends and dispatches it by opcode until
// the stream fails or the daemon answers our CLOSE (then it returns nil).
func (c *Conn) readLoop() error {
	var m api.Message
	for {
		if err := c.dec.ReadDaemon(&m); err != nil {
			return fmt.Errorf("read: %w", err)
		}
		done, err := c.dispatch(&m)
		if err != nil || done {
			return err
		}
	}
}

// dispatch handles one message from the daemon. done reports that the
// daemon answered CLOSE and nothing more will come.
func (c *Conn) dispatch(m *api.Message) (done bool, err error) {
	switch m.Op {
	case api.OpReply:
		c.handleReply(m)
	case api.OpRequest:
		c.handleRequest(m)
	case api.OpBroadcast:
		c.handleBroadcast(m)
	case api.OpPublish:
		c.handlePublish(m)
	case api.OpClose:
		return c.handleClose(m)
	case api.OpTunInit:
		return false, c.handleTunOffer(m)
	case api.OpTunConfirm:
		return false, c.handleTunConfirm(m)
	case api.OpTunAllow:
		return false, c.handleTunAllow(m)
	case api.OpTunTransfer:
		return false, c.handleTunTransfer(m)
	case api.OpTunClose:
		return false, c.handleTunClose(m)
	case api.OpSurvey, api.OpSurveyAnswer, api.OpSurveyEnd, api.OpPush, api.OpPushAck,
		api.OpCancel, api.OpNoMembers, api.OpSubscribed, api.OpGap: // v1.1 sessions only (the Decoder)
		return false, c.dispatchV11(m)
	default:
		// INIT or DENY after the handshake.
		return false, fmt.Errorf("%w: unexpected %s from the daemon", api.ErrProtocol, m.Op)
	}
	return false, nil
}

// handleClose handles the daemon's CLOSE: the answer to ours when we are
// closing, otherwise the daemon ending the connection.
func (c *Conn) handleClose(m *api.Message) (bool, error) {
	c.mu.Lock()
	closing := c.closing
	c.mu.Unlock()
	if !closing {
		return true, &errDaemonClosed{reason: m.Fault}
	}
	c.ackReason = m.Fault
	close(c.ackCh)
	return true, nil
}

// writeLoop writes queued messages until the connection is finished or
// Close asks it to flush the queue and stop.
func (c *Conn) writeLoop() error {
	batch := make([]byte, 0, writeBatchSize)
	for {
		var buf *[]byte
		select {
		case buf = <-c.sendCh:
		case <-c.deadCh:
			return nil
		case <-c.flushCh:
			select {
			case buf = <-c.sendCh:
			default:
				return nil // flushed
			}
		}
		var err error
		if batch, err = c.writeBatch(batch, buf); err != nil {
			return err
		}
	}
}

// writeBatch writes buf and the messages queued behind it, in as few calls
// as it can: small messages are copied into batch, large ones written from
// their own buffers, several per call (writev); a call is made once
// writeBatchSize bytes are copied or writevMax gathered. It returns the
// emptied batch buffer for reuse.
func (c *Conn) writeBatch(batch []byte, buf *[]byte) ([]byte, error) {
	// iov holds what is gathered for the next write: the parts of batch
	// before each large message, and those messages, whose buffers held
	// keeps until they are written. batch[from:] is not in iov yet.
	batch = batch[:0]
	iov, held := c.iov[:0], c.held[:0]
	from, gathered := 0, 0
	var err error
	for {
		if len(*buf) >= directWriteSize {
			iov = append(iov, batch[from:], *buf)
			held = append(held, buf)
			gathered += len(batch) - from + len(*buf)
			from = len(batch)
		} else {
			batch = append(batch, *buf...)
			putBuf(buf)
		}
		more := false
		if len(batch)-from < writeBatchSize && gathered < writevMax && len(held) < writevMsgs {
			select {
			case buf = <-c.sendCh:
				more = true
			default:
			}
		}
		if more {
			continue
		}
		if len(batch) > from {
			iov = append(iov, batch[from:])
		}
		switch len(iov) {
		case 0:
		case 1:
			_, err = c.nc.Write(iov[0])
		default:
			w := iov // WriteTo consumes w
			_, err = w.WriteTo(c.nc)
		}
		break
	}
	for _, b := range held {
		putBuf(b)
	}
	clear(iov)
	clear(held)
	c.iov, c.held = iov[:0], held[:0]
	return batch[:0], err
}

// send encodes m and queues it for the writer, waiting for room in the
// queue until ctx ends or the connection is finished. m's payload is copied,
// so the caller may reuse it once send returns.
func (c *Conn) send(ctx context.Context, m *api.Message) error {
	buf := getBuf()
	*buf = api.AppendClient(*buf, m)
	select {
	case c.sendCh <- buf:
		return nil
	default:
	}
	select {
	case c.sendCh <- buf:
		return nil
	case <-c.deadCh:
		putBuf(buf)
		return c.Err()
	case <-ctx.Done():
		putBuf(buf)
		return ctx.Err()
	}
}

// trySend queues m only if there is room, for the reader, which must never
// wait for the writer. It reports whether m was queued.
func (c *Conn) trySend(m *api.Message) bool {
	buf := getBuf()
	*buf = api.AppendClient(*buf, m)
	select {
	case c.sendCh <- buf:
		return true
	default:
		putBuf(buf)
		return false
	}
}

// checkSend returns the error for sending a message with a payload of n
// bytes to name on this connection, nil when it may be sent.
func (c *Conn) checkSend(kind, name string, n int) error {
	if err := c.checkName(kind, name); err != nil {
		return err
	}
	if n > c.cfg.Limits.MaxMessageLen {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, n, c.cfg.Limits.MaxMessageLen)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.checkOpenLocked()
}

// errEmptyName is returned for an empty cluster or topic name.
var errEmptyName = errors.New("name is empty")

// checkName checks a cluster or topic name against the limits.
func (c *Conn) checkName(kind, name string) error {
	if name == "" {
		return fmt.Errorf("sdk: %s: %w", kind, errEmptyName)
	}
	if len(name) > c.cfg.Limits.MaxStringLen {
		return fmt.Errorf("sdk: %s: %w: name of %d bytes, limit %d",
			kind, ErrTooLarge, len(name), c.cfg.Limits.MaxStringLen)
	}
	return nil
}
