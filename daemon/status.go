package daemon

import (
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/iris-mesh/iris/cluster"
	"github.com/iris-mesh/iris/internal/buildinfo"
	"github.com/iris-mesh/iris/overlay"
	"github.com/iris-mesh/iris/relay"
)

// Status is the JSON document served at GET /status.
type Status struct {
	Node    string       `json:"node"`    // this daemon's node id
	Network string       `json:"network"` // network name
	Version string       `json:"version"` // irisd's module version, with its VCS revision if known
	Listen  string       `json:"listen"`  // overlay address peers reach it at
	Zone    string       `json:"zone"`    // locality label, "" if none
	Relay   string       `json:"relay"`   // where local apps connect, "" if disabled
	Peers   []PeerStatus `json:"peers"`   // every other daemon known, sorted by id; never null

	// Clusters lists every cluster known here: its members on this daemon
	// and, per other daemon, the members there. Sorted by name; never null.
	Clusters []cluster.ClusterStatus `json:"clusters"`
	// Topics lists every topic with a subscriber: subscribers on this
	// daemon and the other daemons with some. Sorted by name; never null.
	Topics []cluster.TopicStatus `json:"topics"`
	// Tunnels counts the tunnel ends this daemon holds.
	Tunnels int `json:"tunnels"`
	// Apps counts the connected apps (services included) and services.
	Apps     int `json:"apps"`
	Services int `json:"services"`
	// Patterns counts surveys, pushes and cancels (protocol v1.1).
	Patterns PatternStatus `json:"patterns"`
}

// PeerStatus is one entry of Status.Peers.
type PeerStatus struct {
	ID    string `json:"id"`    // node id
	Addr  string `json:"addr"`  // overlay address
	Zone  string `json:"zone"`  // locality label
	State string `json:"state"` // alive, suspect, dead or left
}

// Status returns the daemon's current status, as served at GET /status.
func (d *Daemon) Status() Status {
	peers := d.ov.Peers()
	st := Status{
		Node:    d.ov.ID(),
		Network: d.cfg.Network,
		Version: buildinfo.Read().String(),
		Listen:  d.addr,
		Zone:    d.ov.Zone(),
		Relay:   d.RelayAddr(),
		Peers:   make([]PeerStatus, 0, len(peers)),

		Clusters: d.node.Clusters(),
		Topics:   d.node.Topics(),
		Tunnels:  d.node.TunnelCount(),
		Patterns: d.patternStatus(),
	}
	if d.rel != nil {
		rs := d.rel.Stats()
		st.Apps, st.Services = rs.Conns, rs.Services
	}
	for _, p := range peers {
		st.Peers = append(st.Peers, PeerStatus{ID: p.ID, Addr: p.Addr, Zone: p.Zone, State: p.State.String()})
	}
	return st
}

// statusHandler serves GET /status, /metrics, /healthz, /readyz, the
// dashboard, and /debug/pprof/ when Config.Pprof is set.
func (d *Daemon) statusHandler(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", handleHealthz)
	mux.HandleFunc("GET /readyz", d.handleReadyz)
	if d.cfg.Pprof {
		registerPprof(mux)
	}
	d.registerDashboard(mux)
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(d.Status()); err != nil {
			d.log.Debug().Err(err).Msg("status: write failed")
		}
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

// registerMetrics registers the daemon's collectors with reg: the overlay's
// counters, peers by state, and the Go runtime and process metrics.
func registerMetrics(reg *prometheus.Registry, d *Daemon) error {
	for _, c := range []prometheus.Collector{
		newCollector(d),
		buildInfoGauge(),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// peerStates lists every state exported as a label of iris_overlay_peers,
// so that a state with no peers reads 0 rather than disappearing.
var peerStates = []overlay.State{overlay.StateAlive, overlay.StateSuspect, overlay.StateDead, overlay.StateLeft}

// counterDesc is one overlay counter and where its value comes from.
type counterDesc struct {
	desc  *prometheus.Desc
	value func(overlay.Stats) uint64
}

// collector reads the daemon's state at every scrape; it keeps no state
// of its own, so nothing can drift.
type collector struct {
	d         *Daemon
	counters  []counterDesc
	links     *prometheus.Desc
	peers     *prometheus.Desc
	info      *prometheus.Desc
	layers    []layerMetric
	joinFails *prometheus.Desc
	keys      *prometheus.Desc
	secondary *prometheus.Desc
}

func newCollector(d *Daemon) *collector {
	counter := func(name, help string, v func(overlay.Stats) uint64) counterDesc {
		return counterDesc{prometheus.NewDesc("iris_overlay_"+name, help, nil, nil), v}
	}
	return &collector{
		d: d,
		counters: []counterDesc{
			counter("frames_out_total", "Frames written to data links.", func(s overlay.Stats) uint64 { return s.FramesOut }),
			counter("frames_in_total", "Frames received from data links.", func(s overlay.Stats) uint64 { return s.FramesIn }),
			counter("frames_dropped_total", "Frames dropped: send queue full, or queued for a link that failed.", func(s overlay.Stats) uint64 { return s.FramesDropped }),
			counter("frames_skipped_total", "Frames of an unknown kind skipped (sent by a newer daemon).", func(s overlay.Stats) uint64 { return s.FramesSkipped }),
			counter("bytes_out_total", "Encrypted bytes written to data links.", func(s overlay.Stats) uint64 { return s.BytesOut }),
			counter("bytes_in_total", "Encrypted bytes read from data links.", func(s overlay.Stats) uint64 { return s.BytesIn }),
			counter("link_downs_total", "Data links that broke or could not be established.", func(s overlay.Stats) uint64 { return s.LinkDowns }),
			counter("link_idle_closes_total", "Data links closed by agreement after carrying nothing for the idle timeout.", func(s overlay.Stats) uint64 { return s.LinkIdleCloses }),
			counter("handshakes_refused_total", "Inbound connections refused because their handshake failed (wrong network key or name, or not an irisd).", func(s overlay.Stats) uint64 { return s.HandshakesRefused }),
			counter("conns_refused_busy_total", "Inbound connections closed because too many handshakes were pending.", func(s overlay.Stats) uint64 { return s.ConnsRefusedBusy }),
			counter("handshakes_evicted_total", "Pending inbound connections closed to admit newer ones (idle or slow first).", func(s overlay.Stats) uint64 { return s.HandshakesEvicted }),
			counter("handshakes_timed_out_total", "Inbound connections that sent nothing, stalled, or closed before their first record.", func(s overlay.Stats) uint64 { return s.HandshakesTimedOut }),
			counter("node_id_conflicts_total", "Daemons seen claiming a node id that is alive at another address.", func(s overlay.Stats) uint64 { return s.NodeIDConflicts }),
			counter("log_lines_suppressed_total", "Membership log lines dropped by the rate limit (mostly malformed or foreign packets).", func(s overlay.Stats) uint64 { return s.LogLinesSuppressed }),
		},
		links: prometheus.NewDesc("iris_overlay_links", "Data links currently up.", nil, nil),
		peers: prometheus.NewDesc("iris_overlay_peers", "Other daemons known, by membership state.", []string{"state"}, nil),
		info: prometheus.NewDesc("iris_daemon_info", "Always 1; labels identify the daemon.",
			[]string{"node", "zone"}, nil),
		layers: append(append(layerMetrics(), v11Metrics()...), subsMetrics()...),
		joinFails: prometheus.NewDesc("iris_daemon_join_failures_total",
			"Attempts to join the seeds that left no other daemon known.", nil, nil),
		keys: prometheus.NewDesc("iris_overlay_network_keys",
			"Network keys accepted now, the primary included (more than 1 during a key rotation).", nil, nil),
		secondary: prometheus.NewDesc("iris_overlay_handshakes_secondary_key_total",
			"Inbound connections authenticated with a secondary network key rather than the primary.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, cd := range c.counters {
		ch <- cd.desc
	}
	ch <- c.links
	ch <- c.peers
	ch <- c.info
	ch <- c.joinFails
	ch <- c.keys
	ch <- c.secondary
	for _, m := range c.layers {
		ch <- m.desc
	}
}

// Collect implements prometheus.Collector. It is called once per scrape.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ov := c.d.ov
	s := ov.Stats()
	for _, cd := range c.counters {
		ch <- prometheus.MustNewConstMetric(cd.desc, prometheus.CounterValue, float64(cd.value(s)))
	}
	ch <- prometheus.MustNewConstMetric(c.links, prometheus.GaugeValue, float64(s.Links))
	byState := make(map[overlay.State]int, len(peerStates))
	for _, p := range ov.Peers() {
		byState[p.State]++
	}
	for _, st := range peerStates {
		ch <- prometheus.MustNewConstMetric(c.peers, prometheus.GaugeValue, float64(byState[st]), st.String())
	}
	ch <- prometheus.MustNewConstMetric(c.info, prometheus.GaugeValue, 1, ov.ID(), ov.Zone())
	ch <- prometheus.MustNewConstMetric(c.joinFails, prometheus.CounterValue, float64(c.d.joinFailures.Load()))
	ch <- prometheus.MustNewConstMetric(c.keys, prometheus.GaugeValue, float64(ov.KeyCount()))
	ch <- prometheus.MustNewConstMetric(c.secondary, prometheus.CounterValue, float64(ov.SecondaryKeyHandshakes()))
	var snap layerStats
	snap.cluster = c.d.node.Stats()
	snap.tunnels = c.d.node.TunnelCount()
	snap.ext = c.d.node.ExtStats()
	snap.subjects = c.d.node.SubjectStats()
	if c.d.rel != nil {
		snap.relay = c.d.rel.Stats()
	}
	for _, m := range c.layers {
		ch <- prometheus.MustNewConstMetric(m.desc, m.typ, m.value(&snap))
	}
}

// layerStats is one scrape's snapshot of the cluster layer and the relay.
type layerStats struct {
	cluster  cluster.Stats
	relay    relay.Stats
	tunnels  int
	ext      cluster.ExtStats
	subjects cluster.SubjectStats
}

// layerMetric is one metric read from a layerStats.
type layerMetric struct {
	desc  *prometheus.Desc
	typ   prometheus.ValueType
	value func(*layerStats) float64
}

func layerMetrics() []layerMetric {
	m := func(name, help string, typ prometheus.ValueType, v func(*layerStats) float64) layerMetric {
		return layerMetric{prometheus.NewDesc(name, help, nil, nil), typ, v}
	}
	cnt, gauge := prometheus.CounterValue, prometheus.GaugeValue
	return []layerMetric{
		m("iris_cluster_requests_total", "Requests originated on this daemon.", cnt, func(s *layerStats) float64 { return float64(s.cluster.Requests) }),
		m("iris_cluster_replies_total", "Requests answered with a result.", cnt, func(s *layerStats) float64 { return float64(s.cluster.Replies) }),
		m("iris_cluster_faults_total", "Requests answered with a fault.", cnt, func(s *layerStats) float64 { return float64(s.cluster.Faults) }),
		m("iris_cluster_timeouts_total", "Requests answered as timed out.", cnt, func(s *layerStats) float64 { return float64(s.cluster.Timeouts) }),
		m("iris_cluster_delivered_total", "Requests delivered to members on this daemon.", cnt, func(s *layerStats) float64 { return float64(s.cluster.Delivered) }),
		m("iris_cluster_retries_total", "Requests re-placed after a daemon had no member for them.", cnt, func(s *layerStats) float64 { return float64(s.cluster.Retries) }),
		m("iris_cluster_pending_requests", "Requests originated here and not answered yet.", gauge, func(s *layerStats) float64 { return float64(s.cluster.Pending) }),
		m("iris_cluster_broadcasts_total", "Broadcasts sent from this daemon.", cnt, func(s *layerStats) float64 { return float64(s.cluster.Broadcasts) }),
		m("iris_cluster_publishes_total", "Events published from this daemon.", cnt, func(s *layerStats) float64 { return float64(s.cluster.Publishes) }),
		m("iris_cluster_dropped_total", "Broadcast and event copies to other daemons dropped (link queue full).", cnt, func(s *layerStats) float64 { return float64(s.cluster.Dropped) }),
		m("iris_cluster_bad_frames_total", "Malformed frames from other daemons, dropped.", cnt, func(s *layerStats) float64 { return float64(s.cluster.BadFrames) }),
		m("iris_cluster_tunnels", "Tunnel ends held by this daemon.", gauge, func(s *layerStats) float64 { return float64(s.tunnels) }),
		m("iris_relay_apps", "App connections open.", gauge, func(s *layerStats) float64 { return float64(s.relay.Conns) }),
		m("iris_relay_services", "App connections registered as services.", gauge, func(s *layerStats) float64 { return float64(s.relay.Services) }),
		m("iris_relay_violations_total", "App connections closed for breaking the protocol.", cnt, func(s *layerStats) float64 { return float64(s.relay.Violations) }),
		m("iris_relay_messages_in_total", "Messages received from apps.", cnt, func(s *layerStats) float64 { return float64(s.relay.MessagesIn) }),
		m("iris_relay_messages_out_total", "Messages sent to apps.", cnt, func(s *layerStats) float64 { return float64(s.relay.MessagesOut) }),
		m("iris_relay_dropped_broadcasts_total", "Broadcasts not delivered to a slow app.", cnt, func(s *layerStats) float64 { return float64(s.relay.DroppedBroadcasts) }),
		m("iris_relay_dropped_events_total", "Events not delivered to a slow subscriber.", cnt, func(s *layerStats) float64 { return float64(s.relay.DroppedEvents) }),
		m("iris_relay_refused_requests_total", "Requests a service's full queue refused (placed elsewhere).", cnt, func(s *layerStats) float64 { return float64(s.relay.RefusedRequests) }),
		m("iris_relay_expired_requests_total", "Requests a service held past their deadline.", cnt, func(s *layerStats) float64 { return float64(s.relay.ExpiredRequests) }),
		m("iris_relay_accepted_total", "App connections accepted.", cnt, func(s *layerStats) float64 { return float64(s.relay.Accepted) }),
		m("iris_relay_refused_conns_total", "App connections refused (DENY) because -max-apps were open.", cnt, func(s *layerStats) float64 { return float64(s.relay.RefusedConns) }),
		m("iris_relay_denied_total", "App handshakes answered with DENY (version, bad cluster name, full table).", cnt, func(s *layerStats) float64 { return float64(s.relay.Denied) }),
		m("iris_relay_handshake_failures_total", "App connections closed before a valid INIT (timeout, bad magic, garbage).", cnt, func(s *layerStats) float64 { return float64(s.relay.HandshakeFailures) }),
		m("iris_relay_too_many_pending_total", "App requests refused by the per-app pending limit.", cnt, func(s *layerStats) float64 { return float64(s.relay.TooManyPending) }),
		m("iris_relay_memory_bytes", "Bytes drawn from the app memory budget (-app-memory).", gauge, func(s *layerStats) float64 { return float64(s.relay.MemoryUsed) }),
		m("iris_relay_memory_refusals_total", "Messages refused because the app memory budget was spent.", cnt, func(s *layerStats) float64 { return float64(s.relay.BudgetRefusals) }),
		m("iris_relay_memory_closed_total", "App connections closed because their partly sent message did not fit the memory budget.", cnt, func(s *layerStats) float64 { return float64(s.relay.BudgetClosed) }),
		m("iris_relay_stalled_messages_total", "App connections closed for stalling in the middle of a message (-message-timeout).", cnt, func(s *layerStats) float64 { return float64(s.relay.StalledMessages) }),
		m("iris_relay_dropped_replies_total", "Replies replaced by a fault (-max-reply-bytes or the memory budget).", cnt, func(s *layerStats) float64 { return float64(s.relay.DroppedReplies) }),
		m("iris_relay_interest_refused_total", "Subscriptions and registrations refused by -max-app-interest or -max-interest.", cnt, func(s *layerStats) float64 { return float64(s.relay.InterestRefused) }),
		m("iris_cluster_interest_bytes", "Bytes of this daemon's interest table (-max-interest counts them).", gauge, func(s *layerStats) float64 { return float64(s.cluster.InterestBytes) }),
		m("iris_cluster_table_failures_total", "Interest tables that could not be sent to a peer.", cnt, func(s *layerStats) float64 { return float64(s.cluster.TableFailures) }),
		m("iris_cluster_too_many_pending_total", "Requests refused by the daemon-wide pending limit (-max-pending).", cnt, func(s *layerStats) float64 { return float64(s.cluster.TooManyPending) }),
	}
}
