package sdk

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"time"

	"github.com/iris-mesh/iris/api"
)

// DefaultAddr is the address of the local daemon's relay: api.DefaultPort on
// the IPv4 loopback.
const DefaultAddr = "127.0.0.1:55555"

// Defaults used for zero Config, ServiceLimits and TopicLimits fields.
const (
	// DefaultDialTimeout is the default Config.DialTimeout.
	DefaultDialTimeout = 10 * time.Second
	// DefaultRequestTimeout is the default Config.DefaultRequestTimeout.
	DefaultRequestTimeout = 30 * time.Second
	// DefaultCloseTimeout is the default Config.CloseTimeout.
	DefaultCloseTimeout = 10 * time.Second
	// DefaultSendQueueLen is the default Config.SendQueueLen, in messages.
	DefaultSendQueueLen = 1024
	// DefaultHandlerMemory is the default memory limit of each handler
	// queue (requests, broadcasts, each subscription's events), in bytes.
	DefaultHandlerMemory = 64 << 20
	// DefaultTunnelTimeout is the default Config.DefaultTunnelTimeout.
	DefaultTunnelTimeout = 10 * time.Second
	// DefaultTunnelWindow is the default Config.TunnelWindow, in bytes: the
	// credit the Iris v1 bindings grant the daemon.
	DefaultTunnelWindow = 64 << 20
	// DefaultMaxTunnels is the default ServiceLimits.MaxTunnels.
	DefaultMaxTunnels = 128
	// DefaultPushCredit is the default ServiceLimits.PushCredit.
	DefaultPushCredit = 64
)

// Bounds of Config.TunnelWindow, in bytes.
const (
	// MinTunnelWindow is the smallest TunnelWindow: the largest chunk the
	// protocol allows (64 KiB), so that the daemon can always send a chunk
	// once the app has consumed what it holds.
	MinTunnelWindow = 64 << 10
	// MaxTunnelWindow is the largest TunnelWindow, 1 GiB.
	MaxTunnelWindow = 1 << 30
)

// defaultHandlerThreadsPerProc times GOMAXPROCS is the default number of
// handlers run concurrently per handler queue, as in Iris v1.
const defaultHandlerThreadsPerProc = 4

// Config configures a connection to the local daemon, for Connect and
// Register. The zero value of every field means its default, and a nil
// *Config means all defaults. Connect and Register copy the Config, so
// changing it afterwards has no effect.
type Config struct {
	// Addr is the host:port of the daemon's relay. Default DefaultAddr.
	Addr string

	// Dial opens the connection to Addr with network "tcp". Default: a
	// net.Dialer. Set it to reach a daemon over something other than
	// loopback TCP, such as an in-process daemon in tests.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// DialTimeout bounds Connect and Register as a whole: dialling plus the
	// INIT exchange. Default DefaultDialTimeout (10s). A context deadline
	// that comes earlier wins. The daemon is local, so a connection that takes
	// long means it is down or overloaded; lowering it fails faster then.
	DialTimeout time.Duration

	// DefaultRequestTimeout is the timeout sent with a request whose context
	// has no deadline, rounded down to milliseconds. Default
	// DefaultRequestTimeout (30s); at least 1ms. The daemon owns the
	// timeout and answers a request that nobody answers in time with a
	// timed-out reply, which Request returns as ErrTimeout. A higher value
	// lets slow services finish; a lower one frees a stuck caller sooner.
	DefaultRequestTimeout time.Duration

	// CloseTimeout bounds how long Close waits for the daemon to answer the
	// CLOSE it sends. Default DefaultCloseTimeout (10s). When it passes, Close
	// closes the socket anyway, cancels the contexts of running handlers and
	// returns an error. It does not bound the wait for running handlers to
	// return, which only they control.
	CloseTimeout time.Duration

	// SendQueueLen is the capacity, in messages, of the queue between the
	// callers of this connection and its single writer goroutine, which
	// writes everything queued in one system call. Default
	// DefaultSendQueueLen (1024). The queue also holds at most 256 KiB of
	// encoded messages (one larger message is taken when it is empty).
	// When it is full, senders (Request, Broadcast, Publish, handler
	// replies) wait for room, or until their context ends; the reader
	// never waits: a reply it cannot queue (an overload fault) is dropped
	// and counted in Stats, and the daemon times the request out.
	SendQueueLen int

	// Limits bounds the lengths of the fields read from the daemon; a
	// message beyond them is a protocol violation that drops the connection.
	// Outgoing payloads longer than Limits.MaxMessageLen, or than the
	// daemon's own limit (announced in a v1.1 session), are refused with
	// ErrTooLarge, since the daemon would drop the connection. Zero fields
	// mean api.DefaultLimits.
	Limits api.Limits

	// DefaultTunnelTimeout is the build timeout sent with a tunnel whose
	// context has no deadline (Conn.Tunnel), rounded down to milliseconds.
	// Default DefaultTunnelTimeout (10s); at least 1ms. The daemon owns it:
	// a tunnel that no member of the cluster accepts in time (or to a
	// cluster without members) fails with ErrTimeout at that deadline.
	DefaultTunnelTimeout time.Duration

	// TunnelWindow is the receive credit of each tunnel, in bytes: the most
	// the daemon may send on a tunnel before the app consumes it, and so the
	// most a tunnel buffers (messages waiting for Recv plus the message
	// being assembled). It is also the largest message a tunnel can
	// receive; a larger one is dropped (Stats.TunnelMessagesDropped).
	// Default DefaultTunnelWindow (64 MiB, as the v1 bindings grant); from
	// MinTunnelWindow (64 KiB) to MaxTunnelWindow (1 GiB). A larger window
	// keeps a fast link busy despite a consumer that reads in bursts; a
	// smaller one bounds memory: a service holds up to
	// ServiceLimits.MaxTunnels times this much.
	TunnelWindow int

	// Logger receives handler panics (Error), dropped connections (Info)
	// and dropped messages (Debug). Default: nil, no logging.
	Logger *slog.Logger

	// Name is the member name Register asks for in its cluster. It must be
	// unique in the cluster (the daemon refuses a name in use with a
	// *DeniedError whose reason starts with api.FaultNameTaken). Default
	// "": the daemon picks a stable name, "<daemon id>/<n>"
	// (Service.Name tells it). Ignored by Connect and by daemons that
	// predate protocol v1.1.
	Name string

	// Version is the relay protocol version offered in INIT. Default ""
	// offers api.ProtocolV11 and falls back to api.ProtocolVersion
	// (v1.0-draft2) with a daemon that refuses it. Set it to
	// api.ProtocolVersion to speak exactly as an Iris v1 binding: calls to
	// clusters without members then time out, and Survey and Push return
	// ErrUnsupported.
	Version string

	// OnGap, if set, is told of events the connection's subscriptions lost
	// (see Gap): those the daemon dropped because the connection did not
	// read fast enough (v1.1 daemons report them; Gap.Topic is ""), and
	// those the SDK dropped because a subscription's handlers were over
	// TopicLimits.EventMemory (Gap.Topic is that subscription's topic). It
	// is called from the connection's reader for the first kind and from
	// the subscription's handler goroutine, before its next event, for the
	// second; it must not block. Counts coalesce: one call may report many
	// events, and the sum of the Lost counts is exactly the number lost.
	OnGap func(Gap)
}

// Gap reports events lost by subscriptions: published and matching, but
// never handed to a handler.
type Gap struct {
	// Topic is the subscription (as given to Subscribe) whose handlers were
	// too slow, or "" when the daemon dropped the events for the whole
	// connection: they may have been for any of its subscriptions.
	Topic string
	// Lost is the number of events lost since the previous Gap of the same
	// Topic.
	Lost uint64
}

// DefaultConfig returns a Config with every field set to its default.
func DefaultConfig() *Config {
	return &Config{
		Addr:                  DefaultAddr,
		DialTimeout:           DefaultDialTimeout,
		DefaultRequestTimeout: DefaultRequestTimeout,
		CloseTimeout:          DefaultCloseTimeout,
		SendQueueLen:          DefaultSendQueueLen,
		DefaultTunnelTimeout:  DefaultTunnelTimeout,
		TunnelWindow:          DefaultTunnelWindow,
		Limits:                api.DefaultLimits(),
	}
}

// Validate reports whether c is usable: durations and sizes must not be
// negative, DefaultRequestTimeout and DefaultTunnelTimeout, when set, must
// be at least 1ms, and TunnelWindow, when set, must lie within
// [MinTunnelWindow, MaxTunnelWindow].
func (c *Config) Validate() error {
	switch {
	case c.DialTimeout < 0:
		return fmt.Errorf("sdk: Config.DialTimeout %v is negative", c.DialTimeout)
	case c.DefaultRequestTimeout < 0:
		return fmt.Errorf("sdk: Config.DefaultRequestTimeout %v is negative", c.DefaultRequestTimeout)
	case c.DefaultRequestTimeout > 0 && c.DefaultRequestTimeout < time.Millisecond:
		return fmt.Errorf("sdk: Config.DefaultRequestTimeout %v is below 1ms", c.DefaultRequestTimeout)
	case c.CloseTimeout < 0:
		return fmt.Errorf("sdk: Config.CloseTimeout %v is negative", c.CloseTimeout)
	case c.SendQueueLen < 0:
		return fmt.Errorf("sdk: Config.SendQueueLen %d is negative", c.SendQueueLen)
	case c.DefaultTunnelTimeout < 0:
		return fmt.Errorf("sdk: Config.DefaultTunnelTimeout %v is negative", c.DefaultTunnelTimeout)
	case c.DefaultTunnelTimeout > 0 && c.DefaultTunnelTimeout < time.Millisecond:
		return fmt.Errorf("sdk: Config.DefaultTunnelTimeout %v is below 1ms", c.DefaultTunnelTimeout)
	case c.Version != "" && c.Version != api.ProtocolVersion && c.Version != api.ProtocolV11:
		return fmt.Errorf("sdk: Config.Version %q is not %q or %q", c.Version, api.ProtocolVersion, api.ProtocolV11)
	case c.TunnelWindow != 0 && (c.TunnelWindow < MinTunnelWindow || c.TunnelWindow > MaxTunnelWindow):
		return fmt.Errorf("sdk: Config.TunnelWindow %d is outside [%d, %d]",
			c.TunnelWindow, MinTunnelWindow, MaxTunnelWindow)
	}
	if err := c.Limits.Validate(); err != nil {
		return fmt.Errorf("sdk: Config.Limits: %w", err)
	}
	return nil
}

// resolveConfig returns a validated copy of cfg (nil meaning the defaults) with
// zero fields replaced by their defaults.
func resolveConfig(cfg *Config) (Config, error) {
	var c Config
	if cfg != nil {
		c = *cfg
	}
	if err := c.Validate(); err != nil {
		return c, err
	}
	d := DefaultConfig()
	if c.Addr == "" {
		c.Addr = d.Addr
	}
	if c.Dial == nil {
		var dialer net.Dialer
		c.Dial = dialer.DialContext
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = d.DialTimeout
	}
	if c.DefaultRequestTimeout == 0 {
		c.DefaultRequestTimeout = d.DefaultRequestTimeout
	}
	if c.CloseTimeout == 0 {
		c.CloseTimeout = d.CloseTimeout
	}
	if c.SendQueueLen == 0 {
		c.SendQueueLen = d.SendQueueLen
	}
	if c.DefaultTunnelTimeout == 0 {
		c.DefaultTunnelTimeout = d.DefaultTunnelTimeout
	}
	if c.TunnelWindow == 0 {
		c.TunnelWindow = d.TunnelWindow
	}
	if c.Limits.MaxStringLen == 0 {
		c.Limits.MaxStringLen = d.Limits.MaxStringLen
	}
	if c.Limits.MaxMessageLen == 0 {
		c.Limits.MaxMessageLen = d.Limits.MaxMessageLen
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// ServiceLimits bounds the resources a Service spends on what the daemon
// delivers to it, as in Iris v1. A nil *ServiceLimits means the defaults,
// and so does every zero field.
//
// Requests wait in a FIFO queue until one of RequestThreads handlers is
// free. A request that would take the queue beyond RequestMemory is answered
// at once with the fault ErrOverloaded's text ("sdk: service overloaded"),
// so the caller learns of the overload fast instead of waiting for its
// timeout (Iris v1 dropped it silently). A request whose deadline passes
// while it waits is skipped: the daemon has already answered it as timed out.
// Broadcasts beyond BroadcastMemory are dropped and counted in Stats.
// Inbound tunnel offers beyond MaxTunnels are not confirmed.
type ServiceLimits struct {
	// RequestThreads is the number of request handlers run concurrently.
	// Default 4*GOMAXPROCS. Raising it helps handlers that block on I/O;
	// each running handler costs a goroutine.
	RequestThreads int
	// RequestMemory bounds the requests queued for a free handler, in bytes
	// of payload plus a fixed overhead per request (so that empty requests
	// are bounded too). Default DefaultHandlerMemory (64 MiB). A request
	// larger than this is always refused as overloaded.
	RequestMemory int
	// BroadcastThreads is the number of broadcast handlers run concurrently.
	// Default 4*GOMAXPROCS. Set it to 1 to handle broadcasts in the order
	// the daemon delivers them.
	BroadcastThreads int
	// BroadcastMemory bounds the broadcasts queued for a free handler, like
	// RequestMemory. Default DefaultHandlerMemory (64 MiB).
	BroadcastMemory int
	// MaxTunnels is the number of inbound tunnels open at once, each served
	// by its own TunnelHandler.HandleTunnel goroutine (tunnels are long
	// lived, so they are not queued). An offer beyond it is not confirmed:
	// the daemon fails the build after its confirmation timeout and the
	// builder gets ErrTimeout; it is counted in Stats.TunnelsRefused.
	// Default DefaultMaxTunnels (128). Each open tunnel may buffer up to
	// Config.TunnelWindow bytes.
	MaxTunnels int
	// PushCredit is how many pushed messages a member whose handler
	// implements PushHandler takes at once: the daemon queues at most this
	// many for it, and the rest wait at the pushers (Conn.Push blocks, or
	// Conn.TryPush returns ErrBusy) or go to other members. Default
	// DefaultPushCredit (64). Pushes are handled by up to RequestThreads
	// goroutines, beside requests.
	PushCredit int
}

// DefaultServiceLimits returns the default ServiceLimits for the current
// GOMAXPROCS.
func DefaultServiceLimits() ServiceLimits {
	threads := defaultHandlerThreadsPerProc * runtime.GOMAXPROCS(0)
	return ServiceLimits{
		RequestThreads:   threads,
		RequestMemory:    DefaultHandlerMemory,
		BroadcastThreads: threads,
		BroadcastMemory:  DefaultHandlerMemory,
		MaxTunnels:       DefaultMaxTunnels,
		PushCredit:       DefaultPushCredit,
	}
}

// Validate reports whether l is usable: no field may be negative.
func (l *ServiceLimits) Validate() error {
	switch {
	case l.RequestThreads < 0:
		return fmt.Errorf("sdk: ServiceLimits.RequestThreads %d is negative", l.RequestThreads)
	case l.RequestMemory < 0:
		return fmt.Errorf("sdk: ServiceLimits.RequestMemory %d is negative", l.RequestMemory)
	case l.BroadcastThreads < 0:
		return fmt.Errorf("sdk: ServiceLimits.BroadcastThreads %d is negative", l.BroadcastThreads)
	case l.BroadcastMemory < 0:
		return fmt.Errorf("sdk: ServiceLimits.BroadcastMemory %d is negative", l.BroadcastMemory)
	case l.MaxTunnels < 0:
		return fmt.Errorf("sdk: ServiceLimits.MaxTunnels %d is negative", l.MaxTunnels)
	case l.PushCredit < 0:
		return fmt.Errorf("sdk: ServiceLimits.PushCredit %d is negative", l.PushCredit)
	}
	return nil
}

func resolveServiceLimits(lim *ServiceLimits) (ServiceLimits, error) {
	var l ServiceLimits
	if lim != nil {
		l = *lim
	}
	if err := l.Validate(); err != nil {
		return l, err
	}
	d := DefaultServiceLimits()
	l.RequestThreads = orDefault(l.RequestThreads, d.RequestThreads)
	l.RequestMemory = orDefault(l.RequestMemory, d.RequestMemory)
	l.BroadcastThreads = orDefault(l.BroadcastThreads, d.BroadcastThreads)
	l.BroadcastMemory = orDefault(l.BroadcastMemory, d.BroadcastMemory)
	l.MaxTunnels = orDefault(l.MaxTunnels, d.MaxTunnels)
	l.PushCredit = orDefault(l.PushCredit, d.PushCredit)
	return l, nil
}

// TopicLimits bounds the resources a subscription spends on its events.
// A nil *TopicLimits means the defaults, and so does every zero field.
// Events beyond EventMemory are dropped and counted in Stats.
type TopicLimits struct {
	// EventThreads is the number of event handlers run concurrently.
	// Default 4*GOMAXPROCS. Set it to 1 to handle events in publish order
	// (the daemon keeps each publisher's events in order).
	EventThreads int
	// EventMemory bounds the events queued for a free handler, in bytes of
	// payload plus a fixed overhead per event. Default DefaultHandlerMemory
	// (64 MiB).
	EventMemory int
}

// DefaultTopicLimits returns the default TopicLimits for the current
// GOMAXPROCS.
func DefaultTopicLimits() TopicLimits {
	return TopicLimits{
		EventThreads: defaultHandlerThreadsPerProc * runtime.GOMAXPROCS(0),
		EventMemory:  DefaultHandlerMemory,
	}
}

// Validate reports whether l is usable: no field may be negative.
func (l *TopicLimits) Validate() error {
	switch {
	case l.EventThreads < 0:
		return fmt.Errorf("sdk: TopicLimits.EventThreads %d is negative", l.EventThreads)
	case l.EventMemory < 0:
		return fmt.Errorf("sdk: TopicLimits.EventMemory %d is negative", l.EventMemory)
	}
	return nil
}

func resolveTopicLimits(lim *TopicLimits) (TopicLimits, error) {
	var l TopicLimits
	if lim != nil {
		l = *lim
	}
	if err := l.Validate(); err != nil {
		return l, err
	}
	d := DefaultTopicLimits()
	l.EventThreads = orDefault(l.EventThreads, d.EventThreads)
	l.EventMemory = orDefault(l.EventMemory, d.EventMemory)
	return l, nil
}

func orDefault(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}
