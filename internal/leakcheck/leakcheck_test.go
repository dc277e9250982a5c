package leakcheck

import (
	"testing"
	"time"
)

func TestNewFindsLeakedGoroutine(t *testing.T) {
	before := Snapshot()
	stop := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		<-stop
	}()
	leaked := New(before)
	if len(leaked) != 1 {
		t.Fatalf("New found %d goroutines, want 1:\n%v", len(leaked), leaked)
	}
	close(stop)
	<-exited
	if leaked := Wait(before, Timeout); len(leaked) != 0 {
		t.Fatalf("goroutine still reported after it exited:\n%v", leaked)
	}
}

func TestWaitGivesUp(t *testing.T) {
	before := Snapshot()
	stop := make(chan struct{})
	go func() { <-stop }()
	defer close(stop)
	start := time.Now()
	leaked := Wait(before, 50*time.Millisecond)
	if len(leaked) != 1 {
		t.Fatalf("Wait returned %d stacks, want 1", len(leaked))
	}
	if time.Since(start) < 50*time.Millisecond {
		t.Fatal("Wait returned before its timeout")
	}
}

func TestGoroutineID(t *testing.T) {
	if got := goroutineID("goroutine 42 [running]:\nmain.main()"); got != "42" {
		t.Fatalf("goroutineID = %q, want 42", got)
	}
}

func TestCheckPassesCleanTest(t *testing.T) {
	Check(t)
	done := make(chan struct{})
	go func() { close(done) }()
	<-done
}
