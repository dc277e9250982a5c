package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/iris-mesh/iris/sdk"
)

// Exit codes, as documented in the usage text.
const (
	exitOK        = 0
	exitFail      = 1 // the operation failed: a fault, the daemon unreachable, bad input
	exitUsage     = 2 // bad command line
	exitTimeout   = 3 // no answer in time
	exitNoMembers = 4 // the cluster has no members
)

// Defaults of the common flags.
const defaultTimeout = 10 * time.Second

// defaultStatus is the default of -status: irisd -dev's status server. A
// variable for tests, which must not depend on what this host runs there.
var defaultStatus = "127.0.0.1:55580"

// errNoMembers is the SDK's sentinel for a request or tunnel to a cluster
// without members, mapped to exitNoMembers. The v1.0 protocol reports that
// case as a timeout.
var errNoMembers error = sdk.ErrNoMembers

// command is one entry of the command table: adding a command is adding
// one.
type command struct {
	name    string
	args    string // synopsis of the positional arguments
	summary string // one line for the command list
	help    string // what `iris help NAME` says after the synopsis
	// flags declares the command's own flags on fs (the common ones are
	// added by the caller) and returns the function that runs it with the
	// positional arguments, after the flags are parsed.
	flags func(fs *flag.FlagSet, e *env) func(args []string) error
	// rawArgs hands the command its arguments unparsed (after the common
	// flags given before its name); iris still answers -h itself. See
	// legacy.
	rawArgs bool
}

// commands is the command table, in the order `iris help` lists it.
var commands = []*command{
	requestCmd, serveCmd, broadcastCmd, publishCmd, subscribeCmd, tunnelCmd,
	surveyCmd, pushCmd, pullCmd, forwardCmd, exposeCmd, benchCmd, statusCmd, versionCmd,
}

func lookup(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// env is what a command runs with: the common flags and the process's
// streams.
type env struct {
	ctx    context.Context
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer

	// cfg is the SDK configuration for -addr, set once the flags are
	// parsed.
	cfg *sdk.Config

	addr   string // -addr, $IRIS_ADDR
	status string // -status, $IRIS_STATUS
	// statusSet is set when -status or $IRIS_STATUS was given.
	statusSet bool
	timeout   time.Duration // -timeout
	json      bool          // -json
}

// sdkConfig returns a new SDK configuration for the daemon at -addr.
func (e *env) sdkConfig() *sdk.Config {
	c := sdk.DefaultConfig()
	c.Addr = e.addr
	if e.timeout > 0 && e.timeout < c.DialTimeout {
		c.DialTimeout = e.timeout
	}
	return c
}

// commonFlags declares the flags every command accepts, before or after
// its name; their defaults are e's current values.
func commonFlags(fs *flag.FlagSet, e *env) {
	fs.StringVar(&e.addr, "addr", e.addr, "the local irisd's relay `HOST:PORT` (or $IRIS_ADDR)")
	fs.StringVar(&e.status, "status", e.status, "the irisd status server's `HOST:PORT`, for iris status (or $IRIS_STATUS)")
	fs.DurationVar(&e.timeout, "timeout", e.timeout, "how long to wait for a reply, a tunnel or the daemon")
	fs.BoolVar(&e.json, "json", e.json, "print JSON, one object per line, for scripts")
}

const usageHead = `iris drives every Iris pattern from a shell, through the local irisd.

usage: iris [flags] COMMAND [ARGS] [flags]
       iris help [COMMAND]

commands:
`

const usageTail = `
Common flags, before or after the command's arguments:
  -addr HOST:PORT     the local irisd's relay (default $IRIS_ADDR, else 127.0.0.1:55555)
  -status HOST:PORT   irisd's status server, for iris status (default $IRIS_STATUS, else 127.0.0.1:55580)
  -timeout D          how long to wait for a reply, a tunnel or the daemon (default 10s)
  -json               print JSON lines, for scripts
  -h                  print a command's usage (iris CMD -h) and do nothing else

A MESSAGE is the rest of the arguments joined by spaces; "-", or no MESSAGE
when stdin is not a terminal, reads it from stdin; -file FILE reads a file.
Put -- before a MESSAGE that starts with "-".

Exit codes: 0 ok, 1 failure, 2 usage error, 3 timeout, 4 no members in the cluster.
`

// mainUsage writes the command list.
func mainUsage(w io.Writer) {
	fmt.Fprint(w, usageHead)
	for _, c := range commands {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, usageTail)
}

// commandUsage writes a command's synopsis, description and own flags.
func commandUsage(w io.Writer, c *command) {
	fmt.Fprintf(w, "usage: iris %s %s\n\n%s\n", c.name, c.args, strings.TrimSpace(c.help))
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	c.flags(fs, &env{})
	hasFlags := false
	fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	if hasFlags {
		fmt.Fprint(w, "\nflags:\n")
		fs.SetOutput(w)
		fs.PrintDefaults()
	}
	fmt.Fprint(w, "\nCommon flags: -addr, -status, -timeout, -json (see iris help).\n")
}

// run runs iris with args (without the program name) and returns the exit
// code.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{
		ctx: ctx, stdin: stdin, stdout: stdout, stderr: stderr,
		addr: getenv("IRIS_ADDR"), status: getenv("IRIS_STATUS"), timeout: defaultTimeout,
	}
	if e.addr == "" {
		e.addr = sdk.DefaultAddr
	}
	if e.status == "" {
		e.status = defaultStatus
	} else {
		e.statusSet = true
	}
	top := flag.NewFlagSet("iris", flag.ContinueOnError)
	top.SetOutput(io.Discard)
	commonFlags(top, e)
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			mainUsage(stdout)
			return exitOK
		}
		fmt.Fprintf(stderr, "iris: %v\nRun 'iris help' for usage.\n", err)
		return exitUsage
	}
	if top.NArg() == 0 {
		mainUsage(stderr)
		return exitUsage
	}
	name, rest := top.Arg(0), top.Args()[1:]
	if name == "help" {
		return help(rest, stdout, stderr)
	}
	c := lookup(name)
	if c == nil {
		fmt.Fprintf(stderr, "iris: unknown command %q\nRun 'iris help' for the list.\n", name)
		return exitUsage
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	runCmd := c.flags(fs, e)
	commonFlags(fs, e)
	pos, err := parseInterleaved(fs, rest)
	if c.rawArgs {
		pos, err = rest, nil
		if wantsHelp(rest) {
			err = flag.ErrHelp
		}
	}
	e.cfg = e.sdkConfig()
	e.statusSet = e.statusSet || given(top, "status") || given(fs, "status")
	if errors.Is(err, flag.ErrHelp) {
		commandUsage(stdout, c)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "iris %s: %v\nRun 'iris %s -h' for usage.\n", name, err, name)
		return exitUsage
	}
	err = runCmd(pos)
	if err == nil {
		return exitOK
	}
	code := exitCode(err)
	fmt.Fprintf(stderr, "iris %s: %s\n", name, describe(err, name))
	if code == exitUsage {
		fmt.Fprintf(stderr, "Run 'iris %s -h' for usage.\n", name)
	}
	return code
}

// given reports whether flag name was set on fs's command line.
func given(fs *flag.FlagSet, name string) bool {
	found := false
	fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	return found
}

// help implements `iris help [COMMAND]`.
func help(args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0:
		mainUsage(stdout)
		return exitOK
	case len(args) > 1:
		fmt.Fprintln(stderr, "iris help: want at most one COMMAND")
		return exitUsage
	}
	c := lookup(args[0])
	if c == nil {
		fmt.Fprintf(stderr, "iris help: unknown command %q\nRun 'iris help' for the list.\n", args[0])
		return exitUsage
	}
	commandUsage(stdout, c)
	return exitOK
}

// parseInterleaved parses args with fs, allowing flags before, between and
// after the positional arguments, which it returns in order. Everything
// after "--" is positional.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" && !isFlagValue(fs, args[:used-1]) {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// isFlagValue reports whether the argument after before is the value of
// its last element, a non-boolean flag given without "=".
func isFlagValue(fs *flag.FlagSet, before []string) bool {
	if len(before) == 0 {
		return false
	}
	last := before[len(before)-1]
	if !strings.HasPrefix(last, "-") || strings.Contains(last, "=") || last == "--" {
		return false
	}
	f := fs.Lookup(strings.TrimLeft(last, "-"))
	if f == nil {
		return false
	}
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return !ok || !b.IsBoolFlag()
}

// usageError is an error in the command line, reported with exit code 2.
type usageError string

func (u usageError) Error() string { return string(u) }

// exitCode maps an error to the documented exit code.
func exitCode(err error) int {
	var ue usageError
	switch {
	case errors.As(err, &ue):
		return exitUsage
	case errNoMembers != nil && errors.Is(err, errNoMembers):
		return exitNoMembers
	case errors.Is(err, sdk.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return exitTimeout
	}
	return exitFail
}

// describe phrases err for the person who ran `iris name`: known SDK
// errors get a sentence; others lose the layers' repeated prefixes.
func describe(err error, name string) string {
	var (
		remote *sdk.RemoteError
		denied *sdk.DeniedError
		tun    *sdk.TunnelError
	)
	switch {
	case errors.As(err, &remote):
		return "the service failed: " + remote.Fault
	case errors.As(err, &denied):
		return "the daemon refused the connection: " + denied.Reason
	case errors.As(err, &tun):
		return "the daemon closed the tunnel: " + tun.Reason
	}
	parts := strings.Split(err.Error(), ": ")
	out := parts[:0]
	for _, p := range parts {
		if p == "sdk" || p == name || (len(out) > 0 && out[len(out)-1] == p) {
			continue
		}
		out = append(out, strings.TrimPrefix(p, "sdk: "))
	}
	msg := strings.Join(out, ": ")
	if msg == "" {
		msg = err.Error()
	}
	return msg
}

// connectError wraps a failure to reach the daemon with a hint.
func (e *env) connectError(err error) error {
	var denied *sdk.DeniedError
	if errors.As(err, &denied) {
		return err
	}
	return fmt.Errorf("cannot reach irisd at %s (is it running? set -addr or IRIS_ADDR): %w", e.addr, unwrapAll(err))
}

// unwrapAll returns the innermost error of err's chain, the cause a person
// needs (say, "connection refused") without the layers' context.
func unwrapAll(err error) error {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err
		}
		err = next
	}
}

// connect opens a client connection to the daemon, within -timeout.
func (e *env) connect() (*sdk.Conn, error) {
	ctx, cancel := context.WithTimeout(e.ctx, e.timeout)
	defer cancel()
	c, err := sdk.Connect(ctx, e.sdkConfig())
	if err != nil {
		return nil, e.connectError(err)
	}
	return c, nil
}

// isTerminal reports whether r is a terminal, where nobody is about to pipe
// a message in.
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// message returns the data to send: args joined by spaces, the file named
// by -file, or stdin ("-", or no argument when stdin is not a terminal).
func (e *env) message(args []string, file string) ([]byte, error) {
	switch {
	case file != "" && len(args) > 0:
		return nil, usageError("give the message as an argument or with -file, not both")
	case file == "-":
		return io.ReadAll(e.stdin)
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("cannot read the message: %w", err)
		}
		return b, nil
	case len(args) == 1 && args[0] == "-":
		return io.ReadAll(e.stdin)
	case len(args) > 0:
		return []byte(strings.Join(args, " ")), nil
	case isTerminal(e.stdin):
		return nil, usageError("missing MESSAGE: give it as an argument, with -file FILE, or on stdin")
	}
	return io.ReadAll(e.stdin)
}

// checkRepeat checks -count and -interval.
func checkRepeat(count int, interval time.Duration) error {
	if count < 0 {
		return usageError("-count: want a number of messages, or 0 to send until interrupted")
	}
	if interval < 0 {
		return usageError("-interval: want a positive duration")
	}
	return nil
}

// repeat runs send count times (0: until interrupted), interval apart.
func (e *env) repeat(count int, interval time.Duration, send func(i int) error) error {
	for i := 0; count <= 0 || i < count; i++ {
		if i > 0 && interval > 0 {
			t := time.NewTimer(interval)
			select {
			case <-t.C:
			case <-e.ctx.Done():
				t.Stop()
				return nil
			}
		}
		if e.ctx.Err() != nil {
			return nil
		}
		if err := send(i); err != nil {
			return err
		}
	}
	return nil
}

// name takes the first positional argument, what (CLUSTER, TOPIC), off
// args.
func name(args []string, what string) (string, []string, error) {
	if len(args) == 0 || args[0] == "" {
		return "", nil, usageError("missing " + what)
	}
	return args[0], args[1:], nil
}

// noMore fails when args has anything left.
func noMore(args []string) error {
	if len(args) > 0 {
		return usageError("unexpected arguments: " + strings.Join(args, " "))
	}
	return nil
}
