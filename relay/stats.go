package relay

import (
	"sync"
	"sync/atomic"
	"time"
)

// Stats counts a Server's traffic since it was created. Gauges say "now";
// every other field only grows.
type Stats struct {
	Conns    int // connections open now, handshaking ones included (gauge)
	Services int // connections registered as services now (gauge)

	Accepted          uint64 // connections served
	RefusedConns      uint64 // connections closed at once because MaxConns were open
	Denied            uint64 // handshakes refused with DENY (version, bad cluster name)
	HandshakeFailures uint64 // connections closed before a valid INIT (timeout, bad magic, garbage)
	Violations        uint64 // connections closed for breaking the protocol after the handshake

	MessagesIn  uint64 // messages decoded from apps
	MessagesOut uint64 // messages written to apps
	BytesOut    uint64 // bytes written to apps

	DroppedBroadcasts uint64 // broadcasts not queued for a slow consumer
	DroppedEvents     uint64 // events not queued for a slow consumer
	RefusedRequests   uint64 // requests a service could not take (queue full, closing); placed elsewhere
	TooManyPending    uint64 // app requests and tunnel builds refused at once by MaxPendingRequests
	ExpiredRequests   uint64 // requests delivered to a service and abandoned at their deadline
	LateReplies       uint64 // replies from a service to requests that had expired

	// Protocol v1.1.
	NoMembers       uint64 // calls answered at once with NO_MEMBERS
	Surveys         uint64 // surveys started by apps
	Pushes          uint64 // pushes from apps placed (accepted or busy)
	PushesBusy      uint64 // of those, refused because every member's queue was full
	PushesDelivered uint64 // pushes queued for members here
	PushesDropped   uint64 // pushes a member held, unconfirmed, when it left (reason: member gone)
	Cancels         uint64 // requests cancelled by apps
	MemoryUsed      int    // bytes drawn from MemoryBudget now (gauge)
	BudgetRefusals  uint64 // messages refused because MemoryBudget was spent
	BudgetClosed    uint64 // connections closed because their partly sent message did not fit MemoryBudget
	StalledMessages uint64 // connections closed for not completing a message within MessageTimeout
	DroppedReplies  uint64 // replies replaced by a fault (MaxReplyBytes or MemoryBudget)
	InterestRefused uint64 // subscriptions and registrations refused by MaxAppInterest or the daemon's table limit

	// Protocol v1.1, subscriptions.
	GapNotices          uint64 // GAP notices sent to apps that lost events
	SubscribesConfirmed uint64 // SUBSCRIBEs answered with SUBSCRIBED
	RegistersConfirmed  uint64 // service INITs answered once the member was known network-wide
	Unconfirmed         uint64 // of those, answered with daemons that had not confirmed

	// PublisherStalls counts event deliveries that waited for a
	// subscriber's queue to fall under high water (pressure.go).
	PublisherStalls uint64
}

// counters are the Server's live Stats.
type counters struct {
	conns, services                                atomic.Int64
	accepted, denied, handshakeFailures, violation atomic.Uint64
	refusedConns                                   atomic.Uint64
	_                                              [64]byte // msgsIn's writers (read loops) apart from the others
	msgsIn                                         atomic.Uint64
	_                                              [64]byte
	msgsOut, bytesOut                              atomic.Uint64 // the write loops'
	_                                              [64]byte
	droppedBroadcasts, droppedEvents               atomic.Uint64
	refused, tooManyPending, expired, lateReplies  atomic.Uint64
	noMembers, surveys, pushes, pushesBusy         atomic.Uint64
	pushesDelivered, pushesDropped, cancels        atomic.Uint64
	budgetClosed, stalled, droppedReplies          atomic.Uint64
	interestRefused                                atomic.Uint64
	gapNotices, subscribesConfirmed                atomic.Uint64
	registersConfirmed, unconfirmed                atomic.Uint64
	publisherStalls                                atomic.Uint64
}

func (c *counters) snapshot() Stats {
	return Stats{
		Conns:             int(c.conns.Load()),
		Services:          int(c.services.Load()),
		Accepted:          c.accepted.Load(),
		RefusedConns:      c.refusedConns.Load(),
		Denied:            c.denied.Load(),
		HandshakeFailures: c.handshakeFailures.Load(),
		Violations:        c.violation.Load(),
		MessagesIn:        c.msgsIn.Load(),
		MessagesOut:       c.msgsOut.Load(),
		BytesOut:          c.bytesOut.Load(),
		DroppedBroadcasts: c.droppedBroadcasts.Load(),
		DroppedEvents:     c.droppedEvents.Load(),
		RefusedRequests:   c.refused.Load(),
		TooManyPending:    c.tooManyPending.Load(),
		ExpiredRequests:   c.expired.Load(),
		LateReplies:       c.lateReplies.Load(),
		NoMembers:         c.noMembers.Load(),
		Surveys:           c.surveys.Load(),
		Pushes:            c.pushes.Load(),
		PushesBusy:        c.pushesBusy.Load(),
		PushesDelivered:   c.pushesDelivered.Load(),
		PushesDropped:     c.pushesDropped.Load(),
		Cancels:           c.cancels.Load(),
		BudgetClosed:      c.budgetClosed.Load(),
		StalledMessages:   c.stalled.Load(),
		DroppedReplies:    c.droppedReplies.Load(),
		InterestRefused:   c.interestRefused.Load(),

		GapNotices:          c.gapNotices.Load(),
		SubscribesConfirmed: c.subscribesConfirmed.Load(),
		RegistersConfirmed:  c.registersConfirmed.Load(),
		Unconfirmed:         c.unconfirmed.Load(),
		PublisherStalls:     c.publisherStalls.Load(),
	}
}

// logLimiter lets through at most burst log lines per interval, so that a
// flood of bad connections or slow consumers cannot flood the log (derp's
// limitedLogf). It reports how many lines it held back since the last one
// it let through.
type logLimiter struct {
	burst    int
	interval time.Duration

	mu         sync.Mutex // protects following
	start      time.Time
	n          int
	suppressed int
}

// allow reports whether a line may be logged now and, if so, how many were
// suppressed before it.
func (l *logLimiter) allow() (bool, int) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.start) >= l.interval {
		l.start, l.n = now, 0
	}
	if l.n >= l.burst {
		l.suppressed++
		return false, 0
	}
	l.n++
	s := l.suppressed
	l.suppressed = 0
	return true, s
}
