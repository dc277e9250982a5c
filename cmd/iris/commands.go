package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/iris-mesh/iris/sdk"
)

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1 // the operation failed: timeout, fault, daemon unreachable
	exitUsage = 2
)

const usage = `usage: iris [-addr HOST:PORT] [-timeout D] COMMAND [ARGS]

commands:
  request CLUSTER [MESSAGE]    send a request to one member, print the reply
  serve CLUSTER [-exec CMD]    be a member: echo (or run CMD per request, the
                               request on its stdin, its stdout the reply);
                               echo tunnels; print broadcasts
  broadcast CLUSTER [MESSAGE]  send to every member of CLUSTER
  publish TOPIC [MESSAGE]      send to every subscriber of TOPIC
  subscribe TOPIC [-n N]       print events, one per line (stop after N)
  tunnel CLUSTER               stdin to a member of CLUSTER, its answers to stdout
  status [-status HOST:PORT]   print the daemon's status (default 127.0.0.1:55580)
  survey CLUSTER [MESSAGE]     ask every member, print answers as they arrive and
                               who did not answer (-timeout D, -quorum K, -json)
  push CLUSTER [MESSAGE]       hand MESSAGE to one member (-n N times; without
                               MESSAGE each stdin line is one push; -nowait)
  pull CLUSTER [-n N]          be a member that prints every pushed message

A MESSAGE left out is read from stdin.
`

// env is what a command runs with.
type env struct {
	ctx     context.Context
	cfg     *sdk.Config
	timeout time.Duration
	stdin   io.Reader
	stdout  io.Writer
	stderr  io.Writer
}

// run parses args and runs one command; it returns the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("iris", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	defAddr := getenv("IRIS_ADDR")
	if defAddr == "" {
		defAddr = sdk.DefaultAddr
	}
	addr := fs.String("addr", defAddr, "the local irisd's relay `HOST:PORT`")
	timeout := fs.Duration("timeout", 10*time.Second, "timeout of a request or tunnel build")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return exitUsage
	}
	cfg := sdk.DefaultConfig()
	cfg.Addr = *addr
	e := &env{ctx: ctx, cfg: cfg, timeout: *timeout, stdin: stdin, stdout: stdout, stderr: stderr}
	cmds := map[string]func(*env, []string) error{
		"request": cmdRequest, "serve": cmdServe, "broadcast": cmdBroadcast,
		"publish": cmdPublish, "subscribe": cmdSubscribe, "tunnel": cmdTunnel, "status": cmdStatus,
		"survey": cmdSurvey, "push": cmdPush, "pull": cmdPull, // v11.go
	}
	cmd, ok := cmds[fs.Arg(0)]
	if !ok {
		fmt.Fprintf(stderr, "iris: unknown command %q\n\n%s", fs.Arg(0), usage)
		return exitUsage
	}
	if err := cmd(e, fs.Args()[1:]); err != nil {
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "iris %s: %v\n", fs.Arg(0), err)
			return exitUsage
		}
		fmt.Fprintf(stderr, "iris %s: %v\n", fs.Arg(0), err)
		return exitFail
	}
	return exitOK
}

type usageError string

func (u usageError) Error() string { return string(u) }

// target parses "NAME [MESSAGE]", reading the message from stdin if absent.
func (e *env) target(args []string, what string, wantMsg bool) (string, []byte, error) {
	if len(args) == 0 || args[0] == "" {
		return "", nil, usageError("missing " + what)
	}
	if !wantMsg {
		if len(args) > 1 {
			return "", nil, usageError("unexpected arguments: " + strings.Join(args[1:], " "))
		}
		return args[0], nil, nil
	}
	if len(args) > 1 {
		return args[0], []byte(strings.Join(args[1:], " ")), nil
	}
	msg, err := io.ReadAll(e.stdin)
	return args[0], msg, err
}

func (e *env) connect() (*sdk.Conn, error) {
	ctx, cancel := context.WithTimeout(e.ctx, e.timeout)
	defer cancel()
	return sdk.Connect(ctx, e.cfg)
}

func cmdRequest(e *env, args []string) error {
	cluster, msg, err := e.target(args, "CLUSTER", true)
	if err != nil {
		return err
	}
	c, err := e.connect()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(e.ctx, e.timeout)
	defer cancel()
	rep, err := c.Request(ctx, cluster, msg)
	if err != nil {
		return err
	}
	_, err = e.stdout.Write(rep)
	return err
}

func cmdBroadcast(e *env, args []string) error { return e.send(args, "CLUSTER", (*sdk.Conn).Broadcast) }
func cmdPublish(e *env, args []string) error   { return e.send(args, "TOPIC", (*sdk.Conn).Publish) }

// send runs a fire-and-forget command; the graceful close waits until the
// message is written.
func (e *env) send(args []string, what string, f func(*sdk.Conn, context.Context, string, []byte) error) error {
	name, msg, err := e.target(args, what, true)
	if err != nil {
		return err
	}
	c, err := e.connect()
	if err != nil {
		return err
	}
	if err := f(c, e.ctx, name, msg); err != nil {
		c.Close()
		return err
	}
	return c.Close()
}

func cmdSubscribe(e *env, args []string) error {
	fs := flag.NewFlagSet("subscribe", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	n := fs.Int("n", 0, "stop after `N` events (0: run until interrupted)")
	topic, rest := splitName(args)
	if err := fs.Parse(rest); err != nil {
		return usageError(err.Error())
	}
	if topic == "" {
		return usageError("missing TOPIC")
	}
	c, err := e.connect()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	var mu sync.Mutex
	seen := 0
	h := sdk.TopicHandlerFunc(func(ev []byte) {
		mu.Lock()
		defer mu.Unlock()
		if *n > 0 && seen >= *n {
			return
		}
		seen++
		e.stdout.Write(append(ev, '\n'))
		if *n > 0 && seen == *n {
			cancel()
		}
	})
	one := sdk.TopicLimits{EventThreads: 1} // print in arrival order
	if err := c.Subscribe(ctx, topic, h, &one); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-c.Done():
		return c.Err()
	}
	return nil
}

// splitName takes the leading NAME off args, leaving the flags after it.
func splitName(args []string) (string, []string) {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return "", args
	}
	return args[0], args[1:]
}

func cmdTunnel(e *env, args []string) error {
	cluster, _, err := e.target(args, "CLUSTER", false)
	if err != nil {
		return err
	}
	c, err := e.connect()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(e.ctx, e.timeout)
	tun, err := c.Tunnel(ctx, cluster)
	cancel()
	if err != nil {
		return err
	}
	nc := tun.NetConn()
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(e.stdout, nc)
		done <- err
	}()
	if _, err := io.Copy(nc, e.stdin); err != nil {
		nc.Close()
		<-done
		return err
	}
	// stdin is done: give the far end a moment to answer what it got, as
	// long as it keeps sending, then close.
	for {
		nc.SetReadDeadline(time.Now().Add(time.Second))
		select {
		case err := <-done:
			nc.Close()
			if err == nil || errors.Is(err, io.EOF) {
				return nil
			}
			var ne interface{ Timeout() bool }
			if errors.As(err, &ne) && ne.Timeout() {
				return nil
			}
			return err
		case <-e.ctx.Done():
			nc.Close()
			<-done
			return nil
		}
	}
}

func cmdStatus(e *env, args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	addr := fs.String("status", "127.0.0.1:55580", "the daemon's status server `HOST:PORT`")
	if err := fs.Parse(args); err != nil {
		return usageError(err.Error())
	}
	ctx, cancel := context.WithTimeout(e.ctx, e.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+*addr+"/status", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(body))
	}
	var out bytes.Buffer
	if err := json.Indent(&out, body, "", "  "); err != nil {
		return fmt.Errorf("status is not JSON: %w", err)
	}
	out.WriteByte('\n')
	_, err = e.stdout.Write(bytes.TrimLeft(out.Bytes(), "\n"))
	return err
}

// lineWriter serializes whole lines to w.
type lineWriter struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func (l *lineWriter) line(b []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.w.Write(b)
	l.w.WriteByte('\n')
	l.w.Flush()
}
