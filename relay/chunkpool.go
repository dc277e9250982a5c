package relay

import "sync"

// Tunnel chunks from apps are read into recycled buffers: a bulk tunnel
// otherwise allocates (and zeroes) 64 KiB per chunk on the sending daemon,
// whose only use is to be copied into a link record or written to the
// app at the far end.
// The link's writer hands the buffer back once it has copied it, or the
// writer of the far end's connection once it has written it, when both
// ends are on this daemon (cluster.Tunnel.SendOwned); a dropped chunk is
// left to the garbage collector.
const (
	// chunkBufSize is the size of a recycled buffer: the largest chunk
	// and the Decoder's read-ahead.
	chunkBufSize = 64<<10 + 1<<10
	// chunkBufMin is the smallest field read into one, so that a buffer
	// held by a queued chunk is at most twice the chunk's size.
	chunkBufMin = chunkBufSize / 2
)

var chunkBufs sync.Pool

// allocChunk is the connection's Decoder alloc (api.Decoder.SetAlloc): a
// recycled buffer for a field of chunk size, which the connection
// remembers so that handleTransfer knows the chunk may be released.
func (c *conn) allocChunk(n int) []byte {
	if n < chunkBufMin || n > chunkBufSize {
		return make([]byte, n)
	}
	var b []byte
	if p, ok := chunkBufs.Get().(*[]byte); ok {
		b = (*p)[:n]
	} else {
		b = make([]byte, n, chunkBufSize)
	}
	c.lastChunk = &b[0]
	return b
}

// recycledChunk reports whether p is the last buffer allocChunk gave out,
// once: the read loop passes each decoded chunk on only once.
func (c *conn) recycledChunk(p []byte) bool {
	ok := len(p) > 0 && cap(p) == chunkBufSize && &p[0] == c.lastChunk
	c.lastChunk = nil
	return ok
}

// releaseChunk takes back a buffer from allocChunk that nothing reads any
// more.
func releaseChunk(b []byte) {
	if cap(b) != chunkBufSize {
		return
	}
	b = b[:chunkBufSize]
	chunkBufs.Put(&b)
}
