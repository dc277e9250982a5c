// Command echo is the smallest Iris service and client.
//
// Run a service that answers every request to cluster "echo" with the
// request itself, until interrupted:
//
//	go run ./examples/echo -serve
//
// and, on the same host (each app talks to its local irisd), a client that
// sends n requests and prints the replies:
//
//	go run ./examples/echo -n 5
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"time"

	"github.com/iris-mesh/iris/sdk"
)

const cluster = "echo"

func main() {
	serve := flag.Bool("serve", false, "register in cluster \"echo\" and echo requests until interrupted")
	addr := flag.String("addr", sdk.DefaultAddr, "address of the local irisd")
	n := flag.Int("n", 3, "number of requests to send (client mode)")
	timeout := flag.Duration("timeout", time.Second, "timeout of each request (client mode)")
	flag.Parse()
	log.SetFlags(0)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	cfg := sdk.DefaultConfig()
	cfg.Addr = *addr

	var err error
	if *serve {
		err = runService(ctx, cfg)
	} else {
		err = runClient(ctx, cfg, *n, *timeout)
	}
	if err != nil {
		log.Fatal(err)
	}
}

// runService serves cluster "echo" until ctx ends or the daemon goes away.
func runService(ctx context.Context, cfg *sdk.Config) error {
	echo := sdk.HandlerFunc(func(ctx context.Context, req []byte) ([]byte, error) {
		return req, nil
	})
	svc, err := sdk.Register(ctx, cfg, cluster, echo, nil)
	if err != nil {
		return err
	}
	log.Printf("serving cluster %q via %s; interrupt to stop", cluster, cfg.Addr)
	select {
	case <-ctx.Done():
	case <-svc.Done():
		log.Printf("connection lost: %v", svc.Err())
	}
	return svc.Close() // leaves the cluster, lets running handlers finish
}

// runClient sends n requests to cluster "echo" and prints the replies.
func runClient(ctx context.Context, cfg *sdk.Config, n int, timeout time.Duration) error {
	conn, err := sdk.Connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	for i := range n {
		reqCtx, cancel := context.WithTimeout(ctx, timeout)
		reply, err := conn.Request(reqCtx, cluster, fmt.Appendf(nil, "hello %d", i))
		cancel()
		var fault *sdk.RemoteError
		switch {
		case errors.Is(err, sdk.ErrTimeout):
			fmt.Printf("request %d: timed out (is an echo service running?)\n", i)
		case errors.As(err, &fault):
			fmt.Printf("request %d: fault: %s\n", i, fault.Fault)
		case err != nil:
			return err
		default:
			fmt.Printf("request %d: %s\n", i, reply)
		}
	}
	return nil
}
