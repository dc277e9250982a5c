package sdk

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/iris-mesh/iris/api"
)

// SurveyAnswer is one member's answer to a survey.
type SurveyAnswer struct {
	Member string // the member's name (see Config.Name)
	Daemon string // the id of its daemon
	Data   []byte // the answer
}

// MissingMember is a member asked in a survey that did not answer.
type MissingMember struct {
	Member string
	Daemon string
	// Reason is why: "late" (no answer by the deadline), "failed: <fault>"
	// (its handler failed, it refused the question or left), "lost" (its
	// daemon failed or the link to it broke) or "quorum" (the survey
	// stopped at its quorum first).
	Reason string
}

// SurveyResult is the outcome of a survey.
type SurveyResult struct {
	Asked    int             // members the question was sent to
	Answered int             // members that answered
	Answers  []SurveyAnswer  // the answers, in the order they arrived
	Missing  []MissingMember // the members asked that did not answer, by daemon then name
}

// SurveyOptions tunes a survey. A nil *SurveyOptions means the defaults.
type SurveyOptions struct {
	// Quorum ends the survey as soon as this many members answered; the
	// others are reported missing with reason "quorum". 0 waits for every
	// member (or the deadline).
	Quorum int
	// OnAnswer, if set, is called with each answer as it arrives, on the
	// goroutine that called Survey, before Survey returns.
	OnAnswer func(SurveyAnswer)
}

// surveyCall is a survey waiting for its end. The reader appends answers
// and signals; the caller's goroutine takes them.
type surveyCall struct {
	wake chan struct{} // cap 1

	mu      sync.Mutex // protects following
	answers []SurveyAnswer
	res     *SurveyResult
	err     error
	ended   bool
}

// signal wakes the receiver of a capacity-1 channel without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (s *surveyCall) add(a SurveyAnswer) {
	s.mu.Lock()
	s.answers = append(s.answers, a)
	s.mu.Unlock()
	signal(s.wake)
}

func (s *surveyCall) finish(res *SurveyResult, err error) {
	s.mu.Lock()
	s.res, s.err, s.ended = res, err, true
	s.mu.Unlock()
	signal(s.wake)
}

// take returns the answers that arrived since the last call, and whether
// the survey ended.
func (s *surveyCall) take() ([]SurveyAnswer, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := s.answers
	s.answers = nil
	return a, s.ended
}

// Survey sends question to every member of cluster, on every daemon, and
// gathers their answers. Members answer with their Handler, as they answer
// requests (IsSurvey tells them apart). The survey ends as soon as every
// member asked has answered or failed, when opts.Quorum answers arrived,
// or at ctx's deadline (Config.DefaultRequestTimeout when it has none),
// whichever comes first; the daemon owns the deadline and knows whom it
// asked, so the result names the members that did not answer and why.
//
// A survey that reaches its deadline is not an error: the result holds
// what arrived. With no member anywhere Survey fails at once with
// ErrNoMembers. If ctx is cancelled first, Survey returns the answers so
// far with ctx's error. It needs a daemon that speaks protocol v1.1
// (ErrUnsupported otherwise).
func (c *Conn) Survey(ctx context.Context, cluster string, question []byte, opts *SurveyOptions) (*SurveyResult, error) {
	if opts == nil {
		opts = &SurveyOptions{}
	}
	if err := c.checkV11("survey", cluster, len(question)); err != nil {
		return nil, err
	}
	if opts.Quorum < 0 {
		return nil, fmt.Errorf("sdk: survey: negative quorum %d", opts.Quorum)
	}
	timeoutMs, err := timeoutMs(ctx, c.cfg.DefaultRequestTimeout)
	if err != nil {
		return nil, err
	}
	s := &surveyCall{wake: make(chan struct{}, 1)}
	c.mu.Lock()
	if err := c.checkOpenLocked(); err != nil {
		c.mu.Unlock()
		return nil, err
	}
	c.x.nextID++
	id := c.x.nextID
	c.x.surveys[id] = s
	c.mu.Unlock()
	m := api.Message{Op: api.OpSurvey, ID: id, Cluster: cluster, Payload: question,
		TimeoutMs: timeoutMs, Size: uint64(opts.Quorum)}
	if err := c.send(ctx, &m); err != nil {
		c.abandonSurvey(id, false)
		return nil, err
	}
	res, err := c.gather(ctx, id, s, opts)
	if err == ErrNoMembers {
		err = fmt.Errorf("sdk: survey of %q: %w", cluster, ErrNoMembers)
	}
	return res, err
}

// surveyGrace is how long Survey waits for the daemon's end after its own
// deadline passed: the daemon ends the survey at that deadline too.
const surveyGrace = 2 * time.Second

// gather collects the answers of survey id until its end.
func (c *Conn) gather(ctx context.Context, id uint64, s *surveyCall, opts *SurveyOptions) (*SurveyResult, error) {
	var answers []SurveyAnswer
	done := ctx.Done()
	var grace <-chan time.Time
	for {
		got, ended := s.take()
		for _, a := range got {
			if opts.OnAnswer != nil {
				opts.OnAnswer(a)
			}
		}
		answers = append(answers, got...)
		if ended {
			if s.err != nil {
				return nil, s.err
			}
			res := s.res
			res.Answers = answers
			return res, nil
		}
		select {
		case <-s.wake:
		case <-done:
			if ctx.Err() == context.DeadlineExceeded {
				done = nil // the daemon ends it now: give its end a moment
				t := time.NewTimer(surveyGrace)
				defer t.Stop()
				grace = t.C
				continue
			}
			c.abandonSurvey(id, true)
			return &SurveyResult{Answered: len(answers), Answers: answers}, ctx.Err()
		case <-grace:
			c.abandonSurvey(id, true)
			return &SurveyResult{Answered: len(answers), Answers: answers},
				fmt.Errorf("sdk: survey: no end from the daemon %v after its deadline: %w", surveyGrace, ErrTimeout)
		}
	}
}

// abandonSurvey forgets survey id, leaving a tombstone while the daemon
// still owes its end.
func (c *Conn) abandonSurvey(id uint64, tombstone bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.x.surveys[id]; !ok {
		return
	}
	if tombstone {
		c.x.surveys[id] = nil
	} else {
		delete(c.x.surveys, id)
	}
}

func (c *Conn) handleSurveyAnswer(m *api.Message) {
	c.mu.Lock()
	s, found := c.x.surveys[m.ID]
	c.mu.Unlock()
	switch {
	case !found:
		c.stats.unknownReplies.Add(1)
	case s == nil:
		c.stats.lateReplies.Add(1)
	default:
		var f api.SurveyFields
		if m.Survey != nil {
			f = *m.Survey
		}
		s.add(SurveyAnswer{Member: f.Member, Daemon: f.Daemon, Data: m.Payload})
	}
}

func (c *Conn) handleSurveyEnd(m *api.Message) {
	c.mu.Lock()
	s, found := c.x.surveys[m.ID]
	if found {
		delete(c.x.surveys, m.ID)
	}
	c.mu.Unlock()
	switch {
	case !found:
		c.stats.unknownReplies.Add(1)
	case s == nil:
		c.stats.lateReplies.Add(1)
	case m.Fault == noMembersFault:
		s.finish(nil, ErrNoMembers) // Survey names the cluster
	default:
		var f api.SurveyFields
		if m.Survey != nil {
			f = *m.Survey
		}
		res := &SurveyResult{Asked: int(min(f.Asked, 1<<31)), Answered: int(min(f.Answered, 1<<31))}
		for _, x := range f.Missing {
			res.Missing = append(res.Missing, MissingMember(x))
		}
		s.finish(res, nil)
	}
}
