package cluster

import (
	"hash/maphash"
	"sync/atomic"
)

// headCache remembers the frame headers of recent broadcasts and publishes,
// so that a stream to one topic or cluster builds its header once rather
// than once per message. A header is immutable once built (queued frames
// share it), so entries are published with atomic stores and read without a
// lock. Direct-mapped: a collision only costs a new header.
type headCache struct {
	seed    maphash.Seed
	entries [headCacheSize]atomic.Pointer[headEntry]
}

const headCacheSize = 64

type headEntry struct {
	t    frameType
	name string
	head []byte
}

// get returns nameHead(t, name), from the cache when it holds it.
func (c *headCache) get(t frameType, name string) []byte {
	slot := &c.entries[(maphash.String(c.seed, name)+uint64(t))%headCacheSize]
	if e := slot.Load(); e != nil && e.t == t && e.name == name {
		return e.head
	}
	h := nameHead(t, name)
	slot.Store(&headEntry{t: t, name: name, head: h[:len(h):len(h)]})
	return h
}
