package main

// The commands of protocol v1.1: survey, push and pull. Each is a
// self-contained function of (ctx, cfg, args, stdio); the cmdX adapters
// plug them into the dispatcher.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/iris-mesh/iris/sdk"
)

func cmdSurvey(e *env, args []string) error {
	return survey(e.ctx, e.cfg, args, e.stdin, e.stdout, e.stderr)
}

func cmdPush(e *env, args []string) error { return push(e.ctx, e.cfg, args, e.stdin, e.stderr) }

func cmdPull(e *env, args []string) error { return pull(e.ctx, e.cfg, args, e.stdout, e.stderr) }

// v11Flags parses a command's flags, which may come before or after its
// first argument; it returns the positional arguments.
func v11Flags(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, usageError(err.Error())
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// message returns the message given as arguments, or all of stdin.
func message(args []string, stdin io.Reader) ([]byte, error) {
	if len(args) > 0 {
		return []byte(strings.Join(args, " ")), nil
	}
	return io.ReadAll(stdin)
}

// survey: iris survey CLUSTER [DATA] [-timeout D] [-quorum K] [-json]
func survey(ctx context.Context, cfg *sdk.Config, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("survey", flag.ContinueOnError)
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", time.Second, "the survey's deadline")
	quorum := fs.Int("quorum", 0, "stop after `K` answers (0: wait for every member)")
	asJSON := fs.Bool("json", false, "print one JSON object per answer, then a summary object")
	pos, err := v11Flags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usageError("want: survey CLUSTER [DATA] [-timeout D] [-quorum K] [-json]")
	}
	question, err := message(pos[1:], stdin)
	if err != nil {
		return err
	}
	conn, err := sdk.Connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	out := bufio.NewWriter(stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	res, err := conn.Survey(ctx, pos[0], question, &sdk.SurveyOptions{
		Quorum: *quorum,
		OnAnswer: func(a sdk.SurveyAnswer) {
			if *asJSON {
				_ = enc.Encode(map[string]string{"member": a.Member, "daemon": a.Daemon, "data": string(a.Data)})
			} else {
				fmt.Fprintf(out, "%s@%s: %s\n", a.Member, a.Daemon, a.Data)
			}
			out.Flush()
		},
	})
	if err != nil {
		return err
	}
	missing := make([]string, 0, len(res.Missing))
	for _, m := range res.Missing {
		missing = append(missing, m.Member)
	}
	if *asJSON {
		return enc.Encode(struct {
			Asked    int                 `json:"asked"`
			Answered int                 `json:"answered"`
			Missing  []string            `json:"missing"`
			Details  []sdk.MissingMember `json:"missing_detail"`
		}{res.Asked, res.Answered, missing, res.Missing})
	}
	fmt.Fprintf(out, "asked %d, answered %d", res.Asked, res.Answered)
	for i, m := range res.Missing {
		sep := "; missing: "
		if i > 0 {
			sep = ", "
		}
		fmt.Fprintf(out, "%s%s@%s (%s)", sep, m.Member, m.Daemon, m.Reason)
	}
	fmt.Fprintln(out)
	return nil
}

// push: iris push CLUSTER [DATA] [-n N] [-nowait]. Without DATA every line
// of stdin is one push.
func push(ctx context.Context, cfg *sdk.Config, args []string, stdin io.Reader, stderr io.Writer) error {
	fs := flag.NewFlagSet("push", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int("n", 1, "push DATA `N` times")
	nowait := fs.Bool("nowait", false, "fail when every member is busy instead of waiting")
	pos, err := v11Flags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 || *n < 1 {
		return usageError("want: push CLUSTER [DATA] [-n N] [-nowait]")
	}
	conn, err := sdk.Connect(ctx, cfg)
	if err != nil {
		return err
	}
	pushOne := conn.Push
	if *nowait {
		pushOne = conn.TryPush
	}
	send := func() error {
		if len(pos) > 1 {
			data := []byte(strings.Join(pos[1:], " "))
			for range *n {
				if err := pushOne(ctx, pos[0], data); err != nil {
					return err
				}
			}
			return nil
		}
		sc := bufio.NewScanner(stdin)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			if err := pushOne(ctx, pos[0], sc.Bytes()); err != nil {
				return err
			}
		}
		return sc.Err()
	}
	if err := send(); err != nil {
		conn.Close()
		return err
	}
	return conn.Close()
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

// pull: iris pull CLUSTER [-n N] [-name NAME]. With -n it stops after N
// messages, printing any the daemon had already handed it (at most N more).
func pull(ctx context.Context, cfg *sdk.Config, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("pull", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.Int64("n", 0, "stop after `N` messages (0: run until interrupted)")
	name := fs.String("name", "", "the member `NAME` (default: chosen by the daemon)")
	pos, err := v11Flags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *n < 0 {
		return usageError("want: pull CLUSTER [-n N] [-name NAME]")
	}
	c := *cfg
	c.Name = *name
	p := &puller{limit: *n, out: bufio.NewWriter(stdout), done: make(chan struct{})}
	lim := sdk.DefaultServiceLimits()
	if *n > 0 {
		lim.PushCredit, lim.RequestThreads = int(min(*n, int64(lim.PushCredit))), 1
	}
	svc, err := sdk.Register(ctx, &c, pos[0], p, &lim)
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
