package relay

import (
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/iris-mesh/iris/api"
)

// Config configures a Server. Start from DefaultConfig; New copies it.
type Config struct {
	// Port is the TCP port Listen binds on 127.0.0.1 and [::1]. Default
	// api.DefaultPort (55555), the port every v1 binding dials. 0 picks a
	// free port (the same one on both addresses when possible); tests use it.
	Port int

	// Limits bounds the string and binary fields the relay decodes; a longer
	// field is a protocol violation that closes the connection. Zero fields
	// mean api.DefaultLimits (64 KiB strings, 16 MiB messages).
	Limits api.Limits

	// Logger receives the relay's log lines. Default zerolog.Nop().
	Logger zerolog.Logger

	// HandshakeTimeout is how long a new connection has to send its INIT
	// (and how long the answer may take to write). Default 5s. Lower sheds
	// idle or hostile connections sooner; too low fails apps on a loaded host.
	HandshakeTimeout time.Duration

	// SendQueueLen bounds, per connection, the broadcasts, events and
	// delivered requests queued for the app and not yet taken by its writer.
	// When it is full, broadcasts and events are dropped and counted (the app
	// is a slow consumer) and new requests are refused, so the cluster places
	// them on another member. Default 65536. Replies to the app's own requests
	// are never dropped and do not count here (see MaxPendingRequests).
	// Raising it absorbs longer bursts at the cost of memory per slow app.
	// Once half of it (or of SendQueueBytes, at most 8192 messages or 4 MiB)
	// is queued, deliveries of events wait for it to drain, at most 100 ms,
	// slowing their publishers rather than dropping events (see
	// docs/design-notes.md).
	SendQueueLen int

	// SendQueueBytes bounds the bytes of the same traffic, per connection,
	// with the same drop policy: payloads plus a per-message overhead (about
	// 200 bytes, the queue slot), also drawn from MemoryBudget. Default
	// 64 MiB. A message larger than this still goes through when nothing
	// else of its kind is queued.
	SendQueueBytes int

	// MaxPendingRequests bounds, per connection, the requests and tunnel
	// builds the app may have in flight, counting their answers until the
	// writer takes them; beyond it a REQUEST is answered at once with the
	// fault "iris: too many pending requests" and a TUN_INIT with a failed
	// build. It also bounds the requests delivered to a service that it has
	// not answered yet; beyond it new ones are refused. Default 65536.
	// Answers always fit in the send queue, so the worst-case queue is
	// SendQueueLen + MaxPendingRequests messages.
	MaxPendingRequests int

	// MemberCapacity is the number of requests a service connection may have
	// in flight before the cluster's balancer counts it as saturated and
	// prefers other members. 0 means the cluster's default.
	MemberCapacity int

	// TunnelChunkLimit is the largest tunnel chunk, in payload bytes,
	// announced to apps in TUN_INIT and TUN_CONFIRM; a larger chunk from an
	// app is a protocol violation. At most 64 KiB (the protocol's limit).
	// Default 64 KiB.
	TunnelChunkLimit int

	// TunnelGrant is the byte credit the daemon grants an app per tunnel:
	// how much it may send before the daemon has passed it on. Default
	// 4 MiB, as the protocol suggests. More buys throughput on long links
	// at the cost of memory per busy tunnel.
	TunnelGrant int

	// TunnelConfirmTimeout bounds how long a tunnel offered to a service
	// waits for its TUN_CONFIRM; then the offer is withdrawn and the build
	// tried on another member or failed. Default 3s.
	TunnelConfirmTimeout time.Duration

	// TunnelQueueBytes bounds, per connection, the tunnel data queued for
	// the app but not yet written; past it, tunnels wait (their far ends
	// are throttled by credit) until the writer catches up. Default 16 MiB.
	TunnelQueueBytes int

	// MaxTunnels bounds the tunnels (open, being built, or offered) per
	// connection. Default 65536. An idle tunnel costs a few hundred bytes.
	MaxTunnels int

	// MaxConns bounds the app connections open at once; more get DENY with
	// the reason "iris: too many app connections" and are closed (and
	// counted). Default 16384. Each costs two goroutines and its buffers,
	// some tens of KiB when idle.
	MaxConns int

	// PushWindow (0 means the default) bounds, per v1.1 connection, the pushes awaiting their
	// PUSH_ACK; the daemon announces it in its INIT answer and more break
	// the protocol. Default 1024. Each holds its message until a member's
	// queue takes it.
	PushWindow int

	// MaxPushCredit (0 means the default) caps the push credit a v1.1 member may grant with PULL:
	// the pushes queued for it at once. Default 4096.
	MaxPushCredit int

	// MemoryBudget bounds the bytes all app connections together may hold
	// beyond a 64 KiB allowance each: half for payloads queued for apps
	// until they are written (broadcasts, events, delivered requests,
	// replies), half for the bytes of messages partly received from apps.
	// What does not fit is refused and counted: broadcasts and events are
	// dropped, a request goes to another member, a reply becomes a fault,
	// and a partly sent message takes the budget of an app stalled
	// mid-message (which gets CLOSE("iris: daemon memory budget for apps
	// exhausted ...")) or, if none has stalled, waits a few seconds for
	// room and then gets that CLOSE itself. Apps that hold much already, or
	// whose message has been slow to arrive, may use only half of each
	// half, so they cannot starve the others. Default 128 MiB. Tunnel data
	// is bounded per connection by TunnelQueueBytes instead.
	MemoryBudget int

	// MessageTimeout bounds how long an app that has begun sending a
	// message may go without sending more of it; then it gets CLOSE("iris:
	// message not completed in time ...") and is disconnected. Between
	// messages an app may be silent as long as it likes. Default 30s.
	MessageTimeout time.Duration

	// MaxReplyBytes bounds, per connection, the payload bytes of replies
	// queued for the app and not yet written; a reply beyond it (unless it
	// is the only one) reaches the app as the fault "iris: reply dropped:
	// ...". Default 64 MiB.
	MaxReplyBytes int

	// MaxAppInterest bounds, per connection, the topics subscribed, each
	// counted as its length plus cluster.InterestEntryCost; a SUBSCRIBE
	// beyond it ends the session with CLOSE("iris: subscriptions exceed this
	// app's limit ..."). Every daemon holds a copy of each daemon's topics,
	// so this keeps one app from filling the daemon's interest table
	// (cluster.Config.MaxInterestBytes). Default 1 MiB.
	MaxAppInterest int

	// ConfirmTimeout bounds how long, in a v1.1 session, a SUBSCRIBE waits
	// for SUBSCRIBED and a service's INIT for its answer, while the daemon
	// waits for every other daemon alive to confirm it knows the new
	// subscription or member. The answer then names the daemons that had
	// not confirmed. Default 2s; a registration waits at most half of
	// HandshakeTimeout. 0 means the default.
	ConfirmTimeout time.Duration
}

// DefaultConfig returns a Config with every field set to its default.
func DefaultConfig() *Config {
	return &Config{
		Port:               api.DefaultPort,
		Limits:             api.DefaultLimits(),
		Logger:             zerolog.Nop(),
		HandshakeTimeout:   5 * time.Second,
		SendQueueLen:       65536,
		SendQueueBytes:     64 << 20,
		MaxPendingRequests: 65536,

		TunnelChunkLimit:     64 << 10,
		TunnelGrant:          4 << 20,
		TunnelConfirmTimeout: 3 * time.Second,
		TunnelQueueBytes:     16 << 20,
		MaxTunnels:           65536,
		MaxConns:             16384,
		PushWindow:           1024,
		MaxPushCredit:        4096,
		MemoryBudget:         128 << 20,
		MessageTimeout:       30 * time.Second,
		MaxReplyBytes:        64 << 20,
		MaxAppInterest:       1 << 20,
		ConfirmTimeout:       2 * time.Second,
	}
}

// Validate reports the first problem with c.
func (c *Config) Validate() error {
	if err := c.Limits.Validate(); err != nil {
		return fmt.Errorf("relay: config: %w", err)
	}
	switch {
	case c.Port < 0 || c.Port > 65535:
		return fmt.Errorf("relay: config: port %d not in 0..65535", c.Port)
	case c.HandshakeTimeout <= 0:
		return errors.New("relay: config: HandshakeTimeout must be positive")
	case c.SendQueueLen < 1:
		return errors.New("relay: config: SendQueueLen must be positive")
	case c.SendQueueBytes < 1:
		return errors.New("relay: config: SendQueueBytes must be positive")
	case c.MaxPendingRequests < 1:
		return errors.New("relay: config: MaxPendingRequests must be positive")
	case c.MemberCapacity < 0:
		return errors.New("relay: config: MemberCapacity must not be negative")
	case c.TunnelChunkLimit < 1 || c.TunnelChunkLimit > 64<<10:
		return errors.New("relay: config: TunnelChunkLimit must be in 1..64 KiB")
	case c.TunnelGrant < c.TunnelChunkLimit:
		return errors.New("relay: config: TunnelGrant must be at least TunnelChunkLimit")
	case c.TunnelConfirmTimeout <= 0:
		return errors.New("relay: config: TunnelConfirmTimeout must be positive")
	case c.TunnelQueueBytes < c.TunnelChunkLimit:
		return errors.New("relay: config: TunnelQueueBytes must be at least TunnelChunkLimit")
	case c.MaxTunnels < 1:
		return errors.New("relay: config: MaxTunnels must be positive")
	case c.MaxConns < 1:
		return errors.New("relay: config: MaxConns must be positive")
	case c.PushWindow < 0 || c.MaxPushCredit < 0:
		return errors.New("relay: config: PushWindow and MaxPushCredit must not be negative")
	case c.MemoryBudget < 1 || c.MaxReplyBytes < 1 || c.MaxAppInterest < 1:
		return errors.New("relay: config: MemoryBudget, MaxReplyBytes and MaxAppInterest must be positive")
	case c.MessageTimeout <= 0:
		return errors.New("relay: config: MessageTimeout must be positive")
	case c.ConfirmTimeout < 0:
		return errors.New("relay: config: ConfirmTimeout must not be negative")
	}
	return nil
}
