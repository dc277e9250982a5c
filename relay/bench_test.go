package relay_test

import (
	"bufio"
	"fmt"
	"testing"
	"time"

	"github.com/iris-mesh/iris/api"
)

// BenchmarkRelayRequest measures request → service → reply round trips
// through one daemon over TCP, with 1 and 64 requests in flight. Both apps
// speak the raw protocol; their decoding is included in the allocations.
func BenchmarkRelayRequest(b *testing.B) {
	for _, inflight := range []int{1, 64} {
		b.Run(fmt.Sprintf("inflight=%d", inflight), func(b *testing.B) { benchRequest(b, inflight) })
	}
}

func benchRequest(b *testing.B, inflight int) {
	d := startDaemon(b, nil)
	svc := connect(b, d, "bench")
	cli := connect(b, d, "")
	_ = svc.nc.SetReadDeadline(time.Time{})
	_ = cli.nc.SetReadDeadline(time.Time{})
	echoDone := make(chan error, 1)
	go func() { echoDone <- echo(svc) }()
	defer func() {
		svc.nc.Close()
		<-echoDone
	}()

	n := b.N
	sem := make(chan struct{}, inflight)
	writeErr := make(chan error, 1)
	b.ReportAllocs()
	b.ResetTimer()
	go func() { writeErr <- sendRequests(cli, sem, n) }()
	var m api.Message
	for range n {
		if err := cli.dec.ReadDaemon(&m); err != nil {
			b.Fatal(err)
		}
		if m.Op != api.OpReply || !m.Success {
			b.Fatalf("got %+v", m)
		}
		<-sem
	}
	b.StopTimer()
	if err := <-writeErr; err != nil {
		b.Fatal(err)
	}
}

// sendRequests writes n requests, at most cap(sem) in flight, batching
// into one write all it may send at once.
func sendRequests(c *client, sem chan struct{}, n int) error {
	req := api.Message{Op: api.OpRequest, Cluster: "bench", Payload: make([]byte, 64), TimeoutMs: 10000}
	var buf []byte
	for i := 0; i < n; {
		sem <- struct{}{}
		req.ID = uint64(i)
		buf = api.AppendClient(buf[:0], &req)
		for i++; i < n; i++ {
			select {
			case sem <- struct{}{}:
				req.ID = uint64(i)
				buf = api.AppendClient(buf, &req)
				continue
			default:
			}
			break
		}
		if _, err := c.nc.Write(buf); err != nil {
			return err
		}
	}
	return nil
}

// echo answers every request delivered to c with its own payload, flushing
// when it has read all that has arrived.
func echo(c *client) error {
	w := bufio.NewWriterSize(c.nc, 64<<10)
	var m api.Message
	out := api.Message{Op: api.OpReply, Success: true}
	var buf []byte
	for {
		if err := c.dec.ReadDaemon(&m); err != nil {
			return err
		}
		out.ID, out.Payload = m.ID, m.Payload
		buf = api.AppendClient(buf[:0], &out)
		w.Write(buf)
		if c.br.Buffered() == 0 {
			if err := w.Flush(); err != nil {
				return err
			}
		}
	}
}
