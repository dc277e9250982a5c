package main

// The commands of protocol v1.1: survey, push and pull.

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sync"

	"github.com/iris-mesh/iris/sdk"
)

var surveyCmd = &command{
	name: "survey", args: "CLUSTER [MESSAGE]",
	summary: "ask every member of CLUSTER; print the answers and who did not answer",
	help: `
Sends MESSAGE to every member of CLUSTER on every daemon and prints each
answer as it arrives ("member@daemon: answer"), then a summary: how many
members were asked, how many answered, and the ones that did not (late,
failed, or lost with their daemon). The survey ends as soon as every member
asked has answered, or at -timeout, or after -quorum answers. With -json,
one object per answer ({"member","daemon","data"}) and a last one with
"asked", "answered" and "missing" (member names). Needs an irisd that
speaks protocol v1.1.`,
	flags: func(fs *flag.FlagSet, e *env) func([]string) error {
		file := fs.String("file", "", "read the message from `FILE` (\"-\": stdin)")
		quorum := fs.Int("quorum", 0, "stop after `K` answers (0: wait for every member)")
		return func(args []string) error {
			cluster, rest, err := name(args, "CLUSTER")
			if err != nil {
				return err
			}
			if *quorum < 0 {
				return usageError("-quorum: want a number of answers, 0 for every member")
			}
			question, err := e.message(rest, *file)
			if err != nil {
				return err
			}
			c, err := e.connect()
			if err != nil {
				return err
			}
			defer c.Close()
			return e.survey(c, cluster, question, *quorum)
		}
	},
}

// survey runs one survey on c and prints its answers and summary.
func (e *env) survey(c *sdk.Conn, cluster string, question []byte, quorum int) error {
	ctx, cancel := context.WithTimeout(e.ctx, e.timeout)
	defer cancel()
	out := &lineWriter{w: bufio.NewWriter(e.stdout)}
	var mu sync.Mutex // OnAnswer may run beside the summary's writes
	res, err := c.Survey(ctx, cluster, question, &sdk.SurveyOptions{
		Quorum: quorum,
		OnAnswer: func(a sdk.SurveyAnswer) {
			mu.Lock()
			defer mu.Unlock()
			if e.json {
				out.json(map[string]string{"member": a.Member, "daemon": a.Daemon, "data": string(a.Data)})
			} else {
				out.line(fmt.Appendf(nil, "%s@%s: %s", a.Member, a.Daemon, a.Data))
			}
		},
	})
	if err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	missing := make([]string, 0, len(res.Missing))
	for _, m := range res.Missing {
		missing = append(missing, m.Member)
	}
	if e.json {
		out.json(struct {
			Asked    int                 `json:"asked"`
			Answered int                 `json:"answered"`
			Missing  []string            `json:"missing"`
			Details  []sdk.MissingMember `json:"missing_detail"`
		}{res.Asked, res.Answered, missing, res.Missing})
		return nil
	}
	line := fmt.Appendf(nil, "asked %d, answered %d", res.Asked, res.Answered)
	for i, m := range res.Missing {
		sep := "; missing: "
		if i > 0 {
			sep = ", "
		}
		line = fmt.Appendf(line, "%s%s@%s (%s)", sep, m.Member, m.Daemon, m.Reason)
	}
	out.line(line)
	return nil
}

var pushCmd = &command{
	name: "push", args: "CLUSTER [MESSAGE]",
	summary: "hand MESSAGE (or each line of stdin) to exactly one member of CLUSTER",
	help: `
Pushes MESSAGE to one member of CLUSTER, chosen by the daemons like a
request's, with no reply. Without MESSAGE (and without -file), each line of
stdin is one push. When every member is busy, push waits for room (up to
-timeout per message); with -nowait it fails at once instead. With -count N
it pushes MESSAGE N times. Needs an irisd that speaks protocol v1.1 and
members that pull (iris pull).`,
	flags: func(fs *flag.FlagSet, e *env) func([]string) error {
		file := fs.String("file", "", "read the message from `FILE` (\"-\": stdin)")
		count := fs.Int("count", 1, "push MESSAGE `N` times")
		nowait := fs.Bool("nowait", false, "fail when every member is busy instead of waiting")
		return func(args []string) error {
			cluster, rest, err := name(args, "CLUSTER")
			if err != nil {
				return err
			}
			if *count < 1 {
				return usageError("-count: want at least 1")
			}
			lines := len(rest) == 0 && *file == ""
			var msg []byte
			if !lines {
				if msg, err = e.message(rest, *file); err != nil {
					return err
				}
			}
			c, err := e.connect()
			if err != nil {
				return err
			}
			pushOne := func(m []byte) error {
				ctx, cancel := context.WithTimeout(e.ctx, e.timeout)
				defer cancel()
				if *nowait {
					return c.TryPush(ctx, cluster, m)
				}
				return c.Push(ctx, cluster, m)
			}
			err = pushAll(pushOne, msg, *count, lines, e)
			// The graceful close waits until the pushes are written.
			if cerr := c.Close(); err == nil {
				err = cerr
			}
			return err
		}
	},
}

// pushAll pushes msg count times, or each line of stdin when lines is set.
func pushAll(pushOne func([]byte) error, msg []byte, count int, lines bool, e *env) error {
	if !lines {
		for range count {
			if err := pushOne(msg); err != nil {
				return err
			}
		}
		return nil
	}
	sc := bufio.NewScanner(e.stdin)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		if err := pushOne(sc.Bytes()); err != nil {
			return err
		}
	}
	return sc.Err()
}

var pullCmd = &command{
	name: "pull", args: "CLUSTER",
	summary: "be a member of CLUSTER printing every pushed message, one per line",
	help: `
Registers as a member of CLUSTER that takes pushes (iris push) and prints
each on its own line, until interrupted or, with -n, after N messages. It
answers surveys with "pulling". -name names the member (unique in the
cluster; by default the daemon picks NODE/N). Needs an irisd that speaks
protocol v1.1.`,
	flags: func(fs *flag.FlagSet, e *env) func([]string) error {
		n := fs.Int64("n", 0, "stop after `N` messages (0: run until interrupted)")
		member := fs.String("name", "", "the member `NAME` (default: chosen by the daemon)")
		return func(args []string) error {
			cluster, rest, err := name(args, "CLUSTER")
			if err != nil {
				return err
			}
			if err := noMore(rest); err != nil {
				return err
			}
			if *n < 0 {
				return usageError("-n: want a number of messages, 0 for no limit")
			}
			cfg := e.sdkConfig()
			cfg.Name = *member
			return pull(e.ctx, cfg, cluster, *n, e.stdout)
		}
	},
}

// puller is the member `iris pull` registers: it prints every pushed
// message on its own line, and answers surveys with its name.
type puller struct {
	name  string
	limit int64 // stop after this many; 0 never

	mu    sync.Mutex // protects following
	out   *bufio.Writer
	count int64
	done  chan struct{}
}

func (p *puller) HandleRequest(ctx context.Context, req []byte) ([]byte, error) {
	if sdk.IsSurvey(ctx) {
		return []byte("pulling"), nil
	}
	return nil, errors.New("iris pull: this member takes pushes only")
}

func (p *puller) HandlePush(msg []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	// Past the limit, messages already handed to this member are printed
	// too: stopping must not lose them.
	p.out.Write(msg)
	p.out.WriteByte('\n')
	p.out.Flush()
	p.count++
	if p.count == p.limit {
		close(p.done)
	}
}

// pull registers a puller in cluster and runs it until ctx ends or, with
// n > 0, n messages were printed (and any the daemon had already handed it).
func pull(ctx context.Context, cfg *sdk.Config, cluster string, n int64, stdout io.Writer) error {
	p := &puller{limit: n, out: bufio.NewWriter(stdout), done: make(chan struct{})}
	lim := sdk.DefaultServiceLimits()
	if n > 0 {
		lim.PushCredit, lim.RequestThreads = int(min(n, int64(lim.PushCredit))), 1
	}
	svc, err := sdk.Register(ctx, cfg, cluster, p, &lim)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-p.done:
	case <-svc.Done():
		return svc.Err()
	}
	return svc.Close()
}
