package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/iris-mesh/iris/crypto"
	"github.com/iris-mesh/iris/daemon"
	"github.com/iris-mesh/iris/internal/leakcheck"
	"github.com/iris-mesh/iris/overlay"
)

// buffer is a bytes.Buffer safe for a command writing while the test reads.
type buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func daemonConfig(t *testing.T, id string) *daemon.Config {
	cfg := daemon.DefaultConfig()
	cfg.Network, cfg.Key, cfg.NodeID = "cli", crypto.Key{1, 2, 3}, id
	cfg.Listen, cfg.RelayPort, cfg.StatusAddr = "127.0.0.1:0", daemon.RelayAnyPort, "127.0.0.1:0"
	cfg.Gossip = overlay.LocalGossip()
	cfg.Logger = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel).With().Str("node", id).Logger()
	return cfg
}

func startDaemonWith(t *testing.T, cfg *daemon.Config) *daemon.Daemon {
	t.Helper()
	d, err := daemon.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func startDaemon(t *testing.T) *daemon.Daemon {
	t.Helper()
	return startDaemonWith(t, daemonConfig(t, "a"))
}

// startPair starts two joined daemons and waits until each sees the other.
func startPair(t *testing.T) (*daemon.Daemon, *daemon.Daemon) {
	t.Helper()
	a := startDaemonWith(t, daemonConfig(t, "a"))
	cfg := daemonConfig(t, "b")
	cfg.Join = []string{a.Addr()}
	b := startDaemonWith(t, cfg)
	for _, d := range []*daemon.Daemon{a, b} {
		waitFor(t, "membership", func() bool {
			for _, p := range d.Overlay().Peers() {
				if p.State == overlay.StateAlive {
					return true
				}
			}
			return false
		})
	}
	return a, b
}

// envFor returns a getenv pointing iris at d.
func envFor(d *daemon.Daemon) func(string) string {
	return func(k string) string {
		switch k {
		case "IRIS_ADDR":
			return d.RelayAddr()
		case "IRIS_STATUS":
			return d.StatusAddr()
		}
		return ""
	}
}

// iris runs one command against d and returns its exit code and output.
func iris(t *testing.T, d *daemon.Daemon, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut buffer
	code := run(context.Background(), args, envFor(d), strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

// background runs a long-lived command until the test ends; it returns its
// stdout and stderr.
func background(t *testing.T, d *daemon.Daemon, args ...string) (*buffer, *buffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out, errOut := &buffer{}, &buffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, envFor(d), strings.NewReader(""), out, errOut) }()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != exitOK {
			t.Errorf("iris %v exited %d: %s", args, code, errOut.String())
		}
	})
	return out, errOut
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
}

// members returns the members of cluster d knows: its own, or with remote
// those on other daemons.
func members(d *daemon.Daemon, cluster string, remote bool) int {
	for _, c := range d.Cluster().Clusters() {
		if c.Name != cluster {
			continue
		}
		if !remote {
			return c.LocalMembers
		}
		n := 0
		for _, m := range c.Remote {
			n += m
		}
		return n
	}
	return 0
}

func TestEveryPattern(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t)
	echoOut, _ := background(t, d, "serve", "echo")
	background(t, d, "serve", "upper", "-exec", "tr a-z A-Z")
	background(t, d, "serve", "-exec", "echo disk full >&2; exit 3", "broken") // flags first works too
	waitFor(t, "members", func() bool {
		return members(d, "echo", false) == 1 && members(d, "upper", false) == 1 && members(d, "broken", false) == 1
	})

	if code, out, errOut := iris(t, d, "", "request", "echo", "hello", "world"); code != 0 || out != "hello world\n" {
		t.Fatalf("request echo: %d %q %q", code, out, errOut)
	}
	if code, out, _ := iris(t, d, "from stdin", "request", "upper"); code != 0 || out != "FROM STDIN\n" {
		t.Fatalf("request upper: %d %q", code, out)
	}
	if code, out, _ := iris(t, d, "dash", "request", "upper", "-"); code != 0 || out != "DASH\n" {
		t.Fatalf("request upper -: %d %q", code, out)
	}
	file := filepath.Join(t.TempDir(), "msg")
	if err := os.WriteFile(file, []byte("from a file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := iris(t, d, "", "request", "upper", "-file", file); code != 0 || out != "FROM A FILE\n" {
		t.Fatalf("request -file: %d %q", code, out)
	}
	if code, out, _ := iris(t, d, "", "request", "echo", "-raw", "-count", "3", "x"); code != 0 || out != "xxx" {
		t.Fatalf("request -raw -count 3: %d %q", code, out)
	}
	code, out, _ := iris(t, d, "", "request", "-json", "echo", "a\"b")
	var rep struct {
		Reply, Cluster string
		Ms             float64
	}
	if err := json.Unmarshal([]byte(out), &rep); code != 0 || err != nil || rep.Reply != `a"b` || rep.Cluster != "echo" || !strings.HasSuffix(out, "}\n") {
		t.Fatalf("request -json: %d %q %v", code, out, err)
	}
	if code, _, errOut := iris(t, d, "", "request", "broken", "x"); code != exitFail || errOut != "iris request: the service failed: disk full\n" {
		t.Fatalf("request broken: %d %q", code, errOut)
	}
	if code, _, errOut := iris(t, d, "", "-timeout", "100ms", "request", "nobody", "x"); code != exitNoMembers || !strings.Contains(errOut, "cluster has no members") {
		t.Fatalf("request nobody: %d %q", code, errOut)
	}

	if code, _, errOut := iris(t, d, "", "broadcast", "echo", "to all", "-count", "2"); code != 0 {
		t.Fatalf("broadcast: %d %q", code, errOut)
	}
	waitFor(t, "the broadcasts printed by serve", func() bool { return strings.Count(echoOut.String(), "to all\n") == 2 })

	subOut, subErr := &buffer{}, &buffer{}
	subDone := make(chan int, 1)
	go func() {
		subDone <- run(context.Background(), []string{"subscribe", "news.*", "-n", "2"}, envFor(d), strings.NewReader(""), subOut, subErr)
	}()
	// The line on stderr says the subscription is in place everywhere.
	waitFor(t, "the subscription", func() bool {
		return subErr.String() == "iris: subscribed to news.* (confirmed by every daemon)\n"
	})
	for _, ev := range []string{"first", "second", "third"} {
		if code, _, errOut := iris(t, d, "", "publish", "news.x", ev); code != 0 {
			t.Fatalf("publish: %d %q", code, errOut)
		}
	}
	if code := <-subDone; code != 0 || subOut.String() != "first\nsecond\n" {
		t.Fatalf("subscribe -n 2: %d %q", code, subOut.String())
	}

	in := strings.Repeat("a line through the tunnel\n", 1000)
	start := time.Now()
	if code, out, errOut := iris(t, d, in, "tunnel", "echo", "-linger", "2m"); code != 0 || out != in {
		t.Fatalf("tunnel: %d, %d bytes back of %d, %q", code, len(out), len(in), errOut)
	}
	// iris serve echoed the end mark: the tunnel ended without waiting
	// for -linger's silence.
	if elapsed := time.Since(start); elapsed > time.Minute {
		t.Fatalf("iris tunnel took %v: it waited for -linger instead of the end mark", elapsed)
	}

	code, out, errOut := iris(t, d, "", "status")
	if code != 0 || !strings.Contains(out, "node a of network \"cli\"") || !strings.Contains(out, "echo") || !strings.HasSuffix(out, "\n") {
		t.Fatalf("status: %d %q %q", code, out, errOut)
	}
	code, out, _ = iris(t, d, "", "status", "-json")
	var st struct{ Node, Network string }
	if err := json.Unmarshal([]byte(out), &st); code != 0 || err != nil || st.Node != "a" || st.Network != "cli" {
		t.Fatalf("status -json: %d %q %v", code, out, err)
	}
}

// recorder is a TCP listener that counts the connections made to it.
type recorder struct {
	ln    net.Listener
	conns atomic.Int64
	done  chan struct{}
}

func newRecorder(t *testing.T) *recorder {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{ln: ln, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.conns.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-r.done })
	return r
}

// TestHelpDoesNothing: every command's -h prints its usage and exits 0
// without connecting anywhere: both the relay and the status address are
// a listener that counts connections.
func TestHelpDoesNothing(t *testing.T) {
	leakcheck.Check(t)
	rec := newRecorder(t)
	addr := rec.ln.Addr().String()
	env := func(k string) string {
		if k == "IRIS_ADDR" || k == "IRIS_STATUS" {
			return addr
		}
		return ""
	}
	variants := func(name string) [][]string {
		return [][]string{
			{name, "-h"}, {name, "--help"}, {name, "x", "-h"}, {name, "x", "y", "-h", "z"},
			{"-addr", addr, name, "-help"}, {"help", name},
		}
	}
	for _, c := range commands {
		for _, args := range variants(c.name) {
			var out, errOut buffer
			code := run(context.Background(), args, env, strings.NewReader("stdin data"), &out, &errOut)
			if code != exitOK || !strings.HasPrefix(out.String(), "usage: iris "+c.name+" ") || errOut.String() != "" {
				t.Errorf("iris %q: exit %d, stdout %q, stderr %q", args, code, out.String(), errOut.String())
			}
		}
	}
	for _, args := range [][]string{{"-h"}, {"help"}, {"--help"}} {
		var out, errOut buffer
		code := run(context.Background(), args, env, strings.NewReader(""), &out, &errOut)
		if code != exitOK || !strings.Contains(out.String(), "commands:") || !strings.Contains(out.String(), "Exit codes") {
			t.Errorf("iris %q: exit %d, stdout %q, stderr %q", args, code, out.String(), errOut.String())
		}
	}
	// The recorder works: a real command reaches it.
	var out, errOut buffer
	run(context.Background(), []string{"-timeout", "200ms", "status"}, env, strings.NewReader(""), &out, &errOut)
	if n := rec.conns.Load(); n != 1 {
		t.Fatalf("%d connections reached the listener, want exactly 1 (from iris status)", n)
	}
}

func TestUsageErrors(t *testing.T) {
	d := startDaemon(t)
	for _, args := range [][]string{
		{}, {"nope"}, {"help", "nope"}, {"-bogus"}, {"request"}, {"serve"}, {"subscribe", "-n", "x"},
		{"tunnel", "a", "b"}, {"request", "x", "-bogus"}, {"forward", "127.0.0.1:0"}, {"expose", "c", "nohost"},
		{"bench"}, {"bench", "other"}, {"request", "x", "y", "-count", "-1"}, {"publish", "t", "y", "-interval", "-1s"}, {"request", "x", "m", "-file", "f"}, {"status", "extra"},
	} {
		code, out, errOut := iris(t, d, "", args...)
		if code != exitUsage || errOut == "" || out != "" || (len(args) > 0 && strings.Count(errOut, "iris") > 3) {
			t.Errorf("iris %q: exit %d, stdout %q, stderr %q; want a usage error", args, code, out, errOut)
		}
	}
	if st := d.Relay().Stats(); st.Accepted != 0 {
		t.Errorf("usage errors made %d connections to the daemon", st.Accepted)
	}
}

func TestErrors(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t)
	// No daemon: exit 1, one prefix, a hint.
	var out, errOut buffer
	noDaemon := func(string) string { return "" }
	code := run(context.Background(), []string{"-addr", "127.0.0.1:1", "-timeout", "1s", "request", "x", "y"}, noDaemon, strings.NewReader(""), &out, &errOut)
	if code != exitFail || !strings.HasPrefix(errOut.String(), "iris request: cannot reach irisd at 127.0.0.1:1 (is it running?") ||
		strings.Contains(errOut.String(), "sdk:") {
		t.Fatalf("no daemon: exit %d, %q", code, errOut.String())
	}
	// No members: exit 4 at once (protocol v1.1).
	code, _, stderr := iris(t, d, "", "request", "nobody", "x")
	if code != exitNoMembers || !strings.Contains(stderr, "cluster has no members") || strings.Count(stderr, "iris") != 1 {
		t.Fatalf("request nobody: %d %q", code, stderr)
	}
	code, _, stderr = iris(t, d, "", "tunnel", "nobody")
	if code != exitNoMembers || !strings.Contains(stderr, "cluster has no members") {
		t.Fatalf("tunnel nobody: %d %q", code, stderr)
	}
	// Timeout: exit 3.
	background(t, d, "serve", "slow", "-exec", "sleep 30")
	waitFor(t, "the slow member", func() bool { return members(d, "slow", false) == 1 })
	code, _, stderr = iris(t, d, "", "-timeout", "100ms", "request", "slow", "x")
	if code != exitTimeout || !strings.Contains(stderr, `no reply from cluster "slow" within 100ms`) || strings.Count(stderr, "iris") != 1 {
		t.Fatalf("request slow: %d %q", code, stderr)
	}
	// Too large: one prefix, no sdk: layers.
	big := strings.Repeat("x", 17<<20)
	code, _, stderr = iris(t, d, big, "request", "echo")
	if code != exitFail || strings.Count(stderr, "iris request:") != 1 || strings.Contains(stderr, "sdk") || !strings.Contains(stderr, "message too large") {
		t.Fatalf("too large: %d %q", code, stderr)
	}
	// Status: -status and $IRIS_STATUS are used; a wrong one says where it looked.
	code, _, stderr = iris(t, d, "", "status", "-status", "127.0.0.1:1", "-timeout", "1s")
	if code != exitFail || !strings.Contains(stderr, "status server at 127.0.0.1:1") {
		t.Fatalf("status -status: %d %q", code, stderr)
	}
	// The case: -addr names the relay, which cannot serve the status.
	defer func(old string) { defaultStatus = old }(defaultStatus)
	defaultStatus = "127.0.0.1:1" // nothing listens there
	out.b.Reset()
	errOut.b.Reset()
	code = run(context.Background(), []string{"-addr", d.RelayAddr(), "-timeout", "1s", "status"}, noDaemon, strings.NewReader(""), &out, &errOut)
	if code != exitFail || !strings.Contains(errOut.String(), "which -status or IRIS_STATUS names (irisd's own -status), not its relay (-addr "+d.RelayAddr()+")") {
		t.Fatalf("iris -addr X status: %d %q", code, errOut.String())
	}
	out.b.Reset()
	errOut.b.Reset()
	code = run(context.Background(), []string{"-status", d.StatusAddr(), "status"}, noDaemon, strings.NewReader(""), &out, &errOut)
	if code != exitOK || !strings.Contains(out.String(), "node a") {
		t.Fatalf("iris -status ADDR status: %d %q %q", code, out.String(), errOut.String())
	}
}

func TestExitCodeMapping(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{usageError("x"), exitUsage},
		{context.DeadlineExceeded, exitTimeout},
		{os.ErrNotExist, exitFail},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
	old := errNoMembers
	defer func() { errNoMembers = old }()
	errNoMembers = os.ErrNotExist // stands in for sdk.ErrNoMembers
	if got := exitCode(&os.PathError{Op: "x", Path: "y", Err: os.ErrNotExist}); got != exitNoMembers {
		t.Errorf("exitCode(no members) = %d, want %d", got, exitNoMembers)
	}
}

func TestDescribe(t *testing.T) {
	for _, tc := range []struct{ in, name, want string }{
		{"sdk: request: sdk: message too large", "request", "message too large"},
		{"sdk: tunnel to \"x\": sdk: timed out", "tunnel", "tunnel to \"x\": timed out"},
		{"crypto: bad key: crypto: bad key: short", "x", "crypto: bad key: crypto: bad key: short"},
	} {
		if got := describe(errString(tc.in), tc.name); got != tc.want {
			t.Errorf("describe(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func newTestFlags() *flag.FlagSet {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

type errString string

func (e errString) Error() string { return string(e) }

func TestVersion(t *testing.T) {
	version := func(args ...string) (int, string, string) {
		var out, errOut buffer
		code := run(context.Background(), args, func(string) string { return "" }, strings.NewReader(""), &out, &errOut)
		return code, out.String(), errOut.String()
	}
	code, out, _ := version("version")
	if code != 0 || !strings.HasPrefix(out, "iris ") || !strings.HasSuffix(out, ")\n") {
		t.Fatalf("version: %d %q", code, out)
	}
	code, out, _ = version("version", "-json")
	var v struct{ Version, Go string }
	if err := json.Unmarshal([]byte(out), &v); code != 0 || err != nil || v.Version == "" || v.Go == "" {
		t.Fatalf("version -json: %d %q %v", code, out, err)
	}
}

func TestParseInterleaved(t *testing.T) {
	for _, tc := range []struct {
		args []string
		pos  string
		n    int
		b    bool
	}{
		{[]string{"a", "-n", "3", "b"}, "a b", 3, false},
		{[]string{"-b", "a", "--", "-n", "4"}, "a -n 4", 0, true},
		{[]string{"a", "-n", "--", "b"}, "", 0, false}, // -n takes "--": an error
		{[]string{"-", "-b"}, "-", 0, true},
	} {
		fs := newTestFlags()
		n, b := fs.Int("n", 0, ""), fs.Bool("b", false, "")
		pos, err := parseInterleaved(fs, tc.args)
		if tc.pos == "" {
			if err == nil {
				t.Errorf("%q: no error", tc.args)
			}
			continue
		}
		if err != nil || strings.Join(pos, " ") != tc.pos || *n != tc.n || *b != tc.b {
			t.Errorf("%q: %q %d %v %v", tc.args, pos, *n, *b, err)
		}
	}
}

// raceEnabled is set when the tests run with -race (race_test.go).
var raceEnabled bool

// TestLegacyCommand: a command in the older interface gets -h for free and
// its own flag parsing.
func TestLegacyCommand(t *testing.T) {
	d := startDaemon(t)
	var ran []string
	cmd := legacy("shout", "CLUSTER [MESSAGE]", "send a request, louder", func(e *env, args []string) error {
		name, rest := splitName(args)
		fs := flag.NewFlagSet("shout", flag.ContinueOnError)
		n := fs.Int("n", 1, "")
		if err := fs.Parse(rest); err != nil {
			return usageError(err.Error())
		}
		_, msg, err := e.target(append([]string{name}, fs.Args()...), "CLUSTER", true)
		ran = append(ran, fmt.Sprintf("%s %d %s %s", name, *n, msg, e.cfg.Addr))
		return err
	})
	commands = append(commands, cmd)
	defer func() { commands = commands[:len(commands)-1] }()
	if code, out, _ := iris(t, d, "", "shout", "-h"); code != 0 || !strings.HasPrefix(out, "usage: iris shout CLUSTER") || len(ran) != 0 {
		t.Fatalf("shout -h: %d %q %v", code, out, ran)
	}
	if code, _, errOut := iris(t, d, "", "shout", "c", "-n", "3", "hey"); code != 0 || len(ran) != 1 || ran[0] != "c 3 hey "+d.RelayAddr() {
		t.Fatalf("shout: %d %q %v", code, errOut, ran)
	}
}
