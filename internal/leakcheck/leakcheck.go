// Package leakcheck fails a test that leaves goroutines running.
//
// Call Check at the start of a test; in the test's Cleanup it compares the
// goroutines then running with those running at the start, retrying for a
// few seconds so that goroutines already on their way out can finish, and
// fails the test with the stacks of the ones left over. It is modelled on
// tailscale's tstest.ResourceCheck.
//
// Goroutines are told apart by id, so a goroutine that existed at the start
// is never reported. Do not use it in tests that call t.Parallel: the other
// tests' goroutines would be reported.
package leakcheck

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Timeout is how long Check's cleanup waits for new goroutines to exit.
const Timeout = 5 * time.Second

// ignored lists functions whose goroutines outlive any test by design;
// a goroutine whose stack contains one of them is never reported.
var ignored = []string{
	"os/signal.signal_recv", // started once by the first signal.Notify
	"os/signal.loop",
}

// Check records the running goroutines and registers a Cleanup on t that
// fails it if goroutines started since are still running Timeout later.
// Register it before anything the test cleans up, so that it runs last.
func Check(t testing.TB) {
	t.Helper()
	before := Snapshot()
	t.Cleanup(func() {
		if leaked := Wait(before, Timeout); len(leaked) > 0 {
			t.Errorf("leakcheck: %d goroutine(s) still running after the test:\n\n%s",
				len(leaked), strings.Join(leaked, "\n\n"))
		}
	})
}

// Snapshot returns the ids of the goroutines running now.
func Snapshot() map[string]bool {
	ids := make(map[string]bool)
	for _, g := range stacks() {
		ids[goroutineID(g)] = true
	}
	return ids
}

// Wait polls until every goroutine not in before has exited, or timeout
// passes, and returns the stacks of those still running (nil when none).
func Wait(before map[string]bool, timeout time.Duration) []string {
	deadline := time.Now().Add(timeout)
	tick := time.Millisecond
	for {
		leaked := New(before)
		if len(leaked) == 0 || time.Now().After(deadline) {
			return leaked
		}
		time.Sleep(tick) // polling a condition with a deadline, not standing in for an event
		tick = min(2*tick, 100*time.Millisecond)
	}
}

// New returns the stacks of running goroutines that are not in before and
// not ignored.
func New(before map[string]bool) []string {
	var out []string
	for _, g := range stacks() {
		if before[goroutineID(g)] || isIgnored(g) {
			continue
		}
		out = append(out, g)
	}
	return out
}

// stacks returns the stack of every goroutine, one string each.
func stacks() []string {
	buf := make([]byte, 64<<10)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for g := range bytes.SplitSeq(buf, []byte("\n\n")) {
		if s := strings.TrimSpace(string(g)); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// goroutineID returns the id in a stack's first line, "goroutine 12 [...]:".
func goroutineID(stack string) string {
	rest, ok := strings.CutPrefix(stack, "goroutine ")
	if !ok {
		return stack
	}
	id, _, _ := strings.Cut(rest, " ")
	return id
}

func isIgnored(stack string) bool {
	for _, f := range ignored {
		if strings.Contains(stack, f) {
			return true
		}
	}
	return false
}
