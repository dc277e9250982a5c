package overlay

import (
	"fmt"
	"testing"
	"time"

	"github.com/iris-mesh/iris/internal/leakcheck"
)

// idlePair starts two joined nodes whose links close after idle.
func idlePair(t *testing.T, idle time.Duration) (a, b *testNode) {
	t.Helper()
	mod := func(c *Config) { c.LinkIdleTimeout = idle }
	a = newTestNode(t, "test-net", testKey, mod)
	b = newTestNode(t, "test-net", testKey, mod)
	if _, err := b.Join([]string{a.Addr()}); err != nil {
		t.Fatal(err)
	}
	for _, x := range []*testNode{a, b} {
		waitFor(t, 5*time.Second, "both alive", func() bool {
			p, ok := x.Peer(map[*testNode]*testNode{a: b, b: a}[x].ID())
			return ok && p.State == StateAlive
		})
	}
	return a, b
}

// TestIdleLinkClosedByAgreement: a link that carries nothing for
// LinkIdleTimeout is closed by a goodbye both ends agree to, which neither
// reads as a failure (no link-down event, the peer stays alive), and the
// next frame dials a new link.
func TestIdleLinkClosedByAgreement(t *testing.T) {
	leakcheck.Check(t)
	a, b := idlePair(t, 300*time.Millisecond)
	for round := range 3 {
		if err := a.Send(b.ID(), Bulk, nil, []byte(fmt.Sprint("ping ", round))); err != nil {
			t.Fatal(err)
		}
		recvN(t, b, 1)
		if err := b.Send(a.ID(), Bulk, nil, []byte("pong")); err != nil {
			t.Fatal(err)
		}
		recvN(t, a, 1)
		waitFor(t, 10*time.Second, "the idle link closed at both ends", func() bool {
			return a.Stats().Links == 0 && b.Stats().Links == 0
		})
	}
	for _, x := range []*testNode{a, b} {
		st := x.Stats()
		if st.LinkDowns != 0 {
			t.Errorf("%s: %d link downs, want 0 (an idle close is no failure)", x.ID(), st.LinkDowns)
		}
		x.rec.mu.Lock()
		downs := len(x.rec.linkDowns)
		x.rec.mu.Unlock()
		if downs != 0 {
			t.Errorf("%s: link-down events %v", x.ID(), x.rec.linkDowns)
		}
	}
	if n := a.Stats().LinkIdleCloses + b.Stats().LinkIdleCloses; n < 6 {
		t.Errorf("%d idle closes counted over both ends, want at least 6 (3 links, 2 ends)", n)
	}
	if p, _ := a.Peer(b.ID()); p.State != StateAlive {
		t.Errorf("b is %v at a after idle closes, want alive", p.State)
	}
}

// TestIdleCloseLosesNothing: frames sent both ways in bursts, some right
// as an idle close begins or ends (the far end may still be closing when
// the next burst is queued), all arrive, in order per sender.
func TestIdleCloseLosesNothing(t *testing.T) {
	leakcheck.Check(t)
	a, b := idlePair(t, 20*time.Millisecond)
	const bursts, per = 30, 10
	sent := 0
	for burst := range bursts {
		for range per {
			if err := a.Send(b.ID(), Control, nil, []byte(fmt.Sprint(sent))); err != nil {
				t.Fatal(err)
			}
			if err := b.Send(a.ID(), Control, nil, []byte(fmt.Sprint(sent))); err != nil {
				t.Fatal(err)
			}
			sent++
		}
		if burst%2 == 0 {
			// Let one end see the link idle and start closing it; the next
			// burst then races with the goodbye at the other end.
			closes := a.Stats().LinkIdleCloses + b.Stats().LinkIdleCloses
			waitFor(t, 10*time.Second, "an idle close to begin", func() bool {
				return a.Stats().LinkIdleCloses+b.Stats().LinkIdleCloses > closes
			})
		}
	}
	for _, x := range []*testNode{a, b} {
		for i, f := range recvN(t, x, sent) {
			if string(f.payload) != fmt.Sprint(i) {
				t.Fatalf("%s: frame %d is %q", x.ID(), i, f.payload)
			}
		}
	}
	if d := a.Stats().FramesDropped + b.Stats().FramesDropped; d != 0 {
		t.Errorf("%d frames dropped", d)
	}
	for _, x := range []*testNode{a, b} {
		if st := x.Stats(); st.LinkDowns != 0 {
			t.Errorf("%s: %d link downs, want 0", x.ID(), st.LinkDowns)
		}
	}
}
