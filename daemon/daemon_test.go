package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/iris-mesh/iris/cluster"
	"github.com/iris-mesh/iris/crypto"
	"github.com/iris-mesh/iris/internal/leakcheck"
	"github.com/iris-mesh/iris/overlay"
)

// waitFor polls cond every few milliseconds until it holds, failing t if it
// does not within timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

func newKey(t *testing.T) crypto.Key {
	t.Helper()
	k, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// testConfig returns a config for a daemon on loopback with fast gossip,
// logging to t.
func testConfig(t *testing.T, id, network string, key crypto.Key, join ...string) *Config {
	cfg := DefaultConfig()
	cfg.Network, cfg.Key, cfg.NodeID = network, key, id
	cfg.Listen, cfg.StatusAddr = "127.0.0.1:0", "127.0.0.1:0"
	cfg.RelayPort = RelayAnyPort
	cfg.Join = join
	cfg.JoinRetryMin = 50 * time.Millisecond
	cfg.Gossip = overlay.LocalGossip()
	cfg.Logger = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.InfoLevel).
		With().Timestamp().Str("test_node", id).Logger()
	return cfg
}

func startDaemon(t *testing.T, cfg *Config) *Daemon {
	t.Helper()
	d, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", cfg.NodeID, err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// statusClient fetches /status over real HTTP.
type statusClient struct {
	t *testing.T
	c *http.Client
}

func newStatusClient(t *testing.T) *statusClient {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &statusClient{t: t, c: &http.Client{Transport: tr, Timeout: 5 * time.Second}}
}

func (sc *statusClient) get(addr, path string) (string, error) {
	resp, err := sc.c.Get("http://" + addr + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return string(body), nil
}

func (sc *statusClient) status(d *Daemon) Status {
	sc.t.Helper()
	body, err := sc.get(d.StatusAddr(), "/status")
	if err != nil {
		sc.t.Fatalf("GET /status: %v", err)
	}
	var st Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		sc.t.Fatalf("decode /status: %v\n%s", err, body)
	}
	return st
}

// peerStates returns id → state from d's /status.
func (sc *statusClient) peerStates(d *Daemon) map[string]string {
	states := map[string]string{}
	for _, p := range sc.status(d).Peers {
		states[p.ID] = p.State
	}
	return states
}

// sees reports whether d's /status lists every one of ids in state.
func (sc *statusClient) sees(d *Daemon, state string, ids ...string) bool {
	states := sc.peerStates(d)
	for _, id := range ids {
		if states[id] != state {
			return false
		}
	}
	return true
}

func TestMembershipLifecycle(t *testing.T) {
	leakcheck.Check(t)
	sc := newStatusClient(t)
	key := newKey(t)
	a := startDaemon(t, testConfig(t, "a", "test", key))
	seed := a.Addr()
	b := startDaemon(t, testConfig(t, "b", "test", key, seed))
	c := startDaemon(t, testConfig(t, "c", "test", key, seed))

	waitFor(t, 3*time.Second, "a, b and c to see each other alive", func() bool {
		return sc.sees(a, "alive", "b", "c") && sc.sees(b, "alive", "a", "c") && sc.sees(c, "alive", "a", "b")
	})
	st := sc.status(a)
	if st.Node != "a" || st.Network != "test" || st.Listen != seed || len(st.Peers) != 2 {
		t.Fatalf("a's status = %+v", st)
	}

	t.Run("strangers never listed", func(t *testing.T) {
		testStrangers(t, sc, key, a, b, c)
	})

	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "a and b to see c dead", func() bool {
		return sc.sees(a, "dead", "c") && sc.sees(b, "dead", "c")
	})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.Shutdown(ctx); err != nil {
		t.Fatalf("b.Shutdown: %v", err)
	}
	waitFor(t, 10*time.Second, "a to see b left", func() bool { return sc.sees(a, "left", "b") })
	if !sc.sees(a, "dead", "c") {
		t.Fatalf("a's peers after b left: %v", sc.peerStates(a))
	}
}

// testStrangers starts a daemon with another key and one with the same key
// but another network name, both joining a, and checks that nobody lists
// them while a, b and c stay alive to each other.
func testStrangers(t *testing.T, sc *statusClient, key crypto.Key, a, b, c *Daemon) {
	seed := a.Addr()
	refusedBefore := a.Overlay().Stats().HandshakesRefused
	x := startDaemon(t, testConfig(t, "x-other-key", "test", newKey(t), seed))
	y := startDaemon(t, testConfig(t, "y-other-net", "other", key, seed))

	// Each stranger's join must have reached a and been refused at the
	// handshake, and each must have retried at least once.
	waitFor(t, 5*time.Second, "a to refuse both strangers twice", func() bool {
		return a.Overlay().Stats().HandshakesRefused >= refusedBefore+4
	})
	for _, d := range []*Daemon{a, b, c} {
		states := sc.peerStates(d)
		if len(states) != 2 || states["x-other-key"] != "" || states["y-other-net"] != "" {
			t.Errorf("%s lists %v; want only the two members", d.Overlay().ID(), states)
		}
	}
	for _, d := range []*Daemon{x, y} {
		if st := sc.status(d); len(st.Peers) != 0 {
			t.Errorf("stranger %s lists peers %+v", st.Node, st.Peers)
		}
	}
	if !sc.sees(a, "alive", "b", "c") || !sc.sees(b, "alive", "a", "c") || !sc.sees(c, "alive", "a", "b") {
		t.Error("members disturbed by the strangers")
	}
	x.Close()
	y.Close()
}

func TestJoinRetriesUntilSeedAppears(t *testing.T) {
	leakcheck.Check(t)
	sc := newStatusClient(t)
	key := newKey(t)
	seedAddr := freeOverlayAddr(t)
	b := startDaemon(t, testConfig(t, "b", "test", key, seedAddr))
	// b's first join fails: nothing listens there yet. Wait until its
	// overlay has tried, then start the seed.
	waitFor(t, 5*time.Second, "b's first failed join", func() bool {
		return b.joinFailures.Load() > 0
	})
	cfg := testConfig(t, "a", "test", key)
	cfg.Listen = seedAddr
	a := startDaemon(t, cfg)
	waitFor(t, 10*time.Second, "b to join a by retrying", func() bool {
		return sc.sees(b, "alive", "a") && sc.sees(a, "alive", "b")
	})
}

func TestSharedSeedListIncludingSelf(t *testing.T) {
	leakcheck.Check(t)
	sc := newStatusClient(t)
	key := newKey(t)
	seed := freeOverlayAddr(t)
	cfg := testConfig(t, "a", "test", key, seed) // a's seed list names a itself
	cfg.Listen = seed
	a := startDaemon(t, cfg)
	b := startDaemon(t, testConfig(t, "b", "test", key, seed))
	waitFor(t, 3*time.Second, "a and b to see each other", func() bool {
		return sc.sees(a, "alive", "b") && sc.sees(b, "alive", "a")
	})
	if st := sc.status(a); len(st.Peers) != 1 {
		t.Fatalf("a lists %+v; want only b", st.Peers)
	}
}

// freeOverlayAddr returns a loopback host:port whose TCP and UDP ports were
// free a moment ago.
func freeOverlayAddr(t *testing.T) string {
	t.Helper()
	for range 20 {
		tl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := tl.Addr().String()
		ul, err := net.ListenPacket("udp", addr)
		tl.Close()
		if err == nil {
			ul.Close()
			return addr
		}
	}
	t.Fatal("no free TCP+UDP port on 127.0.0.1")
	return ""
}

func TestMetrics(t *testing.T) {
	leakcheck.Check(t)
	sc := newStatusClient(t)
	key := newKey(t)
	a := startDaemon(t, testConfig(t, "a", "test", key))
	b := startDaemon(t, testConfig(t, "b", "test", key, a.Addr()))
	waitFor(t, 3*time.Second, "a and b to see each other", func() bool {
		return sc.sees(a, "alive", "b") && sc.sees(b, "alive", "a")
	})
	// A request from b to a member on a: counted on both sides.
	if _, err := a.Cluster().Register("svc", echoMember{}, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 3*time.Second, "b to see the member", func() bool { return len(b.Cluster().Clusters()) == 1 })
	done := make(chan cluster.Result, 1)
	b.Cluster().Request("svc", []byte("hi"), time.Second, func(r cluster.Result) { done <- r })
	if r := <-done; r.Status != cluster.StatusOK || string(r.Payload) != "hi" {
		t.Fatalf("request: %+v", r)
	}
	var body string
	waitFor(t, 5*time.Second, "a's metrics to count the delivery", func() bool {
		var err error
		body, err = sc.get(a.StatusAddr(), "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		return strings.Contains(body, "iris_cluster_delivered_total 1\n")
	})
	bBody, err := sc.get(b.StatusAddr(), "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"iris_cluster_requests_total 1\n", "iris_cluster_replies_total 1\n", "iris_relay_apps 0\n"} {
		if !strings.Contains(bBody, want) {
			t.Errorf("b's /metrics lacks %q", want)
		}
	}
	for _, want := range []string{
		`iris_overlay_peers{state="alive"} 1`,
		`iris_overlay_peers{state="dead"} 0`,
		`iris_overlay_peers{state="left"} 0`,
		`iris_overlay_peers{state="suspect"} 0`,
		"iris_overlay_links 1",
		"iris_daemon_join_failures_total 0",
		`iris_daemon_info{node="a",zone=""} 1`,
		`iris_build_info{goversion="` + runtime.Version() + `",revision="`,
		"# TYPE iris_overlay_handshakes_refused_total counter",
		`iris_relay_events_dropped_total{reason="slow_consumer"} 0`,
		`iris_relay_events_dropped_total{reason="link_queue"} 0`,
		"iris_relay_gap_notices_total 0",
		"go_goroutines ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if _, err := sc.get(a.StatusAddr(), "/nope"); err == nil {
		t.Error("GET /nope succeeded")
	}
}

func TestShutdownAndCloseIdempotent(t *testing.T) {
	leakcheck.Check(t)
	key := newKey(t)
	for _, order := range [][]string{
		{"close", "close", "shutdown"},
		{"shutdown", "shutdown", "close"},
	} {
		t.Run(strings.Join(order, "-"), func(t *testing.T) {
			d := startDaemon(t, testConfig(t, "a", "test", key))
			for _, op := range order {
				var err error
				if op == "close" {
					err = d.Close()
				} else {
					err = d.Shutdown(context.Background())
				}
				if err != nil {
					t.Fatalf("%s: %v", op, err)
				}
			}
			if _, err := net.Dial("tcp", d.StatusAddr()); err == nil {
				t.Error("status server still accepting after close")
			}
		})
	}
}

func TestNoStatusServer(t *testing.T) {
	leakcheck.Check(t)
	cfg := testConfig(t, "a", "test", newKey(t))
	cfg.StatusAddr = ""
	d := startDaemon(t, cfg)
	if got := d.StatusAddr(); got != "" {
		t.Fatalf("StatusAddr() = %q, want empty", got)
	}
	if st := d.Status(); st.Node != "a" || st.Peers == nil {
		t.Fatalf("Status() = %+v", st)
	}
}

func TestNewErrors(t *testing.T) {
	leakcheck.Check(t)
	if _, err := New(nil); err == nil {
		t.Error("New(nil) succeeded")
	}
	key := newKey(t)
	a := startDaemon(t, testConfig(t, "a", "test", key))

	busy := testConfig(t, "b", "test", key)
	busy.Listen = a.Addr()
	if _, err := New(busy); err == nil || !strings.Contains(err.Error(), "overlay") {
		t.Errorf("New on a busy overlay port: %v", err)
	}
	busy = testConfig(t, "b", "test", key)
	busy.StatusAddr = a.StatusAddr()
	if _, err := New(busy); err == nil || !strings.Contains(err.Error(), "status server") {
		t.Errorf("New on a busy status port: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	key := newKey(t)
	tests := []struct {
		name   string
		modify func(*Config)
		errHas string // "" means valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"no network", func(c *Config) { c.Network = "" }, "network name is empty"},
		{"no key", func(c *Config) { c.Key = crypto.Key{} }, "network key is missing"},
		{"bad listen", func(c *Config) { c.Listen = "55556" }, "listen address"},
		{"bad listen port", func(c *Config) { c.Listen = "host:http" }, "port must be a number"},
		{"bad advertise", func(c *Config) { c.Advertise = "10.0.0.1" }, "advertise address"},
		{"bad status", func(c *Config) { c.StatusAddr = "localhost" }, "status address"},
		{"relay port", func(c *Config) { c.RelayPort = 70000 }, "relay port"},
		{"relay off", func(c *Config) { c.RelayPort = 0 }, ""},
		{"join", func(c *Config) { c.Join = []string{"10.0.0.1", "h:1", "[::1]", "::1", "[::1]:9"} }, ""},
		{"empty join", func(c *Config) { c.Join = []string{""} }, "empty join address"},
		{"join port", func(c *Config) { c.Join = []string{"h:0"} }, "port must be"},
		{"join garbage", func(c *Config) { c.Join = []string{"a:b:c"} }, "want host or host:port"},
		{"retry", func(c *Config) { c.JoinRetryMax = time.Millisecond }, "JoinRetryMax"},
		{"long zone", func(c *Config) { c.Zone = strings.Repeat("z", 65) }, "zone"},
		{"gossip", func(c *Config) { c.Gossip = overlay.GossipConfig{} }, "gossip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			c.Network, c.Key = "n", key
			tt.modify(c)
			err := c.Validate()
			switch {
			case tt.errHas == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.errHas != "" && (err == nil || !strings.Contains(err.Error(), tt.errHas)):
				t.Fatalf("Validate = %v, want error containing %q", err, tt.errHas)
			case err != nil && !strings.HasPrefix(err.Error(), "daemon: "):
				t.Fatalf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestSeedAddr(t *testing.T) {
	for in, want := range map[string]string{
		"10.0.0.1":       "10.0.0.1:55556",
		" host.example ": "host.example:55556",
		"host:7":         "host:7",
		"::1":            "[::1]:55556",
		"[::1]":          "[::1]:55556",
		"[fe80::1]:9":    "[fe80::1]:9",
	} {
		got, err := seedAddr(in)
		if err != nil || got != want {
			t.Errorf("seedAddr(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", ":7", "host:", "host:99999", "a:b:c"} {
		if got, err := seedAddr(in); err == nil {
			t.Errorf("seedAddr(%q) = %q, want an error", in, got)
		}
	}
}

func TestStatusJSONShape(t *testing.T) {
	st := Status{Node: "n", Network: "w", Listen: "l", Peers: []PeerStatus{{ID: "p", Addr: "a", Zone: "z", State: "alive"}}}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if got := strings.Join(keys, ","); got != "apps,clusters,listen,network,node,patterns,peers,relay,services,topics,tunnels,version,zone" {
		t.Fatalf("status keys = %s", got)
	}
	peer := m["peers"].([]any)[0].(map[string]any)
	if len(peer) != 4 || peer["id"] != "p" || peer["addr"] != "a" || peer["zone"] != "z" || peer["state"] != "alive" {
		t.Fatalf("peer = %v", peer)
	}
}

// echoMember answers every request with its payload.
type echoMember struct{}

func (echoMember) HandleRequest(r *cluster.Request) bool { r.Reply(r.Payload); return true }
func (echoMember) HandleBroadcast([]byte)                {}
