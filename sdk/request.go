package sdk

import (
	"context"
	"fmt"
	"time"

	"github.com/iris-mesh/iris/api"
)

// call is a request waiting for its reply, as in net/rpc. The reader (or
// shutdown) sends exactly one result on done, after removing the call from
// the pending map, so done never blocks and a call is reusable once its
// result has been received.
type call struct {
	done chan result
}

type result struct {
	reply []byte
	err   error
}

func newCall() any { return &call{done: make(chan result, 1)} }

// Request sends request to one member of cluster, chosen by the daemon, and
// returns its reply. It blocks until the reply arrives, the request times
// out or ctx ends.
//
// The timeout is ctx's deadline, or Config.DefaultRequestTimeout when ctx
// has none; it is sent to the daemon, which owns it: a request that no
// member answers in time, or sent to a cluster with no members, is answered
// as timed out and Request returns ErrTimeout; in a v1.1 session a
// cluster with no members fails at once with ErrNoMembers instead. When
// ctx ends first Request
// returns at once, ErrTimeout if its deadline passed and ctx.Err()
// otherwise, and the daemon's later answer is discarded (see
// Stats.LateReplies). In a v1.1 session a cancelled ctx (not an expired
// one) also tells the daemon, which forgets the request and cancels the
// context of the handler serving it, wherever it runs.
//
// A fault reply is returned as a *RemoteError. If the connection is closed
// or lost before the reply arrives the error wraps ErrClosed. The request
// is copied before Request returns.
func (c *Conn) Request(ctx context.Context, cluster string, request []byte) ([]byte, error) {
	if err := c.checkName("request", cluster); err != nil {
		return nil, err
	}
	if len(request) > c.cfg.Limits.MaxMessageLen {
		return nil, fmt.Errorf("%w: request of %d bytes, limit %d",
			ErrTooLarge, len(request), c.cfg.Limits.MaxMessageLen)
	}
	timeoutMs, err := timeoutMs(ctx, c.cfg.DefaultRequestTimeout)
	if err != nil {
		return nil, err
	}
	cl := c.calls.Get().(*call)
	id, err := c.register(cl)
	if err != nil {
		c.calls.Put(cl)
		return nil, err
	}
	m := api.Message{Op: api.OpRequest, ID: id, Cluster: cluster, Payload: request, TimeoutMs: timeoutMs}
	if err := c.send(ctx, &m); err != nil {
		// Not sent, so no reply will come.
		if r, ok := c.unregister(id, cl, false); ok {
			err = r.err
		} else if ctx.Err() != nil {
			err = ctxError(ctx)
		}
		c.calls.Put(cl)
		return nil, err
	}
	select {
	case r := <-cl.done:
		c.calls.Put(cl)
		if r.err == ErrNoMembers {
			r.err = fmt.Errorf("sdk: request to %q: %w", cluster, ErrNoMembers)
		}
		return r.reply, r.err
	case <-ctx.Done():
		// Sent: the daemon owes a reply, which the reader will discard.
		r, ok := c.unregister(id, cl, true)
		c.calls.Put(cl)
		if ok {
			return r.reply, r.err // the answer raced the cancellation
		}
		if ctx.Err() == context.Canceled {
			c.cancelRequest(id) // v1.1: the daemon forgets it and cancels its handler
		}
		return nil, ctxError(ctx)
	}
}

// timeoutMs returns the timeout to send for a request or tunnel build made
// with ctx: its deadline, or def when it has none.
func timeoutMs(ctx context.Context, def time.Duration) (uint64, error) {
	if ctx.Err() != nil {
		return 0, ctxError(ctx)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		return uint64(def / time.Millisecond), nil
	}
	left := time.Until(deadline)
	if left <= 0 {
		return 0, ErrTimeout
	}
	// Round up: a deadline 300µs away must not become 0 ms.
	return uint64((left + time.Millisecond - 1) / time.Millisecond), nil
}

// register adds cl to the pending map under a fresh request id.
func (c *Conn) register(cl *call) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.checkOpenLocked(); err != nil {
		return 0, err
	}
	id := c.nextID
	c.nextID++
	c.pending[id] = cl
	return id, nil
}

// unregister takes cl out of the pending map, leaving a tombstone if the
// daemon still owes a reply for it. If the reader or shutdown took cl first,
// its result is on the way: unregister waits for it and returns it with ok.
func (c *Conn) unregister(id uint64, cl *call, tombstone bool) (r result, ok bool) {
	c.mu.Lock()
	if cur, found := c.pending[id]; found && cur == cl {
		if tombstone {
			c.pending[id] = nil
		} else {
			delete(c.pending, id)
		}
		c.mu.Unlock()
		return result{}, false
	}
	c.mu.Unlock()
	return <-cl.done, true
}

// handleReply completes the call a REPLY answers.
func (c *Conn) handleReply(m *api.Message) {
	c.mu.Lock()
	cl, found := c.pending[m.ID]
	if found {
		delete(c.pending, m.ID)
	}
	c.mu.Unlock()
	switch {
	case !found:
		c.stats.unknownReplies.Add(1)
		c.log.Warn("sdk: reply for an unknown request id", "id", m.ID)
	case cl == nil:
		c.stats.lateReplies.Add(1)
	default:
		cl.done <- replyResult(m)
	}
}

// replyResult turns the daemon's REPLY into a call's result.
func replyResult(m *api.Message) result {
	switch {
	case m.TimedOut:
		return result{err: ErrTimeout}
	case m.Success:
		return result{reply: m.Payload}
	case m.Fault == "":
		// An empty fault counts as a timeout (relay protocol semantics).
		return result{err: ErrTimeout}
	case m.Fault == noMembersFault:
		return result{err: ErrNoMembers} // Request names the cluster
	default:
		return result{err: &RemoteError{Fault: m.Fault}}
	}
}
