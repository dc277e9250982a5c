package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/iris-mesh/iris/sdk"
)

// streamWindow is the tunnel window of forward and expose: what one
// connection may buffer unread, per direction. The SDK's 64 MiB default
// is sized for message tunnels; a byte stream needs far less, and a forward
// may hold many connections.
const streamWindow = 4 << 20

// defaultMaxConns bounds the connections forward and expose carry at once.
const defaultMaxConns = 128

var forwardCmd = &command{
	name: "forward", args: "LOCAL_ADDR CLUSTER",
	summary: "carry TCP connections to LOCAL_ADDR over tunnels to CLUSTER (see expose)",
	help: `
Listens on LOCAL_ADDR (HOST:PORT; port 0 picks one, printed on stderr) and
carries every connection made to it over its own tunnel to a member of
CLUSTER, chosen by the daemons per connection. Run iris expose CLUSTER
TARGET_ADDR on the hosts that should serve it: together they carry any TCP
service by cluster name, both ways, half-closes included. Runs until
interrupted, or until the daemon is lost.`,
	flags: func(fs *flag.FlagSet, e *env) func([]string) error {
		maxConns := fs.Int("max-conns", defaultMaxConns, "connections carried at once; more wait to be accepted")
		verbose := fs.Bool("v", false, "log every connection, with the bytes it carried")
		return func(args []string) error {
			local, rest, err := name(args, "LOCAL_ADDR")
			if err != nil {
				return err
			}
			cluster, rest, err := name(rest, "CLUSTER")
			if err != nil {
				return err
			}
			if err := noMore(rest); err != nil {
				return err
			}
			if *maxConns <= 0 {
				return usageError("-max-conns: want a positive number")
			}
			ln, err := net.Listen("tcp", local)
			if err != nil {
				return fmt.Errorf("cannot listen on %s: %w", local, unwrapAll(err))
			}
			defer ln.Close()
			c, err := e.connectStream()
			if err != nil {
				return err
			}
			defer c.Close()
			fmt.Fprintf(e.stderr, "iris forward: listening on %s, carrying connections to cluster %q\n", ln.Addr(), cluster)
			f := &forwarder{e: e, c: c, cluster: cluster, verbose: *verbose, slots: make(chan struct{}, *maxConns)}
			return f.serve(ln)
		}
	},
}

// connectStream connects for forward: a client with the stream window.
func (e *env) connectStream() (*sdk.Conn, error) {
	cfg := e.sdkConfig()
	cfg.TunnelWindow = streamWindow
	ctx, cancel := context.WithTimeout(e.ctx, e.timeout)
	defer cancel()
	c, err := sdk.Connect(ctx, cfg)
	if err != nil {
		return nil, e.connectError(err)
	}
	return c, nil
}

// forwarder carries the connections accepted by iris forward.
type forwarder struct {
	e       *env
	c       *sdk.Conn
	cluster string
	verbose bool
	slots   chan struct{} // one per connection carried
	logMu   sync.Mutex
}

// serve accepts until the context ends or the daemon is lost, then closes
// every connection and waits for their goroutines.
func (f *forwarder) serve(ln net.Listener) error {
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel, which ends the connections
	ctx, cancel := context.WithCancel(f.e.ctx)
	defer cancel()
	stop := make(chan struct{})
	wg.Go(func() {
		select {
		case <-ctx.Done():
		case <-f.c.Done():
		}
		close(stop)
		ln.Close()
	})
	for {
		select {
		case f.slots <- struct{}{}:
		case <-stop:
			return f.stopErr()
		}
		conn, err := ln.Accept()
		if err != nil {
			<-f.slots
			select {
			case <-stop:
				return f.stopErr()
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		wg.Go(func() {
			defer func() { <-f.slots }()
			f.carry(ctx, conn.(*net.TCPConn))
		})
	}
}

// stopErr is serve's result once it stopped: nil when interrupted.
func (f *forwarder) stopErr() error {
	select {
	case <-f.c.Done():
		if f.e.ctx.Err() == nil {
			return fmt.Errorf("lost the daemon: %w", f.c.Err())
		}
	default:
	}
	return nil
}

// carry builds a tunnel for conn and splices the two.
func (f *forwarder) carry(ctx context.Context, conn *net.TCPConn) {
	start := time.Now()
	bctx, cancel := context.WithTimeout(ctx, f.e.timeout)
	t, err := f.c.Tunnel(bctx, f.cluster)
	cancel()
	if err != nil {
		_ = conn.SetLinger(0)
		_ = conn.Close()
		if ctx.Err() == nil {
			if errors.Is(err, sdk.ErrTimeout) {
				err = fmt.Errorf("no member of cluster %q accepted a tunnel within %v (is iris expose running?)", f.cluster, f.e.timeout)
			}
			f.logf("connection from %s: %s", conn.RemoteAddr(), describe(err, "forward"))
		}
		return
	}
	res := splice(ctx, conn, t)
	switch {
	case res.err != nil && ctx.Err() == nil:
		f.logf("connection from %s: %s (%d bytes sent, %d received)", conn.RemoteAddr(), describe(res.err, "forward"), res.sent, res.received)
	case f.verbose:
		f.logf("connection from %s: %d bytes sent, %d received in %v", conn.RemoteAddr(), res.sent, res.received, time.Since(start).Round(time.Millisecond))
	}
}

func (f *forwarder) logf(format string, args ...any) {
	f.logMu.Lock()
	defer f.logMu.Unlock()
	fmt.Fprintf(f.e.stderr, "iris forward: "+format+"\n", args...)
}

var exposeCmd = &command{
	name: "expose", args: "CLUSTER TARGET_ADDR",
	summary: "be a member of CLUSTER carrying its tunnels to TARGET_ADDR (see forward)",
	help: `
Registers as a member of CLUSTER and, for every tunnel built to it (by iris
forward, or iris tunnel), dials TARGET_ADDR (HOST:PORT) and carries bytes
both ways, half-closes included. Run it on several hosts to balance the
connections among them. Runs until interrupted, or until the daemon is lost.`,
	flags: func(fs *flag.FlagSet, e *env) func([]string) error {
		maxConns := fs.Int("max-conns", defaultMaxConns, "connections carried at once; further tunnels are refused")
		verbose := fs.Bool("v", false, "log every connection, with the bytes it carried")
		return func(args []string) error {
			cluster, rest, err := name(args, "CLUSTER")
			if err != nil {
				return err
			}
			target, rest, err := name(rest, "TARGET_ADDR")
			if err != nil {
				return err
			}
			if err := noMore(rest); err != nil {
				return err
			}
			if *maxConns <= 0 {
				return usageError("-max-conns: want a positive number")
			}
			if _, _, err := net.SplitHostPort(target); err != nil {
				return usageError(fmt.Sprintf("TARGET_ADDR %q: want HOST:PORT", target))
			}
			x := &exposer{e: e, target: target, verbose: *verbose}
			cfg := e.sdkConfig()
			cfg.TunnelWindow = streamWindow
			lim := sdk.DefaultServiceLimits()
			lim.MaxTunnels = *maxConns
			ctx, cancel := context.WithTimeout(e.ctx, e.timeout)
			svc, err := sdk.Register(ctx, cfg, cluster, x, &lim)
			cancel()
			if err != nil {
				return e.connectError(err)
			}
			fmt.Fprintf(e.stderr, "iris expose: carrying tunnels to cluster %q to %s\n", cluster, target)
			select {
			case <-e.ctx.Done():
				return svc.Close()
			case <-svc.Done():
				return fmt.Errorf("lost the daemon: %w", svc.Err())
			}
		}
	},
}

// exposer is the member iris expose registers.
type exposer struct {
	e       *env
	target  string
	verbose bool
	logMu   sync.Mutex
}

// errTunnelsOnly is the fault an exposer answers requests with.
var errTunnelsOnly = errors.New("this member only carries tunnels (iris expose)")

// HandleRequest refuses: an exposer carries tunnels only.
func (x *exposer) HandleRequest(context.Context, []byte) ([]byte, error) {
	return nil, errTunnelsOnly
}

// HandleTunnel dials the target and splices it with t.
func (x *exposer) HandleTunnel(t *sdk.Tunnel) {
	start := time.Now()
	d := net.Dialer{Timeout: x.e.timeout}
	nc, err := d.Dial("tcp", x.target)
	if err != nil {
		// Returning closes the tunnel without its end mark: the forward
		// side resets its client.
		x.logf("cannot reach %s: %v", x.target, unwrapAll(err))
		return
	}
	res := splice(context.Background(), nc.(*net.TCPConn), t)
	switch {
	case res.err != nil:
		x.logf("connection to %s: %s (%d bytes sent, %d received)", x.target, describe(res.err, "expose"), res.sent, res.received)
	case x.verbose:
		x.logf("connection to %s: %d bytes sent, %d received in %v", x.target, res.sent, res.received, time.Since(start).Round(time.Millisecond))
	}
}

func (x *exposer) logf(format string, args ...any) {
	x.logMu.Lock()
	defer x.logMu.Unlock()
	fmt.Fprintf(x.e.stderr, "iris expose: "+format+"\n", args...)
}
