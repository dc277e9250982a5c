package cluster

import (
	"bytes"
	"errors"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// answerLog records the answers a test's requests get, from whichever
// goroutine gives them.
type answerLog struct {
	mu      sync.Mutex
	answers []Result
	at      []time.Duration
}

func (l *answerLog) record(start *time.Time) func(Result) {
	return func(r Result) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.answers = append(l.answers, r)
		l.at = append(l.at, time.Since(*start))
	}
}

func (l *answerLog) get() ([]Result, []time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.answers), slices.Clone(l.at)
}

// holdMember keeps the requests it is offered, for the test to answer.
type holdMember struct{ got chan *Request }

func (m holdMember) HandleRequest(r *Request) bool { m.got <- r; return true }
func (holdMember) HandleBroadcast([]byte)          {}

// startBubbleNode starts a node on the stand-in overlay, inside a synctest
// bubble, so its timers run on the bubble's fake clock.
func startBubbleNode(t *testing.T) *Node {
	t.Helper()
	n, err := New(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(loopOverlay{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

// TestDeadlinesOnAFakeClock: with no member, a request times out exactly
// at its deadline; a member's reply after the deadline is ignored, and
// every request gets exactly one answer.
func TestDeadlinesOnAFakeClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := startBubbleNode(t)
		var log answerLog
		start := time.Now()
		record := log.record(&start)
		n.Request("nobody", nil, 250*time.Millisecond, record)
		time.Sleep(249 * time.Millisecond)
		synctest.Wait()
		if answers, at := log.get(); len(answers) != 0 {
			t.Fatalf("answered %v early", at[0])
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if answers, at := log.get(); len(answers) != 1 || answers[0].Status != StatusTimeout || at[0] != 250*time.Millisecond {
			t.Fatalf("answers %+v at %v, want one timeout at 250ms", answers, at)
		}

		m := holdMember{got: make(chan *Request, 1)}
		if _, err := n.Register("svc", m, 0); err != nil {
			t.Fatal(err)
		}
		log.mu.Lock()
		start = time.Now()
		log.mu.Unlock()
		n.Request("svc", []byte("x"), time.Second, record)
		req := <-m.got
		time.Sleep(2 * time.Second) // past the deadline
		synctest.Wait()
		req.Reply([]byte("late"))
		req.Reply([]byte("later"))
		synctest.Wait()
		if answers, at := log.get(); len(answers) != 2 || answers[1].Status != StatusTimeout || at[1] != time.Second {
			t.Fatalf("answers %+v at %v, want the second a timeout at 1s", answers, at)
		}
		if st := n.Stats(); st.Pending != 0 || st.Timeouts != 2 {
			t.Fatalf("stats %+v", st)
		}
	})
}

// TestReplyBeforeDeadlineStopsTheTimer: a reply completes the request, and
// the deadline passing later adds nothing.
func TestReplyBeforeDeadlineStopsTheTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := startBubbleNode(t)
		m := holdMember{got: make(chan *Request, 1)}
		if _, err := n.Register("svc", m, 0); err != nil {
			t.Fatal(err)
		}
		var log answerLog
		start := time.Now()
		n.Request("svc", []byte("ping"), time.Second, log.record(&start))
		req := <-m.got
		time.Sleep(500 * time.Millisecond)
		req.Reply([]byte("pong"))
		time.Sleep(time.Hour)
		synctest.Wait()
		if answers, _ := log.get(); len(answers) != 1 || answers[0].Status != StatusOK || string(answers[0].Payload) != "pong" {
			t.Fatalf("answers %+v", answers)
		}
	})
}

// TestNodeWidePendingCap: past MaxPendingRequests a request fails at once
// with FaultTooManyPending and is counted; once one is answered there is
// room again.
func TestNodeWidePendingCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := DefaultConfig()
		cfg.MaxPendingRequests = 2
		n, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Start(loopOverlay{}); err != nil {
			t.Fatal(err)
		}
		defer n.Close()
		var log answerLog
		start := time.Now()
		n.Request("nobody", nil, time.Second, log.record(&start))
		n.Request("nobody", nil, 2*time.Second, log.record(&start))
		n.Request("nobody", nil, time.Second, log.record(&start))
		if answers, at := log.get(); len(answers) != 1 || answers[0].Fault != FaultTooManyPending || at[0] != 0 {
			t.Fatalf("answers %+v at %v, want one FaultTooManyPending at once", answers, at)
		}
		if st := n.Stats(); st.TooManyPending != 1 || st.Pending != 2 {
			t.Fatalf("stats %+v", st)
		}
		time.Sleep(time.Second) // the first times out
		synctest.Wait()
		n.Request("nobody", nil, time.Second, log.record(&start))
		synctest.Wait()
		if answers, _ := log.get(); len(answers) != 2 {
			t.Fatalf("answers %+v, want the new request pending", answers)
		}
	})
}

// TestInterestLimit: new names beyond MaxInterestBytes fail with
// ErrInterestFull, topics stop at three quarters, names already present
// cost nothing more, and closing gives the room back.
func TestInterestLimit(t *testing.T) {
	cfg := DefaultConfig()
	// Four names of 100 bytes, and room for the default name (at most 16
	// bytes here) of the one member: a table carries member names too.
	cfg.MaxInterestBytes = 4*(100+InterestEntryCost) + 16 + InterestEntryCost
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(loopOverlay{}); err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	name := func(c byte) string { return string(bytes.Repeat([]byte{c}, 100)) }
	var subs []*Subscription
	for _, c := range []byte("abc") {
		s, err := n.Subscribe(name(c), nil)
		if err != nil {
			t.Fatalf("topic %c: %v", c, err)
		}
		subs = append(subs, s)
	}
	if _, err := n.Subscribe(name('d'), nil); !errors.Is(err, ErrInterestFull) {
		t.Fatalf("fourth topic: %v, want ErrInterestFull (topics take at most 3/4)", err)
	}
	if _, err := n.Subscribe(name('a'), nil); err != nil {
		t.Fatalf("a topic already subscribed: %v", err)
	}
	reg, err := n.Register(name('s'), holdMember{}, 0)
	if err != nil {
		t.Fatalf("a service beside full topics: %v", err)
	}
	if _, err := n.Register(name('t'), holdMember{}, 0); !errors.Is(err, ErrInterestFull) {
		t.Fatalf("a fifth name: %v, want ErrInterestFull", err)
	}
	if st := n.Stats(); st.InterestRefused != 2 || st.InterestBytes != 4*(100+InterestEntryCost)+len(reg.Name())+InterestEntryCost {
		t.Fatalf("stats %+v", st)
	}
	reg.Close()
	subs[1].Close()
	if _, err := n.Subscribe(name('d'), nil); err != nil {
		t.Fatalf("a topic after others closed: %v", err)
	}
}
