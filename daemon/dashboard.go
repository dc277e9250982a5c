package daemon

import (
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"sort"
	"sync"
	"time"
)

// The dashboard is a static page (daemon/web, embedded in the binary) that
// polls GET /api/dashboard once a second. Its rates come from a ring of
// per-second samples of the daemon's pattern counters, kept only while the
// status server runs.

//go:embed web
var webFS embed.FS

// Rate sampling: one sample a second, five minutes kept.
const (
	rateStep    = time.Second
	rateSamples = 300
)

// patternCounter is one messaging pattern whose rate the dashboard charts.
// A new pattern adds one line to patternCounters; the page charts whatever
// series the API lists.
type patternCounter struct {
	name  string // stable key, e.g. "request"
	label string // shown on the dashboard
	value func(*layerStats) uint64
}

// patternCounters lists the patterns charted, in display order. Counts are
// this daemon's: what its apps sent, and the requests its members served.
var patternCounters = []patternCounter{
	{"request", "Requests sent", func(s *layerStats) uint64 { return s.cluster.Requests }},
	{"served", "Requests served", func(s *layerStats) uint64 { return s.cluster.Delivered }},
	{"broadcast", "Broadcasts", func(s *layerStats) uint64 { return s.cluster.Broadcasts }},
	{"publish", "Events published", func(s *layerStats) uint64 { return s.cluster.Publishes }},
	{"survey", "Surveys", func(s *layerStats) uint64 { return s.relay.Surveys }},
	{"push", "Pushes", func(s *layerStats) uint64 { return s.relay.Pushes }},
	{"relay_in", "Messages from apps", func(s *layerStats) uint64 { return s.relay.MessagesIn }},
	{"relay_out", "Messages to apps", func(s *layerStats) uint64 { return s.relay.MessagesOut }},
}

// rateSample is the value of every pattern counter at one instant.
type rateSample struct {
	at     time.Time
	values []uint64 // indexed like patternCounters
}

// rateRing keeps the last rateSamples+1 samples; rates are differences of
// neighbours. It is bounded: add overwrites the oldest sample.
type rateRing struct {
	mu    sync.Mutex // protects following
	buf   []rateSample
	next  int // where the next sample goes
	count int // samples held, at most len(buf)
}

func newRateRing(n int) *rateRing { return &rateRing{buf: make([]rateSample, n+1)} }

// add records a sample taken at t.
func (r *rateRing) add(t time.Time, values []uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf[r.next] = rateSample{at: t, values: values}
	r.next = (r.next + 1) % len(r.buf)
	r.count = min(r.count+1, len(r.buf))
}

// RateSeries is one pattern's rate over the last minutes.
type RateSeries struct {
	Name  string    `json:"name"`  // stable key: "request", "broadcast", ...
	Label string    `json:"label"` // human-readable
	Total uint64    `json:"total"` // counter value at the last sample
	Rates []float64 `json:"rates"` // per second, oldest first, one per step
}

// Rates is the rate history served to the dashboard.
type Rates struct {
	Step   float64      `json:"step"`   // seconds between samples
	End    int64        `json:"end"`    // Unix milliseconds of the last sample
	Series []RateSeries `json:"series"` // in display order; never null
}

// rates returns the rate of every pattern between consecutive samples.
func (r *rateRing) rates() Rates {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := Rates{Step: rateStep.Seconds(), Series: make([]RateSeries, len(patternCounters))}
	n := max(r.count-1, 0)
	for i, pc := range patternCounters {
		out.Series[i] = RateSeries{Name: pc.name, Label: pc.label, Rates: make([]float64, 0, n)}
	}
	first := (r.next - r.count + len(r.buf)) % len(r.buf)
	for k := 1; k < r.count; k++ {
		prev, cur := r.buf[(first+k-1)%len(r.buf)], r.buf[(first+k)%len(r.buf)]
		dt := cur.at.Sub(prev.at).Seconds()
		for i := range out.Series {
			rate := 0.0
			if dt > 0 && cur.values[i] >= prev.values[i] {
				rate = float64(cur.values[i]-prev.values[i]) / dt
			}
			out.Series[i].Rates = append(out.Series[i].Rates, rate)
		}
	}
	if r.count > 0 {
		last := r.buf[(r.next-1+len(r.buf))%len(r.buf)]
		out.End = last.at.UnixMilli()
		for i := range out.Series {
			out.Series[i].Total = last.values[i]
		}
	}
	return out
}

// layerSnapshot reads the cluster layer's and the relay's counters.
func (d *Daemon) layerSnapshot() *layerStats {
	s := &layerStats{cluster: d.node.Stats(), tunnels: d.node.TunnelCount()}
	if d.rel != nil {
		s.relay = d.rel.Stats()
	}
	return s
}

// sampleRates records the pattern counters every rateStep until the daemon
// stops. It runs only with the status server.
func (d *Daemon) sampleRates() {
	tick := time.NewTicker(rateStep)
	defer tick.Stop()
	for {
		s := d.layerSnapshot()
		values := make([]uint64, len(patternCounters))
		for i, pc := range patternCounters {
			values[i] = pc.value(s)
		}
		d.rates.add(time.Now(), values)
		select {
		case <-tick.C:
		case <-d.stopCh:
			return
		}
	}
}

// Dashboard is the JSON document served at GET /api/dashboard: the network
// as this daemon sees it, and its rates.
type Dashboard struct {
	Node    string    `json:"node"`
	Network string    `json:"network"`
	Ready   Readiness `json:"ready"`
	// Daemons lists this daemon first, then every other one known, by id.
	Daemons []DashboardDaemon `json:"daemons"`
	// Clusters lists every cluster with its members per daemon id.
	Clusters []DashboardCluster `json:"clusters"`
	// Topics lists every topic with the daemons that have subscribers.
	Topics   []DashboardTopic `json:"topics"`
	Tunnels  int              `json:"tunnels"` // tunnel ends on this daemon
	Apps     int              `json:"apps"`
	Services int              `json:"services"`
	Rates    Rates            `json:"rates"`
}

// DashboardDaemon is one daemon of Dashboard.Daemons.
type DashboardDaemon struct {
	ID    string `json:"id"`
	Addr  string `json:"addr"`
	Zone  string `json:"zone"`
	State string `json:"state"` // "alive" for this daemon
	Self  bool   `json:"self,omitempty"`
}

// DashboardCluster is one cluster of Dashboard.Clusters.
type DashboardCluster struct {
	Name    string         `json:"name"`
	Members map[string]int `json:"members"` // daemon id → members there
	Total   int            `json:"total"`
}

// DashboardTopic is one topic of Dashboard.Topics.
type DashboardTopic struct {
	Name    string   `json:"name"`
	Daemons []string `json:"daemons"` // with subscribers, sorted
	Local   int      `json:"local"`   // subscribers on this daemon
}

// dashboard assembles the document served at GET /api/dashboard.
func (d *Daemon) dashboard() Dashboard {
	st := d.Status()
	db := Dashboard{
		Node: st.Node, Network: st.Network, Ready: d.Ready(),
		Daemons:  make([]DashboardDaemon, 0, len(st.Peers)+1),
		Clusters: make([]DashboardCluster, 0, len(st.Clusters)),
		Topics:   make([]DashboardTopic, 0, len(st.Topics)),
		Tunnels:  st.Tunnels, Apps: st.Apps, Services: st.Services,
	}
	db.Daemons = append(db.Daemons, DashboardDaemon{ID: st.Node, Addr: st.Listen, Zone: st.Zone, State: "alive", Self: true})
	for _, p := range st.Peers {
		db.Daemons = append(db.Daemons, DashboardDaemon{ID: p.ID, Addr: p.Addr, Zone: p.Zone, State: p.State})
	}
	for _, c := range st.Clusters {
		dc := DashboardCluster{Name: c.Name, Members: make(map[string]int, len(c.Remote)+1)}
		if c.LocalMembers > 0 {
			dc.Members[st.Node] = c.LocalMembers
		}
		for id, n := range c.Remote {
			if n > 0 {
				dc.Members[id] = n
			}
		}
		for _, n := range dc.Members {
			dc.Total += n
		}
		db.Clusters = append(db.Clusters, dc)
	}
	for _, t := range st.Topics {
		dt := DashboardTopic{Name: t.Name, Local: t.LocalSubscribers, Daemons: append([]string(nil), t.Remote...)}
		if t.LocalSubscribers > 0 {
			dt.Daemons = append(dt.Daemons, st.Node)
		}
		sort.Strings(dt.Daemons)
		db.Topics = append(db.Topics, dt)
	}
	if d.rates != nil {
		db.Rates = d.rates.rates()
	} else {
		db.Rates = newRateRing(0).rates()
	}
	return db
}

// registerDashboard serves the page at / and its data at /api/dashboard.
func (d *Daemon) registerDashboard(mux *http.ServeMux) {
	sub, err := fs.Sub(webFS, "web")
	if err != nil {
		panic("daemon: embedded dashboard: " + err.Error()) // a build error, not a runtime one
	}
	files := pageHeaders(http.FileServerFS(sub))
	mux.Handle("GET /{$}", files)
	mux.Handle("GET /dashboard/", http.StripPrefix("/dashboard", files))
	// The page uses relative URLs (it works behind a proxy's path prefix),
	// so it must be loaded from /, not /dashboard/.
	// (http.Redirect would make the target absolute, losing any prefix.)
	mux.HandleFunc("GET /dashboard/{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Location", "../")
		w.WriteHeader(http.StatusFound)
	})
	mux.HandleFunc("GET /api/dashboard", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		if err := json.NewEncoder(w).Encode(d.dashboard()); err != nil {
			d.log.Debug().Err(err).Msg("dashboard: write failed")
		}
	})
}

// pageHeaders adds headers that confine the page to its own assets and API:
// no inline script, no third-party requests, no framing.
func pageHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}
