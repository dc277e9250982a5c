package relay_test

import (
	"context"
	"io"
	"net"
	"testing"

	"github.com/iris-mesh/iris/api"
	"github.com/iris-mesh/iris/internal/leakcheck"
	"github.com/iris-mesh/iris/relay"
)

// FuzzConn feeds arbitrary bytes to a connection after a valid INIT (as a
// plain client or as a service of cluster "fz"): the relay must never
// panic, must end the connection when the input ends, and must go on
// serving other connections.
func FuzzConn(f *testing.F) {
	leakcheck.Check(f)
	d := startDaemon(f, func(c *relay.Config) {
		c.Limits = api.Limits{MaxStringLen: 1 << 10, MaxMessageLen: 4 << 10}
	})
	seeds := []api.Message{
		{Op: api.OpRequest, ID: 1, Cluster: "fz", Payload: []byte("q"), TimeoutMs: 5},
		{Op: api.OpReply, ID: 1, Success: true, Payload: []byte("r")},
		{Op: api.OpReply, ID: 1, Fault: "f"},
		{Op: api.OpBroadcast, Cluster: "fz", Payload: []byte("b")},
		{Op: api.OpSubscribe, Topic: "t"},
		{Op: api.OpPublish, Topic: "t", Payload: []byte("e")},
		{Op: api.OpUnsubscribe, Topic: "t"},
		{Op: api.OpTunInit, ID: 1, Cluster: "fz", TimeoutMs: 1},
		{Op: api.OpTunConfirm, ID: 1, ID2: 2},
		{Op: api.OpTunAllow, ID: 2, Size: 100},
		{Op: api.OpTunTransfer, ID: 2, Size: 1, Payload: []byte("x")},
		{Op: api.OpTunClose, ID: 2},
		{Op: api.OpClose},
	}
	var all []byte
	for i := range seeds {
		b := api.AppendClient(nil, &seeds[i])
		f.Add(false, b)
		f.Add(true, b)
		all = append(all, b...)
	}
	f.Add(true, all)
	for _, h := range []string{"05 01 02", "04 ffffffffffffffffffff 01", "03 01 63 ffffffff0f", "0e", "01", hexInitPlain} {
		f.Add(false, unhex(f, h))
	}
	f.Fuzz(func(t *testing.T, service bool, data []byte) {
		init := api.Message{Op: api.OpInit, Magic: api.ClientMagic, Version: api.ProtocolVersion}
		if service {
			init.Cluster = "fz"
		}
		serveBytes(t, d.srv, append(api.AppendClient(nil, &init), data...))
		// The server is still usable.
		cliEnd, srvEnd := net.Pipe()
		errc := make(chan error, 1)
		go func() { errc <- d.srv.ServeConn(context.Background(), srvEnd) }()
		c := &client{t: t, nc: cliEnd}
		c.sendHex(hexInitPlain)
		c.expectHex(hexInitOK)
		c.sendHex("02")
		c.expectHex("02 00")
		c.expectClosed()
		if err := <-errc; err != nil {
			t.Fatalf("ServeConn after fuzz input = %v", err)
		}
	})
}

// serveBytes serves one net.Pipe connection that sends in and then hangs
// up, discarding what the relay writes, and returns once ServeConn has.
func serveBytes(t *testing.T, srv *relay.Server, in []byte) {
	cliEnd, srvEnd := net.Pipe()
	done := make(chan struct{})
	go func() { // ServeConn's errors are the fuzzer's inputs, not failures
		defer close(done)
		_ = srv.ServeConn(context.Background(), srvEnd)
	}()
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		_, _ = io.Copy(io.Discard, cliEnd)
	}()
	_, _ = cliEnd.Write(in) // fails once the relay closes a violating connection
	cliEnd.Close()
	<-done
	<-drained
}
