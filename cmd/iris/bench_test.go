package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/iris-mesh/iris/internal/leakcheck"
)

// TestBench runs both benchmarks briefly and checks that the summary is
// sane; it asserts nothing about speed.
func TestBench(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t)
	for _, mode := range []string{"request", "pubsub"} {
		t.Run(mode, func(t *testing.T) {
			code, out, errOut := iris(t, d, "", "bench", mode, "-n", "300", "-clients", "3", "-subs", "2", "-pubs", "2", "-json")
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			var r benchResult
			if err := json.Unmarshal([]byte(out), &r); err != nil {
				t.Fatalf("%q: %v", out, err)
			}
			wantRecv := 300
			if mode == "pubsub" {
				wantRecv = 600 // two subscribers
			}
			if r.Mode != mode || r.Sent != 300 || r.Errors != 0 || r.Received+r.Dropped != wantRecv || r.Received == 0 ||
				r.Rate <= 0 || r.P50ms <= 0 || r.P50ms > r.P99ms || r.P99ms > r.MaxMs || r.Seconds <= 0 {
				t.Fatalf("summary %+v", r)
			}
			if !strings.Contains(errOut, "iris bench: ") || !strings.HasSuffix(errOut, "\n") {
				t.Fatalf("no progress line: %q", errOut)
			}
		})
	}
	// The text summary.
	code, out, errOut := iris(t, d, "", "bench", "request", "-n", "50", "-size", "1000")
	if code != exitOK || !strings.Contains(out, "request: 50 sent, 50 replies of 1000 bytes") || !strings.Contains(out, "latency: p50 ") {
		t.Fatalf("bench request: %d %q %q", code, out, errOut)
	}
}
