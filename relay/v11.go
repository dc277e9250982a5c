package relay

import (
	"errors"
	"fmt"

	"github.com/iris-mesh/iris/api"
	"github.com/iris-mesh/iris/cluster"
)

// Protocol v1.1 (api.ProtocolV11) in the relay: member names, surveys,
// push/pull, cancel and "no members". A v1.0-draft2 session never reaches
// this code: its Decoder rejects the v1.1 opcodes, and its INIT answer,
// requests and tunnels are exactly as before.

// v11state is a connection's v1.1 session state.
type v11state struct {
	on   bool   // the session negotiated v1.1; set before the write loop starts
	name string // the member name, for a service

	sink        *eventSink // the Subscriber of all its subscriptions (subs.go)
	unconfirmed []string   // daemons that had not confirmed the registration

	// The following are protected by conn.mu.
	cluster map[uint64]uint64 // the app's request id → the cluster's, for CANCEL
	surveys map[uint64]struct{}
	pushes  int   // the app's pushes awaiting their PUSH_ACK
	credit  int64 // pushes the member may still be given (PULL grants it)
	inHand  int64 // pushes given to the member and not yet confirmed by a PULL
}

// handshakeV11 reads the INIT options of a v1.1 client. It returns the
// member name asked for.
func (c *conn) handshakeV11(m *api.Message) (string, error) {
	opts, err := api.DecodeInitOptions(m.Payload)
	if err != nil {
		return "", fmt.Errorf("relay: handshake: %w", err)
	}
	c.x.on = true
	c.x.sink = &eventSink{c: c}
	c.x.cluster = make(map[uint64]uint64)
	c.x.surveys = make(map[uint64]struct{})
	c.dec.EnableV11()
	return opts.Name, nil
}

// initAnswer is the INIT that accepts the session.
func (c *conn) initAnswer(version string) api.Message {
	accept := api.Message{Op: api.OpInit, Magic: api.RelayMagic, Version: version}
	if c.x.on {
		info := api.InitInfo{
			Daemon:     c.srv.node.ID(),
			Member:     c.x.name,
			MaxMessage: uint64(c.maxMessage()),
			PushWindow: uint64(c.srv.cfg.PushWindow),

			Unconfirmed: c.x.unconfirmed,
			Subjects:    true,
		}
		accept.Payload = api.EncodeInitInfo(&info)
	}
	return accept
}

// registerDenyReason is the DENY reason for a failed registration.
func registerDenyReason(err error) string {
	switch {
	case errors.Is(err, cluster.ErrClosed):
		return "iris: " + reasonShutdown
	case errors.Is(err, cluster.ErrNameTaken):
		return api.FaultNameTaken + ": " + err.Error()
	case errors.Is(err, cluster.ErrInterestFull):
		return reasonInterestFull
	case errors.Is(err, cluster.ErrBadName):
		return "iris: bad member name: " + err.Error()
	}
	return "iris: bad cluster name"
}

// dispatchV11 handles the opcodes v1.1 adds.
func (c *conn) dispatchV11(m *api.Message) error {
	switch m.Op {
	case api.OpSurvey:
		return c.handleSurvey(m)
	case api.OpPush:
		return c.handlePush(m)
	case api.OpPull:
		c.handlePull(m.Size)
	case api.OpCancel:
		c.handleCancel(m.ID)
	}
	return nil
}

// noMembers answers the app's call at once, in a v1.1 session, when its
// cluster has no member anywhere; it reports whether it did. The answer
// slot of the call must not have been reserved.
func (c *conn) noMembers(call api.Opcode, id uint64, cluster string) bool {
	if !c.x.on || c.srv.node.HasMembers(cluster) {
		return false
	}
	c.srv.stats.noMembers.Add(1)
	c.q.pushControl(&api.Message{Op: api.OpNoMembers, Call: call, ID: id})
	return true
}

// handleSurvey starts the app's survey: one SURVEY_ANSWER per answer as it
// arrives, then one SURVEY_END.
func (c *conn) handleSurvey(m *api.Message) error {
	id := m.ID
	c.mu.Lock()
	_, dup := c.x.surveys[id]
	c.mu.Unlock()
	if dup {
		return fmt.Errorf("relay: %w: survey id %d already in flight", api.ErrProtocol, id)
	}
	if c.noMembers(api.OpSurvey, id, m.Cluster) {
		return nil
	}
	c.mu.Lock()
	ok := c.reserveAnswer()
	if ok {
		c.x.surveys[id] = struct{}{}
	}
	c.mu.Unlock()
	if !ok {
		c.q.pushControl(&api.Message{Op: api.OpSurveyEnd, ID: id})
		return nil
	}
	c.srv.stats.surveys.Add(1)
	quorum := int(min(m.Size, uint64(1<<31)))
	c.srv.node.Survey(m.Cluster, m.Payload, timeoutOf(m.TimeoutMs), quorum,
		func(a cluster.SurveyAnswer) {
			// Bounded by the members asked; never dropped.
			c.q.pushTunnel(&api.Message{Op: api.OpSurveyAnswer, ID: id, Payload: a.Payload,
				Survey: &api.SurveyFields{Member: a.Member, Daemon: a.Daemon}})
		},
		func(r cluster.SurveyResult) { c.surveyEnded(id, r) })
	return nil
}

func (c *conn) surveyEnded(id uint64, r cluster.SurveyResult) {
	c.mu.Lock()
	delete(c.x.surveys, id)
	c.mu.Unlock()
	f := &api.SurveyFields{Asked: uint64(r.Asked), Answered: uint64(r.Answered)}
	for _, ms := range r.Missing {
		f.Missing = append(f.Missing, api.Missing{Member: ms.Member, Daemon: ms.Daemon, Reason: ms.Reason})
	}
	end := api.Message{Op: api.OpSurveyEnd, ID: id, Survey: f}
	if ok, _ := c.q.push(&end); !ok {
		c.answers.Add(-1)
	}
}

// HandleSurvey implements cluster.SurveyMember: the question is delivered
// like a request (same ids, same limits, answered with REPLY), as SURVEY
// in a v1.1 session and as a plain REQUEST to a v1.0 binding, which
// answers it as one.
func (c *conn) HandleSurvey(r *cluster.Request) bool {
	op := api.OpRequest
	if c.x.on {
		op = api.OpSurvey
	}
	return c.deliver(r, op)
}

// handlePush places the app's push; one PUSH_ACK (or NO_MEMBERS) answers it.
func (c *conn) handlePush(m *api.Message) error {
	id := m.ID
	c.mu.Lock()
	over := c.x.pushes >= c.srv.cfg.PushWindow
	c.mu.Unlock()
	if over {
		return fmt.Errorf("relay: %w: more than %d pushes awaiting their ack", api.ErrProtocol, c.srv.cfg.PushWindow)
	}
	if c.noMembers(api.OpPush, id, m.Cluster) {
		return nil
	}
	c.mu.Lock()
	c.x.pushes++
	ok := c.reserveAnswer()
	c.mu.Unlock()
	if !ok {
		c.pushAcked(id, cluster.PushBusy, false)
		return nil
	}
	c.srv.stats.pushes.Add(1)
	c.srv.node.Push(m.Cluster, m.Payload, func(st cluster.PushStatus) { c.pushAcked(id, st, true) })
	return nil
}

func (c *conn) pushAcked(id uint64, st cluster.PushStatus, reserved bool) {
	c.mu.Lock()
	c.x.pushes--
	c.mu.Unlock()
	ack := api.Message{Op: api.OpPushAck, ID: id, Status: api.PushAccepted}
	switch st {
	case cluster.PushBusy:
		ack.Status = api.PushBusy
		c.srv.stats.pushesBusy.Add(1)
	case cluster.PushNoMembers:
		ack = api.Message{Op: api.OpNoMembers, Call: api.OpPush, ID: id}
	}
	if !reserved {
		c.q.pushControl(&ack)
		return
	}
	if ok, _ := c.q.push(&ack); !ok {
		c.answers.Add(-1)
	}
}

// HandlePush implements cluster.PushMember: a v1.1 member that granted
// credit with PULL gets the message; otherwise it is refused and the
// cluster tries another member.
func (c *conn) HandlePush(msg []byte) bool {
	if !c.x.on || c.closing.Load() {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.x.credit <= 0 || c.closing.Load() {
		return false
	}
	// Bounded by the credit the member granted, and by the queue's bulk
	// budget in count and bytes, like delivered requests: refused beyond
	// it, so the push goes to another member or the pusher hears busy.
	if !c.q.offer(&api.Message{Op: api.OpPush, Payload: msg}, kindDelivery) {
		return false
	}
	c.x.credit--
	c.x.inHand++
	c.srv.stats.pushesDelivered.Add(1)
	return true
}

// handlePull grants credit for n more pushes, and confirms as handled as
// many of those the member holds.
func (c *conn) handlePull(n uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	done := min(int64(min(n, 1<<40)), c.x.inHand)
	c.x.inHand -= done
	c.x.credit = min(c.x.credit+int64(min(n, 1<<40)), int64(c.srv.cfg.MaxPushCredit))
}

// handleCancel cancels the app's request id, if it is still pending.
func (c *conn) handleCancel(id uint64) {
	c.mu.Lock()
	cid, ok := c.x.cluster[id]
	c.mu.Unlock()
	if ok && cid != 0 {
		c.srv.stats.cancels.Add(1)
		c.srv.node.Cancel(cid) // the request's REPLY carries api.FaultCancelled
	}
}

// CancelRequest implements cluster.Canceler: the delivered request with
// key k, if this connection holds it, is forgotten (a later REPLY to it is
// dropped) and a v1.1 app gets CANCEL. It scans the requests delivered to
// the connection: cancels are rare, and the request path pays nothing.
func (c *conn) CancelRequest(k cluster.RequestKey) bool {
	c.mu.Lock()
	var id uint64
	var d *delivery
	for i, x := range c.delivered {
		if x.req.Key() == k {
			id, d = i, x
			break
		}
	}
	if d != nil {
		delete(c.delivered, id)
		c.deadlines.Remove(d)
	}
	c.mu.Unlock()
	if d == nil {
		return false
	}
	d.req.Abandon()
	if c.x.on {
		c.q.pushTunnel(&api.Message{Op: api.OpCancel, ID: id}) // bounded by the requests delivered
	}
	return true
}

// leaveV11 counts the pushes the member held without confirming them: they
// may not have been handled.
func (c *conn) leaveV11() {
	c.mu.Lock()
	lost := c.x.inHand
	c.x.inHand, c.x.credit = 0, 0
	c.mu.Unlock()
	if lost > 0 {
		c.srv.stats.pushesDropped.Add(uint64(lost))
	}
}

// maxMessage is the longest binary field the relay accepts.
func (c *conn) maxMessage() int {
	if n := c.srv.cfg.Limits.MaxMessageLen; n > 0 {
		return n
	}
	return api.DefaultLimits().MaxMessageLen
}
