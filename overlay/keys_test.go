package overlay

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/iris-mesh/iris/crypto"
)

func genKey(t *testing.T) crypto.Key {
	t.Helper()
	k, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// seesAlive waits until every node sees every other one alive.
func seesAlive(t *testing.T, nodes ...*testNode) {
	t.Helper()
	for _, a := range nodes {
		for _, b := range nodes {
			if a == b {
				continue
			}
			waitFor(t, 10*time.Second, a.ID()+" sees "+b.ID()+" alive", func() bool {
				p, ok := a.Peer(b.ID())
				return ok && p.State == StateAlive
			})
		}
	}
}

// exchange sends a frame each way between f and every node, over links
// that f's arrival makes new, and waits for them.
func exchange(t *testing.T, f *testNode, nodes ...*testNode) {
	t.Helper()
	for _, n := range nodes {
		if err := f.Send(n.ID(), Bulk, nil, []byte("from "+f.ID())); err != nil {
			t.Fatal(err)
		}
		if err := n.Send(f.ID(), Bulk, nil, []byte("to "+f.ID())); err != nil {
			t.Fatal(err)
		}
		if got := recvN(t, n, 1)[0]; got.from != f.ID() {
			t.Fatalf("%s got a frame from %s", n.ID(), got.from)
		}
	}
	recvN(t, f, len(nodes))
}

// TestKeyRotation runs the documented rotation on three nodes with SetKeys,
// one node at a time. At the moment of each step when the nodes disagree
// (one switched, two not), a fresh node on the switched node's list joins
// through a node on the old list, and frames flow each way between it and
// every node over new links: gossip and Noise both accept every key in use.
func TestKeyRotation(t *testing.T) {
	k1, k2 := genKey(t), genKey(t)
	nodes := make([]*testNode, 3)
	for i := range nodes {
		nodes[i] = newTestNode(t, "test-net", k1, func(c *Config) { c.NodeID = fmt.Sprintf("n%d", i) })
		if i > 0 {
			if _, err := nodes[i].Join([]string{nodes[0].Addr()}); err != nil {
				t.Fatal(err)
			}
		}
	}
	seesAlive(t, nodes...)
	a, b, c := nodes[0], nodes[1], nodes[2]
	steps := []struct {
		name      string
		primary   crypto.Key
		secondary []crypto.Key
	}{
		{"add k2 as secondary", k1, []crypto.Key{k2}},
		{"make k2 primary", k2, []crypto.Key{k1}},
		{"remove k1", k2, nil},
	}
	for i, st := range steps {
		if err := a.SetKeys(st.primary, st.secondary); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		f := newTestNode(t, "test-net", st.primary, func(cfg *Config) {
			cfg.NodeID = fmt.Sprintf("fresh%d", i)
			cfg.SecondaryKeys = st.secondary
		})
		if _, err := f.Join([]string{b.Addr()}); err != nil {
			t.Fatalf("%s: fresh node joins through a node on the old keys: %v", st.name, err)
		}
		seesAlive(t, a, b, c, f)
		exchange(t, f, a, b, c)
		if err := b.SetKeys(st.primary, st.secondary); err != nil {
			t.Fatal(err)
		}
		if err := c.SetKeys(st.primary, st.secondary); err != nil {
			t.Fatal(err)
		}
		f.Close()
		if n := a.KeyCount(); n != 1+len(st.secondary) {
			t.Fatalf("%s: KeyCount = %d", st.name, n)
		}
	}
	// b accepted connections dialed with k2 while its primary was k1.
	if b.SecondaryKeyHandshakes() == 0 && c.SecondaryKeyHandshakes() == 0 {
		t.Error("no handshake with a secondary key counted")
	}
	// The old key is out: a node that has only k1 cannot join.
	old := newTestNode(t, "test-net", k1, nil)
	if _, err := old.Join([]string{a.Addr()}); err == nil {
		t.Fatal("a node with only the removed key joined")
	}
	seesAlive(t, a, b, c)
}

func TestSetKeysErrors(t *testing.T) {
	n := newTestNode(t, "test-net", testKey, nil)
	k := genKey(t)
	for _, tt := range []struct {
		name      string
		primary   crypto.Key
		secondary []crypto.Key
	}{
		{"zero primary", crypto.Key{}, nil},
		{"zero secondary", k, []crypto.Key{{}}},
		{"repeat", k, []crypto.Key{testKey, k}},
		{"too many", k, []crypto.Key{genKey(t), genKey(t), genKey(t), genKey(t)}},
	} {
		if err := n.SetKeys(tt.primary, tt.secondary); !errors.Is(err, ErrKeys) {
			t.Errorf("%s: %v", tt.name, err)
		}
		cfg := DefaultConfig()
		cfg.Network, cfg.Key, cfg.SecondaryKeys, cfg.Delegate = "n", tt.primary, tt.secondary, newRecorder()
		if err := cfg.Validate(); err == nil {
			t.Errorf("%s: Validate accepted it", tt.name)
		}
	}
	if n.KeyCount() != 1 || n.dialKey() != testKey {
		t.Fatal("a refused SetKeys changed the keys")
	}
}
