package sdk

import (
	"context"
	"fmt"
	"time"

	"github.com/iris-mesh/iris/api"
)

// PushHandler is implemented by a Handler whose service pulls pushed
// messages (see Conn.Push). Register checks for it with a type assertion;
// the daemon pushes only to members that have it, and never more than
// ServiceLimits.PushCredit at once to each.
type PushHandler interface {
	// HandlePush handles one pushed message. It is called by up to
	// ServiceLimits.RequestThreads goroutines at once; a panic is recovered
	// and logged. The message slice belongs to the handler. Returning asks
	// the daemon for the next message.
	HandlePush(message []byte)
}

// pushCall is a push waiting for its PUSH_ACK.
type pushCall struct {
	done chan pushDone // cap 1
}

type pushDone struct {
	accepted  bool
	noMembers bool
	err       error
}

// Backoff of a blocking Push while every member is busy.
const (
	pushBackoffMin = time.Millisecond
	pushBackoffMax = 50 * time.Millisecond
)

// Push hands message to exactly one member of cluster, chosen by the
// daemons as for requests, with no reply. It returns nil once a member's
// queue took the message: from then on it is delivered to that member, or
// counted as dropped in the daemon's metrics if the member leaves first.
//
// Back-pressure is end to end: each member takes at most
// ServiceLimits.PushCredit messages before its handler asks for more, so
// when every member's queue is full Push waits, retrying, until one has
// room or ctx ends (then it returns ctx's error, ErrTimeout for a passed
// deadline). TryPush returns ErrBusy instead of waiting. With no member
// anywhere Push fails at once with ErrNoMembers. The message is copied
// before Push returns. It needs a daemon that speaks protocol v1.1.
func (c *Conn) Push(ctx context.Context, cluster string, message []byte) error {
	return c.push(ctx, cluster, message, true)
}

// TryPush is Push that does not wait for room: when every member's queue is
// full it returns ErrBusy at once. It still waits for the daemon's answer
// (and, when the connection's window of unanswered pushes is full, for a
// slot in it).
func (c *Conn) TryPush(ctx context.Context, cluster string, message []byte) error {
	return c.push(ctx, cluster, message, false)
}

func (c *Conn) push(ctx context.Context, cluster string, message []byte, wait bool) error {
	if err := c.checkV11("push", cluster, len(message)); err != nil {
		return err
	}
	backoff := pushBackoffMin
	for {
		d, err := c.pushOnce(ctx, cluster, message)
		switch {
		case err != nil:
			return err
		case d.accepted:
			return nil
		case d.noMembers:
			return fmt.Errorf("sdk: push to %q: %w", cluster, ErrNoMembers)
		case !wait:
			return fmt.Errorf("sdk: push to %q: %w", cluster, ErrBusy)
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctxError(ctx)
		case <-c.deadCh:
			t.Stop()
			return c.Err()
		}
		backoff = min(2*backoff, pushBackoffMax)
	}
}

// pushOnce sends one PUSH and waits for its answer. The push's window slot
// is released by the reader when the answer arrives, even if the caller
// gave up on it first.
func (c *Conn) pushOnce(ctx context.Context, cluster string, message []byte) (pushDone, error) {
	select {
	case c.x.window <- struct{}{}:
	case <-ctx.Done():
		return pushDone{}, ctxError(ctx)
	case <-c.deadCh:
		return pushDone{}, c.Err()
	}
	p := &pushCall{done: make(chan pushDone, 1)}
	c.mu.Lock()
	if err := c.checkOpenLocked(); err != nil {
		c.mu.Unlock()
		<-c.x.window
		return pushDone{}, err
	}
	c.x.nextID++
	id := c.x.nextID
	c.x.pushes[id] = p
	c.mu.Unlock()
	m := api.Message{Op: api.OpPush, ID: id, Cluster: cluster, Payload: message}
	if err := c.send(ctx, &m); err != nil {
		c.mu.Lock()
		_, mine := c.x.pushes[id]
		delete(c.x.pushes, id)
		c.mu.Unlock()
		if mine {
			<-c.x.window
			return pushDone{}, err
		}
		d := <-p.done // shutdown took it
		return d, d.err
	}
	select {
	case d := <-p.done:
		return d, d.err
	case <-ctx.Done():
		c.mu.Lock()
		_, mine := c.x.pushes[id]
		if mine {
			c.x.pushes[id] = nil // the ack frees the slot
		}
		c.mu.Unlock()
		if !mine {
			d := <-p.done
			return d, d.err
		}
		return pushDone{}, ctxError(ctx)
	}
}

// handlePushAck completes the push a PUSH_ACK (or NO_MEMBERS) answers and
// frees its window slot.
func (c *Conn) handlePushAck(id uint64, accepted, noMembers bool) {
	c.mu.Lock()
	p, found := c.x.pushes[id]
	if found {
		delete(c.x.pushes, id)
	}
	c.mu.Unlock()
	if !found {
		c.stats.unknownReplies.Add(1)
		return
	}
	<-c.x.window
	if p == nil {
		c.stats.lateReplies.Add(1)
		return
	}
	p.done <- pushDone{accepted: accepted, noMembers: noMembers}
}

// startPushes starts the push pool of a v1.1 service whose handler pulls,
// and grants the daemon its credit.
func (s *service) startPushes(c *Conn) {
	if s.push == nil || !c.x.on {
		return
	}
	s.pushes = newPool(s.limits.RequestThreads, int(^uint(0)>>1), &c.handlers, c.servePush)
	c.trySend(&api.Message{Op: api.OpPull, Size: uint64(s.limits.PushCredit)})
}

// handlePush queues a pushed message for the push handler. The daemon
// sends no more than the credit granted, so the queue is bounded by
// PushCredit messages.
func (c *Conn) handlePush(m *api.Message) {
	if c.svc == nil || c.svc.pushes == nil || !c.svc.pushes.push(delivery{payload: m.Payload}) {
		c.stats.pushesDropped.Add(1)
	}
}

// servePush runs the push handler, then asks the daemon for one more.
func (c *Conn) servePush(d *delivery) {
	func() {
		defer c.recoverHandler("push")
		c.svc.push.HandlePush(d.payload)
	}()
	_ = c.send(c.baseCtx, &api.Message{Op: api.OpPull, Size: 1}) // fails only when the connection is finished
}
