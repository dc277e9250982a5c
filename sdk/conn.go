package sdk

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iris-mesh/iris/api"
)

// Conn is a connection to the local daemon. Connect makes a plain client
// connection; Register makes a service's, reachable through Service.Conn.
// All methods are safe for concurrent use.
//
// A Conn runs one reader goroutine, which decodes what the daemon sends and
// dispatches it by opcode, one writer goroutine, which drains a bounded
// queue of encoded messages, and handler goroutines bounded by the limits of
// the service and of each subscription (one per inbound tunnel, at most
// ServiceLimits.MaxTunnels). Close waits for all of them.
type Conn struct {
	cfg     Config
	cluster string   // "" for a plain client
	svc     *service // nil for a plain client
	nc      net.Conn
	dec     *api.Decoder // owned by the reader
	log     *slog.Logger

	sendCh     chan *[]byte  // encoded messages for the writer
	flushCh    chan struct{} // closed by Close: write what is queued, then exit
	deadCh     chan struct{} // closed by shutdown: the connection is finished
	ackCh      chan struct{} // closed by the reader when the daemon answered CLOSE
	readerDone chan struct{}
	writerDone chan struct{}

	// The writer's, reused by writeBatch: what one write gathers, and the
	// buffers of large messages in it.
	iov  net.Buffers
	held []*[]byte

	// handlers counts handler goroutines. Only the reader adds to it, and
	// Close waits on it after the reader has exited.
	handlers sync.WaitGroup
	// baseCtx is the parent of every handler context; shutdown cancels it.
	baseCtx    context.Context
	cancelBase context.CancelFunc

	closeOnce sync.Once
	closeErr  error
	ackReason string // reason of the daemon's answer to CLOSE; set before ackCh closes

	stats counters

	// calls recycles calls. It is per connection, not global, so that a
	// call's channel never crosses into another testing/synctest bubble.
	calls sync.Pool

	mu      sync.Mutex // protects the following
	nextID  uint64
	pending map[uint64]*call // nil value: abandoned by its caller, reply still due
	subs    map[string]*pool
	tun     tunnelTable
	closing bool  // Close was called
	err     error // why the connection is finished; nil while it is alive

	x v11conn // protocol v1.1 (v11.go); the maps are protected by mu
}

// Connect dials the daemon at cfg.Addr and performs the handshake as a plain
// client, one that sends requests, broadcasts and publishes and receives
// replies and the events of its subscriptions. A nil cfg means
// DefaultConfig. The whole of it is bounded by ctx and cfg.DialTimeout.
//
// If the daemon refuses the connection the error is a *DeniedError
// carrying its reason (errors.Is(err, ErrDenied) holds).
func Connect(ctx context.Context, cfg *Config) (*Conn, error) {
	c, err := resolveConfig(cfg)
	if err != nil {
		return nil, err
	}
	return dial(ctx, c, "", nil)
}

// dial connects, performs the handshake with the given cluster and starts
// the connection's goroutines.
func dial(ctx context.Context, cfg Config, cluster string, svc *service) (*Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	nc, err := cfg.Dial(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("sdk: connect %s: %w", cfg.Addr, err)
	}
	dec := api.NewDecoder(nc, cfg.Limits)
	info, err := handshake(ctx, nc, dec, cluster, &cfg)
	if err != nil {
		_ = nc.Close()
		var denied *DeniedError
		if errors.As(err, &denied) {
			if cfg.Version == "" && isVersionDeny(denied) {
				// A daemon that predates v1.1: speak v1.0 to it.
				cfg.Version = api.ProtocolVersion
				return dial(ctx, cfg, cluster, svc)
			}
			return nil, denied
		}
		return nil, fmt.Errorf("sdk: connect %s: %w", cfg.Addr, err)
	}
	c := &Conn{
		cfg:        cfg,
		cluster:    cluster,
		svc:        svc,
		nc:         nc,
		dec:        dec,
		log:        cfg.Logger.With("component", "sdk", "cluster", cluster),
		sendCh:     make(chan *[]byte, cfg.SendQueueLen),
		flushCh:    make(chan struct{}),
		deadCh:     make(chan struct{}),
		ackCh:      make(chan struct{}),
		readerDone: make(chan struct{}),
		writerDone: make(chan struct{}),
		pending:    make(map[uint64]*call),
		subs:       make(map[string]*pool),
		tun: tunnelTable{
			builds: make(map[uint64]*build),
			open:   make(map[uint64]*Tunnel),
		},
	}
	c.calls.New = newCall
	c.baseCtx, c.cancelBase = context.WithCancel(context.Background())
	c.initV11(info)
	if svc != nil {
		svc.start(c)
	}
	go c.runReader()
	go c.runWriter()
	return c, nil
}

// handshake sends INIT and reads the daemon's answer, within ctx. It
// returns the daemon's v1.1 information (nil in a v1.0 session).
func handshake(ctx context.Context, nc net.Conn, dec *api.Decoder, cluster string, cfg *Config) (*api.InitInfo, error) {
	if d, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(d)
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = nc.SetDeadline(time.Unix(1, 0)) // unblock the exchange now
		close(fired)
	})
	info, err := exchangeInit(nc, dec, cluster, cfg)
	if !stop() {
		<-fired // the AfterFunc goroutine is running: let it finish
	}
	if err == nil {
		return info, nc.SetDeadline(time.Time{})
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("%w: %w", ctx.Err(), err)
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		// The socket deadline fired before the context's timer.
		return nil, fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
	}
	return nil, err
}

func exchangeInit(nc net.Conn, dec *api.Decoder, cluster string, cfg *Config) (*api.InitInfo, error) {
	version := cfg.Version
	if version == "" {
		version = api.ProtocolV11
	}
	init := api.Message{Op: api.OpInit, Magic: api.ClientMagic, Version: version, Cluster: cluster}
	if version == api.ProtocolV11 {
		init.Payload = api.EncodeInitOptions(&api.InitOptions{Name: cfg.Name})
	}
	if _, err := nc.Write(api.AppendClient(nil, &init)); err != nil {
		return nil, fmt.Errorf("write INIT: %w", err)
	}
	var m api.Message
	if err := dec.ReadDaemon(&m); err != nil {
		return nil, fmt.Errorf("read INIT answer: %w", err)
	}
	switch {
	case m.Op != api.OpInit && m.Op != api.OpDeny:
		return nil, fmt.Errorf("%w: daemon answered INIT with %s", api.ErrProtocol, m.Op)
	case m.Magic != api.RelayMagic:
		return nil, fmt.Errorf("%w: daemon's %s has magic %q", api.ErrProtocol, m.Op, m.Magic)
	case m.Op == api.OpDeny:
		return nil, &DeniedError{Reason: m.Fault}
	case m.Version == api.ProtocolVersion:
		return nil, nil // every daemon speaks v1.0, and may choose it
	case m.Version != version:
		return nil, fmt.Errorf("%w: daemon chose version %q, we offered %q",
			api.ErrProtocol, m.Version, version)
	}
	info, err := api.DecodeInitInfo(m.Payload)
	if err != nil {
		return nil, err
	}
	dec.EnableV11()
	return &info, nil
}

// Close closes the connection gracefully, as the protocol asks: it sends
// CLOSE and stops accepting new calls, waits for the daemon's answer (by
// then a service has left its cluster), waits for running handlers to
// return and their replies to be written, then closes the socket.
// Requests and tunnel builds still waiting for an answer fail with
// ErrClosed. The daemon closes the connection's tunnels when it answers:
// their Recv then returns what they buffered, then an error wrapping
// ErrTunnelClosed and ErrClosed, which ends their TunnelHandlers.
//
// If the daemon does not answer within Config.CloseTimeout, Close closes the
// socket anyway, cancels the contexts of running handlers, still waits for
// them, and returns an error. Close returns only once every goroutine of the
// connection has exited. It may be called more than once and concurrently;
// later calls wait for the first and return its result. It returns nil
// when the connection had already been lost; call it anyway, to wait for
// the goroutines.
//
// Close must not be called from a handler of the same connection (request,
// broadcast, event or tunnel handler): it would wait for that handler to
// return.
// Call it from another goroutine.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() { c.closeErr = c.close() })
	return c.closeErr
}

func (c *Conn) close() error {
	c.mu.Lock()
	c.closing = true
	alive := c.err == nil
	c.mu.Unlock()
	var err error
	if alive {
		err = c.closeGracefully()
	}
	<-c.readerDone          // nothing more is delivered, so no handler starts
	c.endTunnels(ErrClosed) // the daemon has closed them: tunnel handlers return
	c.handlers.Wait()       // running handlers return and queue their replies
	close(c.flushCh)        // the writer writes them and exits
	<-c.writerDone
	c.shutdown(ErrClosed)
	return err
}

// closeGracefully sends CLOSE and waits for the daemon's answer, at most
// CloseTimeout; on timeout it shuts the connection down.
func (c *Conn) closeGracefully() error {
	timer := time.NewTimer(c.cfg.CloseTimeout)
	defer timer.Stop()
	buf := getBuf()
	*buf = api.AppendClient(*buf, &api.Message{Op: api.OpClose})
	select {
	case c.sendCh <- buf:
	case <-c.deadCh:
		putBuf(buf)
		return nil // lost meanwhile: nothing to close gracefully
	case <-timer.C:
		putBuf(buf)
		c.shutdown(ErrClosed)
		return fmt.Errorf("sdk: close: send queue still full after %v", c.cfg.CloseTimeout)
	}
	select {
	case <-c.ackCh:
	case <-c.readerDone:
		select {
		case <-c.ackCh:
		default:
			return fmt.Errorf("sdk: close: connection lost before the daemon answered: %w", c.Err())
		}
	case <-timer.C:
		c.shutdown(ErrClosed)
		return fmt.Errorf("sdk: close: daemon did not answer within %v", c.cfg.CloseTimeout)
	}
	if c.ackReason != "" {
		return fmt.Errorf("sdk: close: daemon answered with reason %q", c.ackReason)
	}
	return nil
}

// shutdown finishes the connection with err, once: later calls do nothing.
// Pending requests fail with err, handler contexts are cancelled, queued
// deliveries are discarded and the socket is closed, which stops the reader
// and the writer.
func (c *Conn) shutdown(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	pending, subs, builds := c.pending, c.subs, c.tun.builds
	c.pending, c.subs, c.tun.builds = nil, nil, nil
	c.mu.Unlock()

	close(c.deadCh)
	c.cancelBase()
	_ = c.nc.Close()
	for _, cl := range pending {
		if cl != nil {
			cl.done <- result{err: err}
		}
	}
	c.shutdownV11(err)
	c.failBuilds(builds, err)
	c.endTunnels(err)
	for _, p := range subs {
		p.close()
	}
	if c.svc != nil {
		c.svc.close()
	}
}

// Done returns a channel that is closed when the connection is finished:
// closed by Close or lost. Err then tells why.
func (c *Conn) Done() <-chan struct{} { return c.deadCh }

// Err returns nil while the connection is alive, and once Done is closed
// an error wrapping ErrClosed, with the cause when the connection was lost.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// checkOpenLocked returns the error for a new call on a closing or finished
// connection, nil otherwise. c.mu must be held.
func (c *Conn) checkOpenLocked() error {
	if c.err != nil {
		return c.err
	}
	if c.closing {
		return ErrClosed
	}
	return nil
}

// Stats counts what the connection dropped or discarded, for monitoring.
type Stats struct {
	// LateReplies counts replies discarded because their caller had given
	// up (its context ended first), and likewise tunnel build results (a
	// tunnel built for a caller that had given up is closed at once).
	LateReplies uint64
	// UnknownReplies counts replies and tunnel build results for ids that
	// were never pending: a daemon bug, ignored.
	UnknownReplies uint64
	// RequestsRejected counts delivered requests answered with the
	// ErrOverloaded fault, or dropped when even that could not be queued.
	RequestsRejected uint64
	// RequestsExpired counts delivered requests skipped because their
	// deadline passed while they waited for a handler.
	RequestsExpired uint64
	// HandlerPanics counts handler panics recovered (request, broadcast
	// and event handlers).
	HandlerPanics uint64
	// BroadcastsDropped counts broadcasts dropped: over BroadcastMemory, or
	// the handler has no HandleBroadcast, or delivered to a plain client.
	BroadcastsDropped uint64
	// EventsDropped counts events dropped: over EventMemory, or for a topic
	// no longer subscribed.
	EventsDropped uint64
	// TunnelsRefused counts inbound tunnel offers not confirmed (the daemon
	// fails their builds): the handler has no HandleTunnel, MaxTunnels were
	// open, the connection was closing, or it is a plain client's.
	TunnelsRefused uint64
	// TunnelMessagesDropped counts tunnel messages received but not
	// delivered: a message cut short by a new one (its sender gave up on
	// it), one larger than TunnelWindow, a malformed one, or one arriving
	// while TunnelWindow/64 messages wait for Recv.
	TunnelMessagesDropped uint64
	// PushesDropped counts pushed messages a member could not queue: the
	// connection was closing (the daemon counts them as dropped too).
	PushesDropped uint64
	// Ignored counts other messages ignored: requests delivered to a plain
	// client (answered with a fault), and tunnel messages arriving for a
	// tunnel closed meanwhile.
	Ignored uint64
	// EventsLost counts the events the daemon dropped for this connection
	// because it did not read them fast enough, as its GAP notices told
	// (v1.1 sessions; see Config.OnGap). Events the SDK itself dropped are
	// in EventsDropped.
	EventsLost uint64
	// GapNotices counts the GAP notices received.
	GapNotices uint64
}

type counters struct {
	lateReplies, unknownReplies, requestsRejected, requestsExpired atomic.Uint64
	handlerPanics, broadcastsDropped, eventsDropped, ignored       atomic.Uint64
	tunnelsRefused, tunnelMessagesDropped, pushesDropped           atomic.Uint64
	eventsLost, gapNotices                                         atomic.Uint64
}

// Stats returns the connection's counters.
func (c *Conn) Stats() Stats {
	s := &c.stats
	return Stats{
		LateReplies:           s.lateReplies.Load(),
		UnknownReplies:        s.unknownReplies.Load(),
		RequestsRejected:      s.requestsRejected.Load(),
		RequestsExpired:       s.requestsExpired.Load(),
		HandlerPanics:         s.handlerPanics.Load(),
		BroadcastsDropped:     s.broadcastsDropped.Load(),
		EventsDropped:         s.eventsDropped.Load(),
		TunnelsRefused:        s.tunnelsRefused.Load(),
		TunnelMessagesDropped: s.tunnelMessagesDropped.Load(),
		PushesDropped:         s.pushesDropped.Load(),
		Ignored:               s.ignored.Load(),
		EventsLost:            s.eventsLost.Load(),
		GapNotices:            s.gapNotices.Load(),
	}
}
