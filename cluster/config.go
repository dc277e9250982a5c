package cluster

import (
	"errors"
	"time"

	"github.com/rs/zerolog"

	"github.com/iris-mesh/iris/overlay"
)

// Config configures a Node.
type Config struct {
	// Logger receives the node's log lines. Default zerolog.Nop().
	Logger zerolog.Logger

	// MemberCapacity is the number of requests a member may have in flight
	// before it counts as saturated, unless it registers with its own.
	// Saturated members are skipped while a less loaded tier exists.
	// Default 128. Higher keeps more work local; lower spills sooner.
	MemberCapacity int

	// MaxRequestTimeout caps the deadline of any request. Default 1h.
	MaxRequestTimeout time.Duration

	// UnhealthyFor is how long a daemon whose link broke is avoided by the
	// balancer unless it is the only one with members (any frame from it
	// ends this sooner). Default 2s.
	UnhealthyFor time.Duration

	// MaxRetries is how often a request that a remote daemon could not place
	// is re-sent to another target before its deadline. Default 2.
	MaxRetries int

	// TunnelWindow is the byte credit a daemon grants the far daemon of a
	// tunnel: how much of a tunnel's data may be in flight between daemons
	// or buffered at the receiving daemon. Throughput per tunnel is about
	// TunnelWindow/RTT; memory per busy tunnel up to twice it. Default 4 MiB,
	// as much as the relay lets an app send ahead (relay TunnelGrant): on a
	// loaded host a scheduling delay of a few ms is the RTT, and 1 MiB then
	// capped a tunnel below 200 MB/s.
	TunnelWindow int

	// TunnelCloseDrain bounds how long a closing tunnel keeps trying to
	// send data its app queued before the close. Default 30s.
	TunnelCloseDrain time.Duration

	// MaxInterestBytes bounds this daemon's interest table, which every
	// other daemon holds a copy of: the distinct cluster names served and
	// topics subscribed here, each counted as its length plus
	// InterestEntryCost. Register and Subscribe of a new name beyond it
	// fail with ErrInterestFull; topics may take at most three quarters of
	// it, so services always find room. Default 4 MiB; at most
	// MaxInterestBytesLimit, so the table always fits one overlay frame.
	MaxInterestBytes int

	// MaxPendingRequests bounds the requests originated on this daemon and
	// not answered yet, all apps together; beyond it Request fails at once
	// with the fault FaultTooManyPending. Default 262144. Each costs a few
	// hundred bytes plus its payload, held for retries until answered.
	MaxPendingRequests int
}

// InterestEntryCost is what each name costs in MaxInterestBytes beyond its
// length: a generous bound on its encoding overhead in the table.
const InterestEntryCost = 32

// MaxInterestBytesLimit is the largest MaxInterestBytes: an encoded table
// then fits the overlay's smallest default frame with room to spare.
const MaxInterestBytesLimit = overlay.DefaultMaxFrameSize - 1<<20

// FaultTooManyPending is the fault of a request refused by
// MaxPendingRequests.
const FaultTooManyPending = "iris: too many pending requests in this daemon"

// DefaultConfig returns a Config with the defaults.
func DefaultConfig() *Config {
	return &Config{
		Logger:            zerolog.Nop(),
		MemberCapacity:    128,
		MaxRequestTimeout: time.Hour,
		UnhealthyFor:      2 * time.Second,
		MaxRetries:        2,
		TunnelWindow:      4 << 20,
		TunnelCloseDrain:  30 * time.Second,

		MaxInterestBytes:   4 << 20,
		MaxPendingRequests: 262144,
	}
}

// Validate reports the first problem with c.
func (c *Config) Validate() error {
	switch {
	case c.MemberCapacity < 1:
		return errors.New("cluster: config: MemberCapacity must be positive")
	case c.MaxRequestTimeout <= 0:
		return errors.New("cluster: config: MaxRequestTimeout must be positive")
	case c.TunnelWindow < 64<<10 || c.TunnelCloseDrain <= 0:
		return errors.New("cluster: config: TunnelWindow must be at least 64 KiB and TunnelCloseDrain positive")
	case c.UnhealthyFor < 0 || c.MaxRetries < 0:
		return errors.New("cluster: config: UnhealthyFor and MaxRetries must not be negative")
	case c.MaxInterestBytes < 1 || c.MaxInterestBytes > MaxInterestBytesLimit:
		return errors.New("cluster: config: MaxInterestBytes must be in 1..MaxInterestBytesLimit")
	case c.MaxPendingRequests < 1:
		return errors.New("cluster: config: MaxPendingRequests must be positive")
	}
	return nil
}
