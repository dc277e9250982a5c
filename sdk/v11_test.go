package sdk

import (
	"context"
	"errors"
	"testing"

	"github.com/iris-mesh/iris/api"
	"github.com/iris-mesh/iris/internal/leakcheck"
)

// TestFallbackToV10: a daemon that predates v1.1 refuses the offer; the SDK
// connects again speaking v1.0, and the v1.1 calls say they are
// unsupported.
func TestFallbackToV10(t *testing.T) {
	leakcheck.Check(t)
	r := newRelay(t)
	type dialed struct {
		c   *Conn
		err error
	}
	ch := make(chan dialed, 1)
	go func() {
		c, err := Connect(context.Background(), r.config())
		ch <- dialed{c, err}
	}()
	p := r.accept()
	if m := p.readOp(api.OpInit); m.Version != api.ProtocolV11 {
		t.Fatalf("first offer %q", m.Version)
	}
	p.send(&api.Message{Op: api.OpDeny, Magic: api.RelayMagic, Fault: api.DenyVersionReason(api.ProtocolV11)})
	_ = p.nc.Close()
	p = r.accept()
	if m := p.readOp(api.OpInit); m.Version != api.ProtocolVersion || m.Payload != nil {
		t.Fatalf("second offer %+v", m)
	}
	p.send(&api.Message{Op: api.OpInit, Magic: api.RelayMagic, Version: api.ProtocolVersion})
	d := <-ch
	if d.err != nil {
		t.Fatal(d.err)
	}
	if _, err := d.c.Survey(context.Background(), "svc", nil, nil); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("Survey on v1.0: %v", err)
	}
	if err := d.c.Push(context.Background(), "svc", nil); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("Push on v1.0: %v", err)
	}
	closed := async(d.c.Close)
	p.closeAck()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}

// TestV11LimitsFromDaemon: a payload larger than the daemon's announced
// max_message is refused locally.
func TestV11LimitsFromDaemon(t *testing.T) {
	leakcheck.Check(t)
	r := newRelay(t)
	ch := make(chan *Conn, 1)
	go func() {
		c, err := Connect(context.Background(), r.config())
		if err != nil {
			t.Error(err)
		}
		ch <- c
	}()
	p := r.accept()
	p.readOp(api.OpInit)
	p.dec.EnableV11()
	info := api.EncodeInitInfo(&api.InitInfo{Daemon: "d", MaxMessage: 10, PushWindow: 4})
	p.send(&api.Message{Op: api.OpInit, Magic: api.RelayMagic, Version: api.ProtocolV11, Payload: info})
	c := <-ch
	if c == nil {
		return
	}
	if err := c.Push(context.Background(), "svc", make([]byte, 11)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Push of 11 bytes with max_message 10: %v", err)
	}
	if _, err := c.Survey(context.Background(), "svc", make([]byte, 11), nil); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Survey of 11 bytes: %v", err)
	}
	if _, err := c.Request(context.Background(), "svc", make([]byte, 11)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Request of 11 bytes: %v", err)
	}
	if c.Daemon() != "d" {
		t.Fatalf("Daemon() = %q", c.Daemon())
	}
	closed := async(c.Close)
	p.closeAck()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
}
