package bench

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// startNATS starts n embedded NATS servers on loopback. With n > 1 they
// form one cluster, routes on loopback without compression, the later
// servers routed to the first; it waits until every server has a route.
func startNATS(tb testing.TB, n int) []*server.Server {
	tb.Helper()
	srvs := make([]*server.Server, n)
	for i := range srvs {
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i),
			Host:       "127.0.0.1",
			Port:       server.RANDOM_PORT,
			NoLog:      true,
			NoSigs:     true,
		}
		if n > 1 {
			opts.Cluster = server.ClusterOpts{
				Name:        "bench",
				Host:        "127.0.0.1",
				Port:        server.RANDOM_PORT,
				NoAdvertise: true,
				Compression: server.CompressionOpts{Mode: server.CompressionOff},
			}
			if i > 0 {
				opts.Routes = server.RoutesFromStr("nats://" + srvs[0].ClusterAddr().String())
			}
		}
		s, err := server.NewServer(opts)
		if err != nil {
			tb.Fatal(err)
		}
		s.Start()
		tb.Cleanup(func() {
			s.Shutdown()
			s.WaitForShutdown()
		})
		if !s.ReadyForConnections(10 * time.Second) {
			tb.Fatalf("nats server %d not ready", i)
		}
		srvs[i] = s
	}
	if n > 1 {
		for _, s := range srvs {
			waitFor(tb, "nats routes", func() bool { return s.NumRoutes() > 0 })
		}
	}
	return srvs
}

// natsConnect connects a client to s, closed at cleanup.
func natsConnect(tb testing.TB, s *server.Server) *nats.Conn {
	tb.Helper()
	nc, err := nats.Connect(s.ClientURL(), nats.NoReconnect())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// natsRequester starts nodes servers with an echo responder on the last
// and returns a requester whose client is on the first. The responder is
// one subscription (NATS calls its handler from one goroutine); the client
// multiplexes its requests on one connection, as nats.go does by default.
func natsRequester(tb testing.TB, nodes int) requester {
	srvs := startNATS(tb, nodes)
	svc := natsConnect(tb, srvs[nodes-1])
	if _, err := svc.Subscribe("echo", func(m *nats.Msg) {
		_ = m.Respond(m.Data) // a lost reply shows as the client's timeout
	}); err != nil {
		tb.Fatal(err)
	}
	if err := svc.Flush(); err != nil {
		tb.Fatal(err)
	}
	client := natsConnect(tb, srvs[0])
	// Across servers, interest reaches the first one by the route: until
	// then a request fails at once with ErrNoResponders.
	waitFor(tb, "nats interest", func() bool {
		_, err := client.Request("echo", nil, time.Second)
		if err != nil && !errors.Is(err, nats.ErrNoResponders) {
			tb.Fatal(err)
		}
		return err == nil
	})
	return func(p []byte) ([]byte, error) {
		m, err := client.Request("echo", p, 10*time.Second)
		if err != nil {
			return nil, err
		}
		return m.Data, nil
	}
}

// natsPubSub starts one server with subs subscribers (each on its own
// connection) and returns a publisher on another connection and the
// subscribers' counters.
func natsPubSub(tb testing.TB, subs int) (publisher, []*counter) {
	s := startNATS(tb, 1)[0]
	counters := make([]*counter, subs)
	for i := range counters {
		c := &counter{}
		counters[i] = c
		nc := natsConnect(tb, s)
		if _, err := nc.Subscribe("bench", func(*nats.Msg) { c.n.Add(1) }); err != nil {
			tb.Fatal(err)
		}
		if err := nc.Flush(); err != nil { // the server has the subscription
			tb.Fatal(err)
		}
	}
	pub := natsConnect(tb, s)
	return func(p []byte) error { return pub.Publish("bench", p) }, counters
}
