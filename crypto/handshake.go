package crypto

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/flynn/noise"
)

// ProtocolVersion is the version of the handshake and record protocol
// described in this package. It is bound into the Noise prologue
// ("iris/noise/v1\x00" + network), so peers that speak different versions fail
// the handshake at the first message instead of misreading each other.
//
// History:
//
//	1: Noise NNpsk0_25519_AESGCM_SHA256, empty payloads, records of a 2-byte
//	   length and AES-GCM ciphertext, rekey every RekeyInterval records.
const ProtocolVersion = 1

// prologuePrefix is mixed into the handshake hash ahead of the network name.
// Its "v1" must follow ProtocolVersion (a test checks this).
const prologuePrefix = "iris/noise/v1\x00"

// maxHandshakeMessage is the largest handshake message (after the 2-byte
// length) that Handshake accepts. Both messages of NNpsk0 are 48 bytes; the
// limit leaves room for later versions while bounding what a stranger can
// make us allocate before authenticating.
const maxHandshakeMessage = 1024

// handshakeHeaderSize is the size of the big-endian length in front of each
// handshake message.
const handshakeHeaderSize = 2

// ErrHandshake is wrapped by every error Handshake returns: a wrong key, a
// wrong network name, a garbled, truncated or oversize message, or an I/O
// error (which is wrapped as well, so errors.Is also finds os.ErrDeadlineExceeded
// or io.EOF).
var ErrHandshake = errors.New("crypto: handshake failed")

// cipherSuite is Noise's 25519_AESGCM_SHA256.
var cipherSuite = noise.NewCipherSuite(noise.DH25519, noise.CipherAESGCM, noise.HashSHA256)

// Handshake authenticates the connection rw as a member of network and returns
// the Session that encrypts the rest of the stream. One side must pass
// initiator=true (the side that dialed), the other false.
//
// It runs Noise NNpsk0_25519_AESGCM_SHA256 (github.com/flynn/noise) with the
// PSK DerivePSK(key, network) and the prologue "iris/noise/v1\x00"+network.
// Each message travels with a 2-byte big-endian length; both payloads are
// empty:
//
//	initiator                                responder
//	  len(2) || psk, e + tag (48 bytes)  ->    wrong key or network fails here
//	                                     <-    len(2) || e, ee + tag (48 bytes)
//
// Because the first message is authenticated with the PSK and the prologue,
// the responder rejects a peer with the wrong key or network name before it
// sends anything. A length prefix of 0 or above 1024 is rejected before the
// body is read.
//
// Every failure returns an error wrapping ErrHandshake that names the step
// that failed. Handshake sets no deadlines: the caller bounds it, for example
// with net.Conn.SetDeadline, and closes rw on failure.
func Handshake(rw io.ReadWriter, initiator bool, network string, key Key) (*Session, error) {
	if !initiator {
		sess, _, err := Accept(rw, network, []Key{key})
		return sess, err
	}
	hs, err := newHandshakeState(true, network, key)
	if err != nil {
		return nil, err
	}
	if _, _, err := writeHandshakeMessage(rw, hs, 1); err != nil {
		return nil, err
	}
	// The initiator's first CipherState encrypts towards the responder.
	send, recv, err := readHandshakeMessage(rw, hs, 2)
	if err != nil {
		return nil, err
	}
	return newSession(send, recv), nil
}

// Accept runs the responder's side of Handshake for a daemon that accepts
// several network keys (during a key rotation): it reads the first message
// once and tries each key in order, answering with the first that
// authenticates it. It returns the session and the index in keys of the key
// the peer used. keys must hold 1 to MaxKeys keys.
//
// A wrong key fails at the first message's authentication tag, before any
// Diffie-Hellman, so each extra key costs one HKDF and one AES-GCM open.
// Errors are those of Handshake; a peer whose key is none of keys gets the
// same error as with a single wrong key.
func Accept(rw io.ReadWriter, network string, keys []Key) (*Session, int, error) {
	if len(keys) == 0 || len(keys) > MaxKeys {
		return nil, -1, fmt.Errorf("%w: %d keys to accept, want 1 to %d", ErrHandshake, len(keys), MaxKeys)
	}
	msg, err := readHandshakeFrame(rw, 1)
	if err != nil {
		return nil, -1, err
	}
	var lastErr error
	for i, k := range keys {
		hs, err := newHandshakeState(false, network, k)
		if err != nil {
			return nil, -1, err
		}
		// The payload is empty in version 1; anything a peer with the right
		// key puts there is ignored.
		if _, _, _, err := hs.ReadMessage(nil, msg); err != nil {
			lastErr = err
			continue
		}
		recv, send, err := writeHandshakeMessage(rw, hs, 2)
		if err != nil {
			return nil, -1, err
		}
		return newSession(send, recv), i, nil
	}
	return nil, -1, fmt.Errorf("%w: process message 1 (wrong network key or name?): %w", ErrHandshake, lastErr)
}

// newHandshakeState returns the Noise state of one side of the handshake
// with the PSK of key and network.
func newHandshakeState(initiator bool, network string, key Key) (*noise.HandshakeState, error) {
	psk := DerivePSK(key, network)
	defer clear(psk[:])
	hs, err := noise.NewHandshakeState(noise.Config{
		CipherSuite:           cipherSuite,
		Pattern:               noise.HandshakeNN,
		Initiator:             initiator,
		Prologue:              []byte(prologuePrefix + network),
		PresharedKey:          psk[:],
		PresharedKeyPlacement: 0,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: init: %w", ErrHandshake, err)
	}
	return hs, nil
}

// writeHandshakeMessage writes message number step (1 or 2) with an empty
// payload in a single Write. After the last message it returns the two
// CipherStates in Noise order (initiator-to-responder, then the reverse).
func writeHandshakeMessage(w io.Writer, hs *noise.HandshakeState, step int) (c1, c2 *noise.CipherState, err error) {
	buf := make([]byte, handshakeHeaderSize, handshakeHeaderSize+64)
	buf, c1, c2, err = hs.WriteMessage(buf, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: write message %d: %w", ErrHandshake, step, err)
	}
	binary.BigEndian.PutUint16(buf, uint16(len(buf)-handshakeHeaderSize))
	if _, err := w.Write(buf); err != nil {
		return nil, nil, fmt.Errorf("%w: write message %d: %w", ErrHandshake, step, err)
	}
	return c1, c2, nil
}

// readHandshakeFrame reads the body of handshake message number step (1
// or 2). The length is checked before the body is read.
func readHandshakeFrame(r io.Reader, step int) ([]byte, error) {
	var hdr [handshakeHeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("%w: read message %d length: %w", ErrHandshake, step, err)
	}
	n := int(binary.BigEndian.Uint16(hdr[:]))
	if n == 0 || n > maxHandshakeMessage {
		return nil, fmt.Errorf("%w: read message %d: length %d not in 1..%d",
			ErrHandshake, step, n, maxHandshakeMessage)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(r, msg); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("%w: read message %d body: %w", ErrHandshake, step, err)
	}
	return msg, nil
}

// readHandshakeMessage reads and processes message number step (1 or 2).
// After the last message it returns the two CipherStates in Noise order.
func readHandshakeMessage(r io.Reader, hs *noise.HandshakeState, step int) (c1, c2 *noise.CipherState, err error) {
	msg, err := readHandshakeFrame(r, step)
	if err != nil {
		return nil, nil, err
	}
	// The payload is empty in version 1; anything a peer with the right key
	// puts there is ignored.
	if _, c1, c2, err = hs.ReadMessage(nil, msg); err != nil {
		return nil, nil, fmt.Errorf("%w: process message %d (wrong network key or name?): %w",
			ErrHandshake, step, err)
	}
	return c1, c2, nil
}
