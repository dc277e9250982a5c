package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os/exec"
	"strings"

	"github.com/iris-mesh/iris/sdk"
)

var serveCmd = &command{
	name: "serve", args: "CLUSTER [-exec COMMAND]",
	summary: "be a member of CLUSTER: answer requests, print broadcasts, echo tunnels",
	help: `
Registers as a member of CLUSTER until interrupted. Each request is echoed
back or, with -exec, given to COMMAND (run by sh -c) on its stdin: the
command's stdout is the reply, and a failure (non-zero exit) is sent back as
a fault carrying its stderr. Broadcasts to CLUSTER are printed, one per
line. Tunnels built to CLUSTER are echoed, message by message.`,
	flags: func(fs *flag.FlagSet, e *env) func([]string) error {
		command := fs.String("exec", "", "shell `COMMAND` run per request: the request on its stdin, its stdout the reply")
		threads := fs.Int("threads", 0, "requests handled at once (0: the SDK's default)")
		return func(args []string) error {
			cluster, rest, err := name(args, "CLUSTER")
			if err != nil {
				return err
			}
			if err := noMore(rest); err != nil {
				return err
			}
			if *threads < 0 {
				return usageError("-threads: want a positive number, or 0 for the default")
			}
			s := &server{exec: *command, json: e.json, cluster: cluster, out: &lineWriter{w: bufio.NewWriter(e.stdout)}}
			lim := sdk.DefaultServiceLimits()
			lim.RequestThreads = *threads
			ctx, cancel := context.WithTimeout(e.ctx, e.timeout)
			svc, err := sdk.Register(ctx, e.cfg, cluster, s, &lim)
			cancel()
			if err != nil {
				return e.connectError(err)
			}
			select {
			case <-e.ctx.Done():
				return svc.Close()
			case <-svc.Done():
				return fmt.Errorf("lost the daemon: %w", svc.Err())
			}
		}
	},
}

// server is the member `iris serve` registers.
type server struct {
	exec    string // shell command per request; "" echoes
	json    bool
	cluster string
	out     *lineWriter
}

// HandleRequest echoes, or runs the command with the request on stdin:
// its stdout is the reply; a failure is a fault with its stderr.
func (s *server) HandleRequest(ctx context.Context, req []byte) ([]byte, error) {
	if s.exec == "" {
		return req, nil
	}
	cmd := exec.CommandContext(ctx, "sh", "-c", s.exec)
	cmd.Stdin = bytes.NewReader(req)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return nil, errors.New(msg)
		}
		return nil, err
	}
	return stdout.Bytes(), nil
}

// HandleBroadcast prints the broadcast as a line.
func (s *server) HandleBroadcast(msg []byte) {
	if s.json {
		s.out.json(payloadJSON("broadcast", msg, map[string]any{"cluster": s.cluster}))
		return
	}
	s.out.line(msg)
}

// HandleTunnel echoes every message of the tunnel, the empty message that
// ends a direction (see iris tunnel and forward) included.
func (s *server) HandleTunnel(t *sdk.Tunnel) {
	ctx := context.Background()
	for {
		msg, err := t.Recv(ctx)
		if err != nil || t.Send(ctx, msg) != nil {
			return
		}
	}
}
