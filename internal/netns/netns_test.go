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

// TestPartitionAndHeal: hosts reach only their own group while the switch
// is partitioned, and everyone again once it heals.
func TestPartitionAndHeal(t *testing.T) {
	nw := New(t, 3)
	a, b, c := nw.Hosts[0], nw.Hosts[1], nw.Hosts[2]
	listen := func(h *Host) string {
		var ln net.Listener
		if err := h.do(func() error {
			var err error
			ln, err = net.Listen("tcp", h.IP+":0")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		return ln.Addr().String()
	}
	addrB, addrC := listen(b), listen(c)
	reaches := func(from *Host, addr string) bool {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		conn, err := from.Dial(ctx, "tcp", addr)
		if err == nil {
			conn.Close()
		}
		return err == nil
	}
	if !reaches(a, addrB) || !reaches(a, addrC) {
		t.Fatal("hosts do not reach each other before the partition")
	}
	nw.Partition([]*Host{a, b}, []*Host{c})
	if !reaches(a, addrB) {
		t.Fatal("a does not reach b, in its own group")
	}
	if reaches(a, addrC) {
		t.Fatal("a reaches c across the partition")
	}
	nw.Heal()
	deadline := time.Now().Add(5 * time.Second)
	for !reaches(a, addrC) {
		if time.Now().After(deadline) {
			t.Fatal("a does not reach c after the heal")
		}
	}
	nw.Isolate(b)
	if reaches(a, addrB) {
		t.Fatal("a reaches an isolated host")
	}
}
