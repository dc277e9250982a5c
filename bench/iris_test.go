package bench

import (
	"context"
	"fmt"
	"testing"

	"github.com/iris-mesh/iris/crypto"
	"github.com/iris-mesh/iris/daemon"
	"github.com/iris-mesh/iris/overlay"
	"github.com/iris-mesh/iris/sdk"
)

// irisKey is the network key of the benchmark daemons.
var irisKey = func() crypto.Key {
	var k crypto.Key
	for i := range k {
		k[i] = byte(5*i + 11)
	}
	return k
}()

// startIris starts n daemons on loopback, joined through the first, and
// waits until each sees every other alive.
func startIris(tb testing.TB, n int) []*daemon.Daemon {
	tb.Helper()
	ds := make([]*daemon.Daemon, n)
	for i := range ds {
		cfg := daemon.DefaultConfig()
		cfg.Network, cfg.Key = "bench", irisKey
		cfg.NodeID = fmt.Sprintf("n%d", i)
		cfg.Listen, cfg.RelayPort = "127.0.0.1:0", daemon.RelayAnyPort
		cfg.Gossip = overlay.LocalGossip()
		if i > 0 {
			cfg.Join = []string{ds[0].Addr()}
		}
		d, err := daemon.New(cfg)
		if err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { d.Close() })
		ds[i] = d
	}
	for _, d := range ds {
		waitFor(tb, "iris membership", func() bool {
			alive := 0
			for _, p := range d.Status().Peers {
				if p.State == "alive" {
					alive++
				}
			}
			return alive == n-1
		})
	}
	return ds
}

// irisMembers counts the members of cluster that d knows of, everywhere.
func irisMembers(d *daemon.Daemon, cluster string) int {
	n := 0
	for _, c := range d.Status().Clusters {
		if c.Name == cluster {
			n = c.LocalMembers
			for _, m := range c.Remote {
				n += m
			}
		}
	}
	return n
}

// irisSubscribers counts the local subscribers of topic on d.
func irisSubscribers(d *daemon.Daemon, topic string) int {
	for _, t := range d.Status().Topics {
		if t.Name == topic {
			return t.LocalSubscribers
		}
	}
	return 0
}

// irisConnect connects a plain client to d, closed at cleanup.
func irisConnect(tb testing.TB, d *daemon.Daemon) *sdk.Conn {
	tb.Helper()
	cfg := sdk.DefaultConfig()
	cfg.Addr = d.RelayAddr()
	c, err := sdk.Connect(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// irisRequester starts nodes daemons with an echo service on the last and
// returns a requester whose client is on the first.
func irisRequester(tb testing.TB, nodes int) requester {
	ds := startIris(tb, nodes)
	from, to := ds[0], ds[nodes-1]
	cfg := sdk.DefaultConfig()
	cfg.Addr = to.RelayAddr()
	lim := sdk.DefaultServiceLimits()
	lim.RequestThreads = maxInflight
	echo := sdk.HandlerFunc(func(_ context.Context, r []byte) ([]byte, error) { return r, nil })
	svc, err := sdk.Register(context.Background(), cfg, "echo", echo, &lim)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { svc.Close() })
	waitFor(tb, "iris cluster membership", func() bool { return irisMembers(from, "echo") == 1 })
	client := irisConnect(tb, from)
	ctx := context.Background()
	return func(p []byte) ([]byte, error) { return client.Request(ctx, "echo", p) }
}

// irisPubSub starts one daemon with subs subscribers (each on its own
// connection, handling events in order) and returns a publisher on
// another connection and the subscribers' counters.
func irisPubSub(tb testing.TB, subs int) (publisher, []*counter) {
	d := startIris(tb, 1)[0]
	counters := make([]*counter, subs)
	for i := range counters {
		c := &counter{}
		counters[i] = c
		conn := irisConnect(tb, d)
		lim := sdk.TopicLimits{EventThreads: 1}
		if err := conn.Subscribe(context.Background(), "bench", sdk.TopicHandlerFunc(func([]byte) { c.n.Add(1) }), &lim); err != nil {
			tb.Fatal(err)
		}
	}
	waitFor(tb, "iris subscriptions", func() bool { return irisSubscribers(d, "bench") == subs })
	pub := irisConnect(tb, d)
	ctx := context.Background()
	return func(p []byte) error { return pub.Publish(ctx, "bench", p) }, counters
}
