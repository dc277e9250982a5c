package sdk_test

import (
	"context"
	"fmt"

	"github.com/iris-mesh/iris/sdk"
)

// printTopics prints the topic each event was published to.
type printTopics chan string

func (p printTopics) HandleEvent(ev []byte) {}

func (p printTopics) HandleSubjectEvent(topic string, ev []byte) { p <- topic + ": " + string(ev) }

// A subject with wildcards: "*" matches one token, ">" one or more.
// SubscribeAcked returns once every daemon knows the subscription, so the
// events published right after it are delivered.
func ExampleConn_SubscribeAcked() {
	addr, stop := exampleDaemon()
	defer stop()
	cfg := sdk.DefaultConfig()
	cfg.Addr = addr
	cfg.OnGap = func(g sdk.Gap) { fmt.Println("lost", g.Lost, "events") }

	ctx := context.Background()
	conn, _ := sdk.Connect(ctx, cfg)
	defer conn.Close()
	got := make(printTopics, 2)
	res, err := conn.SubscribeAcked(ctx, "news.>", got, &sdk.TopicLimits{EventThreads: 1})
	if err != nil {
		panic(err)
	}
	fmt.Println("confirmed:", res.Confirmed, "unconfirmed:", len(res.Unconfirmed))
	conn.Publish(ctx, "news.sport", []byte("goal"))
	conn.Publish(ctx, "weather", []byte("rain")) // not matched
	conn.Publish(ctx, "news.sport.local", []byte("match won"))
	fmt.Println(<-got)
	fmt.Println(<-got)
	// Output:
	// confirmed: true unconfirmed: 0
	// news.sport: goal
	// news.sport.local: match won
}
