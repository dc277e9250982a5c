package relay_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/iris-mesh/iris/api"
	"github.com/iris-mesh/iris/internal/leakcheck"
	"github.com/iris-mesh/iris/sdk"
)

// TestSDK runs the project's Go SDK against the relay: two independent
// implementations of the protocol must agree.
func TestSDK(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t, nil)
	cfg := sdk.DefaultConfig()
	cfg.Addr = d.addr
	cfg.Version = api.ProtocolVersion // v1.0 as the Iris v1 bindings: an empty cluster times out
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()

	handler := sdk.HandlerFunc(func(_ context.Context, req []byte) ([]byte, error) {
		if string(req) == "fail" {
			return nil, errors.New("as asked")
		}
		return append([]byte("echo:"), req...), nil
	})
	svc, err := sdk.Register(ctx, cfg, "echo", handler, nil)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := sdk.Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := conn.Request(ctx, "echo", []byte("hi")); err != nil || string(rep) != "echo:hi" {
		t.Fatalf("Request = %q, %v", rep, err)
	}
	var fault *sdk.RemoteError
	if _, err := conn.Request(ctx, "echo", []byte("fail")); !errors.As(err, &fault) {
		t.Fatalf("Request(fail) = %v, want a RemoteError", err)
	}
	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	if _, err := conn.Request(short, "nobody", nil); !errors.Is(err, sdk.ErrTimeout) {
		t.Fatalf("Request(nobody) = %v, want ErrTimeout", err)
	}
	if err := svc.Close(); err != nil { // graceful: the daemon answers CLOSE
		t.Fatalf("Service.Close = %v", err)
	}
	if err := conn.Close(); err != nil {
		t.Fatalf("Conn.Close = %v", err)
	}
}
