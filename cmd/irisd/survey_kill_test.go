package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/iris-mesh/iris/sdk"
)

// TestSurveyDaemonKilled: three irisd processes with three members of
// "svc" each; c's members hold the question. A survey from a (10 s
// deadline) is under way when c is SIGKILLed: it ends within 2 s of the
// kill with c's three members named, lost, and the six others answered.
func TestSurveyDaemonKilled(t *testing.T) {
	needBinary(t)
	dir := t.TempDir()
	keyFile, _ := writeKey(t, dir, "net.key")
	type daemonProc struct {
		*proc
		relay string
	}
	var ds []daemonProc
	var seed string
	for _, name := range []string{"a", "b", "c"} {
		n := newNode(t, name)
		relay := freePort(t)
		args := n.args("-net", "survey", "-key", keyFile)
		for i, a := range args {
			if a == "-relay" {
				args[i+1] = relay
			}
		}
		if seed != "" {
			args = append(args, "-join", seed)
		} else {
			seed = n.listen
		}
		ds = append(ds, daemonProc{startIrisd(t, name, n.status, nil, args...), "127.0.0.1:" + relay})
	}
	for _, d := range ds {
		waitFor(t, 5*time.Second, d.name+"'s relay", func() bool {
			conn, err := net.Dial("tcp", d.relay)
			if err == nil {
				conn.Close()
			}
			return err == nil
		})
	}
	hold := make(chan struct{})
	defer close(hold)
	asked := make(chan string, 3)
	for _, d := range ds {
		for i := 1; i <= 3; i++ {
			name := fmt.Sprintf("%s%d", d.name, i)
			h := sdk.HandlerFunc(func(ctx context.Context, q []byte) ([]byte, error) { return []byte(name), nil })
			if d.name == "c" {
				h = func(ctx context.Context, q []byte) ([]byte, error) {
					asked <- name
					select {
					case <-hold:
					case <-ctx.Done():
					}
					return nil, ctx.Err()
				}
			}
			cfg := sdk.DefaultConfig()
			cfg.Addr, cfg.Name = d.relay, name
			svc, err := sdk.Register(context.Background(), cfg, "svc", h, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { svc.Close() })
		}
	}
	a := ds[0]
	waitFor(t, 5*time.Second, "a to know the nine members", func() bool {
		st, ok := a.getStatus()
		return ok && st.members("svc") == 9
	})
	cfg := sdk.DefaultConfig()
	cfg.Addr = a.relay
	client, err := sdk.Connect(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type out struct {
		res *sdk.SurveyResult
		err error
		at  time.Time
	}
	done := make(chan out, 1)
	go func() {
		res, err := client.Survey(ctx, "svc", []byte("who?"), nil)
		done <- out{res, err, time.Now()}
	}()
	for range 3 {
		<-asked
	}
	killed := time.Now()
	ds[2].stop(t, syscall.SIGKILL)
	o := <-done
	if o.err != nil {
		t.Fatal(o.err)
	}
	var missing []string
	for _, m := range o.res.Missing {
		missing = append(missing, m.Member+"@"+m.Daemon+":"+m.Reason)
	}
	took := o.at.Sub(killed)
	t.Logf("irisd c SIGKILLed mid-survey: the survey ended %v after the kill (deadline 10s): asked %d, answered %d, missing %v",
		took.Round(time.Microsecond), o.res.Asked, o.res.Answered, missing)
	if o.res.Asked != 9 || o.res.Answered != 6 || strings.Join(missing, " ") != "c1@c:lost c2@c:lost c3@c:lost" {
		t.Fatalf("result %+v, missing %v", o.res, missing)
	}
	if took > 2*time.Second {
		t.Fatalf("the survey ended %v after the kill, want within 2s", took)
	}
}
