package sdk

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"time"

	"github.com/iris-mesh/iris/api"
)

// Handler answers the requests the daemon delivers to a service.
type Handler interface {
	// HandleRequest returns the reply to request. It is called by up to
	// ServiceLimits.RequestThreads goroutines at once and may block.
	//
	// ctx carries the request's deadline (the caller's timeout, as
	// delivered by the daemon, counted from the delivery); a reply after it
	// is dropped by the daemon, which has answered the caller as timed
	// out. ctx is also cancelled when the connection is lost, or when Close
	// gives up waiting for the daemon.
	//
	// A non-nil error is sent back as a fault, which the caller gets as a
	// *RemoteError carrying err.Error(). A panic is recovered and sent as a
	// fault too. The request slice belongs to the handler.
	HandleRequest(ctx context.Context, request []byte) ([]byte, error)
}

// HandlerFunc adapts a function to the Handler interface.
type HandlerFunc func(ctx context.Context, request []byte) ([]byte, error)

// HandleRequest calls f(ctx, request).
func (f HandlerFunc) HandleRequest(ctx context.Context, request []byte) ([]byte, error) {
	return f(ctx, request)
}

// BroadcastHandler is implemented by a Handler that also receives the
// broadcasts sent to its cluster. Register checks for it with a type
// assertion; a service whose handler lacks it drops broadcasts (counted in
// Stats.BroadcastsDropped).
type BroadcastHandler interface {
	// HandleBroadcast handles one broadcast message. It is called by up to
	// ServiceLimits.BroadcastThreads goroutines at once; a panic is
	// recovered and logged. The message slice belongs to the handler.
	HandleBroadcast(message []byte)
}

// Service is a registered member of a cluster: the daemon delivers to its
// handler the requests and broadcasts sent to the cluster, and the tunnels
// built to it, balancing requests and tunnels among the members. Each Service has its own connection, on which
// it can also send requests, broadcasts and publishes (see Conn).
type Service struct {
	conn *Conn
}

// Register connects to the daemon as a member of cluster and serves
// handler there until Close. A nil cfg means DefaultConfig and nil limits
// mean DefaultServiceLimits. When Register returns the service is already a
// member: a request sent right after can reach it. With a daemon that
// speaks protocol v1.1 that holds for a request sent from any daemon of the
// network, except those Service.Unconfirmed lists (the daemon waits a
// bounded time for every daemon to know the member); with an older one,
// from the service's own daemon.
//
// If the daemon refuses the registration the error is a *DeniedError.
func Register(ctx context.Context, cfg *Config, cluster string, handler Handler, limits *ServiceLimits) (*Service, error) {
	if handler == nil {
		return nil, errors.New("sdk: register: nil handler")
	}
	c, err := resolveConfig(cfg)
	if err != nil {
		return nil, err
	}
	lim, err := resolveServiceLimits(limits)
	if err != nil {
		return nil, err
	}
	if cluster == "" {
		return nil, fmt.Errorf("sdk: register: cluster %w", errEmptyName)
	}
	if len(cluster) > c.Limits.MaxStringLen {
		return nil, fmt.Errorf("sdk: register: %w: cluster name of %d bytes", ErrTooLarge, len(cluster))
	}
	svc := &service{handler: handler, limits: lim}
	svc.bcast, _ = handler.(BroadcastHandler)
	svc.tunnels, _ = handler.(TunnelHandler)
	svc.push, _ = handler.(PushHandler)
	conn, err := dial(ctx, c, cluster, svc)
	if err != nil {
		return nil, err
	}
	return &Service{conn: conn}, nil
}

// Name returns the service's member name in its cluster: the one asked for
// in Config.Name or the daemon's default. It is "" with a daemon that
// predates protocol v1.1.
func (s *Service) Name() string { return s.conn.svc.name }

// Unconfirmed lists the daemons that had not confirmed the registration
// when Register returned (the daemon waits a bounded time for every daemon
// alive to know a new member): a request sent from one of them right after
// Register may not find the service yet. Empty when every daemon confirmed
// it, and always with a daemon that predates protocol v1.1.
func (s *Service) Unconfirmed() []string { return s.conn.x.unconfirmed }

// Cluster returns the name of the cluster the service is a member of.
func (s *Service) Cluster() string { return s.conn.cluster }

// Conn returns the service's connection, for sending requests, broadcasts
// and publishes, subscribing, and reading Stats. Closing it closes the
// service.
func (s *Service) Conn() *Conn { return s.conn }

// Close unregisters the service and closes its connection gracefully, as
// Conn.Close does: it sends CLOSE, waits for the daemon's answer (the
// service has then left the cluster, and its tunnels are closed), waits
// for running handlers and the writing of their replies, then closes the
// socket. Requests still queued
// for a handler when the answer arrives are still served. Close is
// idempotent and returns once every goroutine of the service has exited;
// it must not be called from one of the service's handlers.
func (s *Service) Close() error { return s.conn.Close() }

// Done returns a channel closed when the service's connection is finished.
func (s *Service) Done() <-chan struct{} { return s.conn.Done() }

// Err returns nil while the service's connection is alive, then why it
// finished (see Conn.Err).
func (s *Service) Err() error { return s.conn.Err() }

// service is the serving side of a service's Conn.
type service struct {
	handler Handler
	bcast   BroadcastHandler // nil if handler does not implement it
	tunnels TunnelHandler    // nil if handler does not implement it
	limits  ServiceLimits
	reqs    *pool
	bcasts  *pool       // nil if bcast is nil
	push    PushHandler // nil if handler does not implement it
	pushes  *pool       // nil unless push is set and the session is v1.1
	name    string      // the member name the daemon gave (v1.1)
}

func (s *service) start(c *Conn) {
	s.reqs = newPool(s.limits.RequestThreads, s.limits.RequestMemory, &c.handlers, c.serveRequest)
	s.startPushes(c)
	if s.bcast != nil {
		s.bcasts = newPool(s.limits.BroadcastThreads, s.limits.BroadcastMemory, &c.handlers, c.serveBroadcast)
	}
}

func (s *service) close() {
	s.reqs.close()
	if s.pushes != nil {
		s.pushes.close()
	}
	if s.bcasts != nil {
		s.bcasts.close()
	}
}

// Faults sent by the SDK itself.
const (
	faultNotService = "sdk: not a service"
	faultEmptyError = "sdk: handler failed with an empty error text"
	faultTooLarge   = "sdk: reply too large"
)

// maxTimeoutMs is the longest delivered timeout that fits a time.Duration.
const maxTimeoutMs = math.MaxInt64 / int64(time.Millisecond)

// handleRequest queues a delivered request for a handler, or answers it
// with a fault at once when it cannot be queued. It never blocks.
func (c *Conn) handleRequest(m *api.Message) {
	if c.svc == nil {
		// The daemon owes its caller one answer; give it one.
		c.stats.ignored.Add(1)
		c.trySend(&api.Message{Op: api.OpReply, ID: m.ID, Fault: faultNotService})
		return
	}
	ms := int64(min(m.TimeoutMs, uint64(maxTimeoutMs)))
	d := delivery{id: m.ID, payload: m.Payload, deadline: time.Now().Add(time.Duration(ms) * time.Millisecond),
		survey: m.Op == api.OpSurvey}
	c.trackServing(m.ID)
	if c.svc.reqs.push(d) {
		return
	}
	c.untrackServing(m.ID)
	c.stats.requestsRejected.Add(1)
	if !c.trySend(&api.Message{Op: api.OpReply, ID: m.ID, Fault: ErrOverloaded.Error()}) {
		c.log.Debug("sdk: overloaded and send queue full, request dropped", "id", m.ID)
	}
}

// serveRequest runs the handler on a queued request and sends its reply.
func (c *Conn) serveRequest(d *delivery) {
	if c.baseCtx.Err() != nil {
		return // connection finished: nobody to answer
	}
	if !time.Now().Before(d.deadline) {
		c.untrackServing(d.id)
		c.stats.requestsExpired.Add(1) // the daemon has answered it as timed out
		return
	}
	ctx := newHandlerCtx(c.baseCtx, d.deadline, d.survey)
	if !c.startServing(d.id, ctx.cancel) {
		return // cancelled by its caller while it waited
	}
	reply, err := c.callHandler(ctx, d.payload)
	ctx.cancel()
	if c.untrackServing(d.id) {
		return // cancelled: the daemon has forgotten it
	}
	m := api.Message{Op: api.OpReply, ID: d.id, Success: err == nil, Payload: reply}
	switch {
	case err != nil:
		m.Fault = err.Error()
		if m.Fault == "" {
			m.Fault = faultEmptyError // an empty fault would mean a timeout
		}
	case len(reply) > c.cfg.Limits.MaxMessageLen:
		m.Success, m.Payload, m.Fault = false, nil, faultTooLarge
	}
	_ = c.send(c.baseCtx, &m) // fails only when the connection is finished
}

// callHandler calls the request handler, turning a panic into an error.
func (c *Conn) callHandler(ctx context.Context, request []byte) (reply []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			c.stats.handlerPanics.Add(1)
			c.log.Error("sdk: request handler panicked", "panic", r, "stack", string(debug.Stack()))
			reply, err = nil, fmt.Errorf("sdk: handler panicked: %v", r)
		}
	}()
	return c.svc.handler.HandleRequest(ctx, request)
}

// handleBroadcast queues a delivered broadcast for the broadcast handler.
func (c *Conn) handleBroadcast(m *api.Message) {
	if c.svc == nil || c.svc.bcasts == nil || !c.svc.bcasts.push(delivery{payload: m.Payload}) {
		c.stats.broadcastsDropped.Add(1)
	}
}

func (c *Conn) serveBroadcast(d *delivery) {
	defer c.recoverHandler("broadcast")
	c.svc.bcast.HandleBroadcast(d.payload)
}

// recoverHandler recovers and logs a panic of a handler without a reply.
func (c *Conn) recoverHandler(kind string) {
	if r := recover(); r != nil {
		c.stats.handlerPanics.Add(1)
		c.log.Error("sdk: "+kind+" handler panicked", "panic", r, "stack", string(debug.Stack()))
	}
}
