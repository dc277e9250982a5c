package api

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"slices"
)

// readBufferSize is the Decoder's bufio buffer. It holds a default-limit
// string or a full 64 KiB tunnel chunk, so those are read with one copy.
const readBufferSize = 64 << 10

// directReadSize is the field size from which readN reads what is not
// buffered yet straight from the source.
const directReadSize = 16 << 10

// bulkReadAhead bounds the read that refills the bufio buffer after a large
// field was read straight from the source: in a stream of large messages
// (bulk tunnel chunks) the next refill then brings the next header and a
// little of its payload, and the payload is read into its own slice rather
// than copied out of the buffer. The first small message lifts the bound.
const bulkReadAhead = 512

// eagerAllocMax is the largest binary field allocated in one go as soon as
// its length is known. Larger fields grow as their bytes actually arrive, so
// a peer that declares a 16 MiB message and stalls costs at most this much.
const eagerAllocMax = 1 << 20

// A Decoder reads relay protocol messages from a byte stream. It is not safe
// for concurrent use; a connection's read loop owns it.
type Decoder struct {
	br  *bufio.Reader
	src io.Reader // what br reads from (br itself if it was passed in)
	lim Limits

	// fill is br's source when the Decoder made br: src, with refills
	// bounded to bulkReadAhead while large fields stream (see readN).
	fill cappedReader
	// direct is set when the current message had a field read straight
	// from src.
	direct bool
	// pendBuf holds the bytes read ahead of a large field (fill.pend).
	pendBuf [bulkReadAhead]byte
	// alloc, if set, allocates the large fields read straight from src.
	alloc func(n int) []byte
	// borrowMax is the largest client PUBLISH event returned as a slice of
	// br's buffer rather than a copy (SetBorrow); 0: none.
	borrowMax int

	// err is the first error met while decoding the current message's
	// fields, annotated with the field's name. The field readers do nothing
	// once it is set, so per-opcode decoders are straight-line code.
	err error
	// broken is the error that desynchronised the stream; once set, every
	// later read returns it.
	broken error

	// eagerMax is eagerAllocMax; tests lower it to reach readN's growing
	// path with small inputs.
	eagerMax int

	// v11 admits the v1.1 opcodes (0x0e and up); see EnableV11.
	v11 bool

	// names holds recently decoded short strings (topics, cluster names),
	// direct-mapped, so that a stream that repeats a name decodes it without
	// allocating.
	names [nameCacheSize]string
}

// A Decoder remembers nameCacheSize strings of at most nameCacheMax bytes.
const (
	nameCacheSize = 8
	nameCacheMax  = 128
)

// cachedString returns p as a string, from the name cache when it holds it.
func (d *Decoder) cachedString(p []byte) string {
	if len(p) > nameCacheMax {
		return string(p)
	}
	slot := &d.names[(len(p)^int(p[0])^int(p[len(p)-1]))%nameCacheSize]
	if *slot != string(p) { // no allocation: the compiler compares in place
		*slot = string(p)
	}
	return *slot
}

// EnableV11 makes the Decoder accept the opcodes of protocol v1.1. Call it
// once the session negotiated ProtocolV11; until then they are protocol
// violations, exactly as in a v1.0-draft2 session, which never calls it.
func (d *Decoder) EnableV11() { d.v11 = true }

// NewDecoder returns a Decoder reading from r with the given limits. Zero
// fields of lim mean their defaults. If r is a *bufio.Reader with a buffer of
// at least 64 KiB it is used directly; otherwise r is wrapped in one, which
// may read ahead of the last decoded message.
//
// NewDecoder panics if lim.Validate fails: limits come from configuration,
// which the caller validates first.
func NewDecoder(r io.Reader, lim Limits) *Decoder {
	if err := lim.Validate(); err != nil {
		panic(err)
	}
	d := &Decoder{
		src:      r,
		lim:      lim.withDefaults(),
		eagerMax: eagerAllocMax,
	}
	if rb, ok := r.(*bufio.Reader); ok && rb.Size() >= readBufferSize {
		d.br, d.src = rb, rb // the caller's buffer: its refills are not bounded
	} else {
		d.fill.r = r
		d.br = bufio.NewReaderSize(&d.fill, readBufferSize)
	}
	return d
}

// cappedReader reads from r, at most max bytes per Read when max is set.
// It first returns pend: bytes read ahead of a large field (see readN).
type cappedReader struct {
	r    io.Reader
	max  int // 0: no bound
	pend []byte
}

func (c *cappedReader) Read(p []byte) (int, error) {
	if len(c.pend) > 0 {
		n := copy(p, c.pend)
		c.pend = c.pend[n:]
		return n, nil
	}
	if c.max > 0 && len(p) > c.max {
		p = p[:c.max]
	}
	return c.r.Read(p)
}

// ReadClient decodes the next client → daemon message into m, which it resets
// first. It blocks until a whole message has been read or the underlying
// reader fails; the daemon's read loop calls it. It does not check where in the
// session a message may appear (INIT first, for example): that is the
// caller's job.
//
// At a clean end of stream, before any byte of a message, it returns io.EOF.
// A stream that ends inside a message gives an error wrapping
// io.ErrUnexpectedEOF, and bytes that break the protocol one wrapping
// ErrProtocol. Once part of a message has been consumed, an error leaves the
// stream desynchronised: every later call returns the same error. On error, m
// may hold some of the message's fields.
func (d *Decoder) ReadClient(m *Message) error {
	return d.read(m, "client", (*Decoder).clientBody)
}

// ReadDaemon decodes the next daemon → client message into m, which it resets
// first. The SDK's read loop calls it. Errors are as for ReadClient.
func (d *Decoder) ReadDaemon(m *Message) error {
	return d.read(m, "daemon", (*Decoder).daemonBody)
}

func (d *Decoder) read(m *Message, dir string, body func(*Decoder, *Message)) error {
	if d.broken != nil {
		return d.broken
	}
	m.Reset()
	op, err := d.br.ReadByte()
	if err != nil {
		if err == io.EOF {
			return io.EOF // clean end at a message boundary
		}
		// Nothing consumed: the stream is still in sync (a read deadline,
		// for example), so this error is not sticky.
		return fmt.Errorf("api: read %s opcode: %w", dir, err)
	}
	m.Op = Opcode(op)
	d.err = nil
	d.direct = false
	if m.Op > lastV10 && !d.v11 {
		d.badOpcode(m, "in a v1.0 session")
	} else {
		body(d, m)
	}
	if !d.direct {
		d.fill.max = 0 // a small message: refill the buffer in full again
	}
	if d.err != nil {
		d.broken = fmt.Errorf("api: read %s %s: %w", dir, m.Op, d.err)
		d.err = nil
		return d.broken
	}
	return nil
}

// fail records the first error of the current message.
func (d *Decoder) fail(field string, err error) {
	if d.err != nil {
		return
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF // we are inside a message
	}
	if field == "" {
		d.err = err
		return
	}
	d.err = fmt.Errorf("%s: %w", field, err)
}

// badOpcode records an opcode that is unknown or not sent in this direction.
func (d *Decoder) badOpcode(m *Message, dir string) {
	if m.Op > lastV10 && !d.v11 {
		d.fail("", fmt.Errorf("%w: unknown opcode 0x%02x", ErrProtocol, uint8(m.Op)))
		return
	}
	if int(m.Op) < len(opcodeNames) {
		d.fail("", fmt.Errorf("%w: opcode %s is not sent %s", ErrProtocol, m.Op, dir))
		return
	}
	d.fail("", fmt.Errorf("%w: unknown opcode 0x%02x", ErrProtocol, uint8(m.Op)))
}

// uvarint reads an unsigned LEB128 varint of at most 10 bytes. Non-minimal
// encodings (such as 80 00 for 0) are accepted, as encoding/binary does.
func (d *Decoder) uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	var x uint64
	var s uint
	for i := range binary.MaxVarintLen64 {
		b, err := d.br.ReadByte()
		if err != nil {
			d.fail(field, err)
			return 0
		}
		if b < 0x80 {
			if i == binary.MaxVarintLen64-1 && b > 1 {
				d.fail(field, errVarintOverflow)
				return 0
			}
			return x | uint64(b)<<s
		}
		x |= uint64(b&0x7f) << s
		s += 7
	}
	d.fail(field, errVarintOverlong)
	return 0
}

// byte reads one raw byte.
func (d *Decoder) byte(field string) uint8 {
	if d.err != nil {
		return 0
	}
	b, err := d.br.ReadByte()
	if err != nil {
		d.fail(field, err)
		return 0
	}
	return b
}

// boolean reads a bool byte, which must be 0 or 1.
func (d *Decoder) boolean(field string) bool {
	if d.err != nil {
		return false
	}
	b, err := d.br.ReadByte()
	if err != nil {
		d.fail(field, err)
		return false
	}
	if b > 1 {
		d.fail(field, fmt.Errorf("%w: bool byte 0x%02x", ErrProtocol, b))
		return false
	}
	return b == 1
}

// length reads a varint length and checks it against limit before anything
// is allocated for it.
func (d *Decoder) length(field string, limit int) (int, bool) {
	n := d.uvarint(field)
	if d.err != nil {
		return 0, false
	}
	if n > uint64(limit) {
		d.fail(field, fmt.Errorf("%w: %w", ErrProtocol, &TooLargeError{Len: n, Limit: limit}))
		return 0, false
	}
	return int(n), true
}

// str reads a length-prefixed string. Invalid UTF-8 is accepted and kept
// as is: the spec says strings are UTF-8, but v1 bindings do not all check,
// and the daemon only compares and forwards names and reasons.
func (d *Decoder) str(field string) string {
	n, ok := d.length(field, d.lim.MaxStringLen)
	if !ok || n == 0 {
		return ""
	}
	if n <= d.br.Size() {
		// At most one allocation: copy straight out of the bufio buffer
		// (none for a name decoded lately).
		if n > d.br.Buffered() {
			d.fill.max = 0 // one refill, not many bounded ones
		}
		p, err := d.br.Peek(n)
		if err != nil {
			d.fail(field, err)
			return ""
		}
		s := d.cachedString(p)
		_, _ = d.br.Discard(n) // cannot fail after a successful Peek
		return s
	}
	b, err := d.readN(n)
	if err != nil {
		d.fail(field, err)
		return ""
	}
	return string(b)
}

// blob reads a length-prefixed binary field into a new slice. An empty field
// gives an empty, non-nil slice.
func (d *Decoder) blob(field string) []byte { return d.blobBorrow(field, 0) }

// blobBorrow is blob for a field that, up to borrow bytes, is returned as
// a slice of br's buffer (see SetBorrow) rather than copied.
func (d *Decoder) blobBorrow(field string, borrow int) []byte {
	n, ok := d.length(field, d.lim.MaxMessageLen)
	if !ok {
		return nil
	}
	if n <= borrow {
		return d.borrowed(field, n)
	}
	b, err := d.readN(n)
	if err != nil {
		d.fail(field, err)
		return nil
	}
	return b
}

// readN reads exactly n bytes into a new slice. A field that fits the bufio
// buffer is copied out of it once (make+copy of the same length skips
// zeroing). Up to eagerAllocMax it allocates n bytes at once; beyond, it grows
// the slice (at most doubling) as data arrives, so the memory held never
// exceeds twice what was received.
//
// A large field not buffered whole is read straight from the source into
// its slice, with up to bulkReadAhead bytes more in the same read (the next
// message's head, kept for the bufio buffer's next refill), and the refill
// after those reads only bulkReadAhead bytes: in a stream of large fields
// each is then read into its slice, in one read when it has arrived,
// rather than copied out of the bufio buffer.
func (d *Decoder) readN(n int) ([]byte, error) {
	if n >= directReadSize && n <= d.eagerMax && d.br.Buffered() < n && len(d.fill.pend) == 0 {
		// Large: what is buffered, then the rest straight from the
		// source, not through the bufio buffer (one copy fewer).
		d.direct = true
		ahead := 0
		if d.fill.r != nil {
			ahead = bulkReadAhead
			d.fill.max = bulkReadAhead
		}
		var b []byte
		if d.alloc != nil {
			b = d.alloc(n + ahead)
		} else {
			b = make([]byte, n+ahead)
		}
		k, _ := d.br.Read(b[:d.br.Buffered()]) // only buffered bytes: no read, no error
		got, err := io.ReadAtLeast(d.src, b[k:], n-k)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		// The bytes read ahead are copied out: b is the caller's now.
		d.fill.pend = d.pendBuf[:copy(d.pendBuf[:], b[n:k+got])]
		return b[:n], nil
	}
	if n > d.br.Buffered() {
		d.fill.max = 0 // one refill, not many bounded ones
	}
	if n <= d.br.Size() && n <= d.eagerMax {
		p, err := d.br.Peek(n)
		if err != nil {
			return nil, err
		}
		b := make([]byte, len(p))
		copy(b, p)
		_, _ = d.br.Discard(n) // cannot fail after a successful Peek
		return b, nil
	}
	if n <= d.eagerMax {
		b := make([]byte, n)
		if _, err := io.ReadFull(d.br, b); err != nil {
			return nil, err
		}
		return b, nil
	}
	b := make([]byte, 0, d.eagerMax)
	for len(b) < n {
		if len(b) == cap(b) {
			b = slices.Grow(b, min(n-len(b), len(b)))
		}
		got, err := io.ReadFull(d.br, b[len(b):min(cap(b), n)])
		b = b[:len(b)+got]
		if err != nil {
			return nil, err
		}
	}
	return b, nil
}

// SetAlloc makes the Decoder take the slice of each large field that it
// reads straight from its source (16 KiB to 1 MiB, not buffered yet: a bulk
// tunnel chunk) from alloc, which must return a slice of length n that
// nothing else uses; the field is a prefix of it, and belongs to the caller
// as any decoded field does. The relay uses it to read tunnel chunks into
// buffers it recycles. A nil alloc restores plain allocation.
func (d *Decoder) SetAlloc(alloc func(n int) []byte) { d.alloc = alloc }

// SetBorrow makes ReadClient return the event of a PUBLISH of at most max
// bytes as a slice of the Decoder's buffer instead of a copy: it is valid
// only until the Decoder's next read, and must not be modified. max is
// capped at the buffer's size; 0 restores copies. The relay uses it to
// fan an event out to its subscribers' queues without allocating it.
func (d *Decoder) SetBorrow(max int) { d.borrowMax = min(max, d.br.Size()) }

// borrowed reads a field of n bytes as a slice of br's buffer (see
// SetBorrow).
func (d *Decoder) borrowed(field string, n int) []byte {
	if n > d.br.Buffered() {
		d.fill.max = 0 // one refill, not many bounded ones
	}
	p, err := d.br.Peek(n)
	if err != nil {
		d.fail(field, err)
		return nil
	}
	_, _ = d.br.Discard(n) // cannot fail after a successful Peek
	return p
}

// Buffered returns how many bytes the Decoder has read ahead of the last
// decoded message: the start of the next one, if not zero.
func (d *Decoder) Buffered() int { return d.br.Buffered() + len(d.fill.pend) }

// TooLargeError is the cause of a decode error (wrapped with ErrProtocol)
// for a string or binary field longer than the Decoder's Limits allow.
type TooLargeError struct {
	Len   uint64 // declared length
	Limit int    // the limit it exceeds
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("length %d exceeds limit %d", e.Len, e.Limit)
}
