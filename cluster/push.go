package cluster

import (
	"encoding/binary"
	"math/rand/v2"
	"time"

	"github.com/iris-mesh/iris/overlay"
)

// PushMember is implemented by a Member that takes pushes. The cluster
// checks for it with a type assertion; members without it are skipped.
type PushMember interface {
	// HandlePush offers a pushed message. It returns false when the member
	// cannot take it now (it granted no more credit); the push then goes to
	// another member. Having returned true, the member owns the message:
	// it delivers it or counts it as dropped. It must not block.
	HandlePush(msg []byte) bool
}

// PushStatus says what became of a push.
type PushStatus uint8

// Push outcomes.
const (
	PushAccepted  PushStatus = iota // a member's queue took it
	PushBusy                        // every member's queue was full
	PushNoMembers                   // the cluster has no member anywhere
)

// push frame statuses
const (
	pushAckOK   = 0
	pushAckBusy = 1
)

// pushing is a push being placed: the order in which it tries the local
// members and the remote daemons, and where it is now.
type pushing struct {
	cluster string
	payload []byte
	cb      func(PushStatus)
	local   []*member
	remotes []*remoteNode
	start   int         // first option tried: index into local, then remotes
	next    int         // options tried so far
	node    string      // remote daemon it waits on
	timer   *time.Timer // bounds that wait (a daemon that predates v1.1 never answers)
}

// pushAckTimeout bounds the wait for a remote daemon's ack of a push; then
// the push goes to the next member. Daemons answer at once, so only one
// that predates push (it skips the frame) or a stuck link reaches it.
const pushAckTimeout = 5 * time.Second

// Push hands msg to one member of cluster, load-balanced at random in
// proportion to the members each daemon has, and calls cb once with the
// outcome: accepted by a member's queue, busy (every member refused it:
// their queues are full), or no members. cb runs on a daemon goroutine, or
// on the caller's before Push returns, and must not block.
func (n *Node) Push(cluster string, msg []byte, cb func(PushStatus)) {
	n.ext.stats.pushes.Add(1)
	n.mu.RLock()
	t := n.clusters[cluster]
	n.mu.RUnlock()
	if _, ok := n.ready(); !ok || t == nil {
		n.pushDone(&pushing{cb: cb}, PushNoMembers)
		return
	}
	p := &pushing{cluster: cluster, payload: msg, cb: cb, local: t.local}
	// Each member counts once: pick the first option by members.
	total := len(t.local)
	weights := make([]int, 0, len(t.near)+len(t.far))
	now := time.Now().UnixNano()
	for _, list := range [][]remoteTarget{t.near, t.far} {
		for _, rt := range list {
			if !rt.node.healthy(now) {
				continue
			}
			p.remotes = append(p.remotes, rt.node)
			weights = append(weights, rt.members)
			total += rt.members
		}
	}
	if total == 0 {
		n.pushDone(p, PushBusy)
		return
	}
	r := rand.IntN(total)
	if r < len(t.local) {
		p.start = r
	} else {
		r -= len(t.local)
		for i, w := range weights {
			if r < w {
				p.start = len(p.local) + i
				break
			}
			r -= w
		}
	}
	n.pushNext(p)
}

// pushNext tries the options not tried yet, in turn from p.start: local
// members synchronously, a remote daemon by sending it the push and
// waiting for its ack.
func (n *Node) pushNext(p *pushing) {
	options := len(p.local) + len(p.remotes)
	for p.next < options {
		i := (p.start + p.next) % options
		p.next++
		if i < len(p.local) {
			if n.offerPush(p.local[i], p.payload) {
				n.pushDone(p, PushAccepted)
				return
			}
			continue
		}
		r := p.remotes[i-len(p.local)]
		ov, ok := n.ready()
		if !ok {
			break
		}
		n.ext.mu.Lock()
		if n.ext.pushes == nil {
			n.ext.pushes = map[uint64]*pushing{}
		}
		id := n.ext.newID()
		p.node = r.id
		n.ext.pushes[id] = p
		p.timer = time.AfterFunc(pushAckTimeout, func() { n.pushAckLate(id, p) })
		n.ext.mu.Unlock()
		if ov.Send(r.id, overlay.Bulk, pushHead(id, p.cluster), p.payload) == nil {
			return // handlePushAck, extPeerDown or pushAckLate goes on
		}
		if !n.takePush(id, p) {
			return // another took it and went on
		}
	}
	n.pushDone(p, PushBusy)
}

func (n *Node) pushDone(p *pushing, st PushStatus) {
	switch st {
	case PushAccepted:
		n.ext.stats.pushesAccepted.Add(1)
	case PushBusy:
		n.ext.stats.pushesBusy.Add(1)
	case PushNoMembers:
		n.ext.stats.pushesNone.Add(1)
	}
	p.cb(st)
}

// offerPush offers msg to a local member.
func (n *Node) offerPush(m *member, msg []byte) bool {
	pm, ok := m.m.(PushMember)
	if !ok || !pm.HandlePush(msg) {
		return false
	}
	n.ext.stats.pushesServed.Add(1)
	return true
}

func pushHead(id uint64, cluster string) []byte {
	h := make([]byte, 0, 1+binary.MaxVarintLen64+binary.MaxVarintLen32+len(cluster))
	h = append(h, byte(fPush))
	h = binary.AppendUvarint(h, id)
	return appendName(h, cluster)
}

// handleRemotePush offers a push from another daemon to the local members,
// starting at a random one, and acks it: accepted, or busy.
func (n *Node) handleRemotePush(from string, rd *reader) error {
	id := rd.uvarint()
	cluster := rd.name()
	msg := rd.rest()
	if rd.err != nil {
		return rd.err
	}
	n.mu.RLock()
	ms := n.local[string(cluster)]
	ov := n.ov
	n.mu.RUnlock()
	st := byte(pushAckBusy)
	if len(ms) > 0 {
		start := rand.IntN(len(ms))
		for i := range ms {
			if n.offerPush(ms[(start+i)%len(ms)], msg) {
				st = pushAckOK
				break
			}
		}
	}
	if st != pushAckOK {
		n.ext.stats.pushesRefused.Add(1)
	}
	h := binary.AppendUvarint([]byte{byte(fPushAck)}, id)
	return ov.Send(from, overlay.Control, append(h, st), nil)
}

// takePush removes push id, if it is still p and waiting, and stops its
// timer; it reports whether the caller now owns it.
func (n *Node) takePush(id uint64, p *pushing) bool {
	n.ext.mu.Lock()
	mine := n.ext.pushes[id] == p
	if mine {
		delete(n.ext.pushes, id)
	}
	n.ext.mu.Unlock()
	if mine {
		p.timer.Stop()
	}
	return mine
}

// pushAckLate goes on with a push whose remote daemon did not answer.
func (n *Node) pushAckLate(id uint64, p *pushing) {
	if n.takePush(id, p) {
		n.pushNext(p)
	}
}

// handlePushAck goes on with a push a remote daemon answered.
func (n *Node) handlePushAck(from string, rd *reader) error {
	id := rd.uvarint()
	st := rd.byte()
	if rd.err != nil {
		return rd.err
	}
	n.ext.mu.Lock()
	p := n.ext.pushes[id]
	n.ext.mu.Unlock()
	if p != nil && (p.node != from || !n.takePush(id, p)) {
		p = nil
	}
	switch {
	case p == nil:
	case st == pushAckOK:
		n.pushDone(p, PushAccepted)
	default:
		n.pushNext(p)
	}
	return nil
}
