package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/iris-mesh/iris/internal/leakcheck"
	"github.com/iris-mesh/iris/sdk"
)

// castCounter is a service that records the broadcasts it receives.
type castCounter struct {
	mu   sync.Mutex
	seen map[string]int
	all  chan struct{} // closed once want messages arrived
	want int
}

func newCastCounter(want int) *castCounter {
	return &castCounter{seen: map[string]int{}, all: make(chan struct{}), want: want}
}

func (c *castCounter) HandleRequest(ctx context.Context, req []byte) ([]byte, error) { return req, nil }

func (c *castCounter) HandleBroadcast(msg []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen[string(msg)]++
	if len(c.seen) == c.want {
		close(c.all)
	}
}

// TestBroadcastAcrossDaemons: 5 plain clients and 5 services spread over
// three daemons each broadcast 25 messages to the services' cluster:
// every service receives all 250, each once.
func TestBroadcastAcrossDaemons(t *testing.T) {
	leakcheck.Check(t)
	ds := startNet(t, 3)
	const senders, each = 10, 25
	var counters []*castCounter
	var conns []*sdk.Conn
	for i := range 5 {
		cc := newCastCounter(senders * each)
		counters = append(counters, cc)
		svc := register(t, ds[i%3], "all", cc, nil)
		conns = append(conns, svc.Conn())
	}
	for i := range 5 {
		conns = append(conns, connect(t, ds[(i+1)%3]))
	}
	for _, d := range ds {
		waitMembers(t, d, "all", 5)
	}
	var wg sync.WaitGroup
	for s, c := range conns {
		wg.Go(func() {
			for i := range each {
				if err := c.Broadcast(context.Background(), "all", []byte(fmt.Sprintf("%d/%d", s, i))); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	for i, cc := range counters {
		select {
		case <-cc.all:
		case <-time.After(10 * time.Second):
			cc.mu.Lock()
			t.Fatalf("service %d received %d of %d broadcasts", i, len(cc.seen), senders*each)
		}
		cc.mu.Lock()
		for msg, n := range cc.seen {
			if n != 1 {
				t.Errorf("service %d received %q %d times", i, msg, n)
			}
		}
		cc.mu.Unlock()
	}
}

// TestPubSubAcrossDaemons: 7 topics, 5 subscribers and 5 publishers spread
// over three daemons; each publisher sends 15 events to every topic. Every
// subscriber receives all 75 events of each topic, and each publisher's in
// the order it sent them.
func TestPubSubAcrossDaemons(t *testing.T) {
	leakcheck.Check(t)
	ds := startNet(t, 3)
	const topics, subs, pubs, each = 7, 5, 5, 15
	type key struct{ sub, topic int }
	var mu sync.Mutex
	got := map[key][]string{}
	done := make(chan struct{}, subs*topics)
	one := sdk.TopicLimits{EventThreads: 1} // handle events in arrival order
	for s := range subs {
		c := connect(t, ds[s%3])
		for tp := range topics {
			k := key{s, tp}
			h := sdk.TopicHandlerFunc(func(ev []byte) {
				mu.Lock()
				got[k] = append(got[k], string(ev))
				n := len(got[k])
				mu.Unlock()
				if n == pubs*each {
					done <- struct{}{}
				}
			})
			if err := c.Subscribe(context.Background(), fmt.Sprint("topic-", tp), h, &one); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Every daemon knows every topic's subscribers on the other daemons.
	for di, d := range ds {
		waitFor(t, 5*time.Second, "subscriptions to spread", func() bool {
			ts := d.Cluster().Topics()
			if len(ts) != topics {
				return false
			}
			for _, tp := range ts {
				if len(tp.Remote) != 2 || tp.LocalSubscribers != map[int]int{0: 2, 1: 2, 2: 1}[di] {
					return false
				}
			}
			return true
		})
	}
	var wg sync.WaitGroup
	for p := range pubs {
		c := connect(t, ds[(p+2)%3])
		wg.Go(func() {
			for i := range each {
				for tp := range topics {
					ev := fmt.Sprintf("%d/%d", p, i)
					if err := c.Publish(context.Background(), fmt.Sprint("topic-", tp), []byte(ev)); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	wg.Wait()
	for range subs * topics {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			mu.Lock()
			defer mu.Unlock()
			for k, evs := range got {
				if len(evs) != pubs*each {
					t.Errorf("subscriber %d topic %d: %d of %d events", k.sub, k.topic, len(evs), pubs*each)
				}
			}
			t.FailNow()
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for k, evs := range got {
		next := make([]int, pubs)
		for _, ev := range evs {
			var p, i int
			fmt.Sscanf(ev, "%d/%d", &p, &i)
			if i != next[p] {
				t.Fatalf("subscriber %d topic %d: publisher %d's event %d arrived when %d was due", k.sub, k.topic, p, i, next[p])
			}
			next[p]++
		}
	}
}

// TestUnsubscribeStopsDelivery: after Unsubscribe returns, no event is
// handled.
func TestUnsubscribeStopsDelivery(t *testing.T) {
	ds := startNet(t, 2)
	sub, pub := connect(t, ds[0]), connect(t, ds[1])
	var mu sync.Mutex
	var n int
	h := sdk.TopicHandlerFunc(func([]byte) { mu.Lock(); n++; mu.Unlock() })
	if err := sub.Subscribe(context.Background(), "news", h, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "subscription to spread", func() bool { return len(ds[1].Cluster().Topics()) == 1 })
	if err := pub.Publish(context.Background(), "news", []byte("1")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the first event", func() bool { mu.Lock(); defer mu.Unlock(); return n == 1 })
	if err := sub.Unsubscribe(context.Background(), "news"); err != nil {
		t.Fatal(err)
	}
	// Published from sub's own daemon, after the unsubscribe was processed
	// there: it must not be delivered.
	local := connect(t, ds[0])
	for range 100 {
		if err := local.Publish(context.Background(), "news", []byte("2")); err != nil {
			t.Fatal(err)
		}
	}
	// A request round trip on the subscriber's connection orders after the
	// publishes on the daemon; then the count must not have moved.
	register(t, ds[0], "ping", sdk.HandlerFunc(func(ctx context.Context, b []byte) ([]byte, error) { return b, nil }), nil)
	if _, err := local.Request(context.Background(), "ping", nil); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if n != 1 {
		t.Fatalf("%d events handled after Unsubscribe", n-1)
	}
}

// echoTunnels is a service that echoes every message of every tunnel.
type echoTunnels struct{}

func (echoTunnels) HandleRequest(ctx context.Context, req []byte) ([]byte, error) { return req, nil }

func (echoTunnels) HandleTunnel(tn *sdk.Tunnel) {
	ctx := context.Background()
	for {
		msg, err := tn.Recv(ctx)
		if err != nil {
			return
		}
		if err := tn.Send(ctx, msg); err != nil {
			return
		}
	}
}

// TestTunnels7x7: 7 clients × 7 tunnels to services on another daemon,
// 7 ordered echoes each.
func TestTunnels7x7(t *testing.T) {
	leakcheck.Check(t)
	ds := startNet(t, 2)
	for range 3 {
		register(t, ds[1], "echo", echoTunnels{}, nil)
	}
	waitMembers(t, ds[0], "echo", 3)
	var wg sync.WaitGroup
	for c := range 7 {
		conn := connect(t, ds[0])
		for tn := range 7 {
			wg.Go(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				tun, err := conn.Tunnel(ctx, "echo")
				if err != nil {
					t.Error(err)
					return
				}
				defer tun.Close()
				for i := range 7 {
					msg := fmt.Sprintf("client %d tunnel %d message %d", c, tn, i)
					if err := tun.Send(ctx, []byte(msg)); err != nil {
						t.Error(err)
						return
					}
					got, err := tun.Recv(ctx)
					if err != nil || string(got) != msg {
						t.Errorf("echo %q: got %q, %v", msg, got, err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	waitFor(t, 5*time.Second, "tunnels closed on both daemons", func() bool {
		return ds[0].Cluster().TunnelCount() == 0 && ds[1].Cluster().TunnelCount() == 0
	})
}
