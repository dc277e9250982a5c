package sdk

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iris-mesh/iris/api"
	"github.com/iris-mesh/iris/internal/leakcheck"
)

func TestServiceRequestReply(t *testing.T) {
	leakcheck.Check(t)
	deadlines := make(chan time.Duration, 1)
	h := HandlerFunc(func(ctx context.Context, req []byte) ([]byte, error) {
		d, ok := ctx.Deadline()
		if !ok {
			return nil, errors.New("no deadline")
		}
		deadlines <- time.Until(d)
		return append([]byte("echo: "), req...), nil
	})
	svc, p := register(t, newRelay(t), "echo", h, nil)
	if svc.Cluster() != "echo" {
		t.Fatalf("Cluster() = %q", svc.Cluster())
	}
	p.send(&api.Message{Op: api.OpRequest, ID: 7, Payload: []byte("hi"), TimeoutMs: 5000})
	m := p.readOp(api.OpReply)
	if m.ID != 7 || !m.Success || string(m.Payload) != "echo: hi" {
		t.Fatalf("REPLY id %d success %v payload %q fault %q", m.ID, m.Success, m.Payload, m.Fault)
	}
	if deadlineLeft := <-deadlines; deadlineLeft <= 0 || deadlineLeft > 5*time.Second {
		t.Fatalf("handler deadline %v away, want in (0, 5s]", deadlineLeft)
	}
}

func TestServiceFaults(t *testing.T) {
	h := HandlerFunc(func(ctx context.Context, req []byte) ([]byte, error) {
		switch string(req) {
		case "error":
			return []byte("ignored"), errors.New("boom")
		case "empty error":
			return nil, errors.New("")
		case "panic":
			panic("kaboom")
		}
		return nil, nil
	})
	tests := []struct {
		req   string
		fault string // substring; "" means success
	}{
		{"error", "boom"},
		{"empty error", faultEmptyError},
		{"panic", "kaboom"},
		{"nil", ""},
	}
	leakcheck.Check(t)
	svc, p := register(t, newRelay(t), "svc", h, nil)
	for i, tt := range tests {
		p.send(&api.Message{Op: api.OpRequest, ID: uint64(i), Payload: []byte(tt.req), TimeoutMs: 5000})
		m := p.readOp(api.OpReply)
		if m.ID != uint64(i) {
			t.Fatalf("%s: REPLY id %d, want %d", tt.req, m.ID, i)
		}
		switch {
		case tt.fault == "" && (!m.Success || len(m.Payload) != 0):
			t.Errorf("%s: REPLY success %v payload %q fault %q, want an empty success", tt.req, m.Success, m.Payload, m.Fault)
		case tt.fault != "" && (m.Success || m.Fault == "" || !strings.Contains(m.Fault, tt.fault)):
			t.Errorf("%s: REPLY success %v fault %q, want a fault with %q", tt.req, m.Success, m.Fault, tt.fault)
		}
	}
	if s := svc.Conn().Stats(); s.HandlerPanics != 1 {
		t.Fatalf("Stats %+v, want 1 panic", s)
	}
}

// gate lets a test hold handlers and see them start.
type gate struct {
	started chan string
	release chan struct{}
	running atomic.Int32
	maxSeen atomic.Int32
}

func newGate() *gate {
	return &gate{started: make(chan string, 100), release: make(chan struct{})}
}

// hold records a running handler, announces it and waits for a release.
func (g *gate) hold(ctx context.Context, name string) {
	n := g.running.Add(1)
	for {
		m := g.maxSeen.Load()
		if n <= m || g.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	g.started <- name
	select {
	case <-g.release:
	case <-ctx.Done():
	}
	g.running.Add(-1)
}

// marker is a handler whose broadcasts close a channel, so a test knows
// the reader has dispatched everything sent before the broadcast.
type markerHandler struct {
	Handler
	marks chan string
}

func (h markerHandler) HandleBroadcast(msg []byte) { h.marks <- string(msg) }

func TestServiceRequestThreadsBound(t *testing.T) {
	leakcheck.Check(t)
	g := newGate()
	h := markerHandler{
		Handler: HandlerFunc(func(ctx context.Context, req []byte) ([]byte, error) {
			g.hold(ctx, string(req))
			return req, nil
		}),
		marks: make(chan string, 1),
	}
	svc, p := register(t, newRelay(t), "svc", h, &ServiceLimits{RequestThreads: 2})
	const n = 5
	for i := range n {
		p.send(&api.Message{Op: api.OpRequest, ID: uint64(i), Payload: []byte{byte('a' + i)}, TimeoutMs: 60000})
	}
	p.send(&api.Message{Op: api.OpBroadcast, Payload: []byte("marker")})
	<-h.marks
	<-g.started
	<-g.started
	if active, waiting := poolState(svc.conn.svc.reqs); active != 2 || waiting != n-2 {
		t.Fatalf("pool: %d workers, %d waiting; want 2 and %d", active, waiting, n-2)
	}
	seen := make(map[uint64]bool)
	for range n {
		g.release <- struct{}{}
		m := p.readOp(api.OpReply)
		if !m.Success || seen[m.ID] || m.ID >= n || m.Payload[0] != byte('a'+m.ID) {
			t.Fatalf("REPLY %+v", m)
		}
		seen[m.ID] = true
	}
	if got := g.maxSeen.Load(); got != 2 {
		t.Fatalf("at most %d handlers ran at once, want 2", got)
	}
}

// poolState returns the number of running workers and waiting deliveries.
func poolState(p *pool) (active, waiting int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.active, len(p.queue) - p.head
}

func TestServiceOverloaded(t *testing.T) {
	leakcheck.Check(t)
	g := newGate()
	h := HandlerFunc(func(ctx context.Context, req []byte) ([]byte, error) {
		g.hold(ctx, string(req))
		return req, nil
	})
	payload := []byte("0123456789")
	lim := &ServiceLimits{RequestThreads: 1, RequestMemory: 2 * (len(payload) + deliveryOverhead)}
	svc, p := register(t, newRelay(t), "svc", h, lim)
	send := func(id uint64) {
		p.send(&api.Message{Op: api.OpRequest, ID: id, Payload: payload, TimeoutMs: 60000})
	}
	send(1)
	<-g.started // 1 runs, the queue is empty
	send(2)
	send(3) // 2 and 3 fill the queue
	send(4) // over the limit
	m := p.readOp(api.OpReply)
	if m.ID != 4 || m.Success || m.Fault != ErrOverloaded.Error() {
		t.Fatalf("REPLY %+v, want the overload fault for id 4", m)
	}
	for id := uint64(1); id <= 3; id++ {
		g.release <- struct{}{}
		if m := p.readOp(api.OpReply); m.ID != id || !m.Success {
			t.Fatalf("REPLY %+v, want success for id %d", m, id)
		}
	}
	if s := svc.Conn().Stats(); s.RequestsRejected != 1 {
		t.Fatalf("Stats %+v, want 1 rejected", s)
	}
}

func TestServiceGracefulCloseSequence(t *testing.T) {
	leakcheck.Check(t)
	g := newGate()
	h := HandlerFunc(func(ctx context.Context, req []byte) ([]byte, error) {
		if string(req) == "hold" {
			g.hold(ctx, "hold")
		}
		return append([]byte("re: "), req...), nil
	})
	svc, p := register(t, newRelay(t), "svc", h, nil)
	p.send(&api.Message{Op: api.OpRequest, ID: 1, Payload: []byte("hold"), TimeoutMs: 60000})
	<-g.started
	closed := async(svc.Close)

	p.readRaw([]byte{0x02}) // CLOSE
	// A request the daemon delivered before it unregistered the service is
	// still served.
	p.send(&api.Message{Op: api.OpRequest, ID: 2, Payload: []byte("late"), TimeoutMs: 60000})
	p.readRaw(api.AppendClient(nil, &api.Message{Op: api.OpReply, ID: 2, Success: true, Payload: []byte("re: late")}))
	p.sendRaw([]byte{0x02, 0x00}) // CLOSE ""
	if isDone(closed) {
		t.Fatal("Close returned while a handler was running")
	}
	g.release <- struct{}{}
	// The running handler's reply is written before the socket is closed.
	p.readRaw(api.AppendClient(nil, &api.Message{Op: api.OpReply, ID: 1, Success: true, Payload: []byte("re: hold")}))
	p.expectEOF()
	if err := <-closed; err != nil {
		t.Fatalf("Close = %v", err)
	}
	if err := svc.Err(); err != ErrClosed {
		t.Fatalf("Err() = %v, want ErrClosed", err)
	}
}

func TestServiceLostCancelsHandlers(t *testing.T) {
	leakcheck.Check(t)
	started := make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, req []byte) ([]byte, error) {
		close(started)
		<-ctx.Done()
		return nil, ctx.Err()
	})
	svc, p := register(t, newRelay(t), "svc", h, nil)
	p.send(&api.Message{Op: api.OpRequest, ID: 1, TimeoutMs: 60000})
	<-started
	_ = p.nc.Close()
	<-svc.Done()
	if err := svc.Close(); err != nil {
		t.Fatalf("Close after drop = %v", err)
	}
	if err := svc.Err(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Err() = %v", err)
	}
}

// broadcastRecorder collects broadcasts.
type broadcastRecorder struct {
	HandlerFunc
	got chan string
}

func (b broadcastRecorder) HandleBroadcast(msg []byte) { b.got <- string(msg) }

func TestServiceBroadcast(t *testing.T) {
	leakcheck.Check(t)
	nop := HandlerFunc(func(context.Context, []byte) ([]byte, error) { return nil, nil })

	rec := broadcastRecorder{HandlerFunc: nop, got: make(chan string, 1)}
	_, p := register(t, newRelay(t), "svc", rec, nil)
	p.send(&api.Message{Op: api.OpBroadcast, Payload: []byte("hello all")})
	if got := <-rec.got; got != "hello all" {
		t.Fatalf("broadcast %q", got)
	}

	// Without HandleBroadcast, broadcasts are dropped and counted.
	svc, p := register(t, newRelay(t), "plain", nop, nil)
	p.send(&api.Message{Op: api.OpBroadcast, Payload: []byte("dropped")})
	p.send(&api.Message{Op: api.OpRequest, ID: 1, TimeoutMs: 60000}) // sync point
	p.readOp(api.OpReply)
	if s := svc.Conn().Stats(); s.BroadcastsDropped != 1 {
		t.Fatalf("Stats %+v, want 1 broadcast dropped", s)
	}
}

func TestServiceWithoutTunnelHandlerRefusesOffer(t *testing.T) {
	leakcheck.Check(t)
	h := HandlerFunc(func(context.Context, []byte) ([]byte, error) { return []byte("ok"), nil })
	svc, p := register(t, newRelay(t), "svc", h, nil)
	p.send(&api.Message{Op: api.OpTunInit, ID: 3, Size: 64 << 10})
	p.send(&api.Message{Op: api.OpRequest, ID: 1, TimeoutMs: 60000})
	// No TUN_CONFIRM: the next message is the reply.
	if m := p.readOp(api.OpReply); m.ID != 1 || !m.Success {
		t.Fatalf("REPLY %+v", m)
	}
	if s := svc.Conn().Stats(); s.TunnelsRefused != 1 || s.Ignored != 0 {
		t.Fatalf("Stats %+v, want 1 tunnel refused", s)
	}
}

func TestServiceSendsRequests(t *testing.T) {
	leakcheck.Check(t)
	h := HandlerFunc(func(context.Context, []byte) ([]byte, error) { return nil, nil })
	svc, p := register(t, newRelay(t), "svc", h, nil)
	res := request(context.Background(), svc.Conn(), "other", []byte("q"))
	m := p.readOp(api.OpRequest)
	p.reply(m.ID, []byte("a"))
	if r := <-res; r.err != nil || string(r.reply) != "a" {
		t.Fatalf("Request from a service = %q, %v", r.reply, r.err)
	}
}

func TestRegisterArguments(t *testing.T) {
	leakcheck.Check(t)
	h := HandlerFunc(func(context.Context, []byte) ([]byte, error) { return nil, nil })
	ctx := context.Background()
	if _, err := Register(ctx, nil, "svc", nil, nil); err == nil {
		t.Error("Register with a nil handler succeeded")
	}
	if _, err := Register(ctx, nil, "", h, nil); err == nil {
		t.Error("Register with an empty cluster succeeded")
	}
	if _, err := Register(ctx, nil, "svc", h, &ServiceLimits{RequestThreads: -1}); err == nil {
		t.Error("Register with negative limits succeeded")
	}
	if _, err := Register(ctx, &Config{CloseTimeout: -1}, "svc", h, nil); err == nil {
		t.Error("Register with a bad config succeeded")
	}
}

// Handlers of many services run concurrently with requests; a smoke test for
// the race detector.
func TestServiceConcurrentRequests(t *testing.T) {
	leakcheck.Check(t)
	var mu sync.Mutex
	count := 0
	h := HandlerFunc(func(ctx context.Context, req []byte) ([]byte, error) {
		mu.Lock()
		count++
		mu.Unlock()
		return req, nil
	})
	_, p := register(t, newRelay(t), "svc", h, &ServiceLimits{RequestThreads: 8})
	const n = 200
	for i := range n {
		p.send(&api.Message{Op: api.OpRequest, ID: uint64(i), Payload: []byte{byte(i)}, TimeoutMs: 60000})
	}
	seen := make(map[uint64]bool)
	for range n {
		m := p.readOp(api.OpReply)
		if seen[m.ID] || !m.Success || m.Payload[0] != byte(m.ID) {
			t.Fatalf("REPLY %+v", m)
		}
		seen[m.ID] = true
	}
	mu.Lock()
	defer mu.Unlock()
	if count != n {
		t.Fatalf("%d handler calls, want %d", count, n)
	}
}
