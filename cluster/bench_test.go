package cluster

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// BenchmarkRequest measures request/reply through the cluster layer, on
// one daemon and across two over a real loopback link, with 1 and 64
// requests in flight.
func BenchmarkRequest(b *testing.B) {
	for _, remote := range []bool{false, true} {
		for _, inflight := range []int{1, 64} {
			name := fmt.Sprintf("local/inflight=%d", inflight)
			if remote {
				name = fmt.Sprintf("remote/inflight=%d", inflight)
			}
			b.Run(name, func(b *testing.B) { benchRequest(b, remote, inflight) })
		}
	}
}

type benchMember struct{}

func (benchMember) HandleRequest(r *Request) bool { r.Reply(r.Payload); return true }
func (benchMember) HandleBroadcast([]byte)        {}

func benchRequest(b *testing.B, remote bool, inflight int) {
	zones := []string{""}
	if remote {
		zones = append(zones, "")
	}
	ds := startDaemons(b, zones...)
	client, server := ds[0], ds[len(ds)-1]
	if _, err := server.Register("bench", benchMember{}, 1<<20); err != nil {
		b.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(client.Clusters()) == 0 || (remote && len(client.Clusters()[0].Remote) == 0) {
		if time.Now().After(deadline) {
			b.Fatal("cluster not visible")
		}
		time.Sleep(5 * time.Millisecond)
	}
	payload := make([]byte, 64)
	sem := make(chan struct{}, inflight)
	var wg sync.WaitGroup
	cb := func(r Result) {
		if r.Status != StatusOK {
			b.Errorf("status %d %s", r.Status, r.Fault)
		}
		<-sem
		wg.Done()
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		sem <- struct{}{}
		wg.Add(1)
		client.Request("bench", payload, 10*time.Second, cb)
	}
	wg.Wait()
}
