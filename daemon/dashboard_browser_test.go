package daemon

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/iris-mesh/iris/internal/leakcheck"
	"github.com/iris-mesh/iris/sdk"
)

// screenshotEnv, set to 1, makes TestDashboardInBrowser write its screenshot
// to docs/dashboard.png (the one operations.md shows) instead of a
// temporary directory.
const screenshotEnv = "IRIS_UPDATE_SCREENSHOT"

// findChromium returns the path of a Chromium or Chrome binary, or "".
func findChromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// newBrowser starts a headless Chromium for t, or skips t when none is
// installed (fails under CI=true, where the CI script installs it).
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path := findChromium()
	if path == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is not installed; CI installs it with: apt-get install -y chromium")
		}
		t.Skip("chromium is not installed (apt-get install -y chromium); skipping the browser test")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless,
		chromedp.NoSandbox, // CI runs as root
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-default-apps", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("mute-audio", true),
		// Only 127.0.0.1 resolves: whatever else the browser might try to
		// reach, it cannot.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.WindowSize(1400, 1000),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancelCtx()
		cancelAlloc() // waits for the browser process to exit
	})
	// Start the browser now, so a failure to launch is reported as such.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium (%s): %v", path, err)
	}
	return ctx
}

// waitDOM waits, up to timeout, for an element matching the CSS selector.
func waitDOM(t *testing.T, ctx context.Context, timeout time.Duration, what, selector string) {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := chromedp.Do(wctx, chromedp.WaitReady(chromedp.CSS(selector))); err != nil {
		html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("main")))
		t.Fatalf("waiting %v for %s (%s): %v\npage:\n%s", timeout, what, selector, err, html)
	}
}

// waitJS waits, up to timeout, for a JavaScript expression to be truthy.
func waitJS(t *testing.T, ctx context.Context, timeout time.Duration, what, expr string) {
	t.Helper()
	err := chromedp.Do(ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(timeout)))
	if err != nil {
		t.Fatalf("waiting %v for %s (%s): %v", timeout, what, expr, err)
	}
}

// traffic keeps requests, broadcasts and events flowing from an app on a
// daemon's relay, at a rate that swings between about 10 and 90 a second,
// so that the dashboard's charts have something to show.
type traffic struct {
	stop chan struct{}
	wg   sync.WaitGroup
}

func startTraffic(t *testing.T, relayAddr, cl, topic string) *traffic {
	t.Helper()
	cfg := sdk.DefaultConfig()
	cfg.Addr = relayAddr
	conn, err := sdk.Connect(context.Background(), cfg)
	if err != nil {
		t.Fatalf("connect to the relay: %v", err)
	}
	tr := &traffic{stop: make(chan struct{})}
	tr.wg.Go(func() {
		defer conn.Close()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		start, credit := time.Now(), 0.0
		for i := 0; ; {
			select {
			case <-tr.stop:
				return
			case <-tick.C:
			}
			phase := time.Since(start).Seconds() / 20 * 2 * math.Pi
			if credit += 0.5 + 0.4*math.Sin(phase); credit < 1 {
				continue
			}
			credit--
			i++
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, _ = conn.Request(ctx, cl, []byte("ping"))
			if i%3 == 0 {
				_ = conn.Publish(ctx, topic, []byte("tick"))
			}
			if i%7 == 0 {
				_ = conn.Broadcast(ctx, cl, []byte("hello"))
			}
			cancel()
		}
	})
	return tr
}

func (tr *traffic) close() { close(tr.stop); tr.wg.Wait() }

// tunnelEcho is a service that echoes requests and tunnel messages.
type tunnelEcho struct{}

func (tunnelEcho) HandleRequest(_ context.Context, req []byte) ([]byte, error) { return req, nil }

func (tunnelEcho) HandleTunnel(t *sdk.Tunnel) {
	for {
		msg, err := t.Recv(context.Background())
		if err != nil || t.Send(context.Background(), msg) != nil {
			return
		}
	}
}

// openTunnel registers a tunnelEcho service "files" on the relay at
// serviceRelay and opens a tunnel to it from an app on clientRelay; both
// are closed in t's cleanup.
func openTunnel(t *testing.T, clientRelay, serviceRelay string) {
	t.Helper()
	scfg := sdk.DefaultConfig()
	scfg.Addr = serviceRelay
	svc, err := sdk.Register(context.Background(), scfg, "files", tunnelEcho{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	ccfg := sdk.DefaultConfig()
	ccfg.Addr = clientRelay
	conn, err := sdk.Connect(context.Background(), ccfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	var tun *sdk.Tunnel
	waitFor(t, 20*time.Second, "a tunnel to files", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		tun, err = conn.Tunnel(ctx, "files")
		return err == nil
	})
	t.Cleanup(func() { tun.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tun.Send(ctx, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if msg, err := tun.Recv(ctx); err != nil || string(msg) != "hello" {
		t.Fatalf("tunnel echo: %q, %v", msg, err)
	}
}

type nopSubscriber struct{}

func (nopSubscriber) HandleEvent(string, []byte) {}

// TestDashboardInBrowser loads the dashboard of a 3-daemon network in a
// real headless Chromium: it must list the three daemons and a cluster's
// members per daemon, then show a member that registers while the page is
// open. It saves a screenshot; with IRIS_UPDATE_SCREENSHOT=1 to
// docs/dashboard.png.
func TestDashboardInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a browser; skipped with -short")
	}
	leakcheck.Check(t)
	browser := newBrowser(t)
	sc := newStatusClient(t)
	key := newKey(t)
	cfg := func(id, zone string, join ...string) *Config {
		c := testConfig(t, id, "demo", key, join...)
		c.Zone = zone
		return c
	}
	a := startDaemon(t, cfg("iris-1", "rack-a"))
	b := startDaemon(t, cfg("iris-2", "rack-a", a.Addr()))
	c := startDaemon(t, cfg("iris-3", "rack-b", a.Addr()))
	waitFor(t, 20*time.Second, "three daemons to see each other", func() bool {
		return sc.sees(a, "alive", "iris-2", "iris-3") && sc.sees(b, "alive", "iris-1", "iris-3") &&
			sc.sees(c, "alive", "iris-1", "iris-2")
	})
	// Cluster "echo": one member on iris-1, two on iris-2. Topic "news":
	// subscribers on iris-2 and iris-3.
	for _, reg := range []struct {
		d *Daemon
		n int
	}{{a, 1}, {b, 2}} {
		for range reg.n {
			r, err := reg.d.Cluster().Register("echo", echoMember{}, 0)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close() })
		}
	}
	for _, d := range []*Daemon{b, c} {
		s, err := d.Cluster().Subscribe("news", nopSubscriber{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
	}
	if _, err := a.Cluster().Register("billing", echoMember{}, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "iris-1 to see every member and subscriber", func() bool {
		st := sc.status(a)
		return len(st.Clusters) == 2 && len(st.Topics) == 1 && len(st.Topics[0].Remote) == 2 &&
			st.Clusters[1].Name == "echo" && st.Clusters[1].Remote["iris-2"] == 2
	})
	openTunnel(t, a.RelayAddr(), b.RelayAddr())
	tr := startTraffic(t, a.RelayAddr(), "echo", "news")
	defer tr.close()

	url := "http://" + a.StatusAddr() + "/"
	if err := chromedp.Do(browser, chromedp.Navigate(url)); err != nil {
		t.Fatalf("open %s: %v", url, err)
	}
	const deadline = 60 * time.Second // generous: the machine may be busy
	for _, id := range []string{"iris-1", "iris-2", "iris-3"} {
		waitDOM(t, browser, deadline, id+" listed alive", fmt.Sprintf(`#daemons tr[data-daemon=%q][data-state="alive"]`, id))
	}
	waitDOM(t, browser, deadline, "echo's 3 members", `#clusters tr[data-cluster="echo"][data-total="3"]`)
	waitJS(t, browser, deadline, "echo's 2 members on iris-2",
		`document.querySelector('#clusters tr[data-cluster="echo"] .chip[data-daemon="iris-2"] .count')?.textContent === "2"`)
	waitJS(t, browser, deadline, "the network's name in the header", `document.getElementById("network").textContent === "demo"`)
	waitDOM(t, browser, deadline, "topic news", `#topics tr[data-topic="news"] .chip[data-daemon="iris-3"]`)
	waitDOM(t, browser, deadline, "a request rate chart", `#rates .chart[data-series="request"]`)
	waitJS(t, browser, deadline, "the tunnel on iris-1", `document.getElementById("stat-tunnels").textContent === "1"`)

	// A member registers on iris-3 while the page is open: it must appear.
	if _, err := c.Cluster().Register("echo", echoMember{}, 0); err != nil {
		t.Fatal(err)
	}
	waitDOM(t, browser, deadline, "the new member on iris-3", `#clusters tr[data-cluster="echo"][data-total="4"] .chip[data-daemon="iris-3"]`)

	// Let the charts fill a little before the picture: a few samples for
	// the test, half a minute for the docs.
	samples := 3
	out := filepath.Join(t.TempDir(), "dashboard.png")
	if os.Getenv(screenshotEnv) == "1" {
		samples, out = 40, filepath.Join("..", "docs", "dashboard.png")
	}
	waitJS(t, browser, deadline+time.Duration(samples)*time.Second, fmt.Sprintf("%d rate samples", samples),
		fmt.Sprintf(`Number(document.querySelector('#rates .chart[data-series="request"]').dataset.samples) >= %d`, samples))
	png, err := chromedp.Run(browser, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if len(png) < 1000 {
		t.Fatalf("screenshot is %d bytes", len(png))
	}
	if err := os.WriteFile(out, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", out, len(png))
	if err := context.Cause(browser); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}
