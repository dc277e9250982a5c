package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/iris-mesh/iris/crypto"
	"github.com/iris-mesh/iris/sdk"
)

// writeKeyList replaces path with keys, one per line, atomically (a SIGHUP
// never reads half a file).
func writeKeyList(t *testing.T, path string, keys ...crypto.Key) {
	t.Helper()
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k.Text() + "\n")
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestKeyRotationUnderLoad rotates the network key of three irisd processes
// by the documented procedure, with SIGHUP and no restart, while a client
// on a keeps up to 64 requests in flight to members on b and c. Each step
// edits each daemon's key file and signals it, one daemon at a time; once
// a has switched and b and c not yet, a fresh daemon with a's new list
// joins through c (new links and gossip across the two lists). No request
// may fail or time out, and at the end a daemon with only the old key is
// refused.
func TestKeyRotationUnderLoad(t *testing.T) {
	needBinary(t)
	dir := t.TempDir()
	_, k1 := writeKey(t, dir, "old.key")
	_, k2 := writeKey(t, dir, "new.key")
	type daemonProc struct {
		*proc
		relay, keyFile, listen string
	}
	var ds []daemonProc
	var seed string
	for _, name := range []string{"a", "b", "c"} {
		n := newNode(t, name)
		keyFile := filepath.Join(dir, name+".key")
		writeKeyList(t, keyFile, k1)
		relay := freePort(t)
		args := n.args("-net", "rotate", "-key", keyFile)
		for i, a := range args { // this test needs the relay
			if a == "-relay" {
				args[i+1] = relay
			}
		}
		if seed != "" {
			args = append(args, "-join", seed)
		} else {
			seed = n.listen
		}
		ds = append(ds, daemonProc{startIrisd(t, name, n.status, nil, args...), "127.0.0.1:" + relay, keyFile, n.listen})
	}
	a, b, c := ds[0], ds[1], ds[2]
	names := []string{"a", "b", "c"}
	for _, d := range ds {
		waitFor(t, 10*time.Second, d.name+" sees all alive", func() bool { return d.sees(others(names, d.name), "alive") })
		waitFor(t, 10*time.Second, d.name+"'s relay", func() bool {
			conn, err := net.Dial("tcp", d.relay)
			if err == nil {
				conn.Close()
			}
			return err == nil
		})
	}
	cfg := func(d daemonProc) *sdk.Config {
		sc := sdk.DefaultConfig()
		sc.Addr = d.relay
		return sc
	}
	echo := sdk.HandlerFunc(func(ctx context.Context, req []byte) ([]byte, error) { return req, nil })
	for _, d := range []daemonProc{b, b, c, c} {
		svc, err := sdk.Register(context.Background(), cfg(d), "work", echo, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { svc.Close() })
	}
	client, err := sdk.Connect(context.Background(), cfg(a))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	waitFor(t, 10*time.Second, "a to know the four members", func() bool {
		st, ok := a.getStatus()
		return ok && st.members("work") == 4
	})

	load := startLoad(client, "work", 64, 10*time.Second, func(req string, rep []byte) bool { return string(rep) == req })
	progress := func(what string) {
		t.Helper()
		from := load.ok.Load()
		waitFor(t, 30*time.Second, what, func() bool { return load.ok.Load() >= from+300 })
	}
	progress("requests flowing before the rotation")

	steps := []struct {
		name string
		keys []crypto.Key
	}{
		{"add the new key as secondary", []crypto.Key{k1, k2}},
		{"make the new key primary", []crypto.Key{k2, k1}},
		{"remove the old key", []crypto.Key{k2}},
	}
	for i, st := range steps {
		for j, d := range ds {
			writeKeyList(t, d.keyFile, st.keys...)
			if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			waitFor(t, 10*time.Second, d.name+" to reload its keys", func() bool {
				return strings.Count(d.stderr.String(), "network keys reloaded") == i+1
			})
			progress(fmt.Sprintf("requests flowing after %s on %s", st.name, d.name))
			if j == 0 {
				// Now a and the others disagree. A daemon that starts with
				// a's new list joins through c, on the old one: both
				// accept each other's links and gossip.
				joinFresh(t, fmt.Sprintf("x%d", i), dir, c.listen, st.keys, ds[0].proc, ds[1].proc, ds[2].proc)
			}
		}
		progress("requests flowing after " + st.name)
	}
	load.finish()
	t.Logf("rotation under load: %d requests sent, %d ok, %d faults, %d timeouts",
		load.sent.Load(), load.ok.Load(), load.faults.Load(), load.timeouts.Load())
	if load.answered() != load.sent.Load() || load.faults.Load() != 0 || load.timeouts.Load() != 0 {
		_, text := load.lastFaultInfo()
		t.Fatalf("%d sent, %d answered, %d faults (last: %s), %d timeouts; want every request ok",
			load.sent.Load(), load.answered(), load.faults.Load(), text, load.timeouts.Load())
	}
	for _, d := range ds {
		if !d.sees(others(names, d.name), "alive") {
			t.Fatalf("%s does not see the others alive after the rotation", d.name)
		}
	}
	if n := c.metric(t, "iris_overlay_handshakes_secondary_key_total"); n == 0 {
		t.Error("c never accepted a connection made with its secondary key")
	}

	// The old key no longer gets in.
	oldOnly := filepath.Join(dir, "only-old.key")
	writeKeyList(t, oldOnly, k1)
	y := newNode(t, "y")
	py := startIrisd(t, "y", y.status, nil, y.args("-net", "rotate", "-key", oldOnly, "-join", a.listen)...)
	waitFor(t, 15*time.Second, "a daemon with only the old key to be refused", func() bool {
		return strings.Contains(py.stderr.String(), "peer closed the connection during our handshake")
	})
	if a.sees([]string{"y"}, "alive", "suspect", "dead", "left") {
		t.Fatal("a lists the daemon with the old key")
	}
	py.stop(t, syscall.SIGTERM)
}

// joinFresh starts a daemon with the key list keys that joins seed, waits
// until it and every one of ps see each other alive, and stops it.
func joinFresh(t *testing.T, name, dir, seed string, keys []crypto.Key, ps ...*proc) {
	t.Helper()
	x := newNode(t, name)
	keyFile := filepath.Join(dir, name+".key")
	writeKeyList(t, keyFile, keys...)
	px := startIrisd(t, name, x.status, nil, x.args("-net", "rotate", "-key", keyFile, "-join", seed)...)
	var ids []string
	for _, p := range ps {
		ids = append(ids, p.name)
	}
	waitFor(t, 15*time.Second, name+" and the others to see each other alive", func() bool {
		if !px.sees(ids, "alive") {
			return false
		}
		for _, p := range ps {
			if !p.sees([]string{name}, "alive") {
				return false
			}
		}
		return true
	})
	px.stop(t, syscall.SIGTERM)
}

// metric returns the value of an unlabelled metric from p's /metrics.
func (p *proc) metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := httpClient.Get("http://" + p.status + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(body)) {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				t.Fatalf("%s: %q: %v", name, line, err)
			}
			return v
		}
	}
	t.Fatalf("%s's /metrics has no %s", p.name, name)
	return 0
}

// others returns names without name.
func others(names []string, name string) []string {
	var out []string
	for _, n := range names {
		if n != name {
			out = append(out, n)
		}
	}
	return out
}
