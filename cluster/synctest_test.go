package cluster

import (
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
