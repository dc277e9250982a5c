package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"os/exec"
	"strings"

	"github.com/iris-mesh/iris/sdk"
)

// server is the member `iris serve` registers.
type server struct {
	exec string // shell command per request; "" echoes
	out  *lineWriter
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
func (s *server) HandleBroadcast(msg []byte) { s.out.line(msg) }

// HandleTunnel echoes every message of the tunnel.
func (s *server) HandleTunnel(t *sdk.Tunnel) {
	ctx := context.Background()
	for {
		msg, err := t.Recv(ctx)
		if err != nil || t.Send(ctx, msg) != nil {
			return
		}
	}
}

func cmdServe(e *env, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	command := fs.String("exec", "", "shell `COMMAND` run per request: the request on its stdin, its stdout the reply")
	threads := fs.Int("threads", 0, "requests handled at once (0: the SDK's default)")
	cluster, rest := splitName(args)
	if err := fs.Parse(rest); err != nil {
		return usageError(err.Error())
	}
	if cluster == "" || fs.NArg() > 0 {
		return usageError("want: serve CLUSTER [-exec CMD] [-threads N]")
	}
	s := &server{exec: *command, out: &lineWriter{w: bufio.NewWriter(e.stdout)}}
	lim := sdk.DefaultServiceLimits()
	lim.RequestThreads = *threads
	svc, err := sdk.Register(e.ctx, e.cfg, cluster, s, &lim)
	if err != nil {
		return err
	}
	select {
	case <-e.ctx.Done():
		return svc.Close()
	case <-svc.Done():
		return svc.Err()
	}
}
