package overlay

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/memberlist"

	"github.com/iris-mesh/iris/crypto"
)

// Key rotation. A daemon holds a key list: the primary key, which it dials
// with and encrypts gossip with, and up to crypto.MaxKeys-1 secondary keys
// that it still accepts from peers, on inbound Noise handshakes and on
// gossip (memberlist's keyring). SetKeys swaps the list at run time; links
// already up stay up whatever key they were made with.

// ErrKeys is wrapped by the errors of a key list that is not usable.
var ErrKeys = errors.New("overlay: bad key list")

// keySet is one immutable key list; the Overlay swaps it whole.
type keySet struct {
	primary crypto.Key
	all     []crypto.Key // primary first
}

// keyState is the overlay's current key list and what it feeds.
type keyState struct {
	cur       atomic.Pointer[keySet]
	mu        sync.Mutex          // serializes SetKeys
	keyring   *memberlist.Keyring // memberlist's; safe for concurrent use
	secondary atomic.Uint64       // inbound handshakes made with a secondary key
}

// checkKeys validates a key list: a non-zero primary, at most
// crypto.MaxKeys keys in all, none zero, none repeated.
func checkKeys(primary crypto.Key, secondary []crypto.Key) error {
	if primary == (crypto.Key{}) {
		return fmt.Errorf("%w: network key is all zero", ErrKeys)
	}
	if n := 1 + len(secondary); n > crypto.MaxKeys {
		return fmt.Errorf("%w: %d keys, at most %d", ErrKeys, n, crypto.MaxKeys)
	}
	seen := map[crypto.Key]bool{primary: true}
	for i, k := range secondary {
		if k == (crypto.Key{}) {
			return fmt.Errorf("%w: secondary key %d is all zero", ErrKeys, i+1)
		}
		if seen[k] {
			return fmt.Errorf("%w: secondary key %d repeats another key", ErrKeys, i+1)
		}
		seen[k] = true
	}
	return nil
}

func newKeySet(primary crypto.Key, secondary []crypto.Key) *keySet {
	return &keySet{primary: primary, all: append([]crypto.Key{primary}, secondary...)}
}

// initKeys sets the key list from the configuration and builds the
// memberlist keyring; New calls it before starting memberlist.
func (o *Overlay) initKeys() error {
	ks := newKeySet(o.cfg.Key, o.cfg.SecondaryKeys)
	gossip := make([][]byte, len(ks.all))
	for i, k := range ks.all {
		gossip[i] = crypto.DeriveGossipKey(k, o.cfg.Network)
	}
	kr, err := memberlist.NewKeyring(gossip, gossip[0])
	if err != nil {
		return fmt.Errorf("overlay: gossip keyring: %w", err)
	}
	o.keys.keyring = kr
	o.keys.cur.Store(ks)
	return nil
}

// dialKey returns the key this daemon dials with: the primary.
func (o *Overlay) dialKey() crypto.Key { return o.keys.cur.Load().primary }

// acceptHandshake runs the responder's handshake on an inbound connection,
// accepting any key of the current list.
func (o *Overlay) acceptHandshake(conn net.Conn) (*crypto.Session, error) {
	sess, idx, err := crypto.Accept(conn, o.cfg.Network, o.keys.cur.Load().all)
	if err == nil && idx > 0 {
		o.keys.secondary.Add(1)
	}
	return sess, err
}

// SetKeys replaces the key list at run time, for a key rotation without
// restart: from now on the overlay dials with primary and encrypts gossip
// with it, and accepts primary and every secondary key from peers. Links
// already up are kept. It fails, changing nothing, on a list that
// Config.Validate would refuse.
//
// The rotation procedure (docs/operations.md): add the new key as a
// secondary everywhere, then make it the primary everywhere, then remove
// the old one; at each step every daemon accepts every key any other one
// dials or gossips with.
func (o *Overlay) SetKeys(primary crypto.Key, secondary []crypto.Key) error {
	if err := checkKeys(primary, secondary); err != nil {
		return err
	}
	o.keys.mu.Lock()
	defer o.keys.mu.Unlock()
	ks := newKeySet(primary, secondary)
	kr := o.keys.keyring
	// Add the new keys, switch the primary, then drop the keys no longer
	// listed: at no point is a key of both the old and the new list missing.
	for _, k := range ks.all {
		if err := kr.AddKey(crypto.DeriveGossipKey(k, o.cfg.Network)); err != nil {
			return fmt.Errorf("overlay: gossip keyring: %w", err)
		}
	}
	if err := kr.UseKey(crypto.DeriveGossipKey(primary, o.cfg.Network)); err != nil {
		return fmt.Errorf("overlay: gossip keyring: %w", err)
	}
	o.keys.cur.Store(ks)
	keep := make(map[string]bool, len(ks.all))
	for _, k := range ks.all {
		keep[string(crypto.DeriveGossipKey(k, o.cfg.Network))] = true
	}
	for _, g := range kr.GetKeys() {
		if !keep[string(g)] {
			if err := kr.RemoveKey(g); err != nil {
				return fmt.Errorf("overlay: gossip keyring: %w", err)
			}
		}
	}
	o.log.Info().Int("keys", len(ks.all)).Msg("network keys replaced")
	return nil
}

// KeyCount returns how many keys the overlay accepts now (the primary
// included).
func (o *Overlay) KeyCount() int { return len(o.keys.cur.Load().all) }

// SecondaryKeyHandshakes counts the inbound connections whose peer
// authenticated with a secondary key rather than the primary. During a
// rotation, once it stops growing (and the peers' gossip is on the new
// primary) the old key is no longer in use.
func (o *Overlay) SecondaryKeyHandshakes() uint64 { return o.keys.secondary.Load() }
