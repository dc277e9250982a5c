// Command iris makes every Iris pattern usable from a shell, through the
// local irisd:
//
//	iris request CLUSTER [MESSAGE]      send a request, print the reply
//	iris serve CLUSTER [-exec CMD]      be a member: echo requests (or run CMD
//	                                    with the request on stdin, its output the
//	                                    reply), echo tunnels, print broadcasts
//	iris broadcast CLUSTER [MESSAGE]    to every member of CLUSTER
//	iris publish TOPIC [MESSAGE]        to every subscriber of TOPIC
//	iris subscribe TOPIC [-n N]         print events, one per line
//	iris tunnel CLUSTER                 stdin → a member of CLUSTER → stdout
//	iris forward LOCAL_ADDR CLUSTER     carry TCP connections over tunnels...
//	iris expose CLUSTER TARGET_ADDR     ...to a TCP service near a member
//	iris survey CLUSTER [MESSAGE]       ask every member; answers and who did not answer
//	iris push CLUSTER [MESSAGE]         hand MESSAGE (or each stdin line) to one member
//	iris pull CLUSTER [-n N]            be a member printing every pushed message
//	iris bench request|pubsub           throughput and latency
//	iris status                         the daemon's status
//	iris version                        the build
//
// `iris help` lists the commands and common flags, `iris help CMD` (or
// `iris CMD -h`) a command's usage. Flags go before or after the
// arguments. -addr names the daemon's relay (default 127.0.0.1:55555, or
// $IRIS_ADDR), -status its status server (default 127.0.0.1:55580, or
// $IRIS_STATUS). Exit codes: 0 ok, 1 failure, 2 usage, 3 timeout, 4 no
// members.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr))
}
