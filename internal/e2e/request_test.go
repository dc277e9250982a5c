package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iris-mesh/iris/daemon"
	"github.com/iris-mesh/iris/internal/leakcheck"
	"github.com/iris-mesh/iris/relay"
	"github.com/iris-mesh/iris/sdk"
)

// echo answers with its name and the request.
func echo(name string, served *atomic.Int64) sdk.HandlerFunc {
	return func(ctx context.Context, req []byte) ([]byte, error) {
		served.Add(1)
		return append([]byte(name+":"), req...), nil
	}
}

// TestRequestBalancingAndLocality: cluster echo has two members on b and
// two on c; 10,000 requests from a client on a are all answered correctly
// and spread over the four; a client on b is served by b's members, and by
// c's once b's are gone.
func TestRequestBalancingAndLocality(t *testing.T) {
	leakcheck.Check(t)
	ds := startNet(t, 3)
	a, b, c := ds[0], ds[1], ds[2]
	names := []string{"b1", "b2", "c1", "c2"}
	served := make([]atomic.Int64, 4)
	var bServices []*sdk.Service
	for i, name := range names {
		d := b
		if name[0] == 'c' {
			d = c
		}
		s := register(t, d, "echo", echo(name, &served[i]), nil)
		if d == b {
			bServices = append(bServices, s)
		}
	}
	waitMembers(t, a, "echo", 4)

	client := connect(t, a)
	const total = 10000
	var wg sync.WaitGroup
	var bad atomic.Int64
	var firstErr atomic.Value
	sem := make(chan struct{}, 64)
	for i := range total {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req := fmt.Sprint(i)
			rep, err := client.Request(ctx, "echo", []byte(req))
			if err != nil || !strings.HasSuffix(string(rep), ":"+req) {
				bad.Add(1)
				firstErr.CompareAndSwap(nil, fmt.Sprintf("%q %v", rep, err))
			}
		})
	}
	wg.Wait()
	if n := bad.Load(); n > 0 {
		t.Fatalf("%d of %d requests answered wrongly; first: %v", n, total, firstErr.Load())
	}
	var sum int64
	for i, name := range names {
		n := served[i].Load()
		sum += n
		share := float64(n) / total
		t.Logf("%s served %d (%.1f%%)", name, n, 100*share)
		if share < 0.15 || share > 0.35 {
			t.Errorf("%s served %.1f%% of the requests, want 15–35%%", name, 100*share)
		}
	}
	if sum != total {
		t.Fatalf("members served %d requests for %d sent", sum, total)
	}

	// From b: b's own members serve while they have room.
	onB := connect(t, b)
	before := served[2].Load() + served[3].Load()
	for i := range 500 {
		rep, err := onB.Request(context.Background(), "echo", []byte(fmt.Sprint(i)))
		if err != nil || rep[0] != 'b' {
			t.Fatalf("from b: %q %v", rep, err)
		}
	}
	if after := served[2].Load() + served[3].Load(); after != before {
		t.Fatalf("c served %d requests from b while b's members had room", after-before)
	}
	// b's members leave: c's serve b's client.
	for _, s := range bServices {
		s.Close()
	}
	for i := range 100 {
		rep, err := onB.Request(context.Background(), "echo", []byte(fmt.Sprint(i)))
		if err != nil || rep[0] != 'c' {
			t.Fatalf("after b's members left: %q %v", rep, err)
		}
	}
}

// TestRequestToEmptyClusterTimesOut: in a v1.0 session the daemon answers
// timed out at the deadline: not more than 20 ms early (the SDK sends the
// time left in whole milliseconds), late only by a busy machine's
// scheduling delay (v1.1 fails at once: TestV11NoMembers).
func TestRequestToEmptyClusterTimesOut(t *testing.T) {
	ds := startNet(t, 2)
	client := connectV10(t, ds[0])
	for _, d := range []time.Duration{100 * time.Millisecond, 300 * time.Millisecond} {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		start := time.Now()
		_, err := client.Request(ctx, "nobody", []byte("x"))
		el := time.Since(start)
		cancel()
		if !errors.Is(err, sdk.ErrTimeout) {
			t.Fatalf("got %v, want ErrTimeout", err)
		}
		if el < d-20*time.Millisecond || el > d+3*time.Second {
			t.Errorf("timed out after %v, want %v", el, d)
		}
	}
}

// TestRemoteErrorAndLateReply: a handler's error comes back as a
// *RemoteError with its text; a reply after the deadline is dropped and
// the service keeps working.
func TestRemoteErrorAndLateReply(t *testing.T) {
	ds := startNet(t, 2)
	release := make(chan struct{})
	var lateDone atomic.Bool
	h := sdk.HandlerFunc(func(ctx context.Context, req []byte) ([]byte, error) {
		switch string(req) {
		case "fail":
			return nil, errors.New("database on fire")
		case "late":
			<-release
			lateDone.Store(true)
			return []byte("too late"), nil
		}
		return req, nil
	})
	register(t, ds[1], "svc", h, nil)
	waitMembers(t, ds[0], "svc", 1)
	client := connect(t, ds[0])

	_, err := client.Request(context.Background(), "svc", []byte("fail"))
	var re *sdk.RemoteError
	if !errors.As(err, &re) || re.Fault != "database on fire" {
		t.Fatalf("got %v, want *RemoteError \"database on fire\"", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	_, err = client.Request(ctx, "svc", []byte("late"))
	cancel()
	if !errors.Is(err, sdk.ErrTimeout) {
		t.Fatalf("late: got %v, want ErrTimeout", err)
	}
	close(release)
	waitFor(t, 5*time.Second, "the late handler to return", lateDone.Load)
	rep, err := client.Request(context.Background(), "svc", []byte("ok"))
	if err != nil || string(rep) != "ok" {
		t.Fatalf("after a late reply: %q %v", rep, err)
	}
	// The daemon answered the late request once (timed out); a second
	// answer, the service's late reply, would show as an unknown reply.
	if got := client.Stats(); got.UnknownReplies != 0 {
		t.Fatalf("the daemon answered a request twice: %+v", got)
	}
}

// TestLargeMessagesWithRaisedLimit: with the message limit raised to
// 32 MiB (irisd -max-message), a 20 MiB request and reply cross daemons.
func TestLargeMessagesWithRaisedLimit(t *testing.T) {
	const limit = 32 << 20
	ds := startNetWith(t, 2, func(c *daemon.Config) {
		c.Relay = relay.DefaultConfig()
		c.Relay.Limits.MaxMessageLen = limit
	})
	big := func(d *daemon.Daemon) *sdk.Config {
		c := cfgFor(d)
		c.Limits.MaxMessageLen = limit
		return c
	}
	svc, err := sdk.Register(context.Background(), big(ds[1]), "big",
		sdk.HandlerFunc(func(ctx context.Context, r []byte) ([]byte, error) { return r, nil }), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	waitMembers(t, ds[0], "big", 1)
	client, err := sdk.Connect(context.Background(), big(ds[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	msg := make([]byte, 20<<20)
	for i := range msg {
		msg[i] = byte(i)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := client.Request(ctx, "big", msg)
	if err != nil || !bytes.Equal(rep, msg) {
		t.Fatalf("20 MiB round trip: %d bytes, %v", len(rep), err)
	}
}
