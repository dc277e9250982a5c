package daemon

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/iris-mesh/iris/api"
	"github.com/iris-mesh/iris/cluster"
	"github.com/iris-mesh/iris/crypto"
	"github.com/iris-mesh/iris/overlay"
	"github.com/iris-mesh/iris/relay"
)

// Default values used by DefaultConfig.
const (
	// DefaultListen is the overlay address a daemon binds when none is given:
	// every interface, overlay.DefaultPort, TCP and UDP.
	DefaultListen = "0.0.0.0:55556"
	// DefaultRelayPort is the TCP port apps on the host connect to.
	DefaultRelayPort = api.DefaultPort
	// RelayAnyPort as Config.RelayPort serves the relay on a free port.
	RelayAnyPort = -1
	// DefaultJoinRetryMin is the first pause after a failed join.
	DefaultJoinRetryMin = time.Second
	// DefaultJoinRetryMax caps the pause between join attempts.
	DefaultJoinRetryMax = 30 * time.Second
	// DefaultRejoinMax caps the pause between rejoin attempts while a daemon
	// is cut off from part of its network.
	DefaultRejoinMax = 4 * time.Second
	// DefaultDrainTimeout bounds how long Shutdown lets local apps finish
	// the requests they hold.
	DefaultDrainTimeout = 5 * time.Second

	// DefaultLinkProbeTimeout is the default LinkProbeTimeout, the
	// overlay's.
	DefaultLinkProbeTimeout = 600 * time.Millisecond
	// DefaultLeaveTimeout bounds the graceful leave in Shutdown when its
	// context has no deadline.
	DefaultLeaveTimeout = 5 * time.Second
)

// Config configures a Daemon. Start from DefaultConfig and set Network and
// Key; New copies the Config, so changing it afterwards has no effect.
type Config struct {
	// Network is the name of the network. Daemons form one overlay only with
	// daemons of the same name and key. Required, at most 255 bytes.
	Network string

	// Key is the network key shared by every daemon of the network. Required;
	// never log it (Key.String returns the secret).
	Key crypto.Key

	// SecondaryKeys are older or newer network keys this daemon still
	// accepts from peers but never dials with, for a key rotation without
	// an outage (see Daemon.SetKeys and docs/operations.md). At most
	// crypto.MaxKeys-1. Default none.
	SecondaryKeys []crypto.Key

	// NodeID names this daemon in the network and must be unique there.
	// Default: the host name plus a random suffix, so a restarted daemon is a
	// new node.
	NodeID string

	// Listen is the host:port for all overlay traffic (UDP gossip and TCP
	// links on the same port). Port 0 picks a free port; Daemon.Addr
	// reports the one chosen. Default DefaultListen.
	Listen string

	// Advertise is the host:port other daemons use to reach this one, for
	// daemons behind NAT or listening on 0.0.0.0 with several addresses.
	// Default: the listen address, or the host's private IP when listening on
	// every interface.
	Advertise string

	// Zone is an opaque locality label (rack, availability zone) gossiped to
	// every peer; balancing prefers members in the same zone. At most 64
	// bytes. Default "".
	Zone string

	// Join lists seed daemons, as host or host:port (the port defaults to
	// overlay.DefaultPort). One live seed is enough: the rest of the network
	// is learnt from it. A failed join is logged and retried in the background
	// until a peer is known; afterwards the seeds are tried again whenever
	// this daemon is cut off from part of the network (see RejoinMax).
	// Default: none (this daemon waits to be joined).
	Join []string

	// JoinRetryMin is the pause after the first failed join; it doubles after
	// each further failure up to JoinRetryMax. Lower values find a late seed
	// sooner at the cost of more log lines and connection attempts. Defaults
	// DefaultJoinRetryMin and DefaultJoinRetryMax.
	JoinRetryMin, JoinRetryMax time.Duration

	// RejoinMax caps the pause between attempts to rejoin the seeds and the
	// dead members while this daemon is cut off from part of its network
	// (see the package doc): a partition heals within about RejoinMax of
	// the network healing. Each attempt costs one TCP exchange per address.
	// Default DefaultRejoinMax.
	RejoinMax time.Duration

	// DrainTimeout bounds the drain at the start of Shutdown: the daemon
	// stops taking new work for its local members (peers are told at once),
	// and waits for the requests local apps already hold, and those they
	// sent, to be answered, for at most DrainTimeout, before the apps are
	// closed and the daemon leaves. 0 skips the drain. Default
	// DefaultDrainTimeout.
	DrainTimeout time.Duration

	// RelayPort is the TCP port, on 127.0.0.1 and [::1] only, that local apps
	// connect to. 0 disables the relay; RelayAnyPort picks a free port (for
	// tests and embedding; see RelayAddr). Default DefaultRelayPort.
	RelayPort int

	// Cluster tunes the cluster layer (balancing, tunnels). nil means
	// cluster.DefaultConfig(); its Logger is replaced by the daemon's.
	Cluster *cluster.Config

	// Relay tunes the relay (queues, limits). nil means relay.DefaultConfig();
	// its Port and Logger are replaced by the daemon's.
	Relay *relay.Config

	// StatusAddr is the host:port of the HTTP status server (GET /status,
	// /metrics, /healthz, /readyz, and the dashboard at / with its data at
	// /api/dashboard). Port 0 picks a free port; see Daemon.StatusAddr. The
	// endpoints are unauthenticated and reveal the network name and peers,
	// so bind a loopback or management address. Default "" (no server).
	StatusAddr string

	// Pprof also serves net/http/pprof under /debug/pprof/ on the status
	// server (which then allows responses of up to a minute, for CPU
	// profiles and traces). Profiles reveal internals and cost CPU while
	// taken: enable it on a loopback or management address only. Default
	// false.
	Pprof bool

	// Gossip tunes failure detection. Default overlay.LANGossip(); tests on
	// loopback use overlay.LocalGossip() for sub-second detection.
	Gossip overlay.GossipConfig

	// LinkProbeTimeout is how long a probe of a data link may go unanswered
	// before the link is closed as silent and what is in flight there
	// fails; after half of it the peer is already avoided for new work
	// (overlay.Config's LinkProbeTimeout and LinkQuietTimeout). Default
	// DefaultLinkProbeTimeout: a caller stalls well under a second when a
	// host goes silent. Raise it where daemons may be starved of CPU for
	// longer (many daemons in one process, heavily loaded hosts): a
	// starved live peer's links would otherwise close, failing what they
	// carry.
	LinkProbeTimeout time.Duration

	// Logger receives the daemon's log lines and those of its components.
	// Default zerolog.Nop().
	Logger zerolog.Logger
}

// DefaultConfig returns a Config with every field but Network and Key set to
// its default.
func DefaultConfig() *Config {
	return &Config{
		Listen:       DefaultListen,
		JoinRetryMin: DefaultJoinRetryMin,
		JoinRetryMax: DefaultJoinRetryMax,
		RejoinMax:    DefaultRejoinMax,
		DrainTimeout: DefaultDrainTimeout,
		RelayPort:    DefaultRelayPort,
		Gossip:       overlay.LANGossip(),
		Logger:       zerolog.Nop(),

		LinkProbeTimeout: DefaultLinkProbeTimeout,
	}
}

// Validate reports the first problem with c, in words an operator can act
// on.
func (c *Config) Validate() error {
	switch {
	case c.Network == "":
		return errors.New("daemon: config: network name is empty")
	case c.Key == crypto.Key{}:
		return errors.New("daemon: config: network key is missing (all zero)")
	case c.JoinRetryMin <= 0 || c.JoinRetryMax < c.JoinRetryMin:
		return errors.New("daemon: config: JoinRetryMin must be positive and JoinRetryMax at least JoinRetryMin")
	case c.RejoinMax < c.JoinRetryMin:
		return errors.New("daemon: config: RejoinMax must be at least JoinRetryMin")
	case c.DrainTimeout < 0:
		return errors.New("daemon: config: DrainTimeout must not be negative")
	case c.LinkProbeTimeout <= 0:
		return errors.New("daemon: config: LinkProbeTimeout must be positive")
	case c.RelayPort < RelayAnyPort || c.RelayPort > 65535:
		return fmt.Errorf("daemon: config: relay port %d not in 0..65535 (or RelayAnyPort)", c.RelayPort)
	}
	if err := checkHostPort("listen address", c.Listen); err != nil {
		return err
	}
	if c.Advertise != "" {
		if err := checkHostPort("advertise address", c.Advertise); err != nil {
			return err
		}
	}
	if c.StatusAddr != "" {
		if err := checkHostPort("status address", c.StatusAddr); err != nil {
			return err
		}
	}
	for _, seed := range c.Join {
		if _, err := seedAddr(seed); err != nil {
			return err
		}
	}
	// The overlay checks the rest (name and zone lengths, gossip timers).
	oc := c.overlayConfig(noDelegate{})
	if err := oc.Validate(); err != nil {
		return fmt.Errorf("daemon: config: %w", err)
	}
	if c.Cluster != nil {
		if err := c.Cluster.Validate(); err != nil {
			return fmt.Errorf("daemon: config: %w", err)
		}
	}
	if c.Relay != nil {
		if err := c.Relay.Validate(); err != nil {
			return fmt.Errorf("daemon: config: %w", err)
		}
	}
	return nil
}

// overlayConfig maps c onto the overlay's Config; del receives frames and
// peer events.
func (c *Config) overlayConfig(del overlay.Delegate) *overlay.Config {
	oc := overlay.DefaultConfig()
	oc.Network = c.Network
	oc.Key = c.Key
	oc.SecondaryKeys = c.SecondaryKeys
	oc.NodeID = c.NodeID
	oc.ListenAddr = c.Listen
	oc.AdvertiseAddr = c.Advertise
	oc.Zone = c.Zone
	oc.Logger = c.Logger
	oc.Delegate = del
	oc.Gossip = c.Gossip
	oc.LinkProbeTimeout, oc.LinkQuietTimeout = c.LinkProbeTimeout, c.LinkProbeTimeout/2
	if c.Relay != nil {
		// A frame between daemons carries one app message plus headers.
		need := c.Relay.Limits.MaxMessageLen + 256<<10
		oc.MaxFrameSize = max(oc.MaxFrameSize, need)
		oc.SendQueueBytes = max(oc.SendQueueBytes, 4*oc.MaxFrameSize)
	}
	return oc
}

// checkHostPort checks that addr is host:port with a numeric port.
func checkHostPort(what, addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("daemon: config: %s %q: want host:port", what, addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("daemon: config: %s %q: port must be a number in 0..65535", what, addr)
	}
	return nil
}

// seedAddr checks one Join entry and returns it as host:port: a bare host
// name, IPv4 address, IPv6 address or [IPv6] gets overlay.DefaultPort.
func seedAddr(seed string) (string, error) {
	seed = strings.TrimSpace(seed)
	if seed == "" {
		return "", errors.New("daemon: config: empty join address")
	}
	host, port, err := net.SplitHostPort(seed)
	if err != nil {
		host = strings.TrimSuffix(strings.TrimPrefix(seed, "["), "]")
		if strings.Contains(host, ":") && net.ParseIP(host) == nil {
			return "", fmt.Errorf("daemon: config: join address %q: want host or host:port", seed)
		}
		port = strconv.Itoa(overlay.DefaultPort)
	}
	if host == "" {
		return "", fmt.Errorf("daemon: config: join address %q: host is empty", seed)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("daemon: config: join address %q: port must be a number in 1..65535", seed)
	}
	return net.JoinHostPort(host, port), nil
}

// clusterConfig returns the cluster layer's configuration.
func (c *Config) clusterConfig() *cluster.Config {
	cc := cluster.DefaultConfig()
	if c.Cluster != nil {
		*cc = *c.Cluster
	}
	cc.Logger = c.Logger
	return cc
}

// relayConfig returns the relay's configuration.
func (c *Config) relayConfig() *relay.Config {
	rc := relay.DefaultConfig()
	if c.Relay != nil {
		*rc = *c.Relay
	}
	rc.Port = max(c.RelayPort, 0) // the relay's 0 is "any free port"
	rc.Logger = c.Logger
	return rc
}

// noDelegate lets Validate check an overlay configuration without the
// cluster layer that New attaches.
type noDelegate struct{}

func (noDelegate) HandleFrame(string, []byte) {}
func (noDelegate) HandlePeer(overlay.Peer)    {}
func (noDelegate) HandleLinkDown(string)      {}
