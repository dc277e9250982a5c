package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"fmt"
	"io"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/iris-mesh/iris/sdk"
)

// Streaming workloads: unpaced pub/sub, which reports what was lost, and
// tunnel bulk transfer against raw TCP and TCP + AES-GCM.

// BenchmarkPubSub measures pub/sub with a publisher WITHOUT flow control,
// as fast as its client lets it, to subs subscribers, on one node or with
// the subscribers on a second node (Iris: an encrypted daemon link; NATS: a
// route). ns/op is the time per event published until every subscriber has
// every event (or none arrived for a while: then the rest is lost); the
// "lost%" metric is the share of deliveries that never arrived.
func BenchmarkPubSub(b *testing.B) {
	type shape struct{ nodes, subs, size int }
	for _, s := range []shape{{1, 1, 64}, {1, 1, 1024}, {1, 4, 64}, {2, 1, 64}, {2, 1, 1024}, {2, 4, 64}} {
		for _, sys := range systems {
			b.Run(fmt.Sprintf("nodes=%d/subs=%d/size=%d/sys=%s", s.nodes, s.subs, s.size, sys), func(b *testing.B) {
				pub, counters := newPubSubNodes(b, sys, s.nodes, s.subs)
				runUnpaced(b, pub, counters, s.size)
			})
		}
	}
}

// newPubSubNodes is newPubSub with the subscribers on the last of nodes
// servers and the publisher on the first.
func newPubSubNodes(tb testing.TB, sys string, nodes, subs int) (publisher, []*counter) {
	if nodes == 1 {
		return newPubSub(tb, sys, subs)
	}
	switch sys {
	case "iris":
		ds := startIris(tb, nodes)
		counters := make([]*counter, subs)
		for i := range counters {
			c := &counter{}
			counters[i] = c
			conn := irisConnect(tb, ds[nodes-1])
			lim := sdk.TopicLimits{EventThreads: 1}
			// v1.1: Subscribe returns once every daemon knows it.
			if err := conn.Subscribe(context.Background(), "bench", sdk.TopicHandlerFunc(func([]byte) { c.n.Add(1) }), &lim); err != nil {
				tb.Fatal(err)
			}
		}
		pub := irisConnect(tb, ds[0])
		ctx := context.Background()
		tb.Cleanup(func() { // where events went missing, if any
			a, z := ds[0], ds[nodes-1]
			if drops := a.Overlay().Stats().FramesDropped + z.Relay().Stats().DroppedEvents; drops > 0 {
				tb.Logf("dropped: %d by the link queue, %d by the subscribers' queues; %d deliveries waited",
					a.Overlay().Stats().FramesDropped, z.Relay().Stats().DroppedEvents, z.Relay().Stats().PublisherStalls)
			}
		})
		return func(p []byte) error { return pub.Publish(ctx, "bench", p) }, counters
	case "nats":
		srvs := startNATS(tb, nodes)
		counters := make([]*counter, subs)
		var last *nats.Conn
		for i := range counters {
			c := &counter{}
			counters[i] = c
			nc := natsConnect(tb, srvs[nodes-1])
			if _, err := nc.Subscribe("bench", func(*nats.Msg) { c.n.Add(1) }); err != nil {
				tb.Fatal(err)
			}
			last = nc
		}
		// The route carries subscriptions in order: once a probe subscribed
		// after them answers from the first server, it knows them all.
		if _, err := last.Subscribe("probe", func(m *nats.Msg) { _ = m.Respond(nil) }); err != nil {
			tb.Fatal(err)
		}
		if err := last.Flush(); err != nil {
			tb.Fatal(err)
		}
		pub := natsConnect(tb, srvs[0])
		waitFor(tb, "nats interest", func() bool {
			_, err := pub.Request("probe", nil, time.Second)
			return err == nil
		})
		return func(p []byte) error { return pub.Publish("bench", p) }, counters
	case "tcp":
		return tcpPubSubHops(tb, nodes, subs)
	}
	tb.Fatalf("unknown system %q", sys)
	return nil, nil
}

// quietFor is how long no subscriber may make progress before what is
// missing counts as lost.
const quietFor = 250 * time.Millisecond

// runUnpaced publishes b.N events of size bytes as fast as the publisher
// takes them, then waits until every subscriber has them all or none made
// progress for quietFor, and reports the share lost.
func runUnpaced(b *testing.B, pub publisher, counters []*counter, size int) {
	event := bytes.Repeat([]byte{'x'}, size)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	total := func() int64 {
		var t int64
		for _, c := range counters {
			t += c.n.Load()
		}
		return t
	}
	// Counters are cumulative over the runs the framework makes: what an
	// earlier run lost may still arrive, so count from here.
	base := total()
	cpu0 := processCPU()
	b.ResetTimer()
	for range b.N {
		if err := pub(event); err != nil {
			b.Fatal(err)
		}
	}
	want := base + int64(b.N)*int64(len(counters))
	last, lastAt := total(), time.Now()
	for last < want {
		time.Sleep(100 * time.Microsecond) // drain poll interval
		if t := total(); t != last {
			last, lastAt = t, time.Now()
		} else if time.Since(lastAt) > quietFor {
			break
		}
	}
	b.StopTimer()
	if got := last - base; got > 0 {
		b.ReportMetric(float64(processCPU()-cpu0)/float64(got), "cpu-ns/msg")
	}
	if last >= want {
		b.ReportMetric(0, "lost%")
	} else {
		b.ReportMetric(100*float64(want-last)/float64(int64(b.N)*int64(len(counters))), "lost%")
		// The wait for stragglers is not throughput: take it off.
		b.ReportMetric(float64(lastAt.Sub(time.Now().Add(-b.Elapsed())).Nanoseconds())/float64(b.N), "ns/op")
	}
}

// processCPU returns the CPU time the process has used (user and system,
// every thread: clients and servers alike), in nanoseconds.
func processCPU() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// tunnelMsg is the size of one tunnel message of the bulk workload.
const tunnelMsg = 64 << 10

// BenchmarkTunnel measures bulk transfer of 64 KiB messages one way through
// a tunnel (Iris, one daemon or two with an encrypted link), against one
// raw TCP connection (sys=tcp) and one TCP connection whose data is sealed
// with AES-128-GCM in 16 KiB records (sys=tcpgcm), in the same process;
// with nodes=2 the latter two are the same single connection, measured
// again beside Iris. MB/s counts the bytes delivered.
func BenchmarkTunnel(b *testing.B) {
	for _, nodes := range []int{1, 2} {
		for _, sys := range []string{"iris", "tcp", "tcpgcm"} {
			// tcp and tcpgcm are one connection either way: the ceiling
			// for both, measured again beside each.
			b.Run(fmt.Sprintf("nodes=%d/sys=%s", nodes, sys), func(b *testing.B) {
				send, recv := newBulk(b, sys, nodes)
				msg := bytes.Repeat([]byte{'t'}, tunnelMsg)
				b.SetBytes(tunnelMsg)
				b.ReportAllocs()
				cpu0 := processCPU()
				b.ResetTimer()
				done := make(chan error, 1)
				go func() {
					for range b.N {
						if err := recv(); err != nil {
							done <- err
							return
						}
					}
					done <- nil
				}()
				for range b.N {
					if err := send(msg); err != nil {
						b.Fatal(err)
					}
				}
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/msg")
			})
		}
	}
}

// newBulk returns the two ends of a one-way bulk transfer: send queues one
// message, recv waits for the next.
func newBulk(tb testing.TB, sys string, nodes int) (send func([]byte) error, recv func() error) {
	switch sys {
	case "iris":
		return irisBulk(tb, nodes)
	case "tcp", "tcpgcm":
		return tcpBulk(tb, sys == "tcpgcm")
	}
	tb.Fatalf("unknown system %q", sys)
	return nil, nil
}

// tunnelSink is a service that hands over the tunnels built to it.
type tunnelSink struct {
	ch   chan *sdk.Tunnel
	done chan struct{} // closed at cleanup
}

func (s tunnelSink) HandleRequest(context.Context, []byte) ([]byte, error) { return nil, nil }

// HandleTunnel passes t to the benchmark and keeps it open until the
// benchmark closes it.
func (s tunnelSink) HandleTunnel(t *sdk.Tunnel) {
	s.ch <- t
	<-s.done
}

func irisBulk(tb testing.TB, nodes int) (func([]byte) error, func() error) {
	ds := startIris(tb, nodes)
	sink := tunnelSink{ch: make(chan *sdk.Tunnel, 1), done: make(chan struct{})}
	cfg := sdk.DefaultConfig()
	cfg.Addr = ds[nodes-1].RelayAddr()
	svc, err := sdk.Register(context.Background(), cfg, "bulk", sink, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { svc.Close() })
	tb.Cleanup(func() { close(sink.done) }) // runs before svc.Close
	waitFor(tb, "iris cluster membership", func() bool { return irisMembers(ds[0], "bulk") == 1 })
	client := irisConnect(tb, ds[0])
	ctx := context.Background()
	t, err := client.Tunnel(ctx, "bulk")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { t.Close() })
	far := <-sink.ch
	return func(p []byte) error { return t.Send(ctx, p) },
		func() error {
			m, err := far.Recv(ctx)
			if err == nil && len(m) != tunnelMsg {
				err = fmt.Errorf("tunnel message of %d bytes", len(m))
			}
			return err
		}
}

// gcmRecord is the plaintext of one sealed record of sys=tcpgcm (as TLS).
const gcmRecord = 16 << 10

// tcpBulk connects two ends by one loopback TCP connection; with seal, the
// stream is cut into 16 KiB records sealed with AES-128-GCM (a counter
// nonce), as a TLS or Noise transport does.
func tcpBulk(tb testing.TB, seal bool) (func([]byte) error, func() error) {
	n := newTCPNet(tb)
	a, z := n.pair()
	var aead cipher.AEAD
	if seal {
		blk, err := aes.NewCipher(make([]byte, 16))
		if err != nil {
			tb.Fatal(err)
		}
		if aead, err = cipher.NewGCM(blk); err != nil {
			tb.Fatal(err)
		}
	}
	var wmu sync.Mutex
	var sendSeq, recvSeq uint64
	out := make([]byte, 0, 2*tunnelMsg)
	send := func(p []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		if aead == nil {
			_, err := a.Write(p)
			return err
		}
		out = out[:0]
		var nonce [12]byte
		for len(p) > 0 {
			k := min(len(p), gcmRecord)
			binary.BigEndian.PutUint64(nonce[4:], sendSeq)
			sendSeq++
			out = binary.BigEndian.AppendUint16(out, uint16(k+aead.Overhead()))
			out = aead.Seal(out, nonce[:], p[:k], nil)
			p = p[k:]
		}
		_, err := a.Write(out)
		return err
	}
	zr := bufio.NewReaderSize(z, 256<<10)
	buf := make([]byte, tunnelMsg)
	rec := make([]byte, gcmRecord+64)
	recv := func() error {
		if aead == nil {
			_, err := io.ReadFull(zr, buf)
			return err
		}
		for got := 0; got < tunnelMsg; {
			var h [2]byte
			if _, err := io.ReadFull(zr, h[:]); err != nil {
				return err
			}
			r := rec[:binary.BigEndian.Uint16(h[:])]
			if _, err := io.ReadFull(zr, r); err != nil {
				return err
			}
			var nonce [12]byte
			binary.BigEndian.PutUint64(nonce[4:], recvSeq)
			recvSeq++
			plain, err := aead.Open(r[:0], nonce[:], r, nil)
			if err != nil {
				return err
			}
			got += copy(buf[got:], plain)
		}
		return nil
	}
	return send, recv
}
