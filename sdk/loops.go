package sdk

import (
	"context"
	"errors"
	"fmt"

	"github.com/iris-mesh/iris/api"
)

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

// writeLoop writes what the outbox holds, one system call for all of it,
// until the connection is finished or, once Close has flushed it, empty.
func (c *Conn) writeLoop() error {
	var buf []byte
	for {
		if buf = c.out.take(buf, c.flushCh, c.deadCh); buf == nil {
			return nil
		}
		if _, err := c.nc.Write(buf); err != nil {
			return err
		}
	}
}

// send encodes m and queues it for the writer, waiting for room in the
// queue until ctx ends or the connection is finished. m's payload is copied,
// so the caller may reuse it once send returns.
func (c *Conn) send(ctx context.Context, m *api.Message) error {
	for {
		room := c.out.put(m)
		if room == nil {
			return nil
		}
		select {
		case <-room:
		case <-c.deadCh:
			return c.Err()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// trySend queues m only if there is room, for the reader, which must never
// wait for the writer. It reports whether m was queued.
func (c *Conn) trySend(m *api.Message) bool { return c.out.put(m) == nil }

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
