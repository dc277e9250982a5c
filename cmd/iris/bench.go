package main

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iris-mesh/iris/sdk"
)

var benchCmd = &command{
	name: "bench", args: "request|pubsub [flags]",
	summary: "measure request/reply or publish/subscribe throughput and latency",
	help: `
Loads the daemon and prints a progress line (on stderr) and a summary: the
rate, and the latency's p50, p90, p99 and max.

  iris bench request   -clients C send -n requests in all, each client one
                       at a time, to -cluster (default: a fresh cluster of
                       -servers echo members iris bench registers itself)
  iris bench pubsub    -pubs P publish -n events in all to a fresh topic
                       with -subs S subscribers; the latency is from
                       publish to delivery, and events a slow subscriber
                       lost are counted as dropped

Run it against a quiet network: the numbers are the whole path's (CLI,
relay, daemons), on this machine, under whatever else it is doing.`,
	flags: func(fs *flag.FlagSet, e *env) func([]string) error {
		b := &bench{e: e}
		fs.IntVar(&b.n, "n", 10000, "requests or events to send in all")
		fs.IntVar(&b.size, "size", 128, "payload `BYTES` (at least 8 for pubsub, which stamps the send time)")
		fs.IntVar(&b.clients, "clients", 4, "request: concurrent clients, each with its own connection")
		fs.IntVar(&b.servers, "servers", 1, "request: echo members to register (unless -cluster)")
		fs.StringVar(&b.cluster, "cluster", "", "request: an existing cluster `NAME` to load instead of registering echo members")
		fs.IntVar(&b.pubs, "pubs", 1, "pubsub: publishers, each with its own connection")
		fs.IntVar(&b.subs, "subs", 1, "pubsub: subscribers, each with its own connection")
		return func(args []string) error {
			if len(args) != 1 || (args[0] != "request" && args[0] != "pubsub") {
				return usageError("want: iris bench request|pubsub [flags]")
			}
			if err := b.check(args[0]); err != nil {
				return err
			}
			var r *benchResult
			var err error
			if args[0] == "request" {
				r, err = b.request()
			} else {
				r, err = b.pubsub()
			}
			if err != nil {
				return err
			}
			r.print(e.stdout, e.json)
			return nil
		}
	},
}

// bench is one run of iris bench.
type bench struct {
	e                *env
	n, size          int
	clients, servers int
	cluster          string
	pubs, subs       int
	done             atomic.Int64 // operations completed, for the progress line
	progressOut      io.Writer
	progressCR       bool // the progress line rewrites itself on a terminal
}

func (b *bench) check(mode string) error {
	switch {
	case b.n <= 0:
		return usageError("-n: want a positive number")
	case b.size < 0 || b.size > 16<<20:
		return usageError("-size: want 0 to 16 MiB")
	case mode == "pubsub" && b.size < 8:
		return usageError("-size: pubsub needs at least 8 bytes to stamp the send time")
	case b.clients <= 0 || b.servers <= 0 || b.pubs <= 0 || b.subs <= 0:
		return usageError("-clients, -servers, -pubs and -subs: want positive numbers")
	}
	return nil
}

// benchResult is a run's summary.
type benchResult struct {
	Mode      string  `json:"mode"`
	Sent      int     `json:"sent"`
	Received  int     `json:"received"`
	Errors    int     `json:"errors"`
	Dropped   int     `json:"dropped,omitempty"`
	Size      int     `json:"size"`
	Seconds   float64 `json:"seconds"`
	Rate      float64 `json:"rate"` // operations (replies, deliveries) per second
	P50ms     float64 `json:"p50_ms"`
	P90ms     float64 `json:"p90_ms"`
	P99ms     float64 `json:"p99_ms"`
	MaxMs     float64 `json:"max_ms"`
	FirstErr  string  `json:"first_error,omitempty"`
	latencies []time.Duration
}

func (r *benchResult) finish(elapsed time.Duration) {
	r.Seconds = elapsed.Seconds()
	if r.Seconds > 0 {
		r.Rate = float64(r.Received) / r.Seconds
	}
	slices.Sort(r.latencies)
	q := func(p float64) float64 {
		if len(r.latencies) == 0 {
			return 0
		}
		i := int(p * float64(len(r.latencies)-1))
		return float64(r.latencies[i].Microseconds()) / 1000
	}
	r.P50ms, r.P90ms, r.P99ms, r.MaxMs = q(0.50), q(0.90), q(0.99), q(1)
}

func (r *benchResult) print(w io.Writer, asJSON bool) {
	if asJSON {
		writeJSON(w, r)
		return
	}
	what := map[string]string{"request": "replies", "pubsub": "deliveries"}[r.Mode]
	fmt.Fprintf(w, "%s: %d sent, %d %s of %d bytes in %.3fs: %.0f %s/s, %.2f MiB/s\n",
		r.Mode, r.Sent, r.Received, what, r.Size, r.Seconds, r.Rate, what, r.Rate*float64(r.Size)/(1<<20))
	fmt.Fprintf(w, "latency: p50 %.3fms, p90 %.3fms, p99 %.3fms, max %.3fms\n", r.P50ms, r.P90ms, r.P99ms, r.MaxMs)
	if r.Errors > 0 || r.Dropped > 0 {
		fmt.Fprintf(w, "errors: %d, dropped: %d", r.Errors, r.Dropped)
		if r.FirstErr != "" {
			fmt.Fprintf(w, " (first: %s)", r.FirstErr)
		}
		fmt.Fprintln(w)
	}
}

// startProgress prints the progress line every second until stop is
// called, which prints it a last time.
func (b *bench) startProgress(what string, total int) (stop func()) {
	b.progressOut = b.e.stderr
	if f, ok := b.progressOut.(*os.File); ok && isTerminal(f) {
		b.progressCR = true
	}
	start := time.Now()
	line := func(end string) {
		done := b.done.Load()
		secs := time.Since(start).Seconds()
		fmt.Fprintf(b.progressOut, "\riris bench: %d/%d %s, %.0f/s%s", done, total, what, float64(done)/max(secs, 1e-9), end)
	}
	quit := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				if b.progressCR {
					line("")
				} else {
					line("\n")
				}
			case <-quit:
				return
			}
		}
	})
	return func() {
		close(quit)
		wg.Wait()
		line("\n")
	}
}

// benchName returns a fresh cluster or topic name.
func benchName() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "iris-bench-" + hex.EncodeToString(b[:])
}

// request runs the request/reply benchmark.
func (b *bench) request() (*benchResult, error) {
	cluster := b.cluster
	if cluster == "" {
		cluster = benchName()
		echo := sdk.HandlerFunc(func(_ context.Context, req []byte) ([]byte, error) { return req, nil })
		for range b.servers {
			ctx, cancel := context.WithTimeout(b.e.ctx, b.e.timeout)
			svc, err := sdk.Register(ctx, b.e.cfg, cluster, echo, nil)
			cancel()
			if err != nil {
				return nil, b.e.connectError(err)
			}
			defer svc.Close()
		}
	}
	conns, err := b.connectN(b.clients)
	defer closeAll(conns)
	if err != nil {
		return nil, err
	}
	payload := make([]byte, b.size)
	res := &benchResult{Mode: "request", Size: b.size}
	var mu sync.Mutex
	var wg sync.WaitGroup
	stop := b.startProgress("replies", b.n)
	start := time.Now()
	for i, c := range conns {
		share := b.n / b.clients
		if i < b.n%b.clients {
			share++
		}
		wg.Go(func() {
			lat := make([]time.Duration, 0, share)
			sent, errs := 0, 0
			var firstErr error
			for range share {
				if b.e.ctx.Err() != nil {
					break
				}
				ctx, cancel := context.WithTimeout(b.e.ctx, b.e.timeout)
				t0 := time.Now()
				_, err := c.Request(ctx, cluster, payload)
				cancel()
				sent++
				if err != nil {
					errs++
					if firstErr == nil {
						firstErr = err
					}
					if errors.Is(err, sdk.ErrClosed) {
						break
					}
					continue
				}
				lat = append(lat, time.Since(t0))
				b.done.Add(1)
			}
			mu.Lock()
			defer mu.Unlock()
			res.Sent += sent
			res.Errors += errs
			res.Received += len(lat)
			res.latencies = append(res.latencies, lat...)
			if firstErr != nil && res.FirstErr == "" {
				res.FirstErr = describe(firstErr, "bench")
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	stop()
	res.finish(elapsed)
	return res, nil
}

// pubsubIdle is how long iris bench pubsub waits for one more delivery
// once every event is published: a delivery gap that long means the rest
// were dropped.
const pubsubIdle = time.Second

// pubsub runs the publish/subscribe benchmark.
func (b *bench) pubsub() (*benchResult, error) {
	topic := benchName()
	subs, err := b.connectN(b.subs)
	defer closeAll(subs)
	if err != nil {
		return nil, err
	}
	pubs, err := b.connectN(b.pubs)
	defer closeAll(pubs)
	if err != nil {
		return nil, err
	}
	want := b.n * b.subs
	res := &benchResult{Mode: "pubsub", Size: b.size}
	var mu sync.Mutex
	got := 0
	var lastAt time.Time // of the last delivery
	all := make(chan struct{})
	progress := make(chan struct{}, 1)
	for _, c := range subs {
		h := sdk.TopicHandlerFunc(func(ev []byte) {
			lat := time.Duration(time.Now().UnixNano() - int64(binary.BigEndian.Uint64(ev)))
			b.done.Add(1)
			select {
			case progress <- struct{}{}:
			default:
			}
			mu.Lock()
			defer mu.Unlock()
			res.latencies = append(res.latencies, lat)
			got++
			lastAt = time.Now()
			if got == want {
				close(all)
			}
		})
		ctx, cancel := context.WithTimeout(b.e.ctx, b.e.timeout)
		err := c.Subscribe(ctx, topic, h, &sdk.TopicLimits{EventThreads: 1})
		cancel()
		if err != nil {
			return nil, err
		}
	}
	stop := b.startProgress("deliveries", want)
	start := time.Now()
	var wg sync.WaitGroup
	var sent, errs atomic.Int64
	var firstErr atomic.Value
	for i, c := range pubs {
		share := b.n / b.pubs
		if i < b.n%b.pubs {
			share++
		}
		wg.Go(func() {
			ev := make([]byte, b.size)
			for range share {
				if b.e.ctx.Err() != nil {
					return
				}
				binary.BigEndian.PutUint64(ev, uint64(time.Now().UnixNano()))
				ctx, cancel := context.WithTimeout(b.e.ctx, b.e.timeout)
				err := c.Publish(ctx, topic, ev)
				cancel()
				sent.Add(1)
				if err != nil {
					errs.Add(1)
					firstErr.CompareAndSwap(nil, describe(err, "bench"))
					if errors.Is(err, sdk.ErrClosed) {
						return
					}
				}
			}
		})
	}
	wg.Wait()
	// Wait for the deliveries while they keep coming: events a slow
	// subscriber lost never arrive. The run ends at the last delivery.
	idle := time.NewTimer(pubsubIdle)
	defer idle.Stop()
wait:
	for {
		select {
		case <-all:
			break wait
		case <-progress:
			idle.Reset(pubsubIdle)
		case <-idle.C:
			break wait
		case <-b.e.ctx.Done():
			break wait
		}
	}
	stop()
	mu.Lock()
	defer mu.Unlock()
	elapsed := lastAt.Sub(start)
	if got == 0 {
		elapsed = time.Since(start)
	}
	res.Sent, res.Errors, res.Received = int(sent.Load()), int(errs.Load()), got
	res.Dropped = max(0, (res.Sent-res.Errors)*b.subs-got)
	if s, ok := firstErr.Load().(string); ok {
		res.FirstErr = s
	}
	res.finish(elapsed)
	return res, nil
}

// connectN opens n client connections; the caller closes those returned.
func (b *bench) connectN(n int) ([]*sdk.Conn, error) {
	conns := make([]*sdk.Conn, 0, n)
	for range n {
		c, err := b.e.connect()
		if err != nil {
			return conns, err
		}
		conns = append(conns, c)
	}
	return conns, nil
}

func closeAll(conns []*sdk.Conn) {
	for _, c := range conns {
		_ = c.Close()
	}
}
