// Command discovery asks "who is out there, and what is your load?" with a
// survey. With -member it joins cluster "discovery" and answers surveys
// with its load (handlers running, requests served, uptime, Go
// goroutines); otherwise it surveys every member, wherever it runs, prints
// their answers as they arrive, and names those that did not answer.
//
//	go run ./examples/discovery -member -name web-1 &   (as many as you like)
//	go run ./examples/discovery                         (who is out there?)
//	go run ./examples/discovery -quorum 1               (anyone at all?)
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/iris-mesh/iris/sdk"
)

const cluster = "discovery"

// load is what a member reports.
type load struct {
	Busy       int64  `json:"busy"`       // its handlers running now
	Served     int64  `json:"served"`     // surveys answered so far
	Goroutines int    `json:"goroutines"` // runtime.NumGoroutine
	Uptime     string `json:"uptime"`
}

// member answers surveys with its load.
type member struct {
	start        time.Time
	busy, served atomic.Int64
}

func (m *member) HandleRequest(ctx context.Context, q []byte) ([]byte, error) {
	if !sdk.IsSurvey(ctx) {
		return nil, errors.New("discovery members answer surveys only")
	}
	m.busy.Add(1)
	defer m.busy.Add(-1)
	return json.Marshal(load{
		Busy: m.busy.Load(), Served: m.served.Add(1),
		Goroutines: runtime.NumGoroutine(), Uptime: time.Since(m.start).Round(time.Second).String(),
	})
}

func main() {
	addr := flag.String("addr", sdk.DefaultAddr, "address of the local irisd")
	asMember := flag.Bool("member", false, "join cluster \"discovery\" and answer surveys until interrupted")
	name := flag.String("name", "", "the member's name (default: chosen by the daemon)")
	timeout := flag.Duration("timeout", time.Second, "how long the survey waits for slow members")
	quorum := flag.Int("quorum", 0, "stop after this many answers (0: every member)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	cfg := sdk.DefaultConfig()
	cfg.Addr, cfg.Name = *addr, *name
	var err error
	if *asMember {
		err = serve(ctx, cfg)
	} else {
		err = discover(ctx, cfg, *timeout, *quorum)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "discovery:", err)
		os.Exit(1)
	}
}

func serve(ctx context.Context, cfg *sdk.Config) error {
	svc, err := sdk.Register(ctx, cfg, cluster, &member{start: time.Now()}, nil)
	if err != nil {
		return err
	}
	fmt.Printf("member %s of %q, answering surveys\n", svc.Name(), cluster)
	select {
	case <-ctx.Done():
		return svc.Close()
	case <-svc.Done():
		return svc.Err()
	}
}

func discover(ctx context.Context, cfg *sdk.Config, timeout time.Duration, quorum int) error {
	conn, err := sdk.Connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	res, err := conn.Survey(ctx, cluster, []byte("who is out there, and what is your load?"), &sdk.SurveyOptions{
		Quorum: quorum,
		OnAnswer: func(a sdk.SurveyAnswer) {
			fmt.Printf("%-20s on %-12s %s\n", a.Member, a.Daemon, a.Data)
		},
	})
	if errors.Is(err, sdk.ErrNoMembers) {
		fmt.Println("nobody is out there")
		return nil
	}
	if err != nil {
		return err
	}
	fmt.Printf("%d of %d members answered in %v\n", res.Answered, res.Asked, time.Since(start).Round(time.Millisecond))
	for _, m := range res.Missing {
		fmt.Printf("  no answer from %s on %s: %s\n", m.Member, m.Daemon, m.Reason)
	}
	return nil
}
