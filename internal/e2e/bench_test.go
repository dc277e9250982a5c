package e2e

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iris-mesh/iris/daemon"
	"github.com/iris-mesh/iris/sdk"
)

// Benchmarks through the whole stack: SDK → relay → cluster → overlay →
// relay → SDK, with apps on one daemon ("local") or on two ("remote").

func benchNet(b *testing.B, remote bool) (from, to *daemon.Daemon) {
	ds := startNet(b, 2)
	if remote {
		return ds[0], ds[1]
	}
	return ds[0], ds[0]
}

func where(remote bool) string {
	if remote {
		return "remote"
	}
	return "local"
}

// BenchmarkRequest: request/reply with 64 B payloads, 1 and 64 in flight.
func BenchmarkRequest(b *testing.B) {
	for _, remote := range []bool{false, true} {
		for _, inflight := range []int{1, 64} {
			b.Run(fmt.Sprintf("%s/inflight=%d", where(remote), inflight), func(b *testing.B) {
				from, to := benchNet(b, remote)
				lim := sdk.DefaultServiceLimits()
				lim.RequestThreads = inflight
				register(b, to, "bench", sdk.HandlerFunc(func(ctx context.Context, r []byte) ([]byte, error) { return r, nil }), &lim)
				waitMembers(b, from, "bench", 1)
				client := connect(b, from)
				payload := make([]byte, 64)
				ctx := context.Background()
				var next atomic.Int64
				b.ReportAllocs()
				b.ResetTimer()
				var wg sync.WaitGroup
				for range inflight {
					wg.Go(func() {
						for next.Add(1) <= int64(b.N) {
							if _, err := client.Request(ctx, "bench", payload); err != nil {
								b.Error(err)
								return
							}
						}
					})
				}
				wg.Wait()
			})
		}
	}
}

// eventCounter counts what a subscriber or service receives.
type eventCounter struct{ n atomic.Int64 }

func (c *eventCounter) HandleRequest(ctx context.Context, r []byte) ([]byte, error) { return r, nil }
func (c *eventCounter) HandleBroadcast([]byte)                                      { c.n.Add(1) }

// paced sends b.N messages with send, keeping at most window of them ahead
// of the slowest receiver, so the rate measured is one the receivers keep
// up with (no slow-consumer drops).
func paced(b *testing.B, counters []*eventCounter, send func() error) {
	const window = 2048
	slowest := func() int64 {
		m := counters[0].n.Load()
		for _, c := range counters[1:] {
			m = min(m, c.n.Load())
		}
		return m
	}
	for i := range b.N {
		for int64(i)-slowest() >= window {
			time.Sleep(20 * time.Microsecond)
		}
		if err := send(); err != nil {
			b.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for slowest() < int64(b.N) {
		if time.Now().After(deadline) {
			b.Fatalf("receivers got %d of %d", slowest(), b.N)
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// BenchmarkPublish: events of 64 B and 1 KiB to 1 and 4 subscribers.
func BenchmarkPublish(b *testing.B) {
	for _, remote := range []bool{false, true} {
		for _, size := range []int{64, 1024} {
			for _, subs := range []int{1, 4} {
				b.Run(fmt.Sprintf("%s/%dB/subs=%d", where(remote), size, subs), func(b *testing.B) {
					from, to := benchNet(b, remote)
					var counters []*eventCounter
					for range subs {
						c := &eventCounter{}
						counters = append(counters, c)
						conn := connect(b, to)
						lim := sdk.TopicLimits{EventThreads: 1}
						if err := conn.Subscribe(context.Background(), "bench", sdk.TopicHandlerFunc(func([]byte) { c.n.Add(1) }), &lim); err != nil {
							b.Fatal(err)
						}
					}
					waitFor(b, 5*time.Second, "subscriptions", func() bool { return len(from.Cluster().Topics()) == 1 })
					pub := connect(b, from)
					ev := make([]byte, size)
					b.SetBytes(int64(size))
					b.ReportAllocs()
					b.ResetTimer()
					paced(b, counters, func() error { return pub.Publish(context.Background(), "bench", ev) })
				})
			}
		}
	}
}

// BenchmarkBroadcast: broadcasts of 64 B and 1 KiB to 1 and 4 members.
func BenchmarkBroadcast(b *testing.B) {
	for _, remote := range []bool{false, true} {
		for _, size := range []int{64, 1024} {
			for _, members := range []int{1, 4} {
				b.Run(fmt.Sprintf("%s/%dB/members=%d", where(remote), size, members), func(b *testing.B) {
					from, to := benchNet(b, remote)
					var counters []*eventCounter
					lim := sdk.DefaultServiceLimits()
					lim.BroadcastThreads = 1
					for range members {
						c := &eventCounter{}
						counters = append(counters, c)
						register(b, to, "bench", c, &lim)
					}
					waitMembers(b, from, "bench", members)
					sender := connect(b, from)
					msg := make([]byte, size)
					b.SetBytes(int64(size))
					b.ReportAllocs()
					b.ResetTimer()
					paced(b, counters, func() error { return sender.Broadcast(context.Background(), "bench", msg) })
				})
			}
		}
	}
}

// BenchmarkTunnelThroughput: 64 KiB messages one way through a tunnel,
// each acknowledged at the end by an echo of the last.
func BenchmarkTunnelThroughput(b *testing.B) {
	for _, remote := range []bool{false, true} {
		b.Run(where(remote), func(b *testing.B) {
			from, to := benchNet(b, remote)
			register(b, to, "sink", countingTunnels{}, nil)
			waitMembers(b, from, "sink", 1)
			client := connect(b, from)
			ctx := context.Background()
			tun, err := client.Tunnel(ctx, "sink")
			if err != nil {
				b.Fatal(err)
			}
			defer tun.Close()
			msg := make([]byte, 64<<10)
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := tun.Send(ctx, msg); err != nil {
					b.Fatal(err)
				}
			}
			if err := tun.Send(ctx, []byte("end")); err != nil {
				b.Fatal(err)
			}
			if got, err := tun.Recv(ctx); err != nil || string(got) != fmt.Sprint(b.N) {
				b.Fatalf("sink counted %q, want %d (%v)", got, b.N, err)
			}
		})
	}
}

// countingTunnels counts the messages of a tunnel until "end", then sends
// the count back.
type countingTunnels struct{}

func (countingTunnels) HandleRequest(ctx context.Context, r []byte) ([]byte, error) { return r, nil }

func (countingTunnels) HandleTunnel(tn *sdk.Tunnel) {
	ctx := context.Background()
	n := 0
	for {
		msg, err := tn.Recv(ctx)
		if err != nil {
			return
		}
		if string(msg) == "end" {
			if tn.Send(ctx, []byte(fmt.Sprint(n))) != nil {
				return
			}
			n = 0
			continue
		}
		n++
	}
}

// BenchmarkTunnelLatency: a 64 B message there and back.
func BenchmarkTunnelLatency(b *testing.B) {
	for _, remote := range []bool{false, true} {
		b.Run(where(remote), func(b *testing.B) {
			from, to := benchNet(b, remote)
			register(b, to, "echo", echoTunnels{}, nil)
			waitMembers(b, from, "echo", 1)
			client := connect(b, from)
			ctx := context.Background()
			tun, err := client.Tunnel(ctx, "echo")
			if err != nil {
				b.Fatal(err)
			}
			defer tun.Close()
			msg := make([]byte, 64)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := tun.Send(ctx, msg); err != nil {
					b.Fatal(err)
				}
				if _, err := tun.Recv(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
