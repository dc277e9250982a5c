package crypto

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// MaxKeys is the most keys a daemon accepts at once: the key it dials with
// and the others it still accepts during a key rotation. A responder tries
// each on every inbound handshake (a cheap HKDF and AES-GCM check, no
// Diffie-Hellman), and memberlist each on every gossip packet, so the list
// stays short.
const MaxKeys = 4

// maxKeysFileSize bounds how much of a key list file ReadKeysFile reads:
// MaxKeys keys plus room for comments.
const maxKeysFileSize = 4096

// ParseKeys decodes a key list: keys as ParseKey takes them, separated by
// newlines or commas. Blank entries and lines starting with '#' are
// ignored. The first key is the primary (used to dial); the list must hold
// 1 to MaxKeys distinct keys. Errors wrap ErrBadKey, say which entry is
// wrong, and never contain key text.
func ParseKeys(text string) ([]Key, error) {
	var keys []Key
	n := 0
	for line := range strings.Lines(text) {
		if strings.HasPrefix(strings.TrimSpace(line), "#") {
			continue
		}
		for entry := range strings.SplitSeq(line, ",") {
			if strings.TrimSpace(entry) == "" {
				continue
			}
			n++
			if n > MaxKeys {
				return nil, fmt.Errorf("%w: more than %d keys", ErrBadKey, MaxKeys)
			}
			k, err := ParseKey(entry)
			if err != nil {
				return nil, fmt.Errorf("key %d: %w", n, err)
			}
			for i, prev := range keys {
				if prev == k {
					return nil, fmt.Errorf("%w: key %d repeats key %d", ErrBadKey, n, i+1)
				}
			}
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrBadKey)
	}
	return keys, nil
}

// ReadKeysFile reads a key list file: one key per line (a file written by
// WriteKeyFile holds one), the primary first, at most MaxKeys, '#' comments
// and blank lines ignored (see ParseKeys). Errors name the path; a
// malformed list wraps ErrBadKey, a missing file wraps fs.ErrNotExist.
func ReadKeysFile(path string) ([]Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("crypto: read key file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeysFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("crypto: read key file %s: %w", path, err)
	}
	if len(data) > maxKeysFileSize {
		return nil, fmt.Errorf("crypto: read key file %s: %w: file larger than %d bytes",
			path, ErrBadKey, maxKeysFileSize)
	}
	keys, err := ParseKeys(string(data))
	if err != nil {
		return nil, fmt.Errorf("crypto: read key file %s: %w", path, err)
	}
	return keys, nil
}

// GossipLabel is the memberlist label of every Iris network: a constant, so
// that it stays the same when the key changes (daemons on different primary
// keys during a rotation must accept each other's packets) and reveals
// nothing about the network. Networks are kept apart by their gossip keys,
// which DeriveGossipKey binds to both key and name.
const GossipLabel = "iris"
