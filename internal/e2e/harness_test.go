// Package e2e holds end-to-end tests: real daemons (in-process, on
// loopback, each with its own overlay, cluster layer and relay) and apps
// using the Go SDK over real relay connections.
package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/iris-mesh/iris/crypto"
	"github.com/iris-mesh/iris/daemon"
	"github.com/iris-mesh/iris/overlay"
	"github.com/iris-mesh/iris/sdk"
)

var testKey = func() crypto.Key {
	var k crypto.Key
	for i := range k {
		k[i] = byte(3*i + 7)
	}
	return k
}()

// startNet starts n daemons joined through the first, with the given
// zones (none if zones is empty), and waits until every daemon sees every
// other alive.
func startNet(t testing.TB, n int, zones ...string) []*daemon.Daemon {
	t.Helper()
	return startNetWith(t, n, nil, zones...)
}

// startNetWith is startNet with mod applied to each daemon's config.
func startNetWith(t testing.TB, n int, mod func(*daemon.Config), zones ...string) []*daemon.Daemon {
	t.Helper()
	ds := make([]*daemon.Daemon, n)
	for i := range ds {
		cfg := daemon.DefaultConfig()
		cfg.Network, cfg.Key = "e2e", testKey
		cfg.NodeID = string(rune('a' + i))
		cfg.Listen, cfg.RelayPort = "127.0.0.1:0", daemon.RelayAnyPort
		cfg.Gossip = overlay.LocalGossip()
		// Every daemon shares this process's CPU: on a loaded machine one
		// busy daemon (a 16 MiB copy under -race) starves its peers for
		// longer than the default 600 ms, which would close live links.
		// The silent-host timings are the fault suite's to test, on hosts
		// of their own (cmd/irisd).
		cfg.LinkProbeTimeout = 2 * time.Second
		cfg.Logger = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel).With().Str("node", cfg.NodeID).Logger()
		if i < len(zones) {
			cfg.Zone = zones[i]
		}
		if i > 0 {
			cfg.Join = []string{ds[0].Addr()}
		}
		if mod != nil {
			mod(cfg)
		}
		d, err := daemon.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
		ds[i] = d
	}
	for _, d := range ds {
		waitFor(t, 5*time.Second, "membership", func() bool {
			alive := 0
			for _, p := range d.Overlay().Peers() {
				if p.State == overlay.StateAlive {
					alive++
				}
			}
			return alive == n-1
		})
	}
	return ds
}

// waitFor polls cond until it holds, failing after d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
}

// members counts the members of cluster d knows of, everywhere.
func members(d *daemon.Daemon, cluster string) int {
	n := 0
	for _, c := range d.Cluster().Clusters() {
		if c.Name == cluster {
			n = c.LocalMembers
			for _, m := range c.Remote {
				n += m
			}
		}
	}
	return n
}

func waitMembers(t testing.TB, d *daemon.Daemon, cluster string, want int) {
	t.Helper()
	waitFor(t, 5*time.Second, "cluster membership to spread", func() bool { return members(d, cluster) == want })
}

func cfgFor(d *daemon.Daemon) *sdk.Config {
	c := sdk.DefaultConfig()
	c.Addr = d.RelayAddr()
	return c
}

func connect(t testing.TB, d *daemon.Daemon) *sdk.Conn {
	t.Helper()
	c, err := sdk.Connect(context.Background(), cfgFor(d))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func register(t testing.TB, d *daemon.Daemon, cluster string, h sdk.Handler, lim *sdk.ServiceLimits) *sdk.Service {
	t.Helper()
	s, err := sdk.Register(context.Background(), cfgFor(d), cluster, h, lim)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
