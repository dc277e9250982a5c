package relay

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/iris-mesh/iris/api"
	"github.com/iris-mesh/iris/cluster"
)

// ErrClosed is returned by Listen, Serve and ServeConn once Shutdown or
// Close has begun.
var ErrClosed = errors.New("relay: server closed")

// reasonShutdown is the CLOSE reason every app gets from Shutdown.
const reasonShutdown = "daemon shutting down"

// Accept errors back off from minBackoff, doubling, up to maxBackoff
// (net/http's Server.Serve).
const (
	minBackoff = 5 * time.Millisecond
	maxBackoff = time.Second
)

// Server is the daemon side of the relay protocol: it accepts app
// connections and turns their messages into calls on a cluster.Node.
type Server struct {
	cfg      Config
	log      zerolog.Logger
	node     *cluster.Node
	warnGate *logLimiter // rate-limits warnings about misbehaving apps

	shutdownCh chan struct{} // closed when Shutdown or Close begins
	stats      counters
	memQueue   budget        // half of Config.MemoryBudget, for what is queued for apps
	memRead    budget        // the other half, for partly received messages
	denySem    chan struct{} // bounds connections being refused with DENY

	mu        sync.Mutex // protects following
	closing   bool       // shutdownCh is closed
	listeners []net.Listener
	conns     map[*conn]struct{}
	nextID    uint64 // connection ids, for logs

	// wg counts the accept loops, Serve calls and every connection being
	// served (ServeConn included). Add is only called under mu while
	// !closing, so never after Close or Shutdown started waiting.
	wg sync.WaitGroup
}

// New returns a Server relaying for node. A nil cfg means DefaultConfig().
// It serves nothing until Listen, Serve or ServeConn.
func New(cfg *Config, node *cluster.Node) (*Server, error) {
	if cfg == nil {
		cfg = DefaultConfig()
	}
	if node == nil {
		return nil, errors.New("relay: nil cluster node")
	}
	c := *cfg
	if err := c.Validate(); err != nil {
		return nil, err
	}
	d := DefaultConfig()
	c.PushWindow = cmp.Or(c.PushWindow, d.PushWindow)
	c.MaxPushCredit = cmp.Or(c.MaxPushCredit, d.MaxPushCredit)
	def := api.DefaultLimits()
	if c.Limits.MaxMessageLen == 0 {
		c.Limits.MaxMessageLen = def.MaxMessageLen
	}
	if c.Limits.MaxStringLen == 0 {
		c.Limits.MaxStringLen = def.MaxStringLen
	}
	c.ConfirmTimeout = cmp.Or(c.ConfirmTimeout, d.ConfirmTimeout)
	return &Server{
		memQueue:   budget{limit: int64(c.MemoryBudget / 2)},
		memRead:    budget{limit: int64(c.MemoryBudget - c.MemoryBudget/2)},
		denySem:    make(chan struct{}, maxDenying),
		cfg:        c,
		log:        c.Logger.With().Str("component", "relay").Logger(),
		node:       node,
		warnGate:   &logLimiter{burst: 10, interval: time.Second},
		shutdownCh: make(chan struct{}),
		conns:      make(map[*conn]struct{}),
	}, nil
}

// Listen binds cfg.Port on 127.0.0.1 and on [::1] and starts accepting
// connections on both in the background. It fails only if neither address
// binds. With Port 0 it binds a free port on 127.0.0.1 and then tries the
// same port on [::1].
func (s *Server) Listen() error {
	var lns []net.Listener
	var errs []error
	port := s.cfg.Port
	for _, a := range []struct{ network, host string }{{"tcp4", "127.0.0.1"}, {"tcp6", "::1"}} {
		ln, err := net.Listen(a.network, net.JoinHostPort(a.host, strconv.Itoa(port)))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		lns = append(lns, ln)
		if port == 0 {
			port = ln.Addr().(*net.TCPAddr).Port
		}
	}
	if len(lns) == 0 {
		return fmt.Errorf("relay: listen on port %d: %w", s.cfg.Port, errors.Join(errs...))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		for _, ln := range lns {
			ln.Close()
		}
		return ErrClosed
	}
	for _, ln := range lns {
		s.listeners = append(s.listeners, ln)
		s.wg.Go(func() { s.acceptLoop(ln) })
		s.log.Info().Str("addr", ln.Addr().String()).Msg("relay listening")
	}
	for _, err := range errs {
		s.log.Info().Err(err).Msg("relay address not bound")
	}
	return nil
}

// Serve accepts connections on a listener made elsewhere (socket
// activation, a test) and serves each, as Listen does for its own, until
// Shutdown or Close; then it returns ErrClosed. The Server closes ln.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		ln.Close()
		return ErrClosed
	}
	s.listeners = append(s.listeners, ln)
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	s.acceptLoop(ln)
	return ErrClosed
}

// Addrs returns the addresses the Server listens on.
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	addrs := make([]net.Addr, len(s.listeners))
	for i, ln := range s.listeners {
		addrs[i] = ln.Addr()
	}
	return addrs
}

// acceptLoop serves ln until it is closed, backing off on accept errors.
func (s *Server) acceptLoop(ln net.Listener) {
	backoff := time.Duration(0)
	for {
		nc, err := ln.Accept()
		if err != nil {
			select {
			case <-s.shutdownCh:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, minBackoff), maxBackoff)
			s.log.Warn().Err(err).Dur("retry_in", backoff).Msg("relay accept failed")
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-s.shutdownCh:
				t.Stop()
				return
			}
			continue
		}
		backoff = 0
		c, err := s.track(nc)
		if errors.Is(err, errTooManyConns) {
			if ok, suppressed := s.warnGate.allow(); ok {
				s.log.Warn().Int("max_conns", s.cfg.MaxConns).Int("suppressed", suppressed).
					Msg("refused an app connection: too many open")
			}
			continue
		}
		if err != nil {
			return // closing; track closed nc
		}
		go func() {
			defer s.untrack(c)
			_ = c.serve(context.Background()) // serve logs how the connection ended
		}()
	}
}

// ServeConn serves one app connection until it ends: the app closes it or
// breaks the protocol, ctx is cancelled (the connection is then dropped at
// once), or the Server shuts down. It closes nc before returning. Tests may
// pass one end of a net.Pipe.
//
// It returns nil when the session ended cleanly (a CLOSE from either side,
// or the app hanging up) and otherwise the reason, which the Server has
// already logged and counted: an error wrapping api.ErrProtocol for a
// protocol violation, or the I/O error.
func (s *Server) ServeConn(ctx context.Context, nc net.Conn) error {
	c, err := s.track(nc)
	if err != nil {
		return err
	}
	defer s.untrack(c)
	return c.serve(ctx)
}

// track registers a new connection, or closes nc and fails once the Server
// is closing.
// errTooManyConns refuses a connection beyond Config.MaxConns.
var errTooManyConns = errors.New("relay: too many app connections")

func (s *Server) track(nc net.Conn) (*conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		nc.Close()
		return nil, ErrClosed
	}
	if len(s.conns) >= s.cfg.MaxConns {
		s.stats.refusedConns.Add(1)
		select {
		case s.denySem <- struct{}{}:
			s.wg.Add(1)
			go s.denyConn(nc)
		default: // a flood: no goroutine for each
			nc.Close()
		}
		return nil, errTooManyConns
	}
	s.nextID++
	c := newConn(s, nc, s.nextID)
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.stats.accepted.Add(1)
	s.stats.conns.Add(1)
	return c, nil
}

// maxDenying bounds the connections over MaxConns being told why at once;
// beyond it they are closed without a word.
const maxDenying = 64

// denyConn answers a connection over MaxConns with DENY and a reason, then
// reads what the app sent (its INIT) for a moment so that closing does
// not reset the connection before the app has read the DENY.
func (s *Server) denyConn(nc net.Conn) {
	defer s.wg.Done()
	defer func() { <-s.denySem }()
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(min(s.cfg.HandshakeTimeout, time.Second)))
	reason := fmt.Sprintf("iris: too many app connections: the daemon serves at most %d (-max-apps)", s.cfg.MaxConns)
	if _, err := nc.Write(api.AppendDaemon(nil, &api.Message{Op: api.OpDeny, Magic: api.RelayMagic, Fault: reason})); err != nil {
		return
	}
	if cw, ok := nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	buf := make([]byte, 512)
	for {
		if _, err := nc.Read(buf); err != nil {
			return
		}
	}
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.stats.conns.Add(-1)
	s.wg.Done()
}

// beginClose stops accepting and returns the connections being served.
func (s *Server) beginClose() []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closing {
		s.closing = true
		close(s.shutdownCh)
		for _, ln := range s.listeners {
			ln.Close()
		}
	}
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	return conns
}

// Shutdown stops accepting connections, and ends every session gracefully:
// the app is unregistered and unsubscribed, the requests it holds are
// failed, what is queued for it is written, and it gets
// CLOSE("daemon shutting down") before its connection is closed. Shutdown
// returns when every connection and goroutine has ended, or when ctx is
// done: it then closes what is left as Close does, waits for it, and
// returns ctx's error. Connections still in their handshake are dropped.
// It may be called more than once, and with Close.
func (s *Server) Shutdown(ctx context.Context) error {
	for _, c := range s.beginClose() {
		c.closeGracefully(reasonShutdown)
	}
	done := make(chan struct{})
	go func() { // ends when wg does, which Close below guarantees
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.Close()
		<-done
		return ctx.Err()
	}
}

// Close stops accepting connections and drops every connection at once,
// without a CLOSE message: to the apps it looks like a lost daemon. It
// returns when every goroutine of the Server has exited. It may be called
// more than once.
func (s *Server) Close() error {
	for _, c := range s.beginClose() {
		c.kill()
	}
	s.wg.Wait()
	return nil
}

// Stats returns the Server's counters, for the status page and metrics.
func (s *Server) Stats() Stats {
	st := s.stats.snapshot()
	st.MemoryUsed = int(s.memQueue.used.Load() + s.memRead.used.Load())
	st.BudgetRefusals = s.memQueue.refused.Load() + s.memRead.refused.Load()
	return st
}

// warn logs a line about a misbehaving app, rate-limited across the Server.
func (s *Server) warn(c *conn, err error, msg string) {
	ok, suppressed := s.warnGate.allow()
	if !ok {
		return
	}
	ev := c.log.Warn()
	if err != nil {
		ev = ev.Err(err)
	}
	if suppressed > 0 {
		ev = ev.Int("suppressed", suppressed)
	}
	ev.Msg(msg)
}
