package cluster

import (
	"encoding/binary"
	"slices"
	"sync"
	"time"

	"github.com/iris-mesh/iris/overlay"
)

// SurveyMember is implemented by a Member that takes surveys. The cluster
// checks for it with a type assertion; a member without it counts as
// failed in every survey.
type SurveyMember interface {
	// HandleSurvey offers a survey question as a Request, which the member
	// ends exactly once (Reply, Fail or Abandon), or returns false when it
	// cannot take it now. It must not block.
	HandleSurvey(r *Request) bool
}

// SurveyAnswer is one member's answer to a survey.
type SurveyAnswer struct {
	Member  string // the member's name
	Daemon  string // its daemon's id
	Payload []byte
}

// SurveyMissing is a member asked that did not answer.
type SurveyMissing struct {
	Member string
	Daemon string
	Reason string // "late", "failed: <fault>", "lost" or "quorum"
}

// SurveyResult is how a survey ended.
type SurveyResult struct {
	Asked    int // members the question was sent to
	Answered int // members that answered it
	Missing  []SurveyMissing
}

// Reasons of a SurveyMissing (the relay protocol's words).
const (
	reasonLate   = "late"
	reasonFailed = "failed"
	reasonLost   = "lost"
	reasonQuorum = "quorum"
)

// maxSurveyed bounds the members one survey tracks.
const maxSurveyed = 1 << 20

// surveyee states.
const (
	sePending uint8 = iota
	seAnswered
	seFailed
	seLost
)

type surveyee struct {
	state uint8
	fault string
}

type seKey struct{ daemon, name string }

// survey is a survey this daemon started: it asks every member of the
// cluster and ends as soon as each has answered or failed, its daemon is
// lost, the quorum is reached, or the deadline passes.
type survey struct {
	n        *Node
	id       uint64
	quorum   int
	onAnswer func(SurveyAnswer)
	onEnd    func(SurveyResult)

	mu        sync.Mutex // protects following; the callbacks run under it, in order
	ended     bool
	timer     *time.Timer
	members   map[seKey]*surveyee
	unheard   map[string]bool // remote daemons that have not said whom they asked
	answered  int
	remaining int // surveyees still pending
}

// Survey sends question to every member of cluster, here and on every
// daemon that serves it. onAnswer is called with each answer as it
// arrives, and onEnd once, last, when every member asked has answered or
// failed, when quorum (if > 0) answers have arrived, or at the deadline.
// Both run on daemon goroutines, never concurrently, and must not block.
// With no member anywhere it ends at once with nobody asked.
func (n *Node) Survey(cluster string, question []byte, timeout time.Duration, quorum int,
	onAnswer func(SurveyAnswer), onEnd func(SurveyResult)) {
	n.ext.stats.surveys.Add(1)
	timeout = min(max(timeout, time.Millisecond), n.cfg.MaxRequestTimeout)
	s := &survey{n: n, quorum: quorum, onAnswer: onAnswer, onEnd: onEnd,
		members: map[seKey]*surveyee{}, unheard: map[string]bool{}}
	ov, ok := n.ready()
	n.mu.RLock()
	t := n.clusters[cluster]
	id := n.id
	// Until a remote daemon says whom it asked, expect the members its
	// table names.
	expect := map[string][]string{}
	if t != nil {
		for _, list := range [][]remoteTarget{t.near, t.far} {
			for _, rt := range list {
				if rt.node.tbl != nil {
					expect[rt.node.id] = rt.node.tbl.Clusters[cluster].Names
				} else {
					expect[rt.node.id] = nil
				}
			}
		}
	}
	n.mu.RUnlock()
	if !ok || t == nil {
		s.mu.Lock()
		s.endLocked()
		s.mu.Unlock()
		return
	}
	var remotes []remoteTarget
	remotes = append(append(remotes, t.near...), t.far...)
	s.mu.Lock()
	for daemon, names := range expect {
		s.unheard[daemon] = true
		for _, name := range names {
			s.addLocked(daemon, name)
		}
	}
	for _, m := range t.local {
		s.addLocked(id, m.name)
	}
	s.mu.Unlock()

	n.ext.mu.Lock()
	if n.ext.surveys == nil {
		n.ext.surveys = map[uint64]*survey{}
	}
	s.id = n.ext.newID()
	n.ext.surveys[s.id] = s
	n.ext.mu.Unlock()
	s.mu.Lock()
	s.timer = time.AfterFunc(timeout, s.deadline)
	s.mu.Unlock()

	timeoutMs := uint64(timeout / time.Millisecond)
	head := surveyHead(s.id, timeoutMs, cluster)
	for _, rt := range remotes {
		if err := ov.Send(rt.node.id, overlay.Bulk, head, question); err != nil {
			s.daemonLost(rt.node.id)
		}
	}
	deadline := time.Now().Add(timeout)
	for _, m := range t.local {
		req := &Request{Cluster: cluster, Payload: question, TimeoutMs: timeoutMs, Deadline: deadline,
			n: n, mem: m, onDone: func(st replyStatus, body []byte) { s.answer(id, m.name, st, body) }}
		if !n.offerSurvey(m, req) {
			s.answer(id, m.name, repFault, []byte("iris: member refused the survey"))
		}
	}
}

// offerSurvey offers a survey question to a local member.
func (n *Node) offerSurvey(m *member, req *Request) bool {
	sm, ok := m.m.(SurveyMember)
	if !ok {
		return false
	}
	m.inflight.Add(1)
	if !sm.HandleSurvey(req) {
		m.inflight.Add(-1)
		return false
	}
	n.ext.stats.surveysServed.Add(1)
	return true
}

func (s *survey) addLocked(daemon, name string) {
	k := seKey{daemon, name}
	if s.members[k] == nil {
		s.members[k] = &surveyee{}
		s.remaining++
	}
}

// answer records a member's answer or failure.
func (s *survey) answer(daemon, name string, st replyStatus, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	se := s.members[seKey{daemon, name}]
	if se == nil {
		// Not expected: a member that joined after its daemon's table
		// reached us, asked all the same. A daemon that has said whom it
		// asked cannot add more, and no survey grows past maxSurveyed.
		if !s.unheard[daemon] || len(s.members) >= maxSurveyed {
			return
		}
		s.addLocked(daemon, name)
		se = s.members[seKey{daemon, name}]
	}
	if se.state != sePending {
		return
	}
	s.remaining--
	if st == repOK {
		se.state = seAnswered
		s.answered++
		s.n.ext.stats.surveyAnswers.Add(1)
		s.onAnswer(SurveyAnswer{Member: name, Daemon: daemon, Payload: body})
	} else {
		se.state, se.fault = seFailed, string(body)
	}
	s.checkLocked()
}

// asked records whom a remote daemon asked: members its table named but
// that it did not ask are dropped, new ones added.
func (s *survey) asked(daemon string, names []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || !s.unheard[daemon] {
		return
	}
	delete(s.unheard, daemon)
	for k, se := range s.members {
		if k.daemon == daemon && se.state == sePending && !slices.Contains(names, k.name) {
			delete(s.members, k)
			s.remaining--
		}
	}
	for _, name := range names {
		if len(s.members) >= maxSurveyed {
			break
		}
		s.addLocked(daemon, name)
	}
	s.checkLocked()
}

// daemonLost marks every member of daemon that has not answered as lost.
func (s *survey) daemonLost(daemon string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended {
		return
	}
	delete(s.unheard, daemon)
	for k, se := range s.members {
		if k.daemon == daemon && se.state == sePending {
			se.state = seLost
			s.remaining--
		}
	}
	s.checkLocked()
}

func (s *survey) deadline() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ended {
		s.endLocked()
	}
}

// checkLocked ends the survey once nothing more can come or the quorum is
// reached.
func (s *survey) checkLocked() {
	if (s.remaining == 0 && len(s.unheard) == 0) || (s.quorum > 0 && s.answered >= s.quorum) {
		s.endLocked()
	}
}

func (s *survey) endLocked() {
	s.ended = true
	if s.timer != nil {
		s.timer.Stop()
	}
	if s.id != 0 {
		s.n.ext.mu.Lock()
		delete(s.n.ext.surveys, s.id)
		s.n.ext.mu.Unlock()
	}
	res := SurveyResult{Asked: len(s.members), Answered: s.answered}
	quorumMet := s.quorum > 0 && s.answered >= s.quorum
	for k, se := range s.members {
		var reason string
		switch se.state {
		case seAnswered:
			continue
		case seFailed:
			reason = reasonFailed
			if se.fault != "" {
				reason += ": " + se.fault
			}
		case seLost:
			reason = reasonLost
		default:
			reason = reasonLate
			if quorumMet {
				reason = reasonQuorum
			}
		}
		res.Missing = append(res.Missing, SurveyMissing{Member: k.name, Daemon: k.daemon, Reason: reason})
	}
	slices.SortFunc(res.Missing, func(a, b SurveyMissing) int {
		if a.Daemon != b.Daemon {
			if a.Daemon < b.Daemon {
				return -1
			}
			return 1
		}
		if a.Member < b.Member {
			return -1
		}
		if a.Member > b.Member {
			return 1
		}
		return 0
	})
	s.n.ext.stats.surveyMissing.Add(uint64(len(res.Missing)))
	s.onEnd(res)
}

// surveyHead: fSurvey id timeoutMs cluster.
func surveyHead(id, timeoutMs uint64, cluster string) []byte {
	h := make([]byte, 0, 1+2*binary.MaxVarintLen64+binary.MaxVarintLen32+len(cluster))
	h = append(h, byte(fSurvey))
	h = binary.AppendUvarint(h, id)
	h = binary.AppendUvarint(h, timeoutMs)
	return appendName(h, cluster)
}

// handleRemoteSurvey asks the local members of a survey from another
// daemon: first it tells the origin whom it asks, then each member's
// answer (or failure) follows as an fSurveyAnswer.
func (n *Node) handleRemoteSurvey(from string, rd *reader) error {
	id := rd.uvarint()
	timeoutMs := rd.uvarint()
	cluster := rd.name()
	question := rd.rest()
	if rd.err != nil {
		return rd.err
	}
	n.mu.RLock()
	ms := n.local[string(cluster)]
	ov := n.ov
	n.mu.RUnlock()
	asked := []byte{byte(fSurveyAsked)}
	asked = binary.AppendUvarint(asked, id)
	asked = binary.AppendUvarint(asked, uint64(len(ms)))
	for _, m := range ms {
		asked = appendName(asked, m.name)
	}
	if err := ov.Send(from, overlay.Bulk, asked, nil); err != nil {
		return nil // the origin will count them lost
	}
	timeout := time.Duration(min(timeoutMs, uint64(n.cfg.MaxRequestTimeout/time.Millisecond))) * time.Millisecond
	deadline := time.Now().Add(timeout)
	for _, m := range ms {
		send := func(st replyStatus, body []byte) {
			if ov, ok := n.ready(); ok {
				_ = ov.Send(from, overlay.Bulk, surveyAnswerHead(id, st, m.name), body)
			}
		}
		req := &Request{Cluster: m.cluster, Payload: question, TimeoutMs: timeoutMs, Deadline: deadline,
			n: n, mem: m, origin: from, id: id, onDone: send}
		if !n.offerSurvey(m, req) {
			send(repFault, []byte("iris: member refused the survey"))
		}
	}
	return nil
}

func surveyAnswerHead(id uint64, st replyStatus, name string) []byte {
	h := make([]byte, 0, 2+binary.MaxVarintLen64+binary.MaxVarintLen32+len(name))
	h = append(h, byte(fSurveyAnswer))
	h = binary.AppendUvarint(h, id)
	h = append(h, byte(st))
	return appendName(h, name)
}

func (n *Node) survey(id uint64) *survey {
	n.ext.mu.Lock()
	defer n.ext.mu.Unlock()
	return n.ext.surveys[id]
}

// handleSurveyAsked: fSurveyAsked id count names...
func (n *Node) handleSurveyAsked(from string, rd *reader) error {
	id := rd.uvarint()
	count := rd.uvarint()
	if rd.err != nil {
		return rd.err
	}
	if count > uint64(len(rd.b)) { // each name takes at least one byte
		return errBadFrame
	}
	names := make([]string, 0, count)
	for range count {
		names = append(names, string(rd.name()))
	}
	if rd.err != nil {
		return rd.err
	}
	if s := n.survey(id); s != nil {
		s.asked(from, names)
	}
	return nil
}

// handleSurveyAnswer: fSurveyAnswer id status name, then the answer.
func (n *Node) handleSurveyAnswer(from string, rd *reader) error {
	id := rd.uvarint()
	st := replyStatus(rd.byte())
	name := rd.name()
	body := rd.rest()
	if rd.err != nil {
		return rd.err
	}
	if s := n.survey(id); s != nil {
		s.answer(from, string(name), st, body)
	}
	return nil
}

// extClose ends what waits on other daemons when the node closes: surveys
// end with the members not heard from lost, and pushes waiting for a
// remote ack are answered busy.
func (n *Node) extClose() {
	n.ext.mu.Lock()
	ss := make([]*survey, 0, len(n.ext.surveys))
	for _, s := range n.ext.surveys {
		ss = append(ss, s)
	}
	ps := make([]*pushing, 0, len(n.ext.pushes))
	for id, p := range n.ext.pushes {
		delete(n.ext.pushes, id)
		ps = append(ps, p)
	}
	n.ext.mu.Unlock()
	for _, s := range ss {
		s.mu.Lock()
		if !s.ended {
			for _, se := range s.members {
				if se.state == sePending {
					se.state = seLost
				}
			}
			s.endLocked()
		}
		s.mu.Unlock()
	}
	for _, p := range ps {
		p.timer.Stop()
		n.pushDone(p, PushBusy)
	}
}
