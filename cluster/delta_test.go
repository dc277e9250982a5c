package cluster

import (
	"fmt"
	"testing"
	"time"

	"github.com/iris-mesh/iris/internal/leakcheck"
)

type nopSubscriber struct{}

func (nopSubscriber) HandleEvent(string, []byte) {}

// hasRemoteTopic reports whether d lists topic as subscribed at another
// daemon.
func hasRemoteTopic(d *testDaemon, topic string) bool {
	for _, ts := range d.Topics() {
		if ts.Name == topic && len(ts.Remote) > 0 {
			return true
		}
	}
	return false
}

// TestTableDeltas: once a peer has acked a table, changes reach it as
// deltas: a subscribe, an unsubscribe, a registration, a pattern and a
// drain each cost it bytes of the order of the change, not of a table of
// 500 topics, and it ends up holding exactly the sender's table.
func TestTableDeltas(t *testing.T) {
	leakcheck.Check(t)
	ds := startDaemons(t, "", "")
	a, b := ds[0], ds[1]
	for i := range 500 {
		if _, err := a.Subscribe(fmt.Sprintf("held-topic-%04d", i), nopSubscriber{}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "b sees a's 500 topics", func() bool { return hasRemoteTopic(b, "held-topic-0499") })
	waitFor(t, 10*time.Second, "b acked a's table with delta support", func() bool {
		r := a.remote(b.id)
		return r != nil && r.deltas.Load()
	})
	in0 := b.ov.Stats().BytesIn
	const changes = 40
	for i := range changes / 2 {
		s, err := a.Subscribe("churn", nopSubscriber{})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, fmt.Sprintf("churn %d subscribed at b", i), func() bool { return hasRemoteTopic(b, "churn") })
		s.Close()
		waitFor(t, 5*time.Second, fmt.Sprintf("churn %d unsubscribed at b", i), func() bool { return !hasRemoteTopic(b, "churn") })
	}
	perChange := float64(b.ov.Stats().BytesIn-in0) / changes
	// A whole table of 500 topics is over 9 KB; a delta of one topic is
	// some 40 bytes plus framing and heartbeats.
	if perChange > 1000 {
		t.Fatalf("b received %.0f bytes per change, want those of a delta, not of the table", perChange)
	}
	t.Logf("%.0f bytes per change at b", perChange)

	reg := register(t, a, "svc", newEchoMember(t, "a"))
	waitMembers(t, b, "svc", 1)
	if res := call(b, "svc", "x", 5*time.Second); res.Status != StatusOK {
		t.Fatalf("call through a delta-learnt registration: %+v", res)
	}
	ps, err := a.Subscribe("news.*", nopSubscriber{})
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "b sees a's pattern", func() bool { return hasRemoteTopic(b, "news.*") })
	ps.Close()
	waitFor(t, 5*time.Second, "b drops a's pattern", func() bool { return !hasRemoteTopic(b, "news.*") })
	reg.Close()
	waitMembers(t, b, "svc", 0)

	a.mu.RLock()
	want := a.localTableLocked()
	a.mu.RUnlock()
	b.mu.RLock()
	defer b.mu.RUnlock()
	got := b.remotes[a.id].tbl
	if got.Version != want.Version || len(got.Topics) != len(want.Topics) || len(got.Clusters) != 0 || len(got.Patterns) != 0 {
		t.Fatalf("b holds version %d with %d topics, %d clusters, %d patterns; a is at %d with %d topics",
			got.Version, len(got.Topics), len(got.Clusters), len(got.Patterns), want.Version, len(want.Topics))
	}
	if st := b.Stats(); st.TableDeltaGaps != 0 {
		t.Fatalf("%d gaps on a lossless link", st.TableDeltaGaps)
	}
}

// TestTableDeltaGapPullsTable: a delta that does not follow the version
// held is not applied; the receiver counts the gap, pulls the whole table,
// and later deltas apply again.
func TestTableDeltaGapPullsTable(t *testing.T) {
	leakcheck.Check(t)
	ds := startDaemons(t, "", "")
	a, b := ds[0], ds[1]
	if _, err := a.Subscribe("first", nopSubscriber{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "b sees first", func() bool { return hasRemoteTopic(b, "first") })
	b.mu.RLock()
	held := *b.remotes[a.id].tbl
	b.mu.RUnlock()
	// A delta from a version b never held, as if one were lost.
	d, err := (&tableDelta{Instance: held.Instance, From: held.Version + 5, To: held.Version + 6, Topics: map[string]uint32{"ghost": 1}}).encode()
	if err != nil {
		t.Fatal(err)
	}
	b.HandleFrame(a.id, append([]byte{byte(fTableDelta)}, d...))
	if hasRemoteTopic(b, "ghost") {
		t.Fatal("a delta that skips versions was applied")
	}
	if st := b.Stats(); st.TableDeltaGaps != 1 {
		t.Fatalf("gaps %d, want 1", st.TableDeltaGaps)
	}
	if _, err := a.Subscribe("second", nopSubscriber{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "b sees second", func() bool { return hasRemoteTopic(b, "second") && hasRemoteTopic(b, "first") })
	if hasRemoteTopic(b, "ghost") {
		t.Fatal("ghost topic held")
	}
}
