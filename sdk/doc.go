// Package sdk is the Go client of Iris. An app talks only to the Iris
// daemon on its own host (irisd), over the relay protocol
// (docs/relay-protocol.md, encoded by package api), and addresses clusters
// of services by name, never hosts; the daemons find the members and route.
//
// # Usage
//
// A plain client connects and sends requests. The context's deadline is the
// request's timeout, which the daemon enforces:
//
//	conn, err := sdk.Connect(ctx, nil) // nil: DefaultConfig, 127.0.0.1:55555
//	if err != nil {
//		return err
//	}
//	defer conn.Close()
//
//	ctx, cancel := context.WithTimeout(ctx, time.Second)
//	defer cancel()
//	reply, err := conn.Request(ctx, "echo", []byte("hello"))
//	var fault *sdk.RemoteError
//	switch {
//	case errors.Is(err, sdk.ErrTimeout): // nobody answered in time
//	case errors.As(err, &fault): // the service failed: fault.Fault
//	case errors.Is(err, sdk.ErrClosed): // the connection is gone
//	case err != nil: // ctx was cancelled, or a bad argument
//	}
//
// A service registers a Handler in a cluster. Each service has its own
// connection; the daemon balances the cluster's requests among its members,
// and each member runs at most ServiceLimits.RequestThreads handlers at once:
//
//	echo := sdk.HandlerFunc(func(ctx context.Context, req []byte) ([]byte, error) {
//		return req, nil // an error would reach the caller as a *RemoteError
//	})
//	svc, err := sdk.Register(ctx, nil, "echo", echo, nil)
//	if err != nil {
//		return err
//	}
//	defer svc.Close() // leaves the cluster, lets running handlers finish
//
// A handler that also implements BroadcastHandler receives the broadcasts
// sent to its cluster with Conn.Broadcast. Any connection can Publish to a
// topic and Subscribe to topics with a TopicHandler.
//
// # Tunnels
//
// A tunnel is an ordered, flow-controlled stream of messages to one member
// of a cluster, for transfers too large or too long for one request. Any
// connection builds one with Conn.Tunnel; the member's handler accepts it by
// implementing TunnelHandler, and serves each tunnel in its own goroutine:
//
//	type store struct{ sdk.HandlerFunc }
//
//	func (store) HandleTunnel(t *sdk.Tunnel) { // the SDK closes t on return
//		for {
//			msg, err := t.Recv(context.Background())
//			if err != nil {
//				return // io.EOF: the builder closed the tunnel
//			}
//			save(msg)
//		}
//	}
//
// and on the builder's side:
//
//	t, err := conn.Tunnel(ctx, "store") // ctx's deadline bounds the build
//	if err != nil {
//		return err // errors.Is(err, sdk.ErrTimeout): no member accepted it
//	}
//	defer t.Close()
//	err = t.Send(ctx, part) // waits while the far end is not reading
//
// Messages arrive whole and in order. Both directions are throttled with
// byte credit: Send waits while the credit the daemon granted does not
// cover the next chunk, and each tunnel buffers at most Config.TunnelWindow
// unread bytes, returning credit to the daemon as the app reads.
// Tunnel.NetConn gives a net.Conn view of a tunnel: a byte stream that
// works with io.Copy, bufio and deadlines.
//
// # Surveys, pushes and protocol v1.1
//
// The SDK offers protocol v1.1 and falls back to v1.0 with a daemon that
// predates it (Survey, Push and TryPush then return ErrUnsupported). With
// v1.1:
//
//   - Conn.Survey asks every member of a cluster, on every daemon, and
//     returns when each has answered or failed, at the quorum, or at the
//     deadline; the result names the members that did not answer and why.
//     Members answer with their Handler; IsSurvey tells a survey question
//     from a request.
//   - Conn.Push hands a message to exactly one member whose handler
//     implements PushHandler, and waits while every member's queue is full
//     (each takes ServiceLimits.PushCredit messages at once); TryPush
//     returns ErrBusy instead.
//   - A call to a cluster with no member anywhere fails at once with
//     ErrNoMembers, instead of timing out.
//   - Cancelling the context of a Request tells the daemon, which cancels
//     the context of the handler serving it, on whatever daemon it runs.
//   - Config.Name names a service in its cluster (Service.Name); the daemon
//     refuses a name in use.
//   - Subscribe returns once every daemon knows the subscription
//     (SubscribeAcked tells which did not confirm in time), and Register
//     once every daemon knows the member (Service.Unconfirmed): an event
//     published, or a request sent, anywhere afterwards reaches it.
//   - Topics are subjects with wildcards: "news.*" matches one more token,
//     "news.>" one or more; every matching subscription gets the event,
//     and a SubjectHandler is told the topic it was published to.
//   - Config.OnGap and Stats.EventsLost report the events the daemon
//     dropped because the connection did not read fast enough, and the SDK
//     its own drops per subscription, with exact counts.
//
// # Lifecycle
//
// A connection runs one reader goroutine, which decodes everything the
// daemon sends and dispatches it by opcode (replies to the waiting
// Request, requests and broadcasts to the service's handler pools, events
// to their subscription's pool, tunnel chunks to their tunnel's buffer),
// and one writer goroutine: callers encode their messages into a bounded
// outbox, which the writer empties with one system call at a time. The reader never waits on the writer
// or on a handler: deliveries beyond a pool's memory limit are refused
// (requests with the ErrOverloaded fault) and counted in Stats, and tunnel
// chunks are buffered within the credit granted to the daemon (a chunk
// beyond it is a protocol violation). A tunnel has no goroutine of its
// own; the handler of an inbound tunnel runs in one, which the connection
// counts with its other handlers.
//
// Close is graceful, as the protocol requires: it sends CLOSE, waits for
// the daemon's answer (which closes the connection's tunnels too), waits
// for running handlers, then closes the socket, and returns only when
// every goroutine of the connection has exited. A connection lost
// otherwise fails every waiting request, tunnel build and tunnel call with
// an error wrapping ErrClosed and closes its Done channel; Close must
// still be called.
//
// # Timeouts
//
// The daemon owns every timeout: it answers each request and each tunnel
// build exactly once, with the result, a fault or "timed out" at the
// deadline. The SDK runs no timer for them: the deadline of the caller's
// context is sent along. When that context ends first, Request or Tunnel
// returns at once and the daemon's later answer is discarded on arrival (a
// tunnel built meanwhile is closed). Tunnel sends and receives wait on the
// caller's context, or on the deadlines of the Tunnel.NetConn view;
// Tunnel.Close waits at most Config.CloseTimeout for the daemon.
package sdk
