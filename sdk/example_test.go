package sdk_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/iris-mesh/iris/sdk"
)

// A service registers in a cluster; a client sends it a request by the
// cluster's name, wherever its members run.
func Example() {
	addr, stop := exampleDaemon()
	defer stop()
	cfg := sdk.DefaultConfig()
	cfg.Addr = addr // by default, the local irisd at 127.0.0.1:55555

	ctx := context.Background()
	upper := sdk.HandlerFunc(func(ctx context.Context, req []byte) ([]byte, error) {
		return []byte(strings.ToUpper(string(req))), nil
	})
	svc, err := sdk.Register(ctx, cfg, "upper", upper, nil)
	if err != nil {
		panic(err)
	}
	defer svc.Close()

	conn, err := sdk.Connect(ctx, cfg)
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	reply, err := conn.Request(ctx, "upper", []byte("hello, iris"))
	if err != nil {
		panic(err)
	}
	fmt.Println(string(reply))
	// Output: HELLO, IRIS
}

// A handler's error reaches the requester as a *RemoteError.
func ExampleRemoteError() {
	addr, stop := exampleDaemon()
	defer stop()
	cfg := sdk.DefaultConfig()
	cfg.Addr = addr

	ctx := context.Background()
	failing := sdk.HandlerFunc(func(ctx context.Context, req []byte) ([]byte, error) {
		return nil, fmt.Errorf("no such user: %s", req)
	})
	svc, _ := sdk.Register(ctx, cfg, "users", failing, nil)
	defer svc.Close()
	conn, _ := sdk.Connect(ctx, cfg)
	defer conn.Close()

	_, err := conn.Request(ctx, "users", []byte("alice"))
	if re, ok := err.(*sdk.RemoteError); ok {
		fmt.Println("fault:", re.Fault)
	}
	// Output: fault: no such user: alice
}

// Events published to a topic reach every subscriber, each publisher's in
// order.
func ExampleConn_Subscribe() {
	addr, stop := exampleDaemon()
	defer stop()
	cfg := sdk.DefaultConfig()
	cfg.Addr = addr

	ctx := context.Background()
	conn, _ := sdk.Connect(ctx, cfg)
	defer conn.Close()
	got := make(chan string, 2)
	one := sdk.TopicLimits{EventThreads: 1} // handle events in order
	if err := conn.Subscribe(ctx, "news", sdk.TopicHandlerFunc(func(ev []byte) { got <- string(ev) }), &one); err != nil {
		panic(err)
	}
	conn.Publish(ctx, "news", []byte("first"))
	conn.Publish(ctx, "news", []byte("second"))
	fmt.Println(<-got)
	fmt.Println(<-got)
	// Output:
	// first
	// second
}

// echo is a service that answers requests and echoes its tunnels.
type echo struct{}

func (echo) HandleRequest(ctx context.Context, req []byte) ([]byte, error) { return req, nil }

func (echo) HandleTunnel(t *sdk.Tunnel) {
	ctx := context.Background()
	for {
		msg, err := t.Recv(ctx)
		if err != nil || t.Send(ctx, msg) != nil {
			return
		}
	}
}

// A tunnel is an ordered, flow-controlled stream of messages to one member
// of a cluster.
func ExampleConn_Tunnel() {
	addr, stop := exampleDaemon()
	defer stop()
	cfg := sdk.DefaultConfig()
	cfg.Addr = addr

	ctx := context.Background()
	svc, _ := sdk.Register(ctx, cfg, "echo", echo{}, nil)
	defer svc.Close()
	conn, _ := sdk.Connect(ctx, cfg)
	defer conn.Close()

	tun, err := conn.Tunnel(ctx, "echo")
	if err != nil {
		panic(err)
	}
	defer tun.Close()
	for _, msg := range []string{"one", "two", "three"} {
		tun.Send(ctx, []byte(msg))
	}
	for range 3 {
		msg, _ := tun.Recv(ctx)
		fmt.Println(string(msg))
	}
	// Output:
	// one
	// two
	// three
}
