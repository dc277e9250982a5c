package netns

import (
	"context"
	"io"
	"net"
	"testing"
	"time"
)

func TestHostsReachEachOtherOnly(t *testing.T) {
	nw := New(t, 2)
	a, b := nw.Hosts[0], nw.Hosts[1]
	// A server inside b, reached from inside a.
	var ln net.Listener
	if err := b.do(func() error {
		var err error
		ln, err = net.Listen("tcp", b.IP+":0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := a.Dial(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(c)
	c.Close()
	if string(got) != "hi" {
		t.Fatalf("got %q", got)
	}
	// Cut b off: a can no longer reach it.
	b.SetLink(false)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel2()
	if c, err := a.Dial(ctx2, "tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Fatal("reached a host whose link is down")
	}
}
