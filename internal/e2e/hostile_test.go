package e2e

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/iris-mesh/iris/daemon"
	"github.com/iris-mesh/iris/internal/leakcheck"
	"github.com/iris-mesh/iris/relay"
	"github.com/iris-mesh/iris/sdk"
)

// floodInterest subscribes c to up to n topics with 64 KiB names, tagged,
// until the daemon ends the connection; it returns the connection's error,
// or nil if it is still open. Service "svc" must be reachable.
func floodInterest(t *testing.T, c *sdk.Conn, tag string, n int) error {
	t.Helper()
	nop := sdk.TopicHandlerFunc(func([]byte) {})
	pad := strings.Repeat("x", 64<<10)
	for i := range n {
		topic := fmt.Sprintf("%s-%04d-%s", tag, i, pad)[:64<<10]
		if err := c.Subscribe(context.Background(), topic, nop, nil); err != nil {
			break // the daemon closed the connection; Err says why
		}
	}
	// The daemon handles an app's messages in order: once a request after
	// the subscriptions is answered, a refusal would have arrived first.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Request(ctx, "svc", nil); err == nil {
		return nil
	}
	select {
	case <-c.Done():
		return c.Err()
	case <-ctx.Done():
		return nil
	}
}

// requestFromAll checks that every daemon reaches cluster.
func requestFromAll(t *testing.T, ds []*daemon.Daemon, cluster string) {
	t.Helper()
	for _, d := range ds {
		waitMembers(t, d, cluster, 1)
		c := connect(t, d)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		rep, err := c.Request(ctx, cluster, []byte("ping"))
		cancel()
		if err != nil || string(rep) != "pong" {
			t.Fatalf("request to %s from %s: %q, %v", cluster, d.Overlay().ID(), rep, err)
		}
	}
}

// TestInterestFloodRefused: one app subscribing 300 topics with 64 KiB
// names is refused past its limit with a clear error; apps together cannot
// fill the table beyond the daemon's limit either; and services
// registered afterwards are reachable from every daemon, because the
// table still fits and propagates.
func TestInterestFloodRefused(t *testing.T) {
	leakcheck.Check(t)
	ds := startNet(t, 3)
	a := ds[0]
	pong := sdk.HandlerFunc(func(context.Context, []byte) ([]byte, error) { return []byte("pong"), nil })
	register(t, a, "svc", pong, nil)

	err := floodInterest(t, connect(t, a), "one", 300)
	if err == nil || !strings.Contains(err.Error(), "iris: subscriptions exceed this app's limit of 1048576 bytes of topic names (-max-app-interest)") {
		t.Fatalf("flooding app: err %v, want the per-app limit's reason", err)
	}
	register(t, a, "svc1", pong, nil)
	requestFromAll(t, ds, "svc1")

	// Many apps, each under its own limit: the daemon's topic share fills,
	// and the app that meets it is told so.
	var full error
	for i := range 8 {
		c := connect(t, a)
		if err := floodInterest(t, c, fmt.Sprint("many", i), 15); err != nil {
			full = err
			break
		}
	}
	if full == nil || !strings.Contains(full.Error(), "table of services and subscriptions is full (-max-interest)") {
		t.Fatalf("apps filling the table: err %v, want the daemon limit's reason", full)
	}
	register(t, a, "svc2", pong, nil)
	requestFromAll(t, ds, "svc2")
	st := a.Cluster().Stats()
	t.Logf("interest table %d bytes, refused %d, table send failures %d", st.InterestBytes, st.InterestRefused, st.TableFailures)
	if st.TableFailures != 0 {
		t.Fatalf("%d interest tables failed to send", st.TableFailures)
	}
}

// TestInterestToggleIsPaced: an app toggling a subscription every 10 ms
// beside 3 MiB of long topic names cannot make its daemon send much more
// than the table push rate (16 MiB/s) to a peer.
func TestInterestToggleIsPaced(t *testing.T) {
	leakcheck.Check(t)
	ds := startNet(t, 2)
	a := ds[0]
	pong := sdk.HandlerFunc(func(context.Context, []byte) ([]byte, error) { return []byte("pong"), nil })
	register(t, a, "svc", pong, nil)
	for i := range 3 {
		if err := floodInterest(t, connect(t, a), fmt.Sprint("big", i), 15); err != nil {
			t.Fatalf("app %d: %v", i, err)
		}
	}
	toggler := connect(t, a)
	nop := sdk.TopicHandlerFunc(func([]byte) {})
	before := a.Overlay().Stats().BytesOut
	start := time.Now()
	for time.Since(start) < 3*time.Second {
		if err := toggler.Subscribe(context.Background(), "toggle", nop, nil); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond) // the attacker's pace
		if err := toggler.Unsubscribe(context.Background(), "toggle"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	el := time.Since(start)
	sent := a.Overlay().Stats().BytesOut - before
	t.Logf("%d MiB sent to the peer in %v while toggling beside %d KiB of interest (busy machine)",
		sent>>20, el.Round(time.Millisecond), a.Cluster().Stats().InterestBytes>>10)
	if limit := uint64(el.Seconds()*16+8) << 20; sent > limit {
		t.Fatalf("sent %d MiB in %v, want at most %d MiB", sent>>20, el, limit>>20)
	}
}

// TestRefusalsHaveReasons: an app over the daemon's connection limit and
// a message over its size limit are refused with reasons the SDK reports.
func TestRefusalsHaveReasons(t *testing.T) {
	leakcheck.Check(t)
	d := startNetWith(t, 1, func(c *daemon.Config) {
		c.Relay = relay.DefaultConfig()
		c.Relay.MaxConns = 2
		c.Relay.Limits.MaxMessageLen = 1 << 20
	})[0]
	first := connectV10(t, d) // a v1.1 SDK refuses oversize messages itself
	v11 := connect(t, d)
	_, err := sdk.Connect(context.Background(), cfgFor(d))
	var denied *sdk.DeniedError
	if !errors.As(err, &denied) || !strings.Contains(denied.Reason, "too many app connections: the daemon serves at most 2 (-max-apps)") {
		t.Fatalf("second app: %v, want DENY with the -max-apps reason", err)
	}
	t.Logf("over -max-apps: %v", err)
	_ = first.Publish(context.Background(), "t", make([]byte, 2<<20))
	select {
	case <-first.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("connection not closed after an oversize message")
	}
	if err := first.Err(); err == nil || !strings.Contains(err.Error(), "exceeds the daemon's limit of 1048576 bytes (-max-message)") {
		t.Fatalf("oversize message: %v, want the -max-message reason", err)
	}
	t.Logf("over -max-message: %v", first.Err())

	// In a v1.1 session the daemon announced its limit: the SDK refuses an
	// oversize message itself, and the connection stays up.
	if err := v11.Publish(context.Background(), "t", make([]byte, 2<<20)); !errors.Is(err, sdk.ErrTooLarge) {
		t.Fatalf("v1.1 oversize publish: %v, want sdk.ErrTooLarge", err)
	}
	if err := v11.Publish(context.Background(), "t", []byte("small")); err != nil {
		t.Fatalf("v1.1 publish after the refusal: %v", err)
	}
}
