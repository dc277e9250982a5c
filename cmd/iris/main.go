// Command iris makes every Iris pattern usable from a shell, through the
// local irisd:
//
//	iris request CLUSTER [MESSAGE]    send a request, print the reply
//	iris serve CLUSTER [-exec CMD]    be a member: echo requests (or run CMD
//	                                  with the request on stdin, its output the
//	                                  reply), echo tunnels, print broadcasts
//	iris broadcast CLUSTER [MESSAGE]  to every member of CLUSTER
//	iris publish TOPIC [MESSAGE]      to every subscriber of TOPIC
//	iris subscribe TOPIC [-n N]       print events, one per line
//	iris tunnel CLUSTER               stdin → a member of CLUSTER → stdout
//	iris status [-status ADDR]        the daemon's status document
//	iris survey CLUSTER [MESSAGE]     ask every member; answers and who did not answer
//	iris push CLUSTER [MESSAGE]       hand MESSAGE (or each stdin line) to one member
//	iris pull CLUSTER [-n N]          be a member printing every pushed message
//
// A MESSAGE left out is read from stdin. -addr names the daemon's relay
// (default 127.0.0.1:55555, or $IRIS_ADDR).
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
