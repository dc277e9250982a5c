package daemon

import (
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/iris-mesh/iris/overlay"
)

// Status is the JSON document served at GET /status.
type Status struct {
	Node    string       `json:"node"`    // this daemon's node id
	Network string       `json:"network"` // network name
	Listen  string       `json:"listen"`  // overlay address peers reach it at
	Zone    string       `json:"zone"`    // locality label, "" if none
	Peers   []PeerStatus `json:"peers"`   // every other daemon known, sorted by id; never null
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
		Listen:  d.addr,
		Zone:    d.ov.Zone(),
		Peers:   make([]PeerStatus, 0, len(peers)),
	}
	for _, p := range peers {
		st.Peers = append(st.Peers, PeerStatus{ID: p.ID, Addr: p.Addr, Zone: p.Zone, State: p.State.String()})
	}
	return st
}

// statusHandler serves GET /status and GET /metrics.
func (d *Daemon) statusHandler(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
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
	unhandled *prometheus.Desc
	joinFails *prometheus.Desc
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
			counter("handshakes_refused_total", "Inbound connections refused because their handshake failed (wrong network key or name, or not an irisd).", func(s overlay.Stats) uint64 { return s.HandshakesRefused }),
			counter("conns_refused_busy_total", "Inbound connections closed because too many handshakes were pending.", func(s overlay.Stats) uint64 { return s.ConnsRefusedBusy }),
		},
		links: prometheus.NewDesc("iris_overlay_links", "Data links currently up.", nil, nil),
		peers: prometheus.NewDesc("iris_overlay_peers", "Other daemons known, by membership state.", []string{"state"}, nil),
		info: prometheus.NewDesc("iris_daemon_info", "Always 1; labels identify the daemon.",
			[]string{"node", "zone"}, nil),
		unhandled: prometheus.NewDesc("iris_daemon_frames_unhandled_total",
			"Frames received while no cluster layer is attached, dropped.", nil, nil),
		joinFails: prometheus.NewDesc("iris_daemon_join_failures_total",
			"Attempts to join the seeds that left no other daemon known.", nil, nil),
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
	ch <- c.unhandled
	ch <- c.joinFails
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
	if dc, ok := c.d.delegate.(discard); ok {
		ch <- prometheus.MustNewConstMetric(c.unhandled, prometheus.CounterValue, float64(dc.dropped()))
	}
}
