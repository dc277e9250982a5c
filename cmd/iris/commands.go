package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/iris-mesh/iris/internal/buildinfo"
	"github.com/iris-mesh/iris/sdk"
)

var requestCmd = &command{
	name: "request", args: "CLUSTER [MESSAGE]",
	summary: "send a request to one member of CLUSTER, print its reply",
	help: `
Sends MESSAGE to one member of CLUSTER, chosen by the daemons, and prints
its reply followed by a newline (-raw prints the reply's bytes only). With
-count N it sends N requests, -interval apart, printing each reply.
Exits 3 when no reply came within -timeout (or the cluster has no members).`,
	flags: func(fs *flag.FlagSet, e *env) func([]string) error {
		file := fs.String("file", "", "read the message from `FILE` (\"-\": stdin)")
		count := fs.Int("count", 1, "send `N` requests (0: until interrupted)")
		interval := fs.Duration("interval", 0, "wait `D` between requests")
		raw := fs.Bool("raw", false, "print each reply's bytes exactly, without adding a newline")
		return func(args []string) error {
			cluster, rest, err := name(args, "CLUSTER")
			if err != nil {
				return err
			}
			if err := checkRepeat(*count, *interval); err != nil {
				return err
			}
			msg, err := e.message(rest, *file)
			if err != nil {
				return err
			}
			c, err := e.connect()
			if err != nil {
				return err
			}
			defer c.Close()
			out := bufio.NewWriter(e.stdout)
			defer out.Flush()
			return e.repeat(*count, *interval, func(int) error {
				ctx, cancel := context.WithTimeout(e.ctx, e.timeout)
				defer cancel()
				start := time.Now()
				rep, err := c.Request(ctx, cluster, msg)
				if err != nil {
					if errors.Is(err, sdk.ErrTimeout) {
						return fmt.Errorf("no reply from cluster %q within %v (no member answered in time, or it has none): %w",
							cluster, e.timeout, err)
					}
					return err
				}
				switch {
				case e.json:
					writeJSON(out, payloadJSON("reply", rep, map[string]any{
						"cluster": cluster, "ms": float64(time.Since(start).Microseconds()) / 1000}))
				case *raw:
					out.Write(rep)
				default:
					writeLine(out, rep)
				}
				return out.Flush()
			})
		}
	},
}

var broadcastCmd = &command{
	name: "broadcast", args: "CLUSTER [MESSAGE]",
	summary: "send MESSAGE to every member of CLUSTER",
	help: `
Sends MESSAGE to every member of CLUSTER, on every daemon, and exits once
the local daemon has it. Delivery is best effort: nothing tells whether a
member got it. With -count N it sends N broadcasts, -interval apart.`,
	flags: func(fs *flag.FlagSet, e *env) func([]string) error {
		return sendFlags(fs, e, "CLUSTER", "broadcasts", (*sdk.Conn).Broadcast)
	},
}

var publishCmd = &command{
	name: "publish", args: "TOPIC [MESSAGE]",
	summary: "send MESSAGE to every subscriber of TOPIC",
	help: `
Publishes MESSAGE as an event of TOPIC: every subscriber, on every daemon,
gets it. Delivery is best effort. With -count N it publishes N events,
-interval apart.`,
	flags: func(fs *flag.FlagSet, e *env) func([]string) error {
		return sendFlags(fs, e, "TOPIC", "events", (*sdk.Conn).Publish)
	},
}

// sendFlags builds broadcast and publish: fire-and-forget sends.
func sendFlags(fs *flag.FlagSet, e *env, what, plural string, send func(*sdk.Conn, context.Context, string, []byte) error) func([]string) error {
	file := fs.String("file", "", "read the message from `FILE` (\"-\": stdin)")
	count := fs.Int("count", 1, "send `N` "+plural+" (0: until interrupted)")
	interval := fs.Duration("interval", 0, "wait `D` between "+plural)
	return func(args []string) error {
		target, rest, err := name(args, what)
		if err != nil {
			return err
		}
		if err := checkRepeat(*count, *interval); err != nil {
			return err
		}
		msg, err := e.message(rest, *file)
		if err != nil {
			return err
		}
		c, err := e.connect()
		if err != nil {
			return err
		}
		err = e.repeat(*count, *interval, func(int) error {
			ctx, cancel := context.WithTimeout(e.ctx, e.timeout)
			defer cancel()
			return send(c, ctx, target, msg)
		})
		// The graceful close waits until the messages are written.
		if cerr := c.Close(); err == nil {
			err = cerr
		}
		return err
	}
}

var subscribeCmd = &command{
	name: "subscribe", args: "TOPIC",
	summary: "print the events of TOPIC, one per line",
	help: `
Subscribes to TOPIC and prints every event, one per line, until
interrupted or, with -n, after N events. TOPIC may be a subject with
wildcards: "news.*" matches one more token (news.sport), "news.>" one or
more (news.sport.local). Once every daemon of the network knows the
subscription a line on stderr says so (naming the daemons that did not
confirm in time, if any): events published from then on are printed.
Events the daemon had to drop because they were not read fast enough are
reported on stderr as they are counted.`,
	flags: func(fs *flag.FlagSet, e *env) func([]string) error {
		n := fs.Int("n", 0, "stop after `N` events (0: run until interrupted)")
		return func(args []string) error {
			topic, rest, err := name(args, "TOPIC")
			if err != nil {
				return err
			}
			if err := noMore(rest); err != nil {
				return err
			}
			if *n < 0 {
				return usageError("-n: want a number of events, 0 for no limit")
			}
			var errMu sync.Mutex
			cfg := e.sdkConfig()
			cfg.OnGap = func(g sdk.Gap) {
				errMu.Lock()
				defer errMu.Unlock()
				fmt.Fprintf(e.stderr, "iris: lost %d events (not read fast enough)\n", g.Lost)
			}
			cctx, ccancel := context.WithTimeout(e.ctx, e.timeout)
			c, err := sdk.Connect(cctx, cfg)
			ccancel()
			if err != nil {
				return e.connectError(err)
			}
			defer c.Close()
			ctx, cancel := context.WithCancel(e.ctx)
			defer cancel()
			out := &lineWriter{w: bufio.NewWriter(e.stdout)}
			var mu sync.Mutex
			seen := 0
			h := subjectPrinter(func(subject string, ev []byte) {
				mu.Lock()
				defer mu.Unlock()
				if *n > 0 && seen >= *n {
					return
				}
				seen++
				if e.json {
					out.json(payloadJSON("event", ev, map[string]any{"topic": subject}))
				} else {
					out.line(ev)
				}
				if *n > 0 && seen == *n {
					cancel()
				}
			})
			one := sdk.TopicLimits{EventThreads: 1} // print in arrival order
			sctx, scancel := context.WithTimeout(ctx, e.timeout)
			mu.Lock() // the acknowledgement is printed before any event
			res, err := c.SubscribeAcked(sctx, topic, h, &one)
			scancel()
			if err != nil {
				mu.Unlock()
				return err
			}
			errMu.Lock()
			switch {
			case !res.Confirmed:
				fmt.Fprintf(e.stderr, "iris: subscribed to %s (this daemon does not confirm subscriptions)\n", topic)
			case len(res.Unconfirmed) > 0:
				fmt.Fprintf(e.stderr, "iris: subscribed to %s; not confirmed in time by %d daemons: %s\n",
					topic, len(res.Unconfirmed), strings.Join(res.Unconfirmed, ", "))
			default:
				fmt.Fprintf(e.stderr, "iris: subscribed to %s (confirmed by every daemon)\n", topic)
			}
			errMu.Unlock()
			mu.Unlock()
			select {
			case <-ctx.Done():
			case <-c.Done():
				return fmt.Errorf("lost the daemon: %w", c.Err())
			}
			return nil
		}
	},
}

// subjectPrinter is a topic handler told the topic of each event.
type subjectPrinter func(subject string, ev []byte)

// HandleEvent is not called: SubscribeAcked prefers HandleSubjectEvent.
func (f subjectPrinter) HandleEvent(ev []byte) { f("", ev) }

// HandleSubjectEvent calls f.
func (f subjectPrinter) HandleSubjectEvent(subject string, ev []byte) { f(subject, ev) }

var tunnelCmd = &command{
	name: "tunnel", args: "CLUSTER",
	summary: "carry stdin to a member of CLUSTER, its answers to stdout",
	help: `
Builds a tunnel to one member of CLUSTER, sends stdin through it and
copies what comes back to stdout. When stdin ends, iris tells the far end
(an empty message, as iris forward does for a half-close) and exits when
the far end has finished too, or when nothing came for -linger. iris serve
echoes tunnels; iris expose carries them to a TCP service.`,
	flags: func(fs *flag.FlagSet, e *env) func([]string) error {
		linger := fs.Duration("linger", time.Second, "after stdin ends, wait at most `D` of silence for the far end's answer")
		return func(args []string) error {
			cluster, rest, err := name(args, "CLUSTER")
			if err != nil {
				return err
			}
			if err := noMore(rest); err != nil {
				return err
			}
			c, err := e.connect()
			if err != nil {
				return err
			}
			defer c.Close()
			t, err := e.buildTunnel(c, cluster)
			if err != nil {
				return err
			}
			defer t.Close()
			return pipeTunnel(e.ctx, t, e.stdin, e.stdout, *linger)
		}
	},
}

// buildTunnel builds a tunnel to cluster within -timeout.
func (e *env) buildTunnel(c *sdk.Conn, cluster string) (*sdk.Tunnel, error) {
	ctx, cancel := context.WithTimeout(e.ctx, e.timeout)
	defer cancel()
	t, err := c.Tunnel(ctx, cluster)
	if errors.Is(err, sdk.ErrTimeout) {
		return nil, fmt.Errorf("no member of cluster %q accepted a tunnel within %v (it has none, or they do not take tunnels): %w",
			cluster, e.timeout, sdk.ErrTimeout)
	}
	return t, err
}

var statusCmd = &command{
	name: "status", args: "",
	summary: "print the daemon's status (peers, clusters, topics)",
	help: `
Fetches GET /status from the daemon's status server (-status, or
$IRIS_STATUS; irisd serves it only with its own -status flag, or -dev) and
prints a summary; -json prints the whole document.`,
	flags: func(fs *flag.FlagSet, e *env) func([]string) error {
		return func(args []string) error {
			if err := noMore(args); err != nil {
				return err
			}
			body, err := e.fetchStatus()
			if err != nil {
				return err
			}
			if e.json {
				var out bytes.Buffer
				if err := json.Compact(&out, body); err != nil {
					return fmt.Errorf("the status server at %s did not send JSON: %w", e.status, err)
				}
				out.WriteByte('\n')
				_, err = e.stdout.Write(out.Bytes())
				return err
			}
			var st statusDoc
			if err := json.Unmarshal(body, &st); err != nil {
				return fmt.Errorf("the status server at %s did not send a status document: %w", e.status, err)
			}
			_, err = io.WriteString(e.stdout, st.summary())
			return err
		}
	},
}

// fetchStatus gets the status document from -status.
func (e *env) fetchStatus() ([]byte, error) {
	ctx, cancel := context.WithTimeout(e.ctx, e.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.status+"/status", nil)
	if err != nil {
		return nil, usageError(fmt.Sprintf("-status %q: %v", e.status, unwrapAll(err)))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		hint := "is irisd running with -status? set -status or IRIS_STATUS"
		if !e.statusSet && e.addr != sdk.DefaultAddr {
			hint = "iris status asks the daemon's status server, which -status or IRIS_STATUS names (irisd's own -status), not its relay (-addr " + e.addr + ")"
		}
		return nil, fmt.Errorf("cannot reach irisd's status server at %s (%s): %w", e.status, hint, unwrapAll(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the status from %s: %w", e.status, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("the status server at %s answered %s: %s", e.status, resp.Status, bytes.TrimSpace(body))
	}
	return body, nil
}

// statusDoc is the part of irisd's GET /status document iris status
// summarizes (see daemon.Status; the CLI talks to irisd over the wire only).
type statusDoc struct {
	Node     string `json:"node"`
	Network  string `json:"network"`
	Version  string `json:"version"`
	Listen   string `json:"listen"`
	Zone     string `json:"zone"`
	Relay    string `json:"relay"`
	Apps     int    `json:"apps"`
	Services int    `json:"services"`
	Tunnels  int    `json:"tunnels"`
	Peers    []struct {
		ID, Addr, Zone, State string
	} `json:"peers"`
	Clusters []struct {
		Name         string         `json:"name"`
		LocalMembers int            `json:"local_members"`
		Remote       map[string]int `json:"remote"`
	} `json:"clusters"`
	Topics []struct {
		Name             string   `json:"name"`
		LocalSubscribers int      `json:"local_subscribers"`
		Remote           []string `json:"remote"`
	} `json:"topics"`
}

func (s *statusDoc) summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "node %s of network %q", s.Node, s.Network)
	if s.Zone != "" {
		fmt.Fprintf(&b, ", zone %s", s.Zone)
	}
	if s.Version != "" {
		fmt.Fprintf(&b, ", irisd %s", s.Version)
	}
	fmt.Fprintf(&b, "\noverlay %s, relay %s: %d apps, %d services, %d tunnel ends\n",
		s.Listen, orDash(s.Relay), s.Apps, s.Services, s.Tunnels)
	fmt.Fprintf(&b, "peers: %d\n", len(s.Peers))
	for _, p := range s.Peers {
		fmt.Fprintf(&b, "  %-24s %-8s %s\n", p.ID, p.State, strings.TrimSpace(p.Addr+" "+p.Zone))
	}
	fmt.Fprintf(&b, "clusters: %d\n", len(s.Clusters))
	for _, c := range s.Clusters {
		var where []string
		if c.LocalMembers > 0 {
			where = append(where, fmt.Sprintf("%d here", c.LocalMembers))
		}
		ids := make([]string, 0, len(c.Remote))
		for id := range c.Remote {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		for _, id := range ids {
			where = append(where, fmt.Sprintf("%d on %s", c.Remote[id], id))
		}
		fmt.Fprintf(&b, "  %-24s %s\n", c.Name, orDash(strings.Join(where, ", ")))
	}
	fmt.Fprintf(&b, "topics: %d\n", len(s.Topics))
	for _, t := range s.Topics {
		where := []string{}
		if t.LocalSubscribers > 0 {
			where = append(where, fmt.Sprintf("%d here", t.LocalSubscribers))
		}
		if len(t.Remote) > 0 {
			where = append(where, "on "+strings.Join(t.Remote, ", "))
		}
		fmt.Fprintf(&b, "  %-24s %s\n", t.Name, orDash(strings.Join(where, ", ")))
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

var versionCmd = &command{
	name: "version", args: "",
	summary: "print iris's version and VCS revision",
	help: `
Prints the module version and the VCS revision iris was built from
(irisd version prints the daemon's; iris status shows a running one's).`,
	flags: func(fs *flag.FlagSet, e *env) func([]string) error {
		return func(args []string) error {
			if err := noMore(args); err != nil {
				return err
			}
			info := buildinfo.Read()
			if e.json {
				writeJSON(e.stdout, info)
				return nil
			}
			_, err := fmt.Fprintf(e.stdout, "iris %s\n", info)
			return err
		}
	},
}

// writeLine writes b and a newline, unless b ends with one already.
func writeLine(w io.Writer, b []byte) {
	w.Write(b)
	if len(b) == 0 || b[len(b)-1] != '\n' {
		w.Write([]byte{'\n'})
	}
}

// writeJSON writes v as one line of JSON.
func writeJSON(w io.Writer, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte(fmt.Sprintf(`{"error":%q}`, err.Error()))
	}
	w.Write(append(b, '\n'))
}

// payloadJSON returns fields with the payload added under key: as a string
// when it is valid UTF-8, else base64 under key+"_base64".
func payloadJSON(key string, payload []byte, fields map[string]any) map[string]any {
	if utf8.Valid(payload) {
		fields[key] = string(payload)
	} else {
		fields[key+"_base64"] = payload // encoding/json writes []byte as base64
	}
	return fields
}

// lineWriter serializes whole lines to w.
type lineWriter struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func (l *lineWriter) line(b []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	writeLine(l.w, b)
	l.w.Flush()
}

func (l *lineWriter) json(v any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	writeJSON(l.w, v)
	l.w.Flush()
}
