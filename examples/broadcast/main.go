// Command broadcast shows a cluster-wide broadcast: with -listen it joins
// cluster "workers" and prints every broadcast it gets; otherwise it
// broadcasts its arguments to every member of "workers", wherever they run
// (itself included, had it been one).
//
//	go run ./examples/broadcast -listen &      (as many as you like)
//	go run ./examples/broadcast reload config
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"

	"github.com/iris-mesh/iris/sdk"
)

// worker prints the broadcasts of its cluster.
type worker struct{ name string }

func (w worker) HandleRequest(ctx context.Context, req []byte) ([]byte, error) { return req, nil }

func (w worker) HandleBroadcast(msg []byte) { fmt.Printf("%s got: %s\n", w.name, msg) }

func main() {
	addr := flag.String("addr", sdk.DefaultAddr, "address of the local irisd")
	listen := flag.Bool("listen", false, "join cluster \"workers\" and print broadcasts until interrupted")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	cfg := sdk.DefaultConfig()
	cfg.Addr = *addr
	if err := run(ctx, cfg, *listen, strings.Join(flag.Args(), " ")); err != nil {
		fmt.Fprintln(os.Stderr, "broadcast:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg *sdk.Config, listen bool, msg string) error {
	if listen {
		host, _ := os.Hostname()
		svc, err := sdk.Register(ctx, cfg, "workers", worker{name: fmt.Sprintf("%s/%d", host, os.Getpid())}, nil)
		if err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return svc.Close()
		case <-svc.Done():
			return svc.Err()
		}
	}
	if msg == "" {
		return fmt.Errorf("nothing to broadcast: give it as arguments")
	}
	conn, err := sdk.Connect(ctx, cfg)
	if err != nil {
		return err
	}
	if err := conn.Broadcast(ctx, "workers", []byte(msg)); err != nil {
		conn.Close()
		return err
	}
	return conn.Close() // a graceful close: the broadcast has left
}
