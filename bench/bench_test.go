package bench

import (
	"bytes"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Each benchmark has a sub-benchmark per system, named sys=nats, sys=iris
// and sys=tcp, in that order, so that `benchstat -col /sys` compares each
// to NATS. A system is set up once per sub-benchmark group and reused for
// every b.N the framework tries.

// systems are the systems compared, NATS first: benchstat's base column.
var systems = []string{"nats", "iris", "tcp"}

// maxInflight is the most concurrent requests a benchmark makes.
const maxInflight = 64

// requester sends one request and returns its reply; safe for concurrent
// use.
type requester func(payload []byte) ([]byte, error)

// publisher publishes one event; the event may be reused once it returns.
type publisher func(event []byte) error

// counter counts the events one subscriber received.
type counter struct{ n atomic.Int64 }

// newRequester sets up system sys with nodes servers (daemons, NATS
// servers or TCP hubs), an echo service on the last and a client on the
// first.
func newRequester(tb testing.TB, sys string, nodes int) requester {
	switch sys {
	case "iris":
		return irisRequester(tb, nodes)
	case "nats":
		return natsRequester(tb, nodes)
	case "tcp":
		return tcpRequester(tb, nodes)
	}
	tb.Fatalf("unknown system %q", sys)
	return nil
}

// newPubSub sets up system sys with one server (daemon, NATS server or TCP
// hub), subs subscribers and a publisher, each on its own connection.
func newPubSub(tb testing.TB, sys string, subs int) (publisher, []*counter) {
	switch sys {
	case "iris":
		return irisPubSub(tb, subs)
	case "nats":
		return natsPubSub(tb, subs)
	case "tcp":
		return tcpPubSub(tb, subs)
	}
	tb.Fatalf("unknown system %q", sys)
	return nil, nil
}

// waitFor polls cond until it holds, failing after 10 seconds.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
}

// BenchmarkRequest measures request/reply with 64 B payloads echoed back,
// with 1 and 64 requests in flight on one client connection. nodes=1 has
// client and service on one daemon (NATS: one server); nodes=2 has them on
// two daemons (NATS: two routed servers). With 64 in flight, ns/op is the
// inverse of the throughput.
func BenchmarkRequest(b *testing.B) {
	for _, nodes := range []int{1, 2} {
		for _, sys := range systems {
			b.Run(fmt.Sprintf("nodes=%d/sys=%s", nodes, sys), func(b *testing.B) {
				req := newRequester(b, sys, nodes)
				for _, inflight := range []int{1, maxInflight} {
					b.Run(fmt.Sprintf("inflight=%d", inflight), func(b *testing.B) {
						runRequests(b, req, inflight)
					})
				}
			})
		}
	}
}

// runRequests makes b.N requests, inflight at a time.
func runRequests(b *testing.B, req requester, inflight int) {
	payload := bytes.Repeat([]byte{'x'}, 64)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ReportAllocs()
	cpu0 := processCPU()
	b.ResetTimer()
	defer func() { b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/msg") }()
	for range inflight {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				reply, err := req(payload)
				if err != nil {
					b.Error(err)
					return
				}
				if len(reply) != len(payload) {
					b.Errorf("reply of %d bytes, want %d", len(reply), len(payload))
					return
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkPublish measures pub/sub throughput to one subscriber on the
// same daemon (NATS: server), with events of 64 B and 1 KiB, paced so that
// the subscriber keeps up. MB/s counts the bytes published.
func BenchmarkPublish(b *testing.B) {
	for _, sys := range systems {
		b.Run("sys="+sys, func(b *testing.B) {
			pub, counters := newPubSub(b, sys, 1)
			for _, size := range []int{64, 1024} {
				b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
					runPublish(b, pub, counters, size)
				})
			}
		})
	}
}

// BenchmarkFanout measures one publisher to four subscribers on the same
// daemon (NATS: server), 64 B events, paced so that every subscriber keeps
// up. ns/op is per event published (four deliveries); MB/s counts the
// bytes published.
func BenchmarkFanout(b *testing.B) {
	for _, sys := range systems {
		b.Run("sys="+sys, func(b *testing.B) {
			pub, counters := newPubSub(b, sys, 4)
			b.Run("size=64", func(b *testing.B) {
				runPublish(b, pub, counters, 64)
			})
		})
	}
}

// runPublish publishes b.N events of size bytes and waits until every
// subscriber has them all.
func runPublish(b *testing.B, pub publisher, counters []*counter, size int) {
	for _, c := range counters {
		c.n.Store(0) // the last run waited for every delivery
	}
	event := bytes.Repeat([]byte{'x'}, size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	paced(b, b.N, counters, func() error { return pub(event) })
}

// paced sends n events with send, keeping at most window of them ahead of
// the slowest subscriber, so the rate measured is one the subscribers keep
// up with (no slow-consumer drops), then waits until each has all n.
func paced(tb testing.TB, n int, counters []*counter, send func() error) {
	const window = 2048
	slowest := func() int64 {
		m := counters[0].n.Load()
		for _, c := range counters[1:] {
			m = min(m, c.n.Load())
		}
		return m
	}
	for i := range n {
		for int64(i)-slowest() >= window {
			time.Sleep(20 * time.Microsecond) // pacing poll interval
		}
		if err := send(); err != nil {
			tb.Fatal(err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for slowest() < int64(n) {
		if time.Now().After(deadline) {
			tb.Fatalf("subscribers got %d of %d events (dropped?)", slowest(), n)
		}
		time.Sleep(20 * time.Microsecond) // pacing poll interval
	}
}
