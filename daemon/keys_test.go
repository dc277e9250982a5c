package daemon

import (
	"strings"
	"testing"
	"time"

	"github.com/iris-mesh/iris/crypto"
	"github.com/iris-mesh/iris/internal/leakcheck"
	"github.com/iris-mesh/iris/overlay"
)

// TestSecondaryKeyMetrics: b dials a with a key a holds as secondary; a
// counts it, and its key count follows SetKeys.
func TestSecondaryKeyMetrics(t *testing.T) {
	leakcheck.Check(t)
	sc := newStatusClient(t)
	k1, k2 := newKey(t), newKey(t)
	ca := testConfig(t, "a", "test", k1)
	ca.SecondaryKeys = []crypto.Key{k2}
	a := startDaemon(t, ca)
	cb := testConfig(t, "b", "test", k2, a.Addr())
	cb.SecondaryKeys = []crypto.Key{k1}
	b := startDaemon(t, cb)
	waitFor(t, 10*time.Second, "a and b to see each other", func() bool {
		return sc.sees(a, "alive", "b") && sc.sees(b, "alive", "a")
	})
	metrics := func() string {
		body, err := sc.get(a.StatusAddr(), "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		return body
	}
	body := metrics()
	if !strings.Contains(body, "iris_overlay_network_keys 2\n") || strings.Contains(body, "iris_overlay_handshakes_secondary_key_total 0\n") {
		t.Fatalf("a's key metrics:\n%s", grepLines(body, "key"))
	}
	if err := a.SetKeys(k2, nil); err != nil {
		t.Fatal(err)
	}
	if body := metrics(); !strings.Contains(body, "iris_overlay_network_keys 1\n") {
		t.Fatalf("after SetKeys:\n%s", grepLines(body, "key"))
	}
	if err := a.SetKeys(k2, []crypto.Key{k2}); err == nil || !strings.Contains(err.Error(), "daemon: set keys") ||
		!strings.Contains(err.Error(), overlay.ErrKeys.Error()) {
		t.Fatalf("repeated key: %v", err)
	}
	cfg := testConfig(t, "c", "test", k1)
	cfg.SecondaryKeys = []crypto.Key{k2, k2}
	if err := cfg.Validate(); err == nil {
		t.Fatal("Validate accepted a repeated key")
	}
}

func grepLines(s, sub string) string {
	var out []string
	for line := range strings.Lines(s) {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "")
}
