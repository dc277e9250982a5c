package overlay

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/rs/zerolog"

	"github.com/iris-mesh/iris/crypto"
)

// Default values used by DefaultConfig.
const (
	DefaultPort         = 55556
	DefaultMaxFrameSize = 16<<20 + 256<<10 // a 16 MiB relay message plus cluster headers
)

// Config configures an Overlay. The zero value is not usable: start from
// DefaultConfig and set Network and Key.
type Config struct {
	// Network is the name of the network. Daemons join only daemons with the
	// same name and key. The name never appears on the wire in clear.
	Network string

	// Key is the network key every member shares. All overlay traffic is
	// authenticated and encrypted with keys derived from it.
	Key crypto.Key

	// SecondaryKeys are further network keys accepted from peers (inbound
	// links and gossip) but never used to dial or to encrypt gossip: for a
	// key rotation without an outage (see Overlay.SetKeys). At most
	// crypto.MaxKeys-1, distinct from Key and each other. Default none.
	SecondaryKeys []crypto.Key

	// NodeID names this daemon in the network; it must be unique. Default:
	// the host name plus a random suffix, so a restarted daemon is a new node.
	NodeID string

	// ListenAddr is the one host:port used for all overlay traffic: UDP gossip
	// and every TCP connection (membership streams and data links). Port 0
	// picks a free port (TCP and UDP get the same one). Default 0.0.0.0:55556.
	ListenAddr string

	// AdvertiseAddr is the host:port other daemons use to reach this one.
	// Default: the listen address, or the host's private IP when listening on
	// an unspecified address.
	AdvertiseAddr string

	// Zone is an opaque locality label (rack, AZ) gossiped to every peer and
	// used by upper layers for locality-aware balancing. At most 64 bytes.
	Zone string

	// Logger receives the overlay's log lines (memberlist's are bridged into
	// it). Default: zerolog.Nop().
	Logger zerolog.Logger

	// Delegate receives frames and peer events. Required.
	Delegate Delegate

	// MaxFrameSize bounds one frame between daemons, checked before any
	// allocation. Larger frames are refused by Send and close a link that
	// receives one. Default DefaultMaxFrameSize.
	MaxFrameSize int

	// SendQueueLen bounds the frames waiting per peer, per priority. When the
	// queue is full, Send fails with ErrBackpressure; the caller decides what
	// to drop. Default 65536. The queues are allocated as frames arrive and
	// released when they run empty, so an idle peer costs none of it.
	SendQueueLen int

	// SendQueueBytes bounds the bytes waiting per peer across both
	// priorities: each frame's size plus 64 bytes (its queue slot and
	// header). Default 64 MiB. Past half of either bound (at most 8192
	// frames or 4 MiB), callers of WaitBacklog wait for the link, at most
	// MaxSendWait.
	SendQueueBytes int

	// HandshakeTimeout bounds the Noise handshake and the first record of
	// every inbound TCP connection. Default 5s. Lower values shed slow
	// (possibly hostile) connections sooner; too low fails on slow links.
	HandshakeTimeout time.Duration

	// FirstMessageTimeout bounds how long an inbound TCP connection may stay
	// silent before its first handshake bytes; a real daemon sends them as
	// soon as it has connected. Default 2s (capped by HandshakeTimeout).
	// Lower sheds idle connections sooner; too low fails peers whose first
	// packet is lost and retransmitted.
	FirstMessageTimeout time.Duration

	// MaxPendingHandshakes caps inbound connections that have not completed
	// their handshake and sent their first record. When it is reached, a new
	// connection takes the slot of a pending one: one that has sent
	// nothing, else one still in its handshake, else the oldest (see
	// docs/operations.md). Default 128. Bounds memory and goroutines under
	// a flood of idle or garbage connections while daemons with the key,
	// which complete within a round trip, still get in.
	MaxPendingHandshakes int

	// MaxPendingHandshakesPerIP caps the pending connections from one source
	// address; past it a new connection from that address takes the slot of
	// one of its own, so one address cannot take every slot. Default 32.
	MaxPendingHandshakesPerIP int

	// DialTimeout bounds establishing a data link (TCP connect + handshake).
	// Default 5s.
	DialTimeout time.Duration

	// KeepaliveInterval is how long a data link's writer may stay idle
	// before it sends an empty heartbeat frame, so that the far end hears
	// from a live peer at least that often (see LinkQuietTimeout). Default
	// 250ms.
	KeepaliveInterval time.Duration

	// KeepaliveTimeout closes a data link that received nothing (not even a
	// heartbeat) for this long: the peer or the path is gone even if TCP has
	// not noticed, as in a partition. Upper layers are told at once (so
	// requests in flight there fail) and the peer shows as suspect until a
	// link works again or failure detection decides. Default 3s; it must be
	// well above KeepaliveInterval. Lower detects sooner; too low closes
	// links of peers that are merely starved of CPU.
	KeepaliveTimeout time.Duration

	// LinkQuietTimeout is how long a peer may leave a probe unanswered
	// before it is avoided for new work. A link on which frames were sent
	// and nothing was heard for KeepaliveInterval/2 is probed (the peer
	// answers at once). Default 300ms: new requests go elsewhere well
	// within a second of a host going silent. The peer is used again as
	// soon as anything is heard from it.
	LinkQuietTimeout time.Duration

	// LinkProbeTimeout is how long a probe may stay unanswered before the
	// link is closed as silent, so that what is in flight there fails now
	// rather than at KeepaliveTimeout. Default 600ms. It bounds how long
	// callers stall when a host goes silent: a client's requests in flight
	// pile up on the silent host within milliseconds, before it is avoided,
	// and are answered (faulted) only when the link closes. Too low closes
	// links of peers that are merely starved of CPU (they are redialed at
	// once, but what was in flight fails). It must not be below
	// LinkQuietTimeout.
	LinkProbeTimeout time.Duration

	// LinkIdleTimeout is how long a data link may carry no upper-layer
	// frame either way before this end offers to close it (a goodbye
	// frame; the far end agrees unless it has frames to send). A link
	// closed so is no failure: the peer stays alive, nothing in flight is
	// faulted, and the next frame for the peer dials a new link. Default
	// 1 minute; 0 or negative keeps idle links open.
	LinkIdleTimeout time.Duration

	// Gossip tunes failure detection. Default LANGossip().
	Gossip GossipConfig
}

// GossipConfig tunes memberlist's SWIM failure detector. See memberlist's
// Config for the full trade-offs; the fields here are the ones operators
// most often change.
type GossipConfig struct {
	// ProbeInterval is how often each node probes a random peer. A dead node
	// is suspected after about one interval and declared dead after
	// SuspicionMult*log10(N+1)*ProbeInterval. Lower is faster detection at
	// the cost of more packets. LAN default 1s.
	ProbeInterval time.Duration
	// ProbeTimeout is how long to wait for a probe's ack. LAN default 500ms.
	ProbeTimeout time.Duration
	// SuspicionMult scales the time a suspect node has to refute. LAN default 4.
	SuspicionMult int
	// GossipInterval is how often state changes are gossiped. LAN default 200ms.
	GossipInterval time.Duration
	// PushPullInterval is the full-state anti-entropy period. LAN default 30s.
	PushPullInterval time.Duration
	// RetransmitMult is how many times, times ceil(log10(N+1)), each node
	// passes on a membership change it learnt of. With the memberlist
	// default (4, used when 0) a few of the N² (node, change) pairs of a
	// join storm are missed and wait for the next push/pull (measured: one
	// or two per 64-daemon start); 8 makes that rare, for twice the
	// gossip bytes per change (nothing more at idle).
	RetransmitMult int
	// DeadNodeReclaimTime is how long a dead node's name stays reserved.
	// Default 0 (immediately reusable).
	DeadNodeReclaimTime time.Duration
}

// LANGossip returns memberlist's LAN settings.
func LANGossip() GossipConfig {
	return GossipConfig{
		ProbeInterval:    time.Second,
		ProbeTimeout:     500 * time.Millisecond,
		SuspicionMult:    4,
		GossipInterval:   200 * time.Millisecond,
		PushPullInterval: 30 * time.Second,
	}
}

// LocalGossip returns fast settings for loopback tests: news spreads in
// tens of milliseconds and a dead daemon is declared so within about 2-5 s.
// The probe timeout and suspicion leave room for a machine so loaded that
// a live daemon answers a probe only after a few hundred milliseconds (as
// when many daemons share one process and a busy CPU): tighter settings
// have such daemons suspect, and then declare dead, each other.
func LocalGossip() GossipConfig {
	return GossipConfig{
		ProbeInterval:    250 * time.Millisecond,
		ProbeTimeout:     200 * time.Millisecond,
		SuspicionMult:    6,
		GossipInterval:   50 * time.Millisecond,
		PushPullInterval: 5 * time.Second,
	}
}

// DefaultConfig returns a Config with every field but Network, Key and
// Delegate set to its default.
func DefaultConfig() *Config {
	return &Config{
		ListenAddr:           fmt.Sprintf("0.0.0.0:%d", DefaultPort),
		Logger:               zerolog.Nop(),
		MaxFrameSize:         DefaultMaxFrameSize,
		SendQueueLen:         65536,
		SendQueueBytes:       64 << 20,
		HandshakeTimeout:     5 * time.Second,
		FirstMessageTimeout:  2 * time.Second,
		MaxPendingHandshakes: 128,

		MaxPendingHandshakesPerIP: 32,
		DialTimeout:               5 * time.Second,
		KeepaliveInterval:         250 * time.Millisecond,
		KeepaliveTimeout:          3 * time.Second,
		LinkQuietTimeout:          300 * time.Millisecond,
		LinkProbeTimeout:          600 * time.Millisecond,
		LinkIdleTimeout:           time.Minute,
		Gossip:                    LANGossip(),
	}
}

// Validate reports the first problem with c.
func (c *Config) Validate() error {
	switch {
	case c.Network == "":
		return errors.New("overlay: config: network name is empty")
	case len(c.Network) > 255:
		return errors.New("overlay: config: network name longer than 255 bytes")
	case c.Key == crypto.Key{}:
		return errors.New("overlay: config: network key is all zero")
	case checkKeys(c.Key, c.SecondaryKeys) != nil:
		return fmt.Errorf("overlay: config: %w", checkKeys(c.Key, c.SecondaryKeys))
	case c.Delegate == nil:
		return errors.New("overlay: config: Delegate is nil")
	case len(c.Zone) > 64:
		return errors.New("overlay: config: zone longer than 64 bytes")
	case len(c.NodeID) > 128:
		return errors.New("overlay: config: node id longer than 128 bytes")
	case c.MaxFrameSize < 1024:
		return errors.New("overlay: config: MaxFrameSize below 1024")
	case c.SendQueueLen < 1 || c.SendQueueBytes < c.MaxFrameSize:
		return errors.New("overlay: config: SendQueueLen must be positive and SendQueueBytes at least MaxFrameSize")
	case c.HandshakeTimeout <= 0 || c.DialTimeout <= 0:
		return errors.New("overlay: config: HandshakeTimeout and DialTimeout must be positive")
	case c.KeepaliveInterval <= 0 || c.KeepaliveTimeout < 2*c.KeepaliveInterval:
		return errors.New("overlay: config: KeepaliveInterval must be positive and KeepaliveTimeout at least twice it")
	case c.LinkQuietTimeout <= 0 || c.LinkProbeTimeout < c.LinkQuietTimeout:
		return errors.New("overlay: config: LinkQuietTimeout must be positive and LinkProbeTimeout at least as long")
	case c.MaxPendingHandshakes < 1 || c.MaxPendingHandshakesPerIP < 1:
		return errors.New("overlay: config: MaxPendingHandshakes and MaxPendingHandshakesPerIP must be positive")
	case c.FirstMessageTimeout <= 0:
		return errors.New("overlay: config: FirstMessageTimeout must be positive")
	case c.Gossip.ProbeInterval <= 0 || c.Gossip.ProbeTimeout <= 0 || c.Gossip.SuspicionMult < 1 ||
		c.Gossip.GossipInterval <= 0 || c.Gossip.PushPullInterval < 0:
		return errors.New("overlay: config: gossip intervals must be positive")
	}
	if _, _, err := net.SplitHostPort(c.ListenAddr); err != nil {
		return fmt.Errorf("overlay: config: listen address: %w", err)
	}
	if c.AdvertiseAddr != "" {
		if _, _, err := net.SplitHostPort(c.AdvertiseAddr); err != nil {
			return fmt.Errorf("overlay: config: advertise address: %w", err)
		}
	}
	return nil
}
