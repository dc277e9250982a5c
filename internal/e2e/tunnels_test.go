package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/iris-mesh/iris/daemon"
	"github.com/iris-mesh/iris/internal/leakcheck"
	"github.com/iris-mesh/iris/overlay"
	"github.com/iris-mesh/iris/relay"
	"github.com/iris-mesh/iris/sdk"
)

// sinkTunnels is a service that accepts tunnels and never reads them,
// until released.
type sinkTunnels struct{ accepted, release chan struct{} }

func (sinkTunnels) HandleRequest(ctx context.Context, req []byte) ([]byte, error) { return req, nil }

func (s sinkTunnels) HandleTunnel(tn *sdk.Tunnel) {
	s.accepted <- struct{}{}
	<-s.release
}

// TestTunnelBigMessageAndThrottling: a 16 MiB message echoes through a
// tunnel across daemons; a sender whose far end stops reading is throttled
// (its Send times out) while another tunnel on the same daemons keeps
// moving 16 MiB echoes.
func TestTunnelBigMessageAndThrottling(t *testing.T) {
	// LAN failure detection: 16 MiB copies under -race on a loaded machine
	// can starve a daemon for longer than the local timers allow, and the
	// test is about flow control, not failure detection.
	ds := startNetWith(t, 2, func(c *daemon.Config) { c.Gossip = overlay.LANGossip() })
	register(t, ds[1], "echo", echoTunnels{}, nil)
	sink := sinkTunnels{accepted: make(chan struct{}, 1), release: make(chan struct{})}
	register(t, ds[1], "sink", sink, nil)
	t.Cleanup(func() { close(sink.release) }) // before the service closes
	waitMembers(t, ds[0], "echo", 1)
	waitMembers(t, ds[0], "sink", 1)
	client := connect(t, ds[0])
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	echoTun, err := client.Tunnel(ctx, "echo")
	if err != nil {
		t.Fatal(err)
	}
	defer echoTun.Close()
	big := make([]byte, 16<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	roundTrip := func() time.Duration {
		start := time.Now()
		if err := echoTun.Send(ctx, big); err != nil {
			t.Fatal(err)
		}
		got, err := echoTun.Recv(ctx)
		if err != nil || !bytes.Equal(got, big) {
			t.Fatalf("16 MiB echo: %d bytes, %v", len(got), err)
		}
		return time.Since(start)
	}
	alone := roundTrip()

	stalled, err := client.Tunnel(ctx, "sink")
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	<-sink.accepted
	// Fill every window on the way: the sender must end up blocked.
	chunk := make([]byte, 1<<20)
	throttled := false
	for range 256 {
		sctx, scancel := context.WithTimeout(ctx, 500*time.Millisecond)
		err := stalled.Send(sctx, chunk)
		scancel()
		if errors.Is(err, context.DeadlineExceeded) {
			throttled = true
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !throttled {
		t.Fatal("256 MiB went into a tunnel whose far end reads nothing")
	}
	beside := roundTrip()
	t.Logf("16 MiB echo: %v alone, %v beside a stalled tunnel", alone.Round(time.Millisecond), beside.Round(time.Millisecond))
	// A request still goes through at once, too.
	register(t, ds[1], "ping", sdk.HandlerFunc(func(ctx context.Context, b []byte) ([]byte, error) { return b, nil }), nil)
	waitMembers(t, ds[0], "ping", 1)
	if _, err := client.Request(ctx, "ping", []byte("x")); err != nil {
		t.Fatal(err)
	}
}

// TestTunnelBulkChunksIntact: a stream of 64 KiB messages, each different,
// echoes through two tunnels at once, on one daemon and across two, with
// both directions busy: every message comes back whole and in order. The
// daemons recycle the buffers chunks are read into (from the app, and from
// the link) once they are passed on; a buffer reused too early would show
// here as a message carrying another's bytes.
func TestTunnelBulkChunksIntact(t *testing.T) {
	for _, nodes := range []int{1, 2} {
		t.Run(fmt.Sprintf("nodes=%d", nodes), func(t *testing.T) { testTunnelBulkChunksIntact(t, nodes) })
	}
}

func testTunnelBulkChunksIntact(t *testing.T, nodes int) {
	leakcheck.Check(t)
	ds := startNet(t, nodes)
	register(t, ds[nodes-1], "echo", echoTunnels{}, nil)
	waitMembers(t, ds[0], "echo", 1)
	client := connect(t, ds[0])
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const msgs = 96
	var wg sync.WaitGroup
	for tn := range 2 {
		tun, err := client.Tunnel(ctx, "echo")
		if err != nil {
			t.Fatal(err)
		}
		defer tun.Close()
		msg := func(i int) []byte {
			m := make([]byte, 64<<10)
			_, _ = rand.NewChaCha8([32]byte{byte(tn), byte(i)}).Read(m)
			return m
		}
		wg.Go(func() {
			buf := make([]byte, 64<<10) // reused: Send copies what it needs
			for i := range msgs {
				copy(buf, msg(i))
				if err := tun.Send(ctx, buf); err != nil {
					t.Errorf("tunnel %d: Send %d: %v", tn, i, err)
					return
				}
			}
		})
		wg.Go(func() {
			for i := range msgs {
				got, err := tun.Recv(ctx)
				if err != nil {
					t.Errorf("tunnel %d: Recv %d: %v", tn, i, err)
					return
				}
				if !bytes.Equal(got, msg(i)) {
					t.Errorf("tunnel %d: message %d came back changed", tn, i)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestTunnelBuildFailures: in a v1.0 session a build to an empty cluster
// times out at its deadline; one to a service that never confirms fails
// within a few seconds, and the service's connection keeps working.
func TestTunnelBuildFailures(t *testing.T) {
	ds := startNet(t, 2)
	client := connectV10(t, ds[0])
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	start := time.Now()
	_, err := client.Tunnel(ctx, "nobody")
	cancel()
	if !errors.Is(err, sdk.ErrTimeout) {
		t.Fatalf("got %v, want ErrTimeout", err)
	}
	// Not (much) early; late only by a busy machine's scheduling delay.
	if el := time.Since(start); el < 180*time.Millisecond || el > 200*time.Millisecond+3*time.Second {
		t.Errorf("build timed out after %v, want 200ms", el)
	}

	// A plain request handler: offers to it are never confirmed.
	register(t, ds[1], "reqonly", sdk.HandlerFunc(func(ctx context.Context, b []byte) ([]byte, error) { return b, nil }), nil)
	waitMembers(t, ds[0], "reqonly", 1)
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	start = time.Now()
	if _, err := client.Tunnel(ctx, "reqonly"); err == nil {
		t.Fatal("a tunnel was built to a service that cannot take one")
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("the unconfirmed build failed after %v, want within a few seconds", el)
	}
	if rep, err := client.Request(ctx, "reqonly", []byte("still here")); err != nil || string(rep) != "still here" {
		t.Fatalf("service after the failed build: %q %v", rep, err)
	}
}

// idleTunnels accepts tunnels and holds them open, idle.
type idleTunnels struct{ open sync.WaitGroup }

func (*idleTunnels) HandleRequest(ctx context.Context, req []byte) ([]byte, error) { return req, nil }

func (s *idleTunnels) HandleTunnel(tn *sdk.Tunnel) {
	s.open.Done()
	_, _ = tn.Recv(context.Background()) // until the tunnel closes
}

// TestIdleTunnels opens 10,000 idle tunnels between two daemons: both stay
// up and serve, and the memory each tunnel costs is measured (for the whole
// process: both daemons' ends and both apps' ends).
func TestIdleTunnels(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 tunnels: skipped with -short")
	}
	const n = 10000
	ds := startNetWith(t, 2, func(c *daemon.Config) {
		// 64 builds at a time under -race on a loaded machine can keep
		// the service from confirming within the default 3 s; this test
		// measures memory, not build time.
		c.Relay = relay.DefaultConfig()
		c.Relay.TunnelConfirmTimeout = 30 * time.Second
	})
	svc := &idleTunnels{}
	lim := sdk.DefaultServiceLimits()
	lim.MaxTunnels = n
	register(t, ds[1], "idle", svc, &lim)
	waitMembers(t, ds[0], "idle", 1)
	client := connect(t, ds[0])
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()

	before := heapInUse()
	goBefore := runtime.NumGoroutine()
	svc.open.Add(n)
	tuns := make([]*sdk.Tunnel, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := range tuns {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			tn, err := client.Tunnel(ctx, "idle")
			if err != nil {
				t.Errorf("tunnel %d: %v", i, err)
				return
			}
			tuns[i] = tn
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	svc.open.Wait()
	after := heapInUse()
	perTunnel := float64(after-before) / n
	t.Logf("%d idle tunnels: %.0f bytes of heap each (both daemons' and both apps' ends), %d goroutines each (the service's handlers)",
		n, perTunnel, (runtime.NumGoroutine()-goBefore)/n)
	if got := ds[0].Cluster().TunnelCount(); got != n {
		t.Fatalf("daemon a holds %d tunnel ends, want %d", got, n)
	}
	if got := ds[1].Cluster().TunnelCount(); got != n {
		t.Fatalf("daemon b holds %d tunnel ends, want %d", got, n)
	}
	// Both daemons still serve.
	if rep, err := client.Request(ctx, "idle", []byte("alive")); err != nil || string(rep) != "alive" {
		t.Fatalf("request with %d tunnels open: %q %v", n, rep, err)
	}
	for _, tn := range tuns {
		tn.Close()
	}
	waitFor(t, 30*time.Second, "tunnels closed", func() bool {
		return ds[0].Cluster().TunnelCount() == 0 && ds[1].Cluster().TunnelCount() == 0
	})
}

func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}
