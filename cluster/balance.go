package cluster

import (
	"math/rand/v2"
	"slices"
	"time"
)

// pickLocal chooses among local members: the less loaded of two random
// ones that are not saturated, else the least loaded of all. nil if none.
func pickLocal(ms []*member, skip *member) *member {
	switch len(ms) {
	case 0:
		return nil
	case 1:
		if ms[0] == skip {
			return nil
		}
		return ms[0]
	}
	var best *member
	i := rand.IntN(len(ms))
	j := (i + 1 + rand.IntN(len(ms)-1)) % len(ms)
	for _, k := range [2]int{i, j} {
		m := ms[k]
		if m == skip || m.inflight.Load() >= m.capacity {
			continue
		}
		if best == nil || m.load() < best.load() {
			best = m
		}
	}
	if best != nil {
		return best
	}
	for _, m := range ms {
		if m != skip && (best == nil || m.load() < best.load()) {
			best = m
		}
	}
	return best
}

func saturatedLocal(ms []*member) bool {
	for _, m := range ms {
		if m.inflight.Load() < m.capacity {
			return false
		}
	}
	return true
}

// pickRemote chooses among remote daemons like pickLocal, skipping
// unhealthy ones unless allowUnhealthy.
func pickRemote(ts []remoteTarget, now int64, skip []*remoteNode, allowUnhealthy bool) *remoteNode {
	ok := func(t *remoteTarget) bool {
		return !slices.Contains(skip, t.node) && (allowUnhealthy || t.node.healthy(now))
	}
	var best *remoteTarget
	if len(ts) > 1 {
		// Two distinct random targets: were both draws allowed to hit the
		// same one, a daemon that stopped answering (its requests pile up)
		// would still get 1/len² of the work until it is found out.
		i := rand.IntN(len(ts))
		j := (i + 1 + rand.IntN(len(ts)-1)) % len(ts)
		for _, k := range [2]int{i, j} {
			t := &ts[k]
			if !ok(t) || t.node.inflight.Load() >= t.capacity {
				continue
			}
			if best == nil || t.load() < best.load() {
				best = t
			}
		}
	}
	if best == nil {
		for i := range ts {
			t := &ts[i]
			if ok(t) && (best == nil || t.load() < best.load()) {
				best = t
			}
		}
	}
	if best == nil {
		return nil
	}
	return best.node
}

func saturatedRemote(ts []remoteTarget, now int64) bool {
	for i := range ts {
		if ts[i].node.healthy(now) && ts[i].node.inflight.Load() < ts[i].capacity {
			return false
		}
	}
	return true
}

// pick chooses where a request goes, in tiers: this host, then this zone,
// then the rest. A tier is passed over while it is saturated and a later
// tier has room; unhealthy daemons are used only when nothing else serves
// the cluster. skipNodes excludes daemons that just could not place it or
// could not be reached, skipMember a local member that just refused it.
func (t *targets) pick(skipNodes []*remoteNode, skipMember *member) (*member, *remoteNode) {
	now := time.Now().UnixNano()
	local := t.local
	if skipMember != nil && len(local) == 1 && local[0] == skipMember {
		local = nil
	}
	if len(local) > 0 && (!saturatedLocal(local) || (saturatedRemote(t.near, now) && saturatedRemote(t.far, now))) {
		if m := pickLocal(local, skipMember); m != nil {
			return m, nil
		}
	}
	if len(t.near) > 0 && (!saturatedRemote(t.near, now) || saturatedRemote(t.far, now)) {
		if r := pickRemote(t.near, now, skipNodes, false); r != nil {
			return nil, r
		}
	}
	if r := pickRemote(t.far, now, skipNodes, false); r != nil {
		return nil, r
	}
	if r := pickRemote(t.near, now, skipNodes, false); r != nil {
		return nil, r
	}
	if m := pickLocal(local, skipMember); m != nil {
		return m, nil
	}
	if r := pickRemote(t.near, now, skipNodes, true); r != nil {
		return nil, r
	}
	return nil, pickRemote(t.far, now, skipNodes, true)
}
