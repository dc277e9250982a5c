package overlay

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// counter is a Delegate that counts frames and signals when a target is hit.
type counter struct {
	n      atomic.Int64
	target atomic.Int64
	done   chan struct{}
}

func (c *counter) HandleFrame(string, []byte) {
	if c.n.Add(1) == c.target.Load() {
		c.done <- struct{}{}
	}
}
func (c *counter) HandlePeer(Peer)       {}
func (c *counter) HandleLinkDown(string) {}

func benchPair(b *testing.B) (src, dst *Overlay, srcCnt, dstCnt *counter) {
	b.Helper()
	srcCnt = &counter{done: make(chan struct{}, 1)}
	dstCnt = &counter{done: make(chan struct{}, 1)}
	mk := func(d Delegate) *Overlay {
		cfg := DefaultConfig()
		cfg.Network, cfg.Key, cfg.ListenAddr, cfg.Delegate = "bench", testKey, "127.0.0.1:0", d
		cfg.Gossip = LocalGossip()
		cfg.Logger = zerolog.Nop()
		o, err := New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { o.Close() })
		return o
	}
	src, dst = mk(srcCnt), mk(dstCnt)
	if _, err := src.Join([]string{dst.Addr()}); err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if p, ok := src.Peer(dst.ID()); ok && p.State == StateAlive {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("no join")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return src, dst, srcCnt, dstCnt
}

// BenchmarkLinkThroughput sends b.N frames one way over a real loopback
// link and waits until all have been delivered.
func BenchmarkLinkThroughput(b *testing.B) {
	for _, size := range []int{64, 1024, 64 << 10} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			src, dst, _, cnt := benchPair(b)
			payload := make([]byte, size)
			// Warm the link up.
			cnt.target.Store(1)
			for src.Send(dst.ID(), Bulk, nil, payload) != nil {
			}
			<-cnt.done
			cnt.n.Store(0)
			cnt.target.Store(int64(b.N))
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				for src.Send(dst.ID(), Bulk, nil, payload) == ErrBackpressure {
					time.Sleep(50 * time.Microsecond)
				}
			}
			<-cnt.done
			b.StopTimer()
			st := src.Stats()
			if st.BytesOut > 0 {
				b.ReportMetric(float64(st.FramesOut)/float64(max(1, st.BytesOut/(64<<10))), "frames/64KiB")
			}
		})
	}
}

// BenchmarkLinkRoundTrip measures one frame there and one back.
func BenchmarkLinkRoundTrip(b *testing.B) {
	src, dst, back, cnt := benchPair(b)
	payload := make([]byte, 64)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		cnt.target.Store(int64(i + 1))
		if err := src.Send(dst.ID(), Control, nil, payload); err != nil {
			b.Fatal(err)
		}
		<-cnt.done
		back.target.Store(int64(i + 1))
		if err := dst.Send(src.ID(), Control, nil, payload); err != nil {
			b.Fatal(err)
		}
		<-back.done
	}
}
