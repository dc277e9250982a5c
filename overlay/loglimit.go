package overlay

import (
	"bytes"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// Memberlist logs a line for every malformed or undecryptable packet and
// stream, which anyone who can reach the overlay port can send. The
// limitedLog between memberlist's logger and the log bridge lets through a
// few lines per window and summarises the rest, so such traffic cannot
// fill a disk.
const (
	logWindow      = 10 * time.Second
	logBurstWarn   = 5  // [WARN] and [ERR] lines per window
	logBurstDetail = 50 // [DEBUG] and [INFO] lines per window
)

// limitedLog is an io.Writer for log.Logger that drops lines past a burst
// per window, counts them, and writes a summary with the next line let
// through.
type limitedLog struct {
	w          io.Writer
	suppressed atomic.Uint64 // lines dropped, ever

	mu      sync.Mutex // protects following
	start   time.Time
	n       [2]int // lines let through in this window: detail, warn
	dropped int    // lines dropped since the last summary
}

// Write implements io.Writer; log.Logger calls it once per line.
func (l *limitedLog) Write(p []byte) (int, error) {
	class := 1
	if bytes.HasPrefix(p, []byte("[DEBUG]")) || bytes.HasPrefix(p, []byte("[INFO]")) {
		class = 0
	}
	burst := [2]int{logBurstDetail, logBurstWarn}[class]
	now := time.Now()
	l.mu.Lock()
	if now.Sub(l.start) >= logWindow {
		l.start, l.n = now, [2]int{}
	}
	if l.n[class] >= burst {
		l.dropped++
		l.mu.Unlock()
		l.suppressed.Add(1)
		return len(p), nil
	}
	l.n[class]++
	dropped := l.dropped
	l.dropped = 0
	l.mu.Unlock()
	if dropped > 0 {
		fmt.Fprintf(l.w, "[WARN] memberlist: %d log lines suppressed by the rate limit (%d per %v); malformed or foreign packets are counted in iris_overlay_log_lines_suppressed_total", dropped, logBurstWarn, logWindow)
	}
	return l.w.Write(p)
}
