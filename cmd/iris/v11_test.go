package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/iris-mesh/iris/internal/leakcheck"
)

func TestSurveyPushPull(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t)
	background(t, d, "serve", "svc")
	background(t, d, "serve", "svc")
	pulled, _ := background(t, d, "pull", "jobs", "-name", "p1")
	waitFor(t, "members", func() bool { return members(d, "svc", false) == 2 && members(d, "jobs", false) == 1 })

	code, out, errOut := iris(t, d, "", "survey", "svc", "ping")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != exitOK || len(lines) != 3 || !strings.HasPrefix(lines[2], "asked 2, answered 2") {
		t.Fatalf("survey: %d %q %q", code, out, errOut)
	}
	code, out, errOut = iris(t, d, "", "survey", "-json", "svc", "ping")
	lines = strings.Split(strings.TrimSpace(out), "\n")
	if code != exitOK || len(lines) != 3 {
		t.Fatalf("survey -json: %d %q %q", code, out, errOut)
	}
	var answer struct{ Member, Daemon, Data string }
	if err := json.Unmarshal([]byte(lines[0]), &answer); err != nil || answer.Data != "ping" || answer.Member == "" {
		t.Fatalf("answer line %q: %+v %v", lines[0], answer, err)
	}
	var sum struct {
		Asked, Answered int
		Missing         []string
	}
	if err := json.Unmarshal([]byte(lines[2]), &sum); err != nil || sum.Asked != 2 || sum.Answered != 2 || sum.Missing == nil {
		t.Fatalf("summary line %q: %+v %v", lines[2], sum, err)
	}

	if code, _, errOut := iris(t, d, "", "push", "jobs", "-count", "3", "hello"); code != exitOK {
		t.Fatalf("push -n: %d %s", code, errOut)
	}
	if code, _, errOut := iris(t, d, "a\nb\n", "push", "jobs"); code != exitOK {
		t.Fatalf("push from stdin: %d %s", code, errOut)
	}
	waitFor(t, "pushes printed", func() bool { return strings.Count(pulled.String(), "\n") == 5 })
	got := strings.Split(strings.TrimSpace(pulled.String()), "\n")
	slices.Sort(got)
	if strings.Join(got, ",") != "a,b,hello,hello,hello" {
		t.Fatalf("pulled %q", got)
	}
	// The puller answers surveys with its name.
	if code, out, _ := iris(t, d, "", "survey", "jobs", "?"); code != exitOK || !strings.Contains(out, "p1@") {
		t.Fatalf("survey of pullers: %d %q", code, out)
	}
}

func TestNoMembersFailsAtOnce(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t)
	for _, args := range [][]string{{"request", "nobody", "x"}, {"survey", "nobody", "x"}, {"push", "nobody", "x"}} {
		start := time.Now()
		code, _, errOut := iris(t, d, "", args...)
		if code == exitOK || !strings.Contains(errOut, "cluster has no members") || time.Since(start) > 2*time.Second {
			t.Fatalf("%v: exit %d after %v: %q", args, code, time.Since(start), errOut)
		}
	}
}
