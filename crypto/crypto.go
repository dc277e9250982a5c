// Package crypto holds Iris's network key, the keys derived from it, the Noise
// handshake that authenticates every daemon-to-daemon TCP connection, and the
// record layer that encrypts the stream afterwards.
//
// The package is pure: it opens no sockets, starts no goroutines and logs
// nothing. The handshake and record functions work on any io.Reader/io.Writer.
package crypto

import (
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// KeySize is the length in bytes of a network key.
const KeySize = 32

// maxKeyFileSize bounds how much of a key file ReadKeyFile reads. A key file
// holds 44 bytes of base64 plus a newline; anything much larger is not one.
const maxKeyFileSize = 1024

// ErrBadKey is wrapped by every error that ParseKey and ReadKeyFile return
// when the key text itself is malformed.
var ErrBadKey = errors.New("crypto: bad network key")

// Key is a network key: the one secret shared by every daemon of a network.
// All other secrets (Noise PSK, gossip key) are derived from it
// together with the network name.
//
// Key.String returns the secret itself, so never format a Key (or a struct
// holding one) into a log line.
type Key [KeySize]byte

// GenerateKey returns a new random network key read from crypto/rand.
func GenerateKey() (Key, error) {
	var k Key
	if _, err := rand.Read(k[:]); err != nil {
		return Key{}, fmt.Errorf("crypto: generate key: %w", err)
	}
	return k, nil
}

// ParseKey decodes a key from standard, padded base64 text as produced by
// Key.String. Leading and trailing whitespace is ignored. Errors wrap
// ErrBadKey and never contain the key text.
func ParseKey(text string) (Key, error) {
	text = strings.TrimSpace(text)
	if text == "" {
		return Key{}, fmt.Errorf("%w: empty", ErrBadKey)
	}
	if want := base64.StdEncoding.EncodedLen(KeySize); len(text) != want {
		return Key{}, fmt.Errorf("%w: %d characters of text, want %d", ErrBadKey, len(text), want)
	}
	var buf [KeySize + 1]byte // DecodedLen(44) == 33
	n, err := base64.StdEncoding.Strict().Decode(buf[:], []byte(text))
	if err != nil {
		// CorruptInputError carries only an offset, never the text.
		return Key{}, fmt.Errorf("%w: not standard base64: %v", ErrBadKey, err)
	}
	if n != KeySize {
		return Key{}, fmt.Errorf("%w: decodes to %d bytes, want %d", ErrBadKey, n, KeySize)
	}
	var k Key
	copy(k[:], buf[:n])
	return k, nil
}

// Text returns the key as standard, padded base64 text (44 characters):
// the secret in clear, for key files and IRIS_KEY, never for logs.
func (k Key) Text() string {
	return base64.StdEncoding.EncodeToString(k[:])
}

// String returns a redacted form, so that a Key formatted by accident (in
// a log line or an error) does not leak. Use Text for the secret itself.
func (k Key) String() string { return "crypto.Key(redacted)" }

// GoString is like String, for %#v.
func (k Key) GoString() string { return k.String() }

// ReadKeyFile reads a key written by WriteKeyFile (or by hand: base64 text,
// surrounding whitespace ignored). Errors name the path; a malformed key wraps
// ErrBadKey, a missing file wraps fs.ErrNotExist.
func ReadKeyFile(path string) (Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return Key{}, fmt.Errorf("crypto: read key file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return Key{}, fmt.Errorf("crypto: read key file %s: %w", path, err)
	}
	if len(data) > maxKeyFileSize {
		return Key{}, fmt.Errorf("crypto: read key file %s: %w: file larger than %d bytes",
			path, ErrBadKey, maxKeyFileSize)
	}
	k, err := ParseKey(string(data))
	if err != nil {
		return Key{}, fmt.Errorf("crypto: read key file %s: %w", path, err)
	}
	return k, nil
}

// WriteKeyFile writes k to a new file at path as base64 text and a newline,
// with mode 0600. It fails, wrapping fs.ErrExist, if the file already exists,
// so an existing key is never overwritten. On a write error the partial file
// is removed.
func WriteKeyFile(path string, k Key) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("crypto: write key file: %w", err)
	}
	_, err = f.WriteString(k.Text() + "\n")
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("crypto: write key file %s: %w", path, err)
	}
	return nil
}

// HKDF info prefixes. Each ends in a NUL byte that separates it from the
// network name, so (label, network) pairs map to distinct info strings.
// Changing any of them changes the wire protocol.
const (
	infoPSK    = "iris noise psk\x00"
	infoGossip = "iris memberlist\x00"
)

// derive returns HKDF-SHA256(secret=k, salt=nil, info=info+network) of n bytes.
func derive(k Key, info, network string, n int) []byte {
	out, err := hkdf.Key(sha256.New, k[:], nil, info+network, n)
	if err != nil {
		// hkdf.Key fails only for n > 255*32; every caller asks for <= 32.
		panic("crypto: hkdf: " + err.Error())
	}
	return out
}

// DerivePSK returns the Noise pre-shared key for network:
// HKDF-SHA256(secret=k, salt=nil, info="iris noise psk\x00"+network).
func DerivePSK(k Key, network string) [32]byte {
	return [32]byte(derive(k, infoPSK, network, 32))
}

// DeriveGossipKey returns the 32-byte memberlist (gossip) encryption key for
// network: HKDF-SHA256(secret=k, salt=nil, info="iris memberlist\x00"+network).
// The result is a fresh slice the caller may keep.
func DeriveGossipKey(k Key, network string) []byte {
	return derive(k, infoGossip, network, 32)
}
