package daemon

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/iris-mesh/iris/internal/leakcheck"
)

// getCode fetches path from addr and returns the status code and body.
func (sc *statusClient) getCode(addr, path string) (int, string) {
	sc.t.Helper()
	resp, err := sc.c.Get("http://" + addr + path)
	if err != nil {
		sc.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		sc.t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(body)
}

func TestHealthAndReadiness(t *testing.T) {
	leakcheck.Check(t)
	sc := newStatusClient(t)
	key := newKey(t)
	// A lone daemon without seeds is ready at once.
	lone := startDaemon(t, testConfig(t, "lone", "other", key))
	if code, body := sc.getCode(lone.StatusAddr(), "/readyz"); code != http.StatusOK || body != "ready\n" {
		t.Fatalf("lone /readyz = %d %q; want 200 ready", code, body)
	}

	// b's seed is not up: alive, not ready, and says why.
	seed := freeOverlayAddr(t)
	b := startDaemon(t, testConfig(t, "b", "test", key, seed))
	if code, body := sc.getCode(b.StatusAddr(), "/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Fatalf("/healthz = %d %q; want 200 ok", code, body)
	}
	code, body := sc.getCode(b.StatusAddr(), "/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "not joined") || !strings.Contains(body, seed) {
		t.Fatalf("unjoined /readyz = %d %q; want 503 naming the seed", code, body)
	}
	if r := b.Ready(); r.Ready || r.Reason == "" {
		t.Fatalf("Ready() = %+v", r)
	}

	// The seed comes up: b joins and turns ready.
	cfg := testConfig(t, "a", "test", key)
	cfg.Listen = seed
	a := startDaemon(t, cfg)
	waitFor(t, 10*time.Second, "b to turn ready", func() bool {
		code, _ := sc.getCode(b.StatusAddr(), "/readyz")
		return code == http.StatusOK
	})
	if code, _ := sc.getCode(a.StatusAddr(), "/readyz"); code != http.StatusOK {
		t.Fatalf("seed /readyz = %d", code)
	}
	// A daemon that is shutting down is not ready.
	b.Close()
	if r := b.Ready(); r.Ready || r.Reason != "shutting down" {
		t.Fatalf("closed Ready() = %+v", r)
	}
}

func TestPprof(t *testing.T) {
	leakcheck.Check(t)
	sc := newStatusClient(t)
	key := newKey(t)
	off := startDaemon(t, testConfig(t, "off", "test", key))
	if code, _ := sc.getCode(off.StatusAddr(), "/debug/pprof/"); code != http.StatusNotFound {
		t.Fatalf("pprof off: GET /debug/pprof/ = %d; want 404", code)
	}
	cfg := testConfig(t, "on", "test", key)
	cfg.Pprof = true
	on := startDaemon(t, cfg)
	code, body := sc.getCode(on.StatusAddr(), "/debug/pprof/")
	if code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Fatalf("pprof on: GET /debug/pprof/ = %d %.200q", code, body)
	}
	code, body = sc.getCode(on.StatusAddr(), "/debug/pprof/goroutine?debug=1")
	if code != http.StatusOK || !strings.Contains(body, "daemon.(*Daemon)") {
		t.Fatalf("pprof on: goroutine profile = %d %.200q", code, body)
	}
	code, body = sc.getCode(on.StatusAddr(), "/debug/pprof/profile?seconds=1")
	if code != http.StatusOK || len(body) == 0 {
		t.Fatalf("pprof on: CPU profile = %d, %d bytes", code, len(body))
	}
}
