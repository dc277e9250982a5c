package sdk

import (
	"context"
	"errors"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/iris-mesh/iris/api"
)

func TestDefaultConfig(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if want := net.JoinHostPort("127.0.0.1", strconv.Itoa(api.DefaultPort)); cfg.Addr != want || DefaultAddr != want {
		t.Fatalf("default address %q, DefaultAddr %q; want %q", cfg.Addr, DefaultAddr, want)
	}
	resolved, err := resolveConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if resolved.Addr != cfg.Addr || resolved.DialTimeout != cfg.DialTimeout ||
		resolved.DefaultRequestTimeout != cfg.DefaultRequestTimeout || resolved.CloseTimeout != cfg.CloseTimeout ||
		resolved.SendQueueLen != cfg.SendQueueLen || resolved.Limits != cfg.Limits ||
		resolved.DefaultTunnelTimeout != 10*time.Second || resolved.TunnelWindow != 64<<20 ||
		resolved.Dial == nil || resolved.Logger == nil {
		t.Fatalf("nil Config resolved to %+v, want the defaults %+v", resolved, cfg)
	}
}

func TestConfigValidate(t *testing.T) {
	bad := []Config{
		{DialTimeout: -1},
		{DefaultRequestTimeout: -1},
		{DefaultRequestTimeout: time.Microsecond},
		{CloseTimeout: -time.Second},
		{SendQueueLen: -1},
		{Limits: api.Limits{MaxMessageLen: -1}},
		{DefaultTunnelTimeout: -1},
		{DefaultTunnelTimeout: time.Microsecond},
		{TunnelWindow: -1},
		{TunnelWindow: MinTunnelWindow - 1},
		{TunnelWindow: MaxTunnelWindow + 1},
	}
	for _, cfg := range bad {
		if err := cfg.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", cfg)
		}
		if _, err := Connect(context.Background(), &cfg); err == nil {
			t.Errorf("Connect with %+v succeeded", cfg)
		}
	}
}

func TestLimitsDefaults(t *testing.T) {
	l, err := resolveServiceLimits(&ServiceLimits{RequestThreads: 3})
	if err != nil {
		t.Fatal(err)
	}
	d := DefaultServiceLimits()
	if l.RequestThreads != 3 || l.RequestMemory != d.RequestMemory || l.BroadcastThreads != d.BroadcastThreads ||
		l.RequestMemory != 64<<20 || d.RequestThreads < 4 || l.MaxTunnels != DefaultMaxTunnels {
		t.Fatalf("resolved %+v, defaults %+v", l, d)
	}
	for _, bad := range []ServiceLimits{{RequestThreads: -1}, {RequestMemory: -1}, {BroadcastThreads: -1}, {BroadcastMemory: -1}, {MaxTunnels: -1}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil", bad)
		}
	}
	tl, err := resolveTopicLimits(nil)
	if err != nil || tl != DefaultTopicLimits() {
		t.Fatalf("resolved topic limits %+v, %v", tl, err)
	}
}

func TestErrors(t *testing.T) {
	var ne net.Error
	if !errors.As(ErrTimeout, &ne) || !ne.Timeout() {
		t.Error("ErrTimeout is not a net.Error with Timeout()")
	}
	if !errors.Is(ErrTimeout, context.DeadlineExceeded) || errors.Is(ErrTimeout, context.Canceled) {
		t.Error("ErrTimeout does not match context.DeadlineExceeded (only)")
	}
	denied := error(&DeniedError{Reason: "no"})
	if !errors.Is(denied, ErrDenied) || denied.Error() != "sdk: connection denied: no" {
		t.Errorf("DeniedError: %v", denied)
	}
	fault := error(&RemoteError{Fault: "boom"})
	if errors.Is(fault, ErrOverloaded) || fault.Error() != "sdk: remote fault: boom" {
		t.Errorf("RemoteError: %v", fault)
	}
	if !errors.Is(&RemoteError{Fault: ErrOverloaded.Error()}, ErrOverloaded) {
		t.Error("overload fault does not match ErrOverloaded")
	}
}
