package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iris-mesh/iris/sdk"
)

// requestLoad keeps up to inflight requests to a cluster going until
// finish, counting how each one was answered.
type requestLoad struct {
	sent, ok, faults, timeouts atomic.Int64

	mu        sync.Mutex // protects following
	lastFault time.Time
	faultText string

	stop chan struct{}
	wg   sync.WaitGroup
}

// startLoad starts the load. Each request carries its sequence number and
// has the given deadline; valid judges a reply (nil accepts any).
func startLoad(client *sdk.Conn, cluster string, inflight int, deadline time.Duration, valid func(req string, rep []byte) bool) *requestLoad {
	l := &requestLoad{stop: make(chan struct{})}
	sem := make(chan struct{}, inflight)
	l.wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-l.stop:
				return
			case sem <- struct{}{}:
			}
			l.sent.Add(1)
			l.wg.Go(func() {
				defer func() { <-sem }()
				ctx, cancel := context.WithTimeout(context.Background(), deadline)
				defer cancel()
				req := fmt.Sprint(i)
				rep, err := client.Request(ctx, cluster, []byte(req))
				switch {
				case err == nil && (valid == nil || valid(req, rep)):
					l.ok.Add(1)
				case errors.Is(err, sdk.ErrTimeout):
					l.timeouts.Add(1)
				default:
					l.faults.Add(1)
					l.mu.Lock()
					l.lastFault, l.faultText = time.Now(), fmt.Sprint(err)
					l.mu.Unlock()
				}
			})
		}
	})
	return l
}

// finish stops sending and waits for every request's answer.
func (l *requestLoad) finish() {
	close(l.stop)
	l.wg.Wait()
}

// answered counts the requests answered, whichever way.
func (l *requestLoad) answered() int64 { return l.ok.Load() + l.faults.Load() + l.timeouts.Load() }

// lastFaultInfo returns when the last fault came and what it said.
func (l *requestLoad) lastFaultInfo() (time.Time, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lastFault, l.faultText
}
