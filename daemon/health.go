package daemon

import (
	"fmt"
	"net/http"
	"net/http/pprof"
	"strings"
)

// Readiness is the answer of GET /readyz: whether this daemon is joined
// and serving, and if not, why.
type Readiness struct {
	Ready  bool   `json:"ready"`
	Reason string `json:"reason,omitempty"` // set when not ready
}

// Ready reports whether the daemon is ready for traffic, as GET /readyz
// does: it is not shutting down, it is joined (at least one other daemon
// alive, or no seeds configured, so a lone daemon is ready at once), and
// its relay is serving (or disabled).
func (d *Daemon) Ready() Readiness {
	select {
	case <-d.stopCh:
		return Readiness{Reason: "shutting down"}
	default:
	}
	if len(d.cfg.Join) > 0 && d.alivePeers() == 0 {
		return Readiness{Reason: fmt.Sprintf("not joined: no other daemon alive (seeds %s)",
			strings.Join(d.cfg.Join, ","))}
	}
	if d.rel != nil && len(d.rel.Addrs()) == 0 {
		return Readiness{Reason: "relay not serving"}
	}
	return Readiness{Ready: true}
}

// handleHealthz serves GET /healthz: 200 "ok" for as long as the process
// serves HTTP at all. It checks nothing else, so a supervisor restarts the
// daemon only when it is wedged, never because its peers are down.
func handleHealthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprintln(w, "ok")
}

// handleReadyz serves GET /readyz: 200 "ready" when Ready holds, else 503
// with the reason, as plain text (one line) for load balancers and humans.
func (d *Daemon) handleReadyz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	r := d.Ready()
	if !r.Ready {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "not ready: "+r.Reason)
		return
	}
	fmt.Fprintln(w, "ready")
}

// registerPprof adds net/http/pprof's handlers under /debug/pprof/ to mux.
func registerPprof(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
}
