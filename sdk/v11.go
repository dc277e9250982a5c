package sdk

import (
	"context"
	"fmt"
	"strings"

	"github.com/iris-mesh/iris/api"
)

// Protocol v1.1 (api.ProtocolV11): the SDK offers it in INIT and falls back
// to v1.0-draft2 with a daemon that refuses it. v1.1 adds surveys, pushes,
// request cancellation, member names and failing at once for clusters
// without members.

// v11conn is a connection's v1.1 state. The maps are protected by Conn.mu.
type v11conn struct {
	on         bool          // the session speaks v1.1
	daemon     string        // the daemon's id
	maxMessage int           // the largest payload the daemon accepts
	window     chan struct{} // push slots: one per push awaiting its ack

	surveys map[uint64]*surveyCall // nil value: abandoned, the end still due
	pushes  map[uint64]*pushCall   // nil value: abandoned, the ack still due
	serving map[uint64]*serving    // delivered requests and questions not answered yet
	nextID  uint64                 // survey and push ids

	// Subscriptions (subs.go).
	subAcks     map[string][]chan []string // topic → Subscribe calls awaiting SUBSCRIBED, oldest first
	patterns    map[string]struct{}        // subscribed subjects with wildcards
	unconfirmed []string                   // daemons that had not confirmed the service's registration
	subjects    bool                       // the daemon acks SUBSCRIBE, matches subjects, sends GAP
}

// serving is a delivered request (or survey question) of a v1.1 session,
// which its caller may cancel.
type serving struct {
	cancel    context.CancelFunc // set when its handler starts
	cancelled bool
}

// surveyKey marks the context of a handler answering a survey.
type surveyKey struct{}

// IsSurvey reports whether ctx is the context of a Handler call answering a
// survey question (see Conn.Survey) rather than a request.
func IsSurvey(ctx context.Context) bool {
	v, _ := ctx.Value(surveyKey{}).(bool)
	return v
}

// isVersionDeny reports whether d refuses our offer of v1.1, as a daemon
// that predates it does (api.DenyVersionReason).
func isVersionDeny(d *DeniedError) bool {
	return strings.HasPrefix(d.Reason, "Unsupported protocol. Client: "+api.ProtocolV11+".")
}

// initV11 sets the session up from the daemon's INIT answer (nil: v1.0).
func (c *Conn) initV11(info *api.InitInfo) {
	if info == nil {
		return
	}
	c.x.on = true
	c.x.daemon = info.Daemon
	// Outgoing payloads are held to the daemon's limit too (every check
	// reads c.cfg.Limits; the Decoder keeps its own copy for what it reads).
	if info.MaxMessage > 0 && info.MaxMessage < uint64(c.cfg.Limits.MaxMessageLen) {
		c.cfg.Limits.MaxMessageLen = int(info.MaxMessage)
	}
	c.x.maxMessage = c.cfg.Limits.MaxMessageLen
	c.x.window = make(chan struct{}, max(1, min(info.PushWindow, 1<<16)))
	c.x.surveys = make(map[uint64]*surveyCall)
	c.x.pushes = make(map[uint64]*pushCall)
	c.x.serving = make(map[uint64]*serving)
	c.x.subAcks = make(map[string][]chan []string)
	c.x.patterns = make(map[string]struct{})
	c.x.unconfirmed = info.Unconfirmed
	c.x.subjects = info.Subjects
	if c.svc != nil {
		c.svc.name = info.Member
	}
}

// Daemon returns the id of the daemon the connection talks to, or "" with a
// daemon that predates protocol v1.1.
func (c *Conn) Daemon() string { return c.x.daemon }

// checkV11 returns the error for a v1.1 call with a payload of n bytes to
// name, nil when it may be sent.
func (c *Conn) checkV11(kind, name string, n int) error {
	if err := c.checkName(kind, name); err != nil {
		return err
	}
	if !c.x.on {
		return fmt.Errorf("sdk: %s: %w", kind, ErrUnsupported)
	}
	if n > c.x.maxMessage {
		return fmt.Errorf("sdk: %s: %w: %d bytes, the daemon accepts %d", kind, ErrTooLarge, n, c.x.maxMessage)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.checkOpenLocked()
}

// dispatchV11 handles what the daemon sends in a v1.1 session only.
func (c *Conn) dispatchV11(m *api.Message) error {
	switch m.Op {
	case api.OpSurvey:
		c.handleRequest(m)
	case api.OpSurveyAnswer:
		c.handleSurveyAnswer(m)
	case api.OpSurveyEnd:
		c.handleSurveyEnd(m)
	case api.OpPush:
		c.handlePush(m)
	case api.OpPushAck:
		c.handlePushAck(m.ID, m.Status == api.PushAccepted, false)
	case api.OpCancel:
		c.handleCancel(m.ID)
	case api.OpNoMembers:
		return c.handleNoMembers(m)
	case api.OpSubscribed:
		c.handleSubscribed(m)
	case api.OpGap:
		c.handleGap(m.Size)
	}
	return nil
}

// handleNoMembers fails the call a NO_MEMBERS answers.
func (c *Conn) handleNoMembers(m *api.Message) error {
	switch m.Call {
	case api.OpRequest:
		c.handleReply(&api.Message{Op: api.OpReply, ID: m.ID, Fault: noMembersFault})
	case api.OpSurvey:
		c.handleSurveyEnd(&api.Message{Op: api.OpSurveyEnd, ID: m.ID, Fault: noMembersFault})
	case api.OpPush:
		c.handlePushAck(m.ID, false, true)
	case api.OpTunInit:
		c.mu.Lock()
		b, found := c.tun.builds[m.ID]
		if found {
			delete(c.tun.builds, m.ID)
		}
		c.mu.Unlock()
		switch {
		case !found:
			c.stats.unknownReplies.Add(1)
		case b == nil:
			c.stats.lateReplies.Add(1)
		default:
			b.done <- buildResult{err: fmt.Errorf("sdk: tunnel to %q: %w", b.cluster, ErrNoMembers)}
		}
	default:
		return fmt.Errorf("%w: NO_MEMBERS for a %s", api.ErrProtocol, m.Call)
	}
	return nil
}

// noMembersFault marks, inside the SDK, a reply that NO_MEMBERS stands for.
// It never travels.
const noMembersFault = "\x00no members"

// cancelRequest tells the daemon the caller of request id gave up.
func (c *Conn) cancelRequest(id uint64) {
	if c.x.on {
		c.trySend(&api.Message{Op: api.OpCancel, ID: id}) // best effort: the daemon's timeout still ends it
	}
}

// trackServing records a delivered request of a v1.1 session, which its
// caller may cancel until it is answered.
func (c *Conn) trackServing(id uint64) {
	if !c.x.on {
		return
	}
	c.mu.Lock()
	if c.x.serving != nil {
		c.x.serving[id] = &serving{}
	}
	c.mu.Unlock()
}

// startServing attaches the handler's cancel to delivered request id; false
// means it was cancelled already.
func (c *Conn) startServing(id uint64, cancel context.CancelFunc) bool {
	if !c.x.on {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.x.serving[id]
	if s == nil {
		return true
	}
	if s.cancelled {
		delete(c.x.serving, id)
		return false
	}
	s.cancel = cancel
	return true
}

// untrackServing forgets delivered request id and reports whether its
// caller had cancelled it.
func (c *Conn) untrackServing(id uint64) bool {
	if !c.x.on {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.x.serving[id]
	delete(c.x.serving, id)
	return s != nil && s.cancelled
}

// handleCancel cancels the context of the handler serving request id.
func (c *Conn) handleCancel(id uint64) {
	c.mu.Lock()
	s := c.x.serving[id]
	var cancel context.CancelFunc
	if s != nil {
		s.cancelled = true
		cancel = s.cancel
	}
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// shutdownV11 fails the surveys and pushes still waiting.
func (c *Conn) shutdownV11(err error) {
	if !c.x.on {
		return
	}
	c.mu.Lock()
	surveys, pushes := c.x.surveys, c.x.pushes
	c.x.surveys, c.x.pushes, c.x.serving = nil, nil, nil
	c.mu.Unlock()
	for _, s := range surveys {
		if s != nil {
			s.finish(nil, err)
		}
	}
	for _, p := range pushes {
		if p != nil {
			p.done <- pushDone{err: err}
		}
	}
}
