package sdk_test

import (
	"context"
	"fmt"
	"sort"
	"sync/atomic"
	"time"

	"github.com/iris-mesh/iris/sdk"
)

// A survey asks every member of a cluster and gathers their answers; it
// ends as soon as the last member answered, and names those that did not.
func ExampleConn_Survey() {
	addr, stop := exampleDaemon()
	defer stop()
	ctx := context.Background()
	for _, name := range []string{"alpha", "beta", "gamma"} {
		cfg := sdk.DefaultConfig()
		cfg.Addr, cfg.Name = addr, name // a member name, unique in its cluster
		load := sdk.HandlerFunc(func(ctx context.Context, q []byte) ([]byte, error) {
			if sdk.IsSurvey(ctx) {
				return []byte(name + " is idle"), nil
			}
			return nil, fmt.Errorf("surveys only")
		})
		svc, err := sdk.Register(ctx, cfg, "workers", load, nil)
		if err != nil {
			panic(err)
		}
		defer svc.Close()
	}

	cfg := sdk.DefaultConfig()
	cfg.Addr = addr
	conn, err := sdk.Connect(ctx, cfg)
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Second) // the survey's deadline
	defer cancel()
	res, err := conn.Survey(ctx, "workers", []byte("what is your load?"), nil)
	if err != nil {
		panic(err)
	}
	sort.Slice(res.Answers, func(i, j int) bool { return res.Answers[i].Member < res.Answers[j].Member })
	for _, a := range res.Answers {
		fmt.Printf("%s: %s\n", a.Member, a.Data)
	}
	fmt.Printf("asked %d, answered %d, missing %d\n", res.Asked, res.Answered, len(res.Missing))
	// Output:
	// alpha: alpha is idle
	// beta: beta is idle
	// gamma: gamma is idle
	// asked 3, answered 3, missing 0
}

// worker pulls pushed jobs; it implements sdk.PushHandler.
type worker struct {
	sdk.HandlerFunc
	done *atomic.Int64
	all  chan struct{} // closed by the worker that does the 100th job
}

func (w worker) HandlePush(job []byte) {
	if w.done.Add(1) == 100 {
		close(w.all)
	}
}

// Push hands each job to exactly one member; Push waits while every
// member's queue is full, and a cluster with no members fails at once.
func ExampleConn_Push() {
	addr, stop := exampleDaemon()
	defer stop()
	cfg := sdk.DefaultConfig()
	cfg.Addr = addr
	ctx := context.Background()

	var done atomic.Int64
	all := make(chan struct{})
	noRequests := sdk.HandlerFunc(func(context.Context, []byte) ([]byte, error) { return nil, fmt.Errorf("push only") })
	for range 2 {
		svc, err := sdk.Register(ctx, cfg, "jobs", worker{noRequests, &done, all}, nil)
		if err != nil {
			panic(err)
		}
		defer svc.Close()
	}
	conn, err := sdk.Connect(ctx, cfg)
	if err != nil {
		panic(err)
	}
	defer conn.Close()
	for i := range 100 {
		if err := conn.Push(ctx, "jobs", fmt.Appendf(nil, "job %d", i)); err != nil {
			panic(err)
		}
	}
	<-all // the workers run on their own
	fmt.Println("jobs done:", done.Load())
	err = conn.Push(ctx, "nobody", []byte("job"))
	fmt.Println(err)
	// Output:
	// jobs done: 100
	// sdk: push to "nobody": sdk: cluster has no members
}
