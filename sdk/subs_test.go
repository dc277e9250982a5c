package sdk

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/iris-mesh/iris/api"
	"github.com/iris-mesh/iris/internal/leakcheck"
)

// subjectEvents records the topic and payload of every event.
type subjectEvents chan string

func (ch subjectEvents) HandleEvent(ev []byte) { ch <- "?:" + string(ev) }
func (ch subjectEvents) HandleSubjectEvent(topic string, ev []byte) {
	ch <- topic + ":" + string(ev)
}

func TestSubscribeAckedUnconfirmed(t *testing.T) {
	leakcheck.Check(t)
	c, p := connect(t, newRelay(t), nil)
	done := make(chan SubscribeResult, 1)
	go func() {
		res, err := c.SubscribeAcked(context.Background(), "news.>", subjectEvents(make(chan string, 1)), nil)
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	p.readRaw(append([]byte{0x06}, wireString("news.>")...))
	p.send(&api.Message{Op: api.OpSubscribed, Topic: "news.>", Daemons: []string{"b"}})
	res := <-done
	if !res.Confirmed || !slices.Equal(res.Unconfirmed, []string{"b"}) {
		t.Fatalf("SubscribeAcked = %+v, want confirmed but for daemon b", res)
	}
}

func TestSubscribeBadSubject(t *testing.T) {
	leakcheck.Check(t)
	c, _ := connect(t, newRelay(t), nil)
	for _, bad := range []string{"a..b", ".a", "a.", "a.>.b", "a*"} {
		err := c.Subscribe(context.Background(), bad, TopicHandlerFunc(func([]byte) {}), nil)
		if !errors.Is(err, ErrBadSubject) {
			t.Errorf("Subscribe(%q) = %v, want ErrBadSubject", bad, err)
		}
	}
}

// TestWildcardRouting: one event over the wire reaches every matching
// subscription, each handler with the topic published to.
func TestWildcardRouting(t *testing.T) {
	leakcheck.Check(t)
	c, p := connect(t, newRelay(t), nil)
	one := &TopicLimits{EventThreads: 1}
	exact, star, all := make(subjectEvents, 4), make(subjectEvents, 4), make(subjectEvents, 4)
	subscribe(t, c, p, "news.sport", exact, one)
	subscribe(t, c, p, "news.*", star, one)
	subscribe(t, c, p, "news.>", all, one)
	p.send(&api.Message{Op: api.OpPublish, Topic: "news.sport", Payload: []byte("goal")})
	p.send(&api.Message{Op: api.OpPublish, Topic: "news.sport.local", Payload: []byte("rain")})
	for _, c := range []struct {
		ch   subjectEvents
		want []string
	}{
		{exact, []string{"news.sport:goal"}},
		{star, []string{"news.sport:goal"}},
		{all, []string{"news.sport:goal", "news.sport.local:rain"}},
	} {
		for _, w := range c.want {
			if got := <-c.ch; got != w {
				t.Fatalf("got %q, want %q", got, w)
			}
		}
	}
	if err := c.Unsubscribe(context.Background(), "news.>"); err != nil {
		t.Fatal(err)
	}
	p.readOp(api.OpUnsubscribe)
	p.send(&api.Message{Op: api.OpPublish, Topic: "news.sport.local", Payload: []byte("late")})
	p.send(&api.Message{Op: api.OpPublish, Topic: "news.x", Payload: []byte("x")})
	if got := <-star; got != "news.x:x" {
		t.Fatalf("got %q", got)
	}
	if s := c.Stats(); s.EventsDropped != 1 {
		t.Fatalf("Stats %+v, want the event for news.> dropped", s)
	}
}

// TestGapReported: the daemon's GAP notices and the SDK's own drops reach
// OnGap and Stats, their counts exact.
func TestGapReported(t *testing.T) {
	leakcheck.Check(t)
	r := newRelay(t)
	cfg := r.config()
	var mu sync.Mutex
	gaps := map[string]uint64{}
	cfg.OnGap = func(g Gap) {
		mu.Lock()
		gaps[g.Topic] += g.Lost
		mu.Unlock()
	}
	c, p := connect(t, r, cfg)
	release, started := make(chan struct{}), make(chan struct{}, 1)
	got := make(chan string, 16)
	h := TopicHandlerFunc(func(ev []byte) {
		started <- struct{}{}
		<-release
		got <- string(ev)
	})
	// Room for one event waiting behind the one being handled.
	subscribe(t, c, p, "t", h, &TopicLimits{EventThreads: 1, EventMemory: deliveryOverhead + 1})
	p.send(&api.Message{Op: api.OpGap, Size: 300}) // the daemon lost 300
	p.send(&api.Message{Op: api.OpPublish, Topic: "t", Payload: []byte("1")})
	<-started
	for _, ev := range []string{"2", "3", "4", "5"} {
		p.send(&api.Message{Op: api.OpPublish, Topic: "t", Payload: []byte(ev)})
	}
	res := request(context.Background(), c, "svc", nil) // sync point: the reader is past them
	p.reply(p.readOp(api.OpRequest).ID, nil)
	if r := <-res; r.err != nil {
		t.Fatal(r.err)
	}
	close(release)
	<-started
	for range 2 { // "1" was being handled, "2" waited; "3".."5" were dropped
		<-got
	}
	mu.Lock()
	defer mu.Unlock()
	if gaps[""] != 300 || gaps["t"] != 3 {
		t.Fatalf("OnGap totals %v, want 300 from the daemon and 3 for t", gaps)
	}
	if s := c.Stats(); s.EventsLost != 300 || s.GapNotices != 1 || s.EventsDropped != 3 {
		t.Fatalf("Stats %+v", s)
	}
}

// TestEarlyV11Daemon: a v1.1 daemon without subjects (no "subjects" in its
// INIT answer) never answers SUBSCRIBE: Subscribe returns once it is sent,
// and topics are exact names.
func TestEarlyV11Daemon(t *testing.T) {
	leakcheck.Check(t)
	r := newRelay(t)
	done := make(chan *Conn, 1)
	go func() {
		c, err := Connect(context.Background(), r.config())
		if err != nil {
			t.Error(err)
		}
		done <- c
	}()
	p := r.accept()
	p.readOp(api.OpInit)
	p.dec.EnableV11()
	info := api.EncodeInitInfo(&api.InitInfo{Daemon: "early", MaxMessage: 16 << 20, PushWindow: 64})
	p.send(&api.Message{Op: api.OpInit, Magic: api.RelayMagic, Version: api.ProtocolV11, Payload: info})
	c := <-done
	res, err := c.SubscribeAcked(context.Background(), "a..b", TopicHandlerFunc(func([]byte) {}), nil)
	if err != nil || res.Confirmed {
		t.Fatalf("SubscribeAcked = %+v, %v; want sent, unconfirmed, and a..b a plain name", res, err)
	}
	if m := p.readOp(api.OpSubscribe); m.Topic != "a..b" {
		t.Fatalf("SUBSCRIBE %q", m.Topic)
	}
	go p.closeAck()
	c.Close()
}
