package crypto

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"unsafe"

	"github.com/flynn/noise"
)

// Record layer.
//
// After the handshake the stream is a sequence of records:
//
//	+----------------+--------------------------------------+
//	| length N (2 B) | AES-256-GCM ciphertext + 16-byte tag |
//	| big-endian     | N bytes, 17 <= N <= 65535            |
//	+----------------+--------------------------------------+
//
// These are Noise transport messages: the nonce is the implicit per-direction
// counter of the direction's noise.CipherState (4 zero bytes, then the counter
// as big-endian uint64), and the associated data is empty. Since the counter
// is never sent, a reordered, replayed, dropped or tampered record fails to
// decrypt. After every RekeyInterval records a direction calls
// CipherState.Rekey on both ends; the counter keeps counting across rekeys.

const (
	// RecordHeaderSize is the size of the big-endian length in front of each
	// record's ciphertext.
	RecordHeaderSize = 2

	// MaxRecordPlaintext is the largest plaintext one record carries: the
	// 16-bit length field minus the AES-GCM tag.
	MaxRecordPlaintext = maxRecordCiphertext - tagSize

	// RekeyInterval is the number of records after which each direction of a
	// Session replaces its key with Noise's Rekey function. Both ends count
	// records, so no message is sent for it.
	RekeyInterval = 1 << 20
)

const (
	tagSize             = 16
	minRecordCiphertext = 1 + tagSize // plaintexts are never empty
	maxRecordCiphertext = 65535
	maxRecordSize       = RecordHeaderSize + maxRecordCiphertext
)

// ErrRecord is wrapped by the errors of Seal, Open and ReadRecord that concern
// the record itself: failed authentication (tampering, reordering, replay, a
// wrong session) or a length out of range.
var ErrRecord = errors.New("crypto: bad record")

// errNonceExhausted is returned when a direction has used every nonce. At
// 2^64-1 records it cannot happen in practice; the check keeps nonces unique.
var errNonceExhausted = errors.New("crypto: session nonce exhausted; handshake again")

// Session encrypts and decrypts the records of one connection after
// Handshake. It holds the two Noise CipherStates, one per direction.
//
// A Session is not safe for concurrent use of the same direction: at most one
// goroutine may call Seal at a time and at most one may call Open at a time,
// but Seal and Open may run concurrently with each other (a connection's
// writer and reader loops).
//
// Once Open has failed, the session's receive direction is broken and every
// later Open fails too; the connection must be closed.
type Session struct {
	send direction
	recv direction

	// rekeyInterval is RekeyInterval except in tests, which lower it to
	// exercise rekeying. Read-only after newSession.
	rekeyInterval uint64
}

// direction is one half of a Session. The CipherState owns the key schedule
// (Rekey) and the nonce counter; aead is an AES-GCM instance for the same key
// with a nonce buffer of our own, because CipherState.Encrypt allocates a
// nonce on every call and the record layer must not allocate.
type direction struct {
	cs     *noise.CipherState
	aead   cipher.AEAD
	nonce  [12]byte // scratch; bytes 0..3 stay zero
	broken bool     // receive side only: an Open has failed
}

// newSession returns a Session that encrypts with send and decrypts with recv.
func newSession(send, recv *noise.CipherState) *Session {
	s := &Session{
		send:          direction{cs: send},
		recv:          direction{cs: recv},
		rekeyInterval: RekeyInterval,
	}
	s.send.aead = newAEAD(send.UnsafeKey())
	s.recv.aead = newAEAD(recv.UnsafeKey())
	return s
}

// newAEAD returns AES-256-GCM for k, as noise.CipherAESGCM builds it.
func newAEAD(k [32]byte) cipher.AEAD {
	block, err := aes.NewCipher(k[:])
	if err != nil {
		panic("crypto: aes: " + err.Error()) // impossible for a 32-byte key
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic("crypto: gcm: " + err.Error()) // impossible for a standard block
	}
	return aead
}

// nextNonce loads the direction's counter into d.nonce and returns it.
func (d *direction) nextNonce() (uint64, error) {
	n := d.cs.Nonce()
	if n > noise.MaxNonce {
		return n, errNonceExhausted
	}
	binary.BigEndian.PutUint64(d.nonce[4:], n)
	return n, nil
}

// advance moves the counter past n and rekeys after every interval records.
func (d *direction) advance(n, interval uint64) {
	n++
	d.cs.SetNonce(n)
	if n%interval == 0 {
		d.cs.Rekey()
		d.aead = newAEAD(d.cs.UnsafeKey())
	}
}

// Seal encrypts plaintext as the next record of the session and appends the
// whole record (RecordHeaderSize-byte length, ciphertext, tag) to dst,
// returning the extended slice. len(plaintext) must be 1..MaxRecordPlaintext,
// or the error wraps ErrRecord.
//
// Seal does not allocate when dst has room for
// len(plaintext)+RecordHeaderSize+16 more bytes. plaintext may sit in that
// room exactly RecordHeaderSize bytes after len(dst) (sealing in place);
// any other overlap with it is an error. On error dst is returned unchanged
// and the session is not advanced.
func (s *Session) Seal(dst, plaintext []byte) ([]byte, error) {
	n := len(plaintext)
	if n < 1 || n > MaxRecordPlaintext {
		return dst, fmt.Errorf("crypto: seal: plaintext length %d not in 1..%d: %w",
			n, MaxRecordPlaintext, ErrRecord)
	}
	ret, out := sliceForAppend(dst, RecordHeaderSize+n+tagSize)
	if anyOverlap(out[:RecordHeaderSize], plaintext) || inexactOverlap(out[RecordHeaderSize:], plaintext) {
		return dst, errors.New("crypto: seal: plaintext overlaps dst other than in place")
	}
	nonce, err := s.send.nextNonce()
	if err != nil {
		return dst, fmt.Errorf("crypto: seal: %w", err)
	}
	binary.BigEndian.PutUint16(out, uint16(n+tagSize))
	s.send.aead.Seal(out[:RecordHeaderSize], s.send.nonce[:], plaintext, nil)
	s.send.advance(nonce, s.rekeyInterval)
	return ret, nil
}

// Open authenticates and decrypts ciphertext, the body of the next record
// without its length header (as ReadRecord returns it), and appends the
// plaintext to dst, returning the extended slice.
//
// Open does not allocate when dst has room for len(ciphertext)-16 more bytes.
// dst may be ciphertext[:0] to decrypt in place; any other overlap between
// that room and ciphertext is an error.
//
// Any failure to authenticate, and any length outside 17..65535, returns an
// error wrapping ErrRecord and breaks the receive direction: every later Open
// fails as well and the caller must close the connection. On error dst is
// returned with its length unchanged; the bytes after it, and an in-place
// ciphertext, may have been overwritten.
func (s *Session) Open(dst, ciphertext []byte) ([]byte, error) {
	d := &s.recv
	if d.broken {
		return dst, fmt.Errorf("crypto: open: session broken by an earlier bad record: %w", ErrRecord)
	}
	if n := len(ciphertext); n < minRecordCiphertext || n > maxRecordCiphertext {
		d.broken = true
		return dst, fmt.Errorf("crypto: open: ciphertext length %d not in %d..%d: %w",
			n, minRecordCiphertext, maxRecordCiphertext, ErrRecord)
	}
	ret, out := sliceForAppend(dst, len(ciphertext)-tagSize)
	if inexactOverlap(out, ciphertext) {
		return dst, errors.New("crypto: open: ciphertext overlaps dst other than in place")
	}
	nonce, err := d.nextNonce()
	if err != nil {
		return dst, fmt.Errorf("crypto: open: %w", err)
	}
	if _, err := d.aead.Open(out[:0], d.nonce[:], ciphertext, nil); err != nil {
		d.broken = true
		return dst, fmt.Errorf("crypto: open: record %d failed authentication: %w", nonce, ErrRecord)
	}
	d.advance(nonce, s.rekeyInterval)
	return ret, nil
}

// ReadRecord reads one record (length header and body) from r into buf and
// returns the body, ready for Session.Open. buf is used up to its capacity
// and replaced by a new buffer if the record does not fit; a capacity of
// RecordHeaderSize+65535 bytes fits every record, so reusing such a buffer
// makes ReadRecord allocation-free.
//
// At a clean end of stream (no byte of a new record) it returns io.EOF
// unwrapped. A record cut short returns an error wrapping
// io.ErrUnexpectedEOF; a length below 17 returns an error wrapping ErrRecord.
// The length is checked before the body is read.
func ReadRecord(r io.Reader, buf []byte) ([]byte, error) {
	buf = buf[:cap(buf)]
	if len(buf) < RecordHeaderSize {
		buf = make([]byte, maxRecordSize)
	}
	if _, err := io.ReadFull(r, buf[:RecordHeaderSize]); err != nil {
		if err == io.EOF {
			return nil, io.EOF
		}
		return nil, fmt.Errorf("crypto: read record header: %w", err)
	}
	n := int(binary.BigEndian.Uint16(buf))
	if n < minRecordCiphertext {
		return nil, fmt.Errorf("crypto: read record: length %d below %d: %w", n, minRecordCiphertext, ErrRecord)
	}
	if len(buf) < RecordHeaderSize+n {
		buf = make([]byte, RecordHeaderSize+n)
	}
	body := buf[RecordHeaderSize : RecordHeaderSize+n]
	if _, err := io.ReadFull(r, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("crypto: read record body: %w", err)
	}
	return body, nil
}

// sliceForAppend extends in by n bytes, reallocating only if its capacity is
// too small, and returns the extended slice and its new tail.
func sliceForAppend(in []byte, n int) (ret, tail []byte) {
	ret = slices.Grow(in, n)[:len(in)+n]
	return ret, ret[len(in):]
}

// inexactOverlap reports whether x and y share memory at different offsets,
// which AES-GCM does not allow (crypto/cipher panics on it). As in
// crypto/internal/alias, identical starting points are fine.
func inexactOverlap(x, y []byte) bool {
	if len(x) == 0 || len(y) == 0 || &x[0] == &y[0] {
		return false
	}
	return anyOverlap(x, y)
}

// anyOverlap reports whether x and y share any memory.
func anyOverlap(x, y []byte) bool {
	if len(x) == 0 || len(y) == 0 {
		return false
	}
	x0 := uintptr(unsafe.Pointer(&x[0]))
	y0 := uintptr(unsafe.Pointer(&y[0]))
	return x0 <= y0+uintptr(len(y)-1) && y0 <= x0+uintptr(len(x)-1)
}
