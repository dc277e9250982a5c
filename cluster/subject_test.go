package cluster

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iris-mesh/iris/internal/leakcheck"
)

// subjectCases are the matching semantics (the same table as api's
// MatchSubject test: the SDK and the daemon must agree).
var subjectCases = []struct {
	pattern, topic string
	match          bool
}{
	{"a.*", "a.b", true}, {"a.*", "a", false}, {"a.*", "a.b.c", false},
	{"*", "a", true}, {"*", "a.b", false}, {"*.b", "a.b", true}, {"*.b", "a.c", false},
	{"a.*.c", "a.x.c", true}, {"a.*.c", "a.x.d", false},
	{"a.>", "a.b", true}, {"a.>", "a.b.c.d", true}, {"a.>", "a", false},
	{">", "a", true}, {">", "a.b.c", true}, {"*.>", "a", false}, {"*.>", "a.b", true},
	{"a.*.>", "a.b", false}, {"a.*.>", "a.b.c", true},
	// Literal dots: a topic is split on its dots; empty tokens match no
	// pattern.
	{"a.*", "a.b.", false}, {"a.>", "a..b", false}, {">", ".a", false}, {"*", "", false},
	// A wildcard character published in a topic is just a token.
	{"a.*", "a.*", true},
}

func TestSublistMatch(t *testing.T) {
	for _, c := range subjectCases {
		var s sublist[int]
		s.insert(c.pattern, 1)
		s.insert("zz.*", 2) // never matches these topics
		got := s.match(c.topic, nil)
		if want := c.match; (len(got) == 1 && got[0] == 1) != want || len(got) > 1 {
			t.Errorf("pattern %q topic %q: matched %v, want match=%v", c.pattern, c.topic, got, want)
		}
	}
}

func TestSublistRemovePrunes(t *testing.T) {
	var s sublist[int]
	pats := []string{"a.*", "a.>", "a.b.c", "*.b", ">", "a.*.c"}
	for i, p := range pats {
		s.insert(p, i)
		s.insert(p, i+100)
	}
	got := s.match("a.b.c", nil)
	slices.Sort(got)
	if want := []int{1, 2, 4, 5, 101, 102, 104, 105}; !slices.Equal(got, want) {
		t.Fatalf("match(a.b.c) = %v, want %v", got, want)
	}
	if s.remove("a.*", 7) || s.remove("x.y", 0) {
		t.Fatal("removed what was not there")
	}
	for i, p := range pats {
		if !s.remove(p, i) || !s.remove(p, i+100) {
			t.Fatalf("remove %q", p)
		}
	}
	if s.n != 0 || !s.root.empty() {
		t.Fatalf("trie not empty after removing everything: n=%d root=%+v", s.n, s.root)
	}
}

func TestSubscribeSubjectRejects(t *testing.T) {
	d := startDaemons(t, "")[0]
	for _, bad := range []string{"", "a..b", ".a", "a.", "a.>.b", "a*", "b.c>"} {
		if _, err := d.SubscribeSubject(bad, &chanSub{}); !errors.Is(err, ErrBadSubject) && !errors.Is(err, ErrBadName) {
			t.Errorf("SubscribeSubject(%q) = %v, want ErrBadSubject", bad, err)
		}
	}
	// Subscribe (v1.0) takes any name literally.
	ch := make(chan string, 4)
	sub, err := d.Subscribe("a.*", &chanSub{ch})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	d.Publish("a.b", []byte("x"))
	d.Publish("a.*", []byte("y"))
	if got := <-ch; got != "a.*:y" {
		t.Fatalf("literal subscription got %q, want only the literal topic", got)
	}
}

// countSub counts events per topic.
type countSub struct {
	n      atomic.Int64
	topics chan string
}

func (s *countSub) HandleEvent(topic string, _ []byte) {
	s.n.Add(1)
	select {
	case s.topics <- topic:
	default:
	}
}

// TestWildcardAcrossDaemons: patterns on one daemon match events published
// on another; a Subscriber with two matching subscriptions gets each event
// once; a daemon with several matching patterns gets one copy.
func TestWildcardAcrossDaemons(t *testing.T) {
	leakcheck.Check(t)
	ds := startDaemons(t, "", "")
	a, b := ds[0], ds[1]
	waitPeers(t, ds)
	s1 := &countSub{topics: make(chan string, 16)}
	s2 := &countSub{topics: make(chan string, 16)}
	for _, sub := range []struct {
		subject string
		s       *countSub
	}{{"news.*", s1}, {"news.>", s1}, {"news.sport", s1}, {"*.sport", s2}} {
		if _, err := a.SubscribeSubject(sub.subject, sub.s); err != nil {
			t.Fatal(err)
		}
	}
	confirm(t, a)
	b.mu.RLock()
	remotes := b.matchRemoteLocked("news.sport", b.topics["news.sport"])
	b.mu.RUnlock()
	if len(remotes) != 1 {
		t.Fatalf("daemon b routes news.sport to %d daemons, want 1 copy", len(remotes))
	}
	b.Publish("news.sport", []byte("x"))
	b.Publish("news.local.town", []byte("y"))
	b.Publish("weather", []byte("z"))
	for _, want := range []string{"news.sport", "news.local.town"} {
		if got := <-s1.topics; got != want {
			t.Fatalf("s1 got %q, want %q", got, want)
		}
	}
	if got := <-s2.topics; got != "news.sport" {
		t.Fatalf("s2 got %q", got)
	}
	b.Publish("end.sport", nil) // s2 only: the earlier events were all delivered before it
	if got := <-s2.topics; got != "end.sport" {
		t.Fatalf("s2 got %q", got)
	}
	if n := s1.n.Load(); n != 2 {
		t.Fatalf("s1 got %d events, want 2 (once per event, not per pattern)", n)
	}
	var pats []string
	for _, tp := range b.Topics() {
		if tp.Pattern && slices.Equal(tp.Remote, []string{a.ID()}) {
			pats = append(pats, tp.Name)
		}
	}
	if want := []string{"*.sport", "news.*", "news.>"}; !slices.Equal(pats, want) {
		t.Fatalf("b's status lists a's patterns %v, want %v", pats, want)
	}
}

// waitPeers waits until every daemon knows every other one: Confirm waits
// only for the daemons known when it is called.
func waitPeers(t *testing.T, ds []*testDaemon) {
	t.Helper()
	for _, d := range ds {
		waitFor(t, 5*time.Second, "peers", func() bool {
			d.mu.RLock()
			defer d.mu.RUnlock()
			return len(d.remotes) == len(ds)-1
		})
	}
}

func confirm(t *testing.T, d *testDaemon) {
	t.Helper()
	ch := make(chan []string, 1)
	d.Confirm(5*time.Second, func(u []string) { ch <- u })
	if u := <-ch; len(u) > 0 {
		t.Fatalf("daemons %v did not confirm", u)
	}
}

// TestConfirmedSubscribeRounds: after Confirm, an event published on any
// daemon reaches the new subscription, round after round.
func TestConfirmedSubscribeRounds(t *testing.T) {
	leakcheck.Check(t)
	ds := startDaemons(t, "", "", "")
	waitPeers(t, ds)
	rounds := 200
	if testing.Short() {
		rounds = 30
	}
	for i := range rounds {
		s := &countSub{topics: make(chan string, 4)}
		subject := fmt.Sprintf("r%d.*", i)
		sub, err := ds[0].SubscribeSubject(subject, s)
		if err != nil {
			t.Fatal(err)
		}
		confirm(t, ds[0])
		ds[1].Publish(fmt.Sprintf("r%d.b", i), nil)
		ds[2].Publish(fmt.Sprintf("r%d.c", i), nil)
		for range 2 {
			select {
			case <-s.topics:
			case <-time.After(5 * time.Second):
				t.Fatalf("round %d: an event published after Confirm was lost", i)
			}
		}
		sub.Close()
	}
}

// TestConfirmReportsSilentDaemons: a daemon that never acks (one that
// predates v1.1) is named when the wait ends; a failed one is dropped.
func TestConfirmReportsSilentDaemons(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemons(t, "")[0]
	sub, err := d.Subscribe("news", quietSub{}) // a change to confirm
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	d.mu.Lock()
	d.remotes["old"] = &remoteNode{id: "old"}
	d.remotes["gone"] = &remoteNode{id: "gone"}
	d.mu.Unlock()
	ch := make(chan []string, 1)
	d.Confirm(100*time.Millisecond, func(u []string) { ch <- u })
	d.peerGone("gone")
	if u := <-ch; !slices.Equal(u, []string{"old"}) {
		t.Fatalf("unconfirmed = %v, want [old]", u)
	}
	d.mu.Lock()
	delete(d.remotes, "old")
	d.mu.Unlock()
	d.Confirm(time.Hour, func(u []string) { ch <- u })
	if u := <-ch; u != nil {
		t.Fatalf("alone: unconfirmed = %v", u)
	}
	// A suspect daemon is not waited for, only reported.
	suspect := &remoteNode{id: "suspect"}
	suspect.unhealthy.Store(math.MaxInt64)
	d.mu.Lock()
	d.remotes["suspect"] = suspect
	d.mu.Unlock()
	d.Confirm(time.Hour, func(u []string) { ch <- u })
	if u := <-ch; !slices.Equal(u, []string{"suspect"}) {
		t.Fatalf("with a suspect daemon: unconfirmed = %v, want [suspect] at once", u)
	}
}

type nopSub struct{}

func (nopSub) HandleEvent(string, []byte) {}

// queueSub queues events as the relay does for an app: under a lock, into a
// bounded queue (drained here when full).
type queueSub struct {
	mu sync.Mutex
	q  [][]byte
}

func (s *queueSub) HandleEvent(_ string, ev []byte) {
	s.mu.Lock()
	if len(s.q) == cap(s.q) {
		clear(s.q)
		s.q = s.q[:0]
	}
	s.q = append(s.q, ev)
	s.mu.Unlock()
}

// BenchmarkPublishPatterns: the cost of a publish with 100,000 wildcard
// subscriptions that do not match it, against none (the must-show of issue
// 10: within 2x). The topic has one local subscriber, either one that does
// nothing ("bare": the cluster layer's own cost only) or one that queues
// the event as the relay does for an app ("queued"). "spread" publishes to
// 10,000 topics in turn, more than the match cache holds, so every publish
// walks the trie: the worst case.
func BenchmarkPublishPatterns(b *testing.B) {
	for _, sub := range []string{"bare", "queued", "spread"} {
		for _, npat := range []int{0, 100_000} {
			b.Run(fmt.Sprintf("%s/patterns=%d", sub, npat), func(b *testing.B) {
				// 100,000 patterns need more than the default interest budget.
				d := newDaemon(b, "", func(c *Config) { c.MaxInterestBytes = MaxInterestBytesLimit })
				var s Subscriber = nopSub{}
				if sub == "queued" {
					s = &queueSub{q: make([][]byte, 0, 4096)}
				}
				if _, err := d.Subscribe("news.sport.local", s); err != nil {
					b.Fatal(err)
				}
				other := &countSub{}
				for i := range npat {
					subject := fmt.Sprintf("news.s%d.>", i) // shares "news" with the topic
					if i%2 == 1 {
						subject = fmt.Sprintf("t%d.*.local", i)
					}
					if _, err := d.SubscribeSubject(subject, other); err != nil {
						b.Fatal(err)
					}
				}
				topics := []string{"news.sport.local"}
				if sub == "spread" {
					topics = make([]string, 10_000)
					for i := range topics {
						topics[i] = fmt.Sprintf("news.sport.l%d", i)
					}
				}
				ev := make([]byte, 64)
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					d.Publish(topics[i%len(topics)], ev)
				}
				b.StopTimer()
				if other.n.Load() != 0 {
					b.Fatal("a pattern matched")
				}
			})
		}
	}
}

// TestMatchCacheInvalidated: cached match results never outlive a change
// of the subscriptions.
func TestMatchCacheInvalidated(t *testing.T) {
	d := startDaemons(t, "")[0]
	s1 := &countSub{topics: make(chan string, 8)}
	s2 := &countSub{topics: make(chan string, 8)}
	sub1, err := d.SubscribeSubject("c.*", s1)
	if err != nil {
		t.Fatal(err)
	}
	d.Publish("c.x", nil) // cached: s1
	sub2, err := d.SubscribeSubject("c.>", s2)
	if err != nil {
		t.Fatal(err)
	}
	d.Publish("c.x", nil) // s1 and s2
	sub1.Close()
	d.Publish("c.x", nil) // s2
	sub2.Close()
	exact, err := d.Subscribe("c.x", s1)
	if err != nil {
		t.Fatal(err)
	}
	d.Publish("c.x", nil) // s1 (exact)
	exact.Close()
	d.Publish("c.x", nil) // nobody
	if n1, n2 := s1.n.Load(), s2.n.Load(); n1 != 3 || n2 != 2 {
		t.Fatalf("s1 got %d (want 3), s2 got %d (want 2)", n1, n2)
	}
}
