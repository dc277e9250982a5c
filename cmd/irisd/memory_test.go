package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/iris-mesh/iris/api"
	"github.com/iris-mesh/iris/sdk"
)

// rssBound is the documented bound on irisd's resident memory under the
// abuse below with default limits (docs/operations.md).
const rssBound = 256 << 20

// plainBin is irisd built without the race detector, whose shadow memory
// would multiply the resident memory measured; see plainBinary.
var (
	plainOnce sync.Once
	plainBin  string
	plainErr  error
)

// plainBinary returns an irisd built as users build it: irisdBin, or with
// -race a second build without it.
func plainBinary(t *testing.T) string {
	t.Helper()
	needBinary(t)
	if !raceEnabled {
		return irisdBin
	}
	plainOnce.Do(func() {
		plainBin = filepath.Join(filepath.Dir(irisdBin), "irisd-norace")
		out, err := exec.Command("go", "build", "-o", plainBin, ".").CombinedOutput()
		if err != nil {
			plainErr = fmt.Errorf("building irisd without -race: %v\n%s", err, out)
		}
	})
	if plainErr != nil {
		t.Fatal(plainErr)
	}
	return plainBin
}

// rss reads a process's resident set size from /proc.
func rss(t *testing.T, pid int) int {
	t.Helper()
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0 // exited
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return kb << 10
		}
	}
	return 0
}

// rawApp is an app speaking the relay protocol by hand, to misbehave.
type rawApp struct{ nc net.Conn }

func dialRaw(t *testing.T, addr, clusterName string) *rawApp {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	init := api.Message{Op: api.OpInit, Magic: api.ClientMagic, Version: api.ProtocolVersion, Cluster: clusterName}
	if _, err := nc.Write(api.AppendClient(nil, &init)); err != nil {
		t.Fatal(err)
	}
	var m api.Message
	if err := api.NewDecoder(nc, api.Limits{}).ReadDaemon(&m); err != nil || m.Op != api.OpInit {
		t.Fatalf("handshake: %+v, %v", m, err)
	}
	_ = nc.SetDeadline(time.Time{})
	return &rawApp{nc: nc}
}

// TestMemoryBoundUnderAbuse runs a real irisd with default limits against
// 32 apps that each send 15 MiB of a 16 MiB message and stall, and 16
// subscribers that never read while a publisher floods their topic. The
// daemon's RSS stays under rssBound and other apps keep being served: a
// client calling a service, and a subscriber that reads.
func TestMemoryBoundUnderAbuse(t *testing.T) {
	bin := plainBinary(t)
	dir := t.TempDir()
	keyFile, _ := writeKey(t, dir, "net.key")
	n := newNode(t, "m")
	relayPort := freePort(t)
	args := append(n.args("-net", "test", "-key", keyFile), "-relay", relayPort)
	p := startCmd(t, exec.Command(bin, args...), "m", n.status, nil)
	waitFor(t, 15*time.Second, "status server up", func() bool { _, ok := p.getStatus(); return ok })
	relayAddr := "127.0.0.1:" + relayPort
	pid := p.cmd.Process.Pid
	base := rss(t, pid)

	var peak atomic.Int64
	stopSampling := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			if r := int64(rss(t, pid)); r > peak.Load() {
				peak.Store(r)
			}
			select {
			case <-tick.C:
			case <-stopSampling:
				return
			}
		}
	})

	// Well-behaved apps: a service and a client calling it throughout.
	cfg := sdk.DefaultConfig()
	cfg.Addr = relayAddr
	svc, err := sdk.Register(context.Background(), cfg, "echo",
		sdk.HandlerFunc(func(_ context.Context, b []byte) ([]byte, error) { return b, nil }), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	client, err := sdk.Connect(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	load := startLoad(client, "echo", 8, 10*time.Second, nil)

	var attackers sync.WaitGroup
	// 16 subscribers that never read.
	for range 16 {
		a := dialRaw(t, relayAddr, "")
		sub := api.Message{Op: api.OpSubscribe, Topic: "flood"}
		if _, err := a.nc.Write(api.AppendClient(nil, &sub)); err != nil {
			t.Fatal(err)
		}
	}
	// 32 apps each sending 15 MiB of a declared 16 MiB PUBLISH, then stalling.
	for range 32 {
		a := dialRaw(t, relayAddr, "")
		attackers.Go(func() {
			hdr := []byte{byte(api.OpPublish), 5}
			hdr = append(hdr, "flood"...)
			hdr = binary.AppendUvarint(hdr, 16<<20)
			_ = a.nc.SetWriteDeadline(time.Now().Add(20 * time.Second))
			if _, err := a.nc.Write(hdr); err != nil {
				return
			}
			chunk := make([]byte, 1<<20)
			for range 15 {
				if _, err := a.nc.Write(chunk); err != nil {
					return // refused: the daemon's budget is spent
				}
			}
		})
	}
	// A subscriber that reads, beside the deaf ones.
	reader, err := sdk.Connect(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	var received atomic.Int64
	if err := reader.Subscribe(context.Background(), "flood", sdk.TopicHandlerFunc(func([]byte) { received.Add(1) }), nil); err != nil {
		t.Fatal(err)
	}
	// A publisher flooding the topic with 60 KiB events: each message fits
	// an app's own allowance, so the flood goes on whatever the budget.
	pub, err := sdk.Connect(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	// 2,000 a second (120 MB/s, 16 times over for the deaf subscribers):
	// far more than they take, and garbage a loaded machine's collector
	// keeps up with (a flood at full CPU speed measures the collector's
	// share of the CPU, not the daemon's bounds).
	event := make([]byte, 60<<10)
	floodUntil := time.Now().Add(8 * time.Second)
	published := 0
	tick := time.NewTicker(10 * time.Millisecond)
	for time.Now().Before(floodUntil) {
		for range 20 {
			if err := pub.Publish(context.Background(), "flood", event); err != nil {
				t.Fatalf("publish: %v", err)
			}
			published++
		}
		<-tick.C
	}
	tick.Stop()
	okBefore := load.ok.Load()
	// Still served at the end of the flood, with attackers connected.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if rep, err := client.Request(ctx, "echo", []byte("still there")); err != nil || string(rep) != "still there" {
		t.Errorf("request during the abuse: %q, %v", rep, err)
	}
	cancel()
	attackers.Wait()
	load.finish()
	close(stopSampling)
	sampler.Wait()

	metrics := scrape(t, p)
	t.Logf("irisd RSS: %d MiB at start, peak %d MiB under abuse (bound %d MiB; busy machine); %d events of 60 KiB published, %d received by the reading subscriber; requests ok %d (%d before the flood ended), faults %d, timeouts %d",
		base>>20, peak.Load()>>20, rssBound>>20, published, received.Load(), load.ok.Load(), okBefore, load.faults.Load(), load.timeouts.Load())
	if received.Load() == 0 {
		t.Error("the subscriber that reads received no event")
	}
	t.Logf("metrics: %s", metrics)
	if peak.Load() > rssBound {
		t.Errorf("irisd RSS peaked at %d MiB, over the %d MiB bound", peak.Load()>>20, rssBound>>20)
	}
	if okBefore == 0 || load.faults.Load() != 0 || load.timeouts.Load() != 0 {
		t.Errorf("well-behaved client: %d ok, %d faults, %d timeouts", load.ok.Load(), load.faults.Load(), load.timeouts.Load())
	}
}

// scrape returns the relay memory lines of p's /metrics.
func scrape(t *testing.T, p *proc) string {
	t.Helper()
	resp, err := httpClient.Get("http://" + p.status + "/metrics")
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	var out []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "iris_relay_") || strings.HasPrefix(l, "iris_cluster_publishes") ||
			strings.HasPrefix(l, "iris_relay_stalled") || strings.HasPrefix(l, "go_memstats_heap_inuse") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "; ")
}

// TestDuplicateNodeIDExits: irisd started with a node id that is alive in
// the network exits with status 1 and says why; the daemon holding the id
// logs the attempt and keeps running.
func TestDuplicateNodeIDExits(t *testing.T) {
	needBinary(t)
	dir := t.TempDir()
	keyFile, _ := writeKey(t, dir, "net.key")
	a := newNode(t, "a")
	pa := startIrisd(t, "a", a.status, nil, a.args("-net", "test", "-key", keyFile)...)
	waitFor(t, 15*time.Second, "a up", func() bool { _, ok := pa.getStatus(); return ok })
	dup := newNode(t, "a")
	pd := startIrisd(t, "dup", dup.status, nil, dup.args("-net", "test", "-key", keyFile, "-join", a.listen)...)
	select {
	case <-pd.done:
	case <-time.After(20 * time.Second):
		t.Fatal("the duplicate did not exit")
	}
	if code := exitCode(pd.err); code != exitError {
		t.Fatalf("duplicate exited with %d, want %d", code, exitError)
	}
	if !strings.Contains(pd.stderr.String(), "node id already in use in the network") {
		t.Errorf("the duplicate's log does not say why:\n%s", pd.stderr.String())
	}
	waitFor(t, 5*time.Second, "a to log the attempt", func() bool {
		return strings.Contains(pa.stderr.String(), "another daemon tried to join with our node id")
	})
	if _, ok := pa.getStatus(); !ok {
		t.Fatal("a stopped serving")
	}
	pa.stop(t, syscall.SIGTERM)
}
