package main

// Multi-process tests: they build the irisd binary once and run real
// processes on 127.0.0.1. They are skipped with -short.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/iris-mesh/iris/crypto"
)

// irisdBin is the binary built by TestMain; "" with -short.
var irisdBin string

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	if testing.Short() {
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "irisd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	irisdBin = filepath.Join(dir, "irisd")
	args := []string{"build", "-o", irisdBin}
	if raceEnabled {
		args = append(args, "-race") // the processes are race-checked too
	}
	cmd := exec.Command("go", append(args, ".")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building irisd: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

func needBinary(t *testing.T) {
	t.Helper()
	if irisdBin == "" {
		t.Skip("multi-process test: skipped with -short")
	}
}

// waitFor polls cond until it holds, failing t after timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

// syncBuffer collects a process's stderr.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is one irisd process.
type proc struct {
	name   string
	status string // status server address
	cmd    *exec.Cmd
	stderr syncBuffer
	done   chan struct{} // closed when the process has exited
	err    error         // Wait's result; read after done
	client *http.Client  // for the status server; nil means httpClient
}

// cleanEnv is the test's environment without IRIS_* variables.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "IRIS_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// startIrisd starts irisd with args and env (added to a clean environment).
// The process is killed in Cleanup if still running, and its stderr logged
// if the test failed.
func startIrisd(t *testing.T, name, statusAddr string, env []string, args ...string) *proc {
	t.Helper()
	return startCmd(t, exec.Command(irisdBin, args...), name, statusAddr, env)
}

// startCmd starts cmd, an irisd command line, as startIrisd does.
func startCmd(t *testing.T, cmd *exec.Cmd, name, statusAddr string, env []string) *proc {
	t.Helper()
	p := &proc{name: name, status: statusAddr, done: make(chan struct{})}
	p.cmd = cmd
	p.cmd.Env = cleanEnv(env...)
	p.cmd.Stderr = &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("stderr of %s:\n%s", p.name, p.stderr.String())
		}
	})
	return p
}

// stop sends sig and, unless it is SIGKILL, waits for a clean exit.
func (p *proc) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signal %s: %v", p.name, err)
	}
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("%s did not exit within 15s of %v", p.name, sig)
	}
	if sig != syscall.SIGKILL && p.err != nil {
		t.Fatalf("%s exited with %v after %v, want exit status 0", p.name, p.err, sig)
	}
}

// statusDoc is the part of GET /status the tests read.
type statusDoc struct {
	Node, Network, Listen string
	Peers                 []struct{ ID, Addr, Zone, State string }
	Clusters              []struct {
		Name         string
		LocalMembers int `json:"local_members"`
		Remote       map[string]int
	}
}

var httpClient = &http.Client{Timeout: 2 * time.Second}

// getStatus fetches p's /status; ok is false while the server is not up.
func (p *proc) getStatus() (st statusDoc, ok bool) {
	c := p.client
	if c == nil {
		c = httpClient
	}
	resp, err := c.Get("http://" + p.status + "/status")
	if err != nil {
		return st, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&st) != nil {
		return st, false
	}
	return st, true
}

// peerStates returns id → state from p's /status; ok is false while it is not up.
func (p *proc) peerStates() (map[string]string, bool) {
	st, ok := p.getStatus()
	if !ok {
		return nil, false
	}
	m := map[string]string{}
	for _, peer := range st.Peers {
		m[peer.ID] = peer.State
	}
	return m, true
}

// sees reports whether p lists every one of ids in one of states.
func (p *proc) sees(ids []string, states ...string) bool {
	m, ok := p.peerStates()
	if !ok {
		return false
	}
	for _, id := range ids {
		found := false
		for _, s := range states {
			found = found || m[id] == s
		}
		if !found {
			return false
		}
	}
	return true
}

// freePort returns a loopback port whose TCP and UDP sides were free.
func freePort(t *testing.T) string {
	t.Helper()
	for range 20 {
		tl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := tl.Addr().String()
		ul, err := net.ListenPacket("udp", addr)
		tl.Close()
		if err == nil {
			ul.Close()
			_, port, _ := net.SplitHostPort(addr)
			return port
		}
	}
	t.Fatal("no free port on 127.0.0.1")
	return ""
}

// node is the command line of one test daemon.
type node struct {
	name, listen, status string
}

func newNode(t *testing.T, name string) node {
	return node{name: name, listen: "127.0.0.1:" + freePort(t), status: "127.0.0.1:" + freePort(t)}
}

// args returns the flags every test daemon gets, plus extra.
func (n node) args(extra ...string) []string {
	return append([]string{"-node", n.name, "-listen", n.listen, "-status", n.status,
		"-gossip", "local", "-relay", "0"}, extra...)
}

func writeKey(t *testing.T, dir, name string) (string, crypto.Key) {
	t.Helper()
	path := filepath.Join(dir, name)
	out, err := exec.Command(irisdBin, "keygen", "-o", path).CombinedOutput()
	if err != nil {
		t.Fatalf("irisd keygen: %v\n%s", err, out)
	}
	k, err := crypto.ReadKeyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, k
}

func TestThreeDaemons(t *testing.T) {
	needBinary(t)
	dir := t.TempDir()
	keyFile, key := writeKey(t, dir, "net.key")
	a, b, c := newNode(t, "a"), newNode(t, "b"), newNode(t, "c")
	pa := startIrisd(t, "a", a.status, nil, a.args("-net", "test", "-key", keyFile)...)
	// b is configured through the environment instead of flags.
	pb := startIrisd(t, "b", b.status,
		[]string{envNet + "=test", envKey + "=" + key.Text(), envJoin + "=" + a.listen}, b.args()...)
	pc := startIrisd(t, "c", c.status, nil, c.args("-net", "test", "-key", keyFile, "-join", a.listen)...)
	all := []*proc{pa, pb, pc}

	waitFor(t, 15*time.Second, "status servers up", func() bool {
		for _, p := range all {
			if _, ok := p.getStatus(); !ok {
				return false
			}
		}
		return true
	})
	waitFor(t, 3*time.Second, "a, b and c alive to each other", func() bool {
		return pa.sees([]string{"b", "c"}, "alive") && pb.sees([]string{"a", "c"}, "alive") &&
			pc.sees([]string{"a", "b"}, "alive")
	})

	t.Run("wrong key refused", func(t *testing.T) { testWrongKey(t, dir, pa, a.listen, all) })

	pc.stop(t, syscall.SIGKILL)
	waitFor(t, 10*time.Second, "a and b to see c suspect or dead", func() bool {
		return pa.sees([]string{"c"}, "suspect", "dead") && pb.sees([]string{"c"}, "suspect", "dead")
	})

	pb.stop(t, syscall.SIGTERM) // fails the test unless b exits 0
	waitFor(t, 10*time.Second, "a to see b left", func() bool { return pa.sees([]string{"b"}, "left") })
	if !strings.Contains(pb.stderr.String(), "leaving the network") {
		t.Errorf("b's log does not mention leaving:\n%s", pb.stderr.String())
	}
	pa.stop(t, syscall.SIGTERM)
}

// testWrongKey starts a daemon with another key that joins a, and checks
// that it is refused on both sides, logged as such, and never listed.
func testWrongKey(t *testing.T, dir string, pa *proc, seed string, members []*proc) {
	otherKey, _ := writeKey(t, dir, "other.key")
	x := newNode(t, "x")
	px := startIrisd(t, "x", x.status, nil, x.args("-net", "test", "-key", otherKey, "-join", seed)...)
	waitFor(t, 10*time.Second, "both sides to log the refusal", func() bool {
		return strings.Contains(px.stderr.String(), "peer closed the connection during our handshake") &&
			strings.Contains(pa.stderr.String(), "refused connection: handshake failed")
	})
	for _, p := range members {
		m, ok := p.peerStates()
		if !ok || len(m) != 2 || m["x"] != "" {
			t.Errorf("%s lists %v; want exactly the other two members", p.name, m)
		}
	}
	if m, ok := px.peerStates(); !ok || len(m) != 0 {
		t.Errorf("x lists peers %v", m)
	}
	px.stop(t, syscall.SIGTERM)
}

func TestDevMode(t *testing.T) {
	needBinary(t)
	p := startIrisd(t, "dev", "", nil, "-dev", "-listen", "127.0.0.1:0", "-status", "127.0.0.1:0", "-relay", "0")
	waitFor(t, 15*time.Second, "the dev node's status server", func() bool {
		p.status = logField(p.stderr.String(), "status server listening", "addr")
		return p.status != ""
	})
	var st statusDoc
	waitFor(t, 5*time.Second, "GET /status", func() bool {
		var ok bool
		st, ok = p.getStatus()
		return ok
	})
	if st.Network != "dev" || !strings.HasPrefix(st.Listen, "127.0.0.1:") || len(st.Peers) != 0 {
		t.Errorf("dev node status = %+v", st)
	}
	if !strings.Contains(p.stderr.String(), "ephemeral network key") {
		t.Errorf("dev node does not say its key is ephemeral:\n%s", p.stderr.String())
	}
	p.stop(t, syscall.SIGTERM)
}

// logField finds the first JSON log line with message msg and returns its
// string field key.
func logField(logs, msg, key string) string {
	sc := bufio.NewScanner(strings.NewReader(logs))
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) != nil || line["message"] != msg {
			continue
		}
		s, _ := line[key].(string)
		return s
	}
	return ""
}

func TestKeygen(t *testing.T) {
	needBinary(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "k")
	if out, err := exec.Command(irisdBin, "keygen", "-o", path).CombinedOutput(); err != nil {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	before, _ := os.ReadFile(path)
	if _, err := crypto.ParseKey(string(before)); err != nil {
		t.Fatalf("key file: %v", err)
	}
	out, err := exec.Command(irisdBin, "keygen", "-o", path).CombinedOutput()
	if exitCode(err) != exitError || !strings.Contains(string(out), "refusing to overwrite") {
		t.Errorf("second keygen: exit %d, output %q", exitCode(err), out)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Error("key file was overwritten")
	}
	stdout, err := exec.Command(irisdBin, "keygen", "-o", "-").Output()
	if _, perr := crypto.ParseKey(string(stdout)); err != nil || perr != nil {
		t.Errorf("keygen -o -: %v, %v, %q", err, perr, stdout)
	}
	if err := exec.Command(irisdBin, "keygen").Run(); exitCode(err) != exitUsage {
		t.Errorf("keygen without -o: exit %d, want %d", exitCode(err), exitUsage)
	}
}

func TestUsageErrors(t *testing.T) {
	needBinary(t)
	for _, tt := range []struct {
		args []string
		msg  string
	}{
		{nil, "no network name"},
		{[]string{"-net", "n"}, "no network key"},
		{[]string{"-net", "n", "-key", "/nonexistent/key"}, "no such file"},
		{[]string{"-dev", "-listen", "bad"}, "listen address"},
		{[]string{"-nope"}, "flag provided but not defined: -nope"},
	} {
		cmd := exec.Command(irisdBin, tt.args...)
		cmd.Env = cleanEnv()
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		if exitCode(err) != exitUsage || !strings.Contains(stderr.String(), tt.msg) {
			t.Errorf("irisd %q: exit %d, stderr %q; want exit %d and %q", tt.args, exitCode(err), stderr.String(), exitUsage, tt.msg)
		}
	}
	out, err := exec.Command(irisdBin, "-h").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Usage:") {
		t.Errorf("irisd -h: %v\n%s", err, out)
	}
}

// exitCode returns a command's exit code from its error.
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// raceEnabled is set when the tests run with -race (race_test.go); the
// irisd binary is then built with -race too.
var raceEnabled bool
