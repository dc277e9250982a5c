package sdk

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
)

// BenchmarkRequest measures Request round trips through the scripted relay
// peer over TCP loopback, which echoes every request at once, with 1 and 64
// requests in flight. The peer's own work is included.
func BenchmarkRequest(b *testing.B) {
	for _, inflight := range []int{1, 64} {
		b.Run(fmt.Sprintf("inflight=%d", inflight), func(b *testing.B) {
			c, p := connect(b, newRelay(b), nil)
			served := async(func() error { return p.serve(echo) })
			payload := make([]byte, 64)
			ctx := context.Background()
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ReportAllocs()
			b.ResetTimer()
			for range inflight {
				wg.Go(func() {
					for next.Add(1) <= int64(b.N) {
						if _, err := c.Request(ctx, "svc", payload); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			if err := c.Close(); err != nil {
				b.Fatal(err)
			}
			if err := <-served; err != nil {
				b.Fatal(err)
			}
		})
	}
}
