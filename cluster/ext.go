package cluster

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
)

// ErrNameTaken is returned by RegisterNamed when the cluster already has a
// member of that name, here or on a daemon whose table this daemon holds.
var ErrNameTaken = errors.New("cluster: member name taken")

// maxMemberName bounds a member name.
const maxMemberName = 256

// ext is the node's state for the v1.1 patterns: surveys this daemon
// started, pushes waiting for a remote daemon's answer, and the requests
// delivered to local members can be cancelled (cancel.go).
type ext struct {
	nextName atomic.Uint64 // default member names: "<node id>/<n>"

	mu      sync.Mutex // protects following
	surveys map[uint64]*survey
	pushes  map[uint64]*pushing
	nextID  uint64 // survey and push ids (one space)

	stats extCounters
}

type extCounters struct {
	surveys, surveyAnswers, surveyMissing          atomic.Uint64
	surveysServed                                  atomic.Uint64
	pushes, pushesAccepted, pushesBusy, pushesNone atomic.Uint64
	pushesServed, pushesRefused                    atomic.Uint64
	cancels, cancelsServed                         atomic.Uint64
}

func (e *ext) newID() uint64 {
	e.nextID++
	return e.nextID
}

// RegisterNamed makes m a member of cluster named name, which must not be
// taken by another member of the cluster, here or on any daemon whose table
// this daemon holds (ErrNameTaken). An empty name gets the default
// "<daemon id>/<n>", unique per daemon. The member is reachable from this
// daemon when RegisterNamed returns and from the others once its table
// update reaches them. capacity is how many requests it may have in flight
// before it counts as saturated; 0 means the configured default.
func (n *Node) RegisterNamed(cluster, name string, m Member, capacity int) (*Registration, error) {
	if err := validName(cluster); err != nil {
		return nil, err
	}
	if len(name) > maxMemberName {
		return nil, fmt.Errorf("%w: member name of %d bytes", ErrBadName, len(name))
	}
	if capacity <= 0 {
		capacity = n.cfg.MemberCapacity
	}
	mem := &member{m: m, cluster: cluster, name: name, capacity: int64(capacity)}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, ErrClosed
	}
	if name == "" {
		id := n.id
		if id == "" {
			id = "local"
		}
		for mem.name == "" || n.nameTakenLocked(cluster, mem.name) {
			mem.name = id + "/" + strconv.FormatUint(n.ext.nextName.Add(1), 10)
		}
	} else if n.nameTakenLocked(cluster, name) {
		return nil, fmt.Errorf("%w: %q in cluster %q", ErrNameTaken, name, cluster)
	}
	// The table carries the cluster's name once and every member's name.
	_, known := n.local[cluster]
	if !known {
		if err := n.addInterestLocked(cluster, false); err != nil {
			return nil, err
		}
	}
	if err := n.addInterestLocked(mem.name, false); err != nil {
		if !known {
			n.interest -= interestCost(cluster)
		}
		return nil, err
	}
	cowAdd(n.local, cluster, mem)
	n.rebuildLocked(cluster)
	n.markDirtyLocked()
	return &Registration{n: n, m: mem}, nil
}

// Name returns the member's name in its cluster.
func (r *Registration) Name() string { return r.m.name }

func (n *Node) nameTakenLocked(cluster, name string) bool {
	for _, m := range n.local[cluster] {
		if m.name == name {
			return true
		}
	}
	for _, r := range n.remotes {
		if r.tbl != nil && slices.Contains(r.tbl.Clusters[cluster].Names, name) {
			return true
		}
	}
	return false
}

func memberNames(ms []*member) []string {
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = m.name
	}
	return names
}

// ID returns this daemon's id ("" before Start).
func (n *Node) ID() string {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.id
}

// HasMembers reports whether cluster has a member anywhere, as far as this
// daemon knows: here, or in the table of another daemon. A daemon that has
// just joined may not have every table yet.
func (n *Node) HasMembers(cluster string) bool {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.clusters[cluster] != nil
}

// MemberInfo names one member of a cluster and its daemon.
type MemberInfo struct {
	Name   string `json:"name"`
	Daemon string `json:"daemon"`
}

// Members lists the members of cluster this daemon knows of, sorted by
// daemon then name. Members of daemons that predate v1.1 have no names and
// are not listed.
func (n *Node) Members(cluster string) []MemberInfo {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.membersLocked(cluster)
}

func (n *Node) membersLocked(cluster string) []MemberInfo {
	var out []MemberInfo
	for _, m := range n.local[cluster] {
		out = append(out, MemberInfo{Name: m.name, Daemon: n.id})
	}
	for id, r := range n.remotes {
		if r.tbl == nil {
			continue
		}
		for _, name := range r.tbl.Clusters[cluster].Names {
			out = append(out, MemberInfo{Name: name, Daemon: id})
		}
	}
	slices.SortFunc(out, func(a, b MemberInfo) int {
		if a.Daemon != b.Daemon {
			if a.Daemon < b.Daemon {
				return -1
			}
			return 1
		}
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out
}

// handleExtFrame handles the frames of the v1.1 patterns, and skips frames
// of unknown types (from a newer daemon).
func (n *Node) handleExtFrame(from string, t frameType, rd *reader) error {
	switch t {
	case fSurvey:
		return n.handleRemoteSurvey(from, rd)
	case fSurveyAsked:
		return n.handleSurveyAsked(from, rd)
	case fSurveyAnswer:
		return n.handleSurveyAnswer(from, rd)
	case fPush:
		return n.handleRemotePush(from, rd)
	case fPushAck:
		return n.handlePushAck(from, rd)
	case fCancel:
		return n.handleRemoteCancel(from, rd)
	case fTableAck:
		return n.handleTableAck(from, rd)
	case fTableDelta:
		return n.handleTableDelta(from, rd.rest())
	}
	return nil
}

// extPeerDown ends what waits on a daemon that failed or whose link broke:
// its members' survey answers are lost, and pushes sent to it try elsewhere.
func (n *Node) extPeerDown(id string) {
	n.ext.mu.Lock()
	var ss []*survey
	for _, s := range n.ext.surveys {
		ss = append(ss, s)
	}
	var ps []*pushing
	for pid, p := range n.ext.pushes {
		if p.node == id {
			delete(n.ext.pushes, pid)
			ps = append(ps, p)
		}
	}
	n.ext.mu.Unlock()
	for _, s := range ss {
		s.daemonLost(id)
	}
	for _, p := range ps {
		p.timer.Stop()
		n.pushNext(p)
	}
}

// ExtStats counts the v1.1 patterns since the node started.
type ExtStats struct {
	Surveys        uint64 // surveys started on this daemon
	SurveyAnswers  uint64 // answers they got
	SurveyMissing  uint64 // members they asked that did not answer
	SurveysServed  uint64 // surveys delivered to members on this daemon
	Pushes         uint64 // pushes from apps on this daemon
	PushesAccepted uint64 // of those, taken by a member's queue
	PushesBusy     uint64 // of those, refused: every member's queue was full
	PushesNoMember uint64 // of those, refused: no member
	PushesServed   uint64 // pushes delivered to members on this daemon
	PushesRefused  uint64 // pushes from other daemons no member here could take (sent back busy)
	Cancels        uint64 // requests cancelled by apps on this daemon
	CancelsServed  uint64 // cancels delivered to members on this daemon
}

// ExtStats returns the counters of the v1.1 patterns.
func (n *Node) ExtStats() ExtStats {
	s := &n.ext.stats
	return ExtStats{
		Surveys: s.surveys.Load(), SurveyAnswers: s.surveyAnswers.Load(),
		SurveyMissing: s.surveyMissing.Load(), SurveysServed: s.surveysServed.Load(),
		Pushes: s.pushes.Load(), PushesAccepted: s.pushesAccepted.Load(),
		PushesBusy: s.pushesBusy.Load(), PushesNoMember: s.pushesNone.Load(),
		PushesServed: s.pushesServed.Load(), PushesRefused: s.pushesRefused.Load(),
		Cancels: s.cancels.Load(), CancelsServed: s.cancelsServed.Load(),
	}
}
