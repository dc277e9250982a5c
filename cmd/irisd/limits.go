package main

import (
	"flag"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/iris-mesh/iris/cluster"
	"github.com/iris-mesh/iris/daemon"
)

// memoryFlags are the limits that bound what apps can make the daemon hold
// (see docs/operations.md, "Limits and budgets"). Like every flag, each
// may also be set in the environment (-app-memory: IRIS_APP_MEMORY, see
// envName); a flag given wins. Zero keeps the default.
type memoryFlags struct {
	appMemory, maxReplyBytes, maxAppInterest, maxInterest, maxPending int
	messageTimeout                                                    time.Duration
}

// add registers the flags on fs.
func (m *memoryFlags) add(fs *flag.FlagSet) {
	fs.IntVar(&m.appMemory, "app-memory", 0, "`BYTES` all app connections together may hold beyond 64 KiB each: queued messages and partly received ones (default 128 MiB; $IRIS_APP_MEMORY)")
	fs.DurationVar(&m.messageTimeout, "message-timeout", 0, "how long an app may stall in the middle of sending a message before it is disconnected (default 30s; $IRIS_MESSAGE_TIMEOUT)")
	fs.IntVar(&m.maxReplyBytes, "max-reply-bytes", 0, "`BYTES` of replies queued per app; beyond, a reply becomes a fault (default 64 MiB; $IRIS_MAX_REPLY_BYTES)")
	fs.IntVar(&m.maxAppInterest, "max-app-interest", 0, "`BYTES` of topic names one app may subscribe to (default 1 MiB; $IRIS_MAX_APP_INTEREST)")
	fs.IntVar(&m.maxInterest, "max-interest", 0, "`BYTES` of cluster names and topics this daemon announces to the network (default 4 MiB; $IRIS_MAX_INTEREST)")
	fs.IntVar(&m.maxPending, "max-pending", 0, "requests from this daemon's apps in flight at once, all apps together (default 262144; $IRIS_MAX_PENDING)")
}

// apply sets the limits given on c's relay and cluster configs, which
// must be set.
func (m *memoryFlags) apply(c *daemon.Config) error {
	for name, v := range map[string]int{"-app-memory": m.appMemory, "-max-reply-bytes": m.maxReplyBytes,
		"-max-app-interest": m.maxAppInterest, "-max-interest": m.maxInterest, "-max-pending": m.maxPending,
		"-message-timeout": int(m.messageTimeout)} {
		if v < 0 {
			return fmt.Errorf("%s %d: want a positive number", name, v)
		}
	}
	set := func(dst *int, v int) {
		if v > 0 {
			*dst = v
		}
	}
	set(&c.Relay.MemoryBudget, m.appMemory)
	set(&c.Relay.MaxReplyBytes, m.maxReplyBytes)
	set(&c.Relay.MaxAppInterest, m.maxAppInterest)
	set(&c.Cluster.MaxPendingRequests, m.maxPending)
	if m.maxInterest > cluster.MaxInterestBytesLimit {
		return fmt.Errorf("-max-interest %d: at most %d", m.maxInterest, cluster.MaxInterestBytesLimit)
	}
	set(&c.Cluster.MaxInterestBytes, m.maxInterest)
	if m.messageTimeout > 0 {
		c.Relay.MessageTimeout = m.messageTimeout
	}
	return nil
}

// softMemoryLimitExtra is what irisd's soft memory limit allows beyond the
// app memory budget: the runtime, the overlay and cluster layers, buffers
// and garbage not collected yet.
const softMemoryLimitExtra = 64 << 20

// setSoftMemoryLimit makes the garbage collector keep the heap near the
// app memory budget plus softMemoryLimitExtra (see runtime/debug's
// SetMemoryLimit), so that garbage does not double the resident memory
// under a flood of large messages. GOMEMLIMIT, if set, wins. It returns
// the limit set, or 0.
func setSoftMemoryLimit(c *daemon.Config, getenv func(string) string) int64 {
	if getenv("GOMEMLIMIT") != "" || c.Relay == nil {
		return 0
	}
	limit := int64(c.Relay.MemoryBudget) + softMemoryLimitExtra
	debug.SetMemoryLimit(limit)
	return limit
}
