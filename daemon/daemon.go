// Package daemon runs a complete Iris node, irisd, in-process: the overlay
// that joins it to the other daemons of its network, the cluster layer that
// routes requests, broadcasts, events and tunnels by cluster name and topic,
// the relay that local apps connect to, the background join to the seed
// daemons, and the HTTP status server (JSON status, Prometheus metrics,
// health and readiness probes, the live dashboard, and optionally pprof).
//
// cmd/irisd is a thin shell around this package: it turns flags and
// environment variables into a Config, calls New, and calls Shutdown on
// SIGINT or SIGTERM. Tests and programs that embed a node do the same:
//
//	cfg := daemon.DefaultConfig()
//	cfg.Network, cfg.Key = "prod", key
//	cfg.Listen, cfg.StatusAddr = "127.0.0.1:0", "127.0.0.1:0"
//	cfg.Join = []string{"10.0.0.1"}
//	d, err := daemon.New(cfg)
//	...
//	defer d.Close()
//
// A Daemon owns every goroutine it starts; Shutdown and Close return only
// after all of them have exited.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/iris-mesh/iris/cluster"
	"github.com/iris-mesh/iris/crypto"
	"github.com/iris-mesh/iris/overlay"
	"github.com/iris-mesh/iris/relay"
)

// Daemon is one running Iris node.
type Daemon struct {
	cfg  Config
	log  zerolog.Logger
	ov   *overlay.Overlay
	addr string // the overlay's address, read once (see Addr)
	node *cluster.Node
	rel  *relay.Server // nil when RelayPort is 0

	status   *http.Server // nil without StatusAddr
	statusLn net.Listener
	rates    *rateRing // the dashboard's rate history; nil without StatusAddr

	// lifeMu serializes overlay.Leave and overlay.Close: memberlist panics
	// on a leave after its shutdown.
	lifeMu   sync.Mutex // protects following
	ovClosed bool

	joinFailures atomic.Uint64 // join attempts that left no peer known
	logGate      *logGate      // silences the overlay's logger once it is closed

	stopCh    chan struct{} // closed when shutdown begins; stops the joiner
	failedCh  chan struct{} // closed when the daemon stopped itself; see Failed
	failErr   error         // why; set before failedCh is closed
	stopOnce  sync.Once
	leaveOnce sync.Once
	closeOnce sync.Once
	wg        sync.WaitGroup // the joiner, the status server and the rate sampler
}

// New starts a daemon: it binds the overlay and status addresses, starts
// the background join to cfg.Join, and returns without waiting for the join.
// A nil cfg is an error: Network and Key have no defaults.
func New(cfg *Config) (*Daemon, error) {
	if cfg == nil {
		return nil, errors.New("daemon: nil config")
	}
	c := *cfg
	c.Join = append([]string(nil), cfg.Join...)
	c.SecondaryKeys = append([]crypto.Key(nil), cfg.SecondaryKeys...)
	if err := c.Validate(); err != nil {
		return nil, err
	}
	d := &Daemon{
		cfg:      c,
		log:      c.Logger.With().Str("component", "daemon").Logger(),
		logGate:  new(logGate),
		stopCh:   make(chan struct{}),
		failedCh: make(chan struct{}),
	}
	node, err := cluster.New(c.clusterConfig())
	if err != nil {
		return nil, fmt.Errorf("daemon: %w", err)
	}
	d.node = node
	oc := c.overlayConfig(node)
	oc.Logger = oc.Logger.Hook(d.logGate)
	ov, err := overlay.New(oc)
	if err != nil {
		return nil, fmt.Errorf("daemon: start overlay: %w", err)
	}
	d.ov = ov
	d.addr = ov.Addr()
	if err := node.Start(ov); err != nil {
		_ = ov.Close()
		return nil, fmt.Errorf("daemon: start cluster layer: %w", err)
	}
	if err := d.startRelay(); err != nil {
		d.closeLayers()
		return nil, err
	}
	if c.StatusAddr != "" {
		if err := d.startStatus(); err != nil {
			d.closeLayers()
			return nil, err
		}
	}
	d.logStart()
	d.wg.Go(d.watchFatal)
	d.wg.Go(d.joinLoop)
	return d, nil
}

// Failed is closed when the daemon has stopped itself because it cannot
// serve (Err says why): its node id is already alive in the network. The
// daemon then closes as Close does.
func (d *Daemon) Failed() <-chan struct{} { return d.failedCh }

// Err returns why the daemon stopped itself, once Failed is closed; nil
// before.
func (d *Daemon) Err() error {
	select {
	case <-d.failedCh:
		return d.failErr
	default:
		return nil
	}
}

// watchFatal stops the daemon when the overlay reports it cannot serve.
func (d *Daemon) watchFatal() {
	select {
	case err := <-d.ov.Fatal():
		d.failErr = fmt.Errorf("daemon: %w", err)
		d.log.Error().Err(err).Msg("stopping: this daemon cannot be part of the network")
		close(d.failedCh)
		d.stop()
		go d.Close() // waits for this goroutine, which returns now
	case <-d.stopCh:
	}
}

// logStart logs what the daemon serves. It never logs the key.
func (d *Daemon) logStart() {
	ev := d.log.Info().Str("node", d.ov.ID()).Str("network", d.cfg.Network).
		Str("listen", d.addr).Str("zone", d.cfg.Zone)
	if d.statusLn != nil {
		ev = ev.Str("status", d.statusLn.Addr().String())
	}
	if d.rel != nil {
		ev = ev.Str("relay", d.RelayAddr())
	}
	ev.Msg("daemon started")
}

// startRelay serves the relay for local apps, unless RelayPort is 0.
func (d *Daemon) startRelay() error {
	if d.cfg.RelayPort == 0 {
		return nil
	}
	rel, err := relay.New(d.cfg.relayConfig(), d.node)
	if err != nil {
		return fmt.Errorf("daemon: relay: %w", err)
	}
	if err := rel.Listen(); err != nil {
		return fmt.Errorf("daemon: relay: %w", err)
	}
	d.rel = rel
	return nil
}

// closeLayers closes what New started, in order: apps, cluster, overlay.
func (d *Daemon) closeLayers() {
	if d.rel != nil {
		_ = d.rel.Close()
	}
	_ = d.node.Close()
	_ = d.ov.Close()
}

// startStatus binds StatusAddr and serves the status endpoints on it.
func (d *Daemon) startStatus() error {
	ln, err := net.Listen("tcp", d.cfg.StatusAddr)
	if err != nil {
		return fmt.Errorf("daemon: status server: %w", err)
	}
	reg := prometheus.NewRegistry()
	if err := registerMetrics(reg, d); err != nil {
		ln.Close()
		return fmt.Errorf("daemon: status server: %w", err)
	}
	d.statusLn = ln
	d.status = &http.Server{
		Handler:           d.statusHandler(reg),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          log.New(httpErrorLog{d.log}, "", 0),
	}
	if d.cfg.Pprof {
		// pprof refuses a profile or trace longer than WriteTimeout; allow
		// its 30 s default and traces of up to a minute.
		d.status.WriteTimeout = 65 * time.Second
	}
	d.log.Info().Str("addr", ln.Addr().String()).Msg("status server listening")
	d.rates = newRateRing(rateSamples)
	d.wg.Go(d.sampleRates)
	d.wg.Go(func() {
		if err := d.status.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			d.log.Error().Err(err).Msg("status server stopped")
		}
	})
	return nil
}

// Overlay returns the daemon's overlay node, for its id, peers, counters
// and sending frames. It stays valid, closed, after Close.
func (d *Daemon) Overlay() *overlay.Overlay { return d.ov }

// Cluster returns the daemon's cluster layer: apps embedded in the same
// process can register, request, publish and open tunnels through it
// directly, without a relay connection.
func (d *Daemon) Cluster() *cluster.Node { return d.node }

// Relay returns the daemon's relay server, or nil when RelayPort is 0.
func (d *Daemon) Relay() *relay.Server { return d.rel }

// RelayAddr returns the host:port local apps connect to (the IPv4 one when
// both are served), or "" when the relay is disabled.
func (d *Daemon) RelayAddr() string {
	if d.rel == nil {
		return ""
	}
	addrs := d.rel.Addrs()
	for _, a := range addrs {
		if ta, ok := a.(*net.TCPAddr); ok && ta.IP.To4() != nil {
			return a.String()
		}
	}
	if len(addrs) == 0 {
		return ""
	}
	return addrs[0].String()
}

// Addr returns the host:port other daemons reach this one at: the address
// to give them in their Join. Use it rather than Overlay().Addr(), which
// races with memberlist's updates of the local node.
func (d *Daemon) Addr() string { return d.addr }

// StatusAddr returns the address the status server is bound to (with the
// port chosen when StatusAddr had port 0), or "" when it has none.
func (d *Daemon) StatusAddr() string {
	if d.statusLn == nil {
		return ""
	}
	return d.statusLn.Addr().String()
}

// SetKeys replaces the daemon's network keys while it runs, for a key
// rotation without restart: it dials with primary from now on and accepts
// primary and every one of secondary from peers. Links already up are
// kept. A list that Config.Validate would refuse changes nothing. It never
// logs the keys.
func (d *Daemon) SetKeys(primary crypto.Key, secondary []crypto.Key) error {
	if err := d.ov.SetKeys(primary, secondary); err != nil {
		return fmt.Errorf("daemon: set keys: %w", err)
	}
	return nil
}

// Shutdown first drains the daemon (see Config.DrainTimeout): peers stop
// sending it work and local apps answer the requests they hold. Then it
// closes the apps' sessions and leaves the network gracefully, so peers see
// this daemon as "left" rather than failed, then closes it as Close does.
// The drain and the leave share ctx's deadline. The leave waits
// for the news to go out until ctx's deadline (DefaultLeaveTimeout when ctx
// has none); the status server finishes the requests in flight. It returns
// when every goroutine has exited. Shutdown and Close may be called more
// than once, and in any order; only the first Shutdown leaves, and none
// does after Close.
func (d *Daemon) Shutdown(ctx context.Context) error {
	d.stop()
	d.drain(ctx)
	if d.rel != nil {
		// Apps get their CLOSE and their services leave the cluster (peers
		// learn it from the table update) before the daemon leaves.
		if err := d.rel.Shutdown(ctx); err != nil {
			d.log.Warn().Err(err).Msg("relay shutdown cut short")
		}
	}
	var err error
	d.leaveOnce.Do(func() { err = d.leave(ctx) })
	d.close(ctx)
	return err
}

// drainSettle is the least a drain lasts: requests peers sent before they
// heard of it arrive (and are turned back) meanwhile.
const drainSettle = 300 * time.Millisecond

// drain stops new work for local members and waits, for at most
// DrainTimeout (and ctx), until the requests local apps hold and those they
// sent are answered and the answers are on their way. Peers learn of the
// drain from this daemon's interest table, which goes out at once.
func (d *Daemon) drain(ctx context.Context) {
	if d.cfg.DrainTimeout <= 0 {
		return
	}
	d.lifeMu.Lock()
	closed := d.ovClosed
	d.lifeMu.Unlock()
	if closed {
		return
	}
	start := time.Now()
	d.ov.AnnounceLeaving() // peers then record the leave as such, whatever comes first
	d.node.Drain()
	deadline := time.NewTimer(d.cfg.DrainTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	held, sent := d.node.Busy()
	d.log.Info().Dur("timeout", d.cfg.DrainTimeout).Int("held", held).Int("sent", sent).
		Msg("draining: no new work for local apps; waiting for the requests under way")
	for {
		select {
		case <-tick.C:
		case <-deadline.C:
			held, sent := d.node.Busy()
			d.log.Warn().Int("held", held).Int("sent", sent).Msg("drain timed out; failing what is left")
			return
		case <-ctx.Done():
			return
		}
		if time.Since(start) < drainSettle {
			continue
		}
		if held, sent := d.node.Busy(); held == 0 && sent == 0 && d.ov.Flushed() {
			d.log.Info().Dur("took", time.Since(start).Round(time.Millisecond)).Msg("drained")
			return
		}
	}
}

// leave tells the peers this daemon is leaving, unless it is closed.
func (d *Daemon) leave(ctx context.Context) error {
	d.lifeMu.Lock()
	defer d.lifeMu.Unlock()
	if d.ovClosed || ctx.Err() != nil {
		return nil
	}
	timeout := DefaultLeaveTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	d.log.Info().Dur("timeout", timeout.Round(time.Millisecond)).Msg("leaving the network")
	err := d.ov.Leave(timeout)
	if err != nil && !errors.Is(err, overlay.ErrClosed) {
		return fmt.Errorf("daemon: leave: %w", err)
	}
	return nil
}

// Close stops the daemon at once, without telling its peers: they see it
// fail. It returns when every goroutine has exited, and may be called more
// than once. Close during a Shutdown waits for that Shutdown's leave.
func (d *Daemon) Close() error {
	d.stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	d.close(ctx)
	return nil
}

// stop tells the joiner to stop.
func (d *Daemon) stop() { d.stopOnce.Do(func() { close(d.stopCh) }) }

// close stops the status server (gracefully until ctx is done) and the
// overlay, and waits for every goroutine. Concurrent callers all wait.
func (d *Daemon) close(ctx context.Context) {
	d.closeOnce.Do(func() {
		if d.status != nil {
			if err := d.status.Shutdown(ctx); err != nil {
				_ = d.status.Close()
			}
		}
		// The joiner may be inside overlay.Join, which cannot be interrupted;
		// wait for it before closing the overlay under it. A join attempt
		// returns within the overlay's dial timeout per seed.
		d.wg.Wait()
		d.lifeMu.Lock()
		d.closeLayers()
		d.logGate.closed.Store(true)
		d.ovClosed = true
		d.lifeMu.Unlock()
		d.log.Info().Msg("daemon stopped")
	})
}

// joinLoop keeps this daemon joined to its whole network, for as long as
// it runs. It first joins the seeds, retrying with exponential backoff
// (JoinRetryMin to JoinRetryMax) until a peer is known. Afterwards it
// checks every JoinRetryMin whether the daemon is cut off from part of the
// network: no peer alive, or a member it knew declared dead (gossip stops
// contacting dead members, so after a long partition neither side would
// ever ask again). While it is, it joins the seeds and the last known
// addresses of the dead members, all at once, with backoff and jitter
// between JoinRetryMin and RejoinMax: a partition heals within about
// RejoinMax of the network healing, however long it lasted.
func (d *Daemon) joinLoop() {
	seeds := make([]string, 0, len(d.cfg.Join))
	for _, s := range d.cfg.Join {
		addr, _ := seedAddr(s) // checked by Validate
		seeds = append(seeds, addr)
	}
	joined := len(seeds) == 0 // nothing to join at start: wait to be joined
	backoff := d.cfg.JoinRetryMin
	// idleGen is the overlay's member generation when rejoinTargets last
	// found nothing to do: while it stays the same, neither does the
	// answer, and the O(N) look at every peer is skipped (issue 11).
	idleGen, idleKnown := uint64(0), false
	timer := time.NewTimer(0)
	defer timer.Stop()
	for attempt := 1; ; attempt++ {
		select {
		case <-timer.C:
		case <-d.stopCh:
			return
		}
		if !joined {
			joined = d.initialJoin(seeds, attempt, backoff)
			if !joined {
				timer.Reset(backoff)
				backoff = min(2*backoff, d.cfg.JoinRetryMax)
				continue
			}
			backoff = d.cfg.JoinRetryMin
		}
		gen := d.ov.MemberGen()
		var targets []string
		if !idleKnown || gen != idleGen {
			targets = d.rejoinTargets(seeds)
		}
		if len(targets) == 0 {
			idleGen, idleKnown = gen, true
			backoff = d.cfg.JoinRetryMin
			timer.Reset(d.cfg.JoinRetryMin)
			continue
		}
		idleKnown = false
		n := d.joinEach(targets)
		d.log.Debug().Strs("addrs", targets).Int("answered", n).Msg("cut off from part of the network; rejoining")
		// Jitter spreads the attempts of the daemons on either side.
		wait := backoff/2 + rand.N(backoff/2+1)
		timer.Reset(wait)
		backoff = min(2*backoff, d.cfg.RejoinMax)
	}
}

// initialJoin makes one attempt to join the seeds and reports whether a
// peer is known afterwards.
func (d *Daemon) initialJoin(seeds []string, attempt int, backoff time.Duration) bool {
	if d.alivePeers() > 0 {
		return true // someone joined us meanwhile
	}
	n, err := d.ov.Join(seeds)
	if alive := d.alivePeers(); alive > 0 {
		d.log.Info().Int("seeds_answered", n).Int("peers", alive).Msg("joined the network")
		return true
	}
	d.joinFailures.Add(1)
	if err != nil {
		d.log.Warn().Strs("seeds", seeds).Int("attempt", attempt).Dur("retry_in", backoff).
			Err(err).Msg("join failed; retrying")
	} else { // e.g. the only seed that answered is this daemon itself
		d.log.Info().Strs("seeds", seeds).Int("attempt", attempt).Dur("retry_in", backoff).
			Msg("seeds answered but know no other daemon yet; retrying")
	}
	return false
}

// maxRejoinTargets bounds the addresses one rejoin round contacts.
const maxRejoinTargets = 16

// rejoinTargets returns the addresses to join when this daemon is cut off
// from part of the network: the last known addresses of dead members (not
// taken over by a live one, e.g. after a restart under a new id) and the
// seeds that are not live members; none when it is not cut off.
func (d *Daemon) rejoinTargets(seeds []string) []string {
	alive := map[string]bool{}
	var dead []string
	for _, p := range d.ov.Peers() {
		switch p.State {
		case overlay.StateAlive, overlay.StateSuspect:
			alive[p.Addr] = true
		case overlay.StateDead:
			dead = append(dead, p.Addr)
		}
	}
	var out []string
	seen := map[string]bool{d.addr: true}
	for _, a := range dead {
		if !alive[a] && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	if len(out) == 0 && len(alive) > 0 {
		return nil
	}
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	out = out[:min(len(out), maxRejoinTargets)]
	for _, s := range seeds {
		if !alive[s] && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// joinEach joins every address at once (an unreachable one costs a dial
// timeout; one at a time they would add up) and returns how many answered.
func (d *Daemon) joinEach(addrs []string) int {
	var wg sync.WaitGroup
	var n atomic.Int64
	for _, a := range addrs {
		wg.Go(func() {
			if k, err := d.ov.Join([]string{a}); err == nil {
				n.Add(int64(k))
			}
		})
	}
	wg.Wait()
	return int(n.Load())
}

// alivePeers counts the peers currently alive.
func (d *Daemon) alivePeers() int { return d.ov.AliveCount() }

// logGate is a zerolog hook that discards every event once closed is set.
// memberlist's suspicion timers (time.AfterFunc) are not stopped by its
// Shutdown and may still report a peer dead, and the overlay log it, after
// the overlay has closed; the gate keeps the promise that a closed Daemon
// logs nothing (a test's logger panics when written after the test).
type logGate struct{ closed atomic.Bool }

// Run implements zerolog.Hook.
func (g *logGate) Run(e *zerolog.Event, _ zerolog.Level, _ string) {
	if g.closed.Load() {
		e.Discard()
	}
}

// httpErrorLog sends the status server's error log (failed accepts, broken
// connections) to the daemon's logger.
type httpErrorLog struct{ l zerolog.Logger }

func (w httpErrorLog) Write(p []byte) (int, error) {
	w.l.Warn().Msg("status server: " + strings.TrimSpace(string(p)))
	return len(p), nil
}
