package main

import (
	"bytes"
	"context"
	"strings"
	"sync"
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

func startDaemon(t *testing.T) *daemon.Daemon {
	t.Helper()
	cfg := daemon.DefaultConfig()
	cfg.Network, cfg.Key = "cli", crypto.Key{1, 2, 3}
	cfg.Listen, cfg.RelayPort, cfg.StatusAddr = "127.0.0.1:0", daemon.RelayAnyPort, "127.0.0.1:0"
	cfg.Gossip = overlay.LocalGossip()
	cfg.Logger = zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)
	d, err := daemon.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// iris runs one command against d and returns its exit code and output.
func iris(t *testing.T, d *daemon.Daemon, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut buffer
	env := func(k string) string {
		if k == "IRIS_ADDR" {
			return d.RelayAddr()
		}
		return ""
	}
	code := run(context.Background(), args, env, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

// background runs a long-lived command until the test ends.
func background(t *testing.T, d *daemon.Daemon, args ...string) *buffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &buffer{}
	done := make(chan int, 1)
	env := func(k string) string {
		if k == "IRIS_ADDR" {
			return d.RelayAddr()
		}
		return ""
	}
	go func() { done <- run(ctx, args, env, strings.NewReader(""), out, out) }()
	t.Cleanup(func() {
		cancel()
		if code := <-done; code != exitOK {
			t.Errorf("iris %v exited %d: %s", args, code, out.String())
		}
	})
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // poll interval
	}
}

func members(d *daemon.Daemon, cluster string) int {
	for _, c := range d.Cluster().Clusters() {
		if c.Name == cluster {
			return c.LocalMembers
		}
	}
	return 0
}

func TestEveryPattern(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t)
	echoOut := background(t, d, "serve", "echo")
	background(t, d, "serve", "upper", "-exec", "tr a-z A-Z")
	background(t, d, "serve", "broken", "-exec", "echo disk full >&2; exit 3")
	waitFor(t, "members", func() bool {
		return members(d, "echo") == 1 && members(d, "upper") == 1 && members(d, "broken") == 1
	})

	if code, out, errOut := iris(t, d, "", "request", "echo", "hello", "world"); code != 0 || out != "hello world" {
		t.Fatalf("request echo: %d %q %q", code, out, errOut)
	}
	if code, out, _ := iris(t, d, "from stdin", "request", "upper"); code != 0 || out != "FROM STDIN" {
		t.Fatalf("request upper: %d %q", code, out)
	}
	if code, _, errOut := iris(t, d, "", "request", "broken", "x"); code != exitFail || !strings.Contains(errOut, "disk full") {
		t.Fatalf("request broken: %d %q", code, errOut)
	}
	if code, _, errOut := iris(t, d, "", "-timeout", "100ms", "request", "nobody", "x"); code != exitFail || !strings.Contains(errOut, "cluster has no members") {
		t.Fatalf("request nobody: %d %q", code, errOut)
	}

	if code, _, errOut := iris(t, d, "", "broadcast", "echo", "to all"); code != 0 {
		t.Fatalf("broadcast: %d %q", code, errOut)
	}
	waitFor(t, "the broadcast printed by serve", func() bool { return strings.Contains(echoOut.String(), "to all\n") })

	subOut := &buffer{}
	subDone := make(chan int, 1)
	go func() {
		env := func(k string) string {
			if k == "IRIS_ADDR" {
				return d.RelayAddr()
			}
			return ""
		}
		subDone <- run(context.Background(), []string{"subscribe", "news", "-n", "2"}, env, strings.NewReader(""), subOut, subOut)
	}()
	waitFor(t, "the subscription", func() bool { return len(d.Cluster().Topics()) == 1 })
	for _, ev := range []string{"first", "second", "third"} {
		if code, _, errOut := iris(t, d, "", "publish", "news", ev); code != 0 {
			t.Fatalf("publish: %d %q", code, errOut)
		}
	}
	if code := <-subDone; code != 0 || subOut.String() != "first\nsecond\n" {
		t.Fatalf("subscribe -n 2: %d %q", code, subOut.String())
	}

	in := strings.Repeat("a line through the tunnel\n", 1000)
	if code, out, errOut := iris(t, d, in, "tunnel", "echo"); code != 0 || out != in {
		t.Fatalf("tunnel: %d, %d bytes back of %d, %q", code, len(out), len(in), errOut)
	}

	code, out, errOut := iris(t, d, "", "status", "-status", d.StatusAddr())
	if code != 0 || !strings.Contains(out, `"clusters"`) || !strings.Contains(out, `"echo"`) {
		t.Fatalf("status: %d %q %q", code, out, errOut)
	}
}

func TestUsage(t *testing.T) {
	d := startDaemon(t)
	for _, args := range [][]string{{}, {"nope"}, {"request"}, {"serve"}, {"subscribe", "-n", "x"}, {"tunnel", "a", "b"}} {
		if code, _, errOut := iris(t, d, "", args...); code != exitUsage || errOut == "" {
			t.Errorf("iris %v: exit %d, stderr %q; want usage error", args, code, errOut)
		}
	}
	env := func(string) string { return "" }
	var out, errOut buffer
	if code := run(context.Background(), []string{"-addr", "127.0.0.1:1", "-timeout", "1s", "request", "x", "y"}, env, strings.NewReader(""), &out, &errOut); code != exitFail {
		t.Fatalf("no daemon: exit %d, %q", code, errOut.String())
	}
}
