package cluster

import (
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/iris-mesh/iris/overlay"
)

// withPeer makes the node know a remote daemon "peer" whose table has the
// given members of cluster (the overlay stand-in sends nowhere: the peer
// never answers).
func withPeer(t *testing.T, n *Node, cluster string, names ...string) {
	t.Helper()
	n.HandlePeer(overlay.Peer{ID: "peer", State: overlay.StateAlive, AppVersion: 1})
	tbl, err := (&table{Version: 1, Clusters: map[string]tableEntry{
		cluster: {Members: uint32(len(names)), Capacity: 128, Names: names},
	}}).encode()
	if err != nil {
		t.Fatal(err)
	}
	n.HandleFrame("peer", append([]byte{byte(fTable)}, tbl...))
	if !n.HasMembers(cluster) {
		t.Fatal("the peer's members are not known")
	}
}

// record keeps what callbacks running on daemon goroutines report.
type record[T any] struct {
	mu   sync.Mutex
	vals []T
	at   []time.Duration
	t0   time.Time
}

func newRecord[T any]() *record[T] { return &record[T]{t0: time.Now()} }

func (r *record[T]) add(v T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.vals = append(r.vals, v)
	r.at = append(r.at, time.Since(r.t0))
}

func (r *record[T]) get() ([]T, []time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.vals), slices.Clone(r.at)
}

// TestPushToSilentDaemon: a daemon that never acks a push (one that
// predates v1.1) holds it at most pushAckTimeout; then it is busy.
func TestPushToSilentDaemon(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := startBubbleNode(t)
		withPeer(t, n, "jobs", "p/1")
		rec := newRecord[PushStatus]()
		n.Push("jobs", []byte("x"), rec.add)
		synctest.Wait()
		if got, _ := rec.get(); len(got) != 0 {
			t.Fatalf("answered %v before the timeout", got)
		}
		time.Sleep(pushAckTimeout)
		synctest.Wait()
		if got, at := rec.get(); !slices.Equal(got, []PushStatus{PushBusy}) || at[0] != pushAckTimeout {
			t.Fatalf("got %v after %v, want busy after %v", got, at, pushAckTimeout)
		}
		n.Push("nobody", nil, rec.add)
		if got, _ := rec.get(); got[1] != PushNoMembers {
			t.Fatalf("push to an empty cluster: %v", got)
		}
	})
}

// TestSurveyOutcomes: quorum stops early; members of a daemon that never
// reports are late at the deadline; a link that breaks makes them lost at
// once.
func TestSurveyOutcomes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := startBubbleNode(t)
		if _, err := n.RegisterNamed("svc", "me", nopMember{}, 0); err != nil {
			t.Fatal(err)
		}
		withPeer(t, n, "svc", "p1", "p2")
		if _, err := n.RegisterNamed("svc", "p1", nopMember{}, 0); err == nil {
			t.Fatal("a name the peer uses was accepted")
		}
		survey := func(quorum int) (*record[SurveyAnswer], *record[SurveyResult]) {
			answers, ends := newRecord[SurveyAnswer](), newRecord[SurveyResult]()
			n.Survey("svc", []byte("q"), time.Second, quorum, answers.add, ends.add)
			return answers, ends
		}
		answers, ends := survey(1)
		synctest.Wait()
		as, _ := answers.get()
		es, at := ends.get()
		if len(as) != 1 || as[0].Member != "me" || len(es) != 1 || at[0] != 0 ||
			es[0].Asked != 3 || es[0].Answered != 1 || len(es[0].Missing) != 2 || es[0].Missing[0].Reason != "quorum" {
			t.Fatalf("quorum 1: answers %v, end %+v after %v", as, es, at)
		}

		_, ends = survey(0)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		es, at = ends.get()
		if len(es) != 1 || at[0] != time.Second || es[0].Answered != 1 || len(es[0].Missing) != 2 ||
			es[0].Missing[0] != (SurveyMissing{Member: "p1", Daemon: "peer", Reason: "late"}) {
			t.Fatalf("silent peer: %+v after %v", es, at)
		}

		_, ends = survey(0)
		synctest.Wait()
		n.HandleLinkDown("peer")
		es, at = ends.get()
		if len(es) != 1 || at[0] != 0 || es[0].Missing[1] != (SurveyMissing{Member: "p2", Daemon: "peer", Reason: "lost"}) {
			t.Fatalf("link down: %+v after %v", es, at)
		}
	})
}
