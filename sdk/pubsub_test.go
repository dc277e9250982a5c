package sdk

import (
	"context"
	"errors"
	"testing"

	"github.com/iris-mesh/iris/api"
	"github.com/iris-mesh/iris/internal/leakcheck"
)

func TestBroadcastAndPublishWire(t *testing.T) {
	leakcheck.Check(t)
	c, p := connect(t, newRelay(t), nil)
	ctx := context.Background()

	msg := []byte("to all")
	if err := c.Broadcast(ctx, "svc", msg); err != nil {
		t.Fatal(err)
	}
	copy(msg, "XXXXXX") // the caller may reuse its buffer once Broadcast returns
	p.readRaw(append(append([]byte{0x03}, wireString("svc")...), wireString("to all")...))

	if err := c.Publish(ctx, "news", []byte("event")); err != nil {
		t.Fatal(err)
	}
	p.readRaw(append(append([]byte{0x08}, wireString("news")...), wireString("event")...))
}

func TestSubscribeDeliverUnsubscribe(t *testing.T) {
	leakcheck.Check(t)
	c, p := connect(t, newRelay(t), nil)
	ctx := context.Background()
	events := make(chan string, 1)
	h := TopicHandlerFunc(func(ev []byte) { events <- string(ev) })

	subscribed := make(chan error, 1)
	go func() { subscribed <- c.Subscribe(ctx, "news", h, nil) }()
	p.readRaw(append([]byte{0x06}, wireString("news")...))
	p.send(&api.Message{Op: api.OpSubscribed, Topic: "news"})
	if err := <-subscribed; err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe(ctx, "news", h, nil); !errors.Is(err, ErrSubscribed) {
		t.Fatalf("second Subscribe = %v, want ErrSubscribed", err)
	}

	p.send(&api.Message{Op: api.OpPublish, Topic: "news", Payload: []byte("extra")})
	if got := <-events; got != "extra" {
		t.Fatalf("event %q", got)
	}

	if err := c.Unsubscribe(ctx, "news"); err != nil {
		t.Fatal(err)
	}
	p.readRaw(append([]byte{0x07}, wireString("news")...))
	if err := c.Unsubscribe(ctx, "news"); !errors.Is(err, ErrNotSubscribed) {
		t.Fatalf("second Unsubscribe = %v, want ErrNotSubscribed", err)
	}

	// An event already in flight when the subscription ended is dropped.
	p.send(&api.Message{Op: api.OpPublish, Topic: "news", Payload: []byte("stale")})
	res := request(ctx, c, "svc", nil) // sync point: the reader is past the event
	p.reply(p.readOp(api.OpRequest).ID, nil)
	if r := <-res; r.err != nil {
		t.Fatal(r.err)
	}
	if s := c.Stats(); s.EventsDropped != 1 {
		t.Fatalf("Stats %+v, want 1 event dropped", s)
	}
}

func TestSubscribeEventOrderAndPanic(t *testing.T) {
	leakcheck.Check(t)
	c, p := connect(t, newRelay(t), nil)
	events := make(chan string, 10)
	h := TopicHandlerFunc(func(ev []byte) {
		if string(ev) == "panic" {
			panic("handler bug")
		}
		events <- string(ev)
	})
	subscribe(t, c, p, "t", h, &TopicLimits{EventThreads: 1})
	for _, ev := range []string{"1", "panic", "2", "3"} {
		p.send(&api.Message{Op: api.OpPublish, Topic: "t", Payload: []byte(ev)})
	}
	for _, want := range []string{"1", "2", "3"} {
		if got := <-events; got != want {
			t.Fatalf("event %q, want %q (one thread keeps the order)", got, want)
		}
	}
	if s := c.Stats(); s.HandlerPanics != 1 {
		t.Fatalf("Stats %+v, want 1 panic", s)
	}
}

func TestSubscribeArguments(t *testing.T) {
	leakcheck.Check(t)
	c, _ := connect(t, newRelay(t), nil)
	ctx := context.Background()
	h := TopicHandlerFunc(func([]byte) {})
	if err := c.Subscribe(ctx, "t", nil, nil); err == nil {
		t.Error("Subscribe with a nil handler succeeded")
	}
	if err := c.Subscribe(ctx, "", h, nil); err == nil {
		t.Error("Subscribe to an empty topic succeeded")
	}
	if err := c.Subscribe(ctx, "t", h, &TopicLimits{EventMemory: -1}); err == nil {
		t.Error("Subscribe with negative limits succeeded")
	}
}

// subscribe subscribes c to topic, answering as a v1.1 daemon does once
// every daemon confirmed it.
func subscribe(t *testing.T, c *Conn, p *peer, topic string, h TopicHandler, lim *TopicLimits) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- c.Subscribe(context.Background(), topic, h, lim) }()
	if m := p.readOp(api.OpSubscribe); m.Topic != topic {
		t.Fatalf("SUBSCRIBE %q, want %q", m.Topic, topic)
	}
	p.send(&api.Message{Op: api.OpSubscribed, Topic: topic})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
