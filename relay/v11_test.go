package relay_test

import (
	"strings"
	"testing"

	"github.com/iris-mesh/iris/api"
	"github.com/iris-mesh/iris/internal/leakcheck"
	"github.com/iris-mesh/iris/relay"
)

// connectV11 completes a v1.1 handshake asking for member name (if any)
// and returns the daemon's info.
func connectV11(t testing.TB, d *daemon, clusterName, name string) (*client, api.InitInfo) {
	t.Helper()
	c := dial(t, d)
	c.send(api.Message{Op: api.OpInit, Magic: api.ClientMagic, Version: api.ProtocolV11, Cluster: clusterName,
		Payload: api.EncodeInitOptions(&api.InitOptions{Name: name})})
	m := c.recv()
	if m.Op != api.OpInit || m.Magic != api.RelayMagic || m.Version != api.ProtocolV11 {
		t.Fatalf("v1.1 handshake answer = %+v", m)
	}
	info, err := api.DecodeInitInfo(m.Payload)
	if err != nil {
		t.Fatal(err)
	}
	c.dec.EnableV11()
	return c, info
}

func TestV11Handshake(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t, nil)
	_, info := connectV11(t, d, "svc", "w1")
	if info.Member != "w1" || info.MaxMessage != 16<<20 || info.PushWindow != 1024 || info.Daemon == "" {
		t.Fatalf("info %+v", info)
	}
	_, info = connectV11(t, d, "svc", "")
	if !strings.HasPrefix(info.Member, info.Daemon+"/") {
		t.Fatalf("default name %q, want %s/<n>", info.Member, info.Daemon)
	}
	// A name in use is refused.
	c := dial(t, d)
	c.send(api.Message{Op: api.OpInit, Magic: api.ClientMagic, Version: api.ProtocolV11, Cluster: "svc",
		Payload: api.EncodeInitOptions(&api.InitOptions{Name: "w1"})})
	if m := c.recv(); m.Op != api.OpDeny || !strings.HasPrefix(m.Fault, api.FaultNameTaken) {
		t.Fatalf("duplicate name answered %+v", m)
	}
	c.expectClosed()
	// A bad options block breaks the protocol.
	c = dial(t, d)
	c.sendHex("00" + hexClientMagic + hexStr("v1.1") + "00 03 04 6e 61")
	c.expectClosed()
}

// TestV11InV10Session: a v1.0 session is not affected: its INIT answer has
// no options, a v1.1 opcode closes it as any unknown opcode does, and as a
// member it gets survey questions as plain REQUESTs.
func TestV11InV10Session(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t, nil)
	c := dial(t, d)
	c.sendHex(hexInitPlain)
	c.expectHex(hexInitOK)
	c.sendHex("14 01") // CANCEL
	c.expectRefused(api.OpClose, "unknown opcode 0x14")

	old := connect(t, d, "svc")
	cur, _ := connectV11(t, d, "svc", "new")
	asker, _ := connectV11(t, d, "", "")
	asker.send(api.Message{Op: api.OpSurvey, ID: 9, Cluster: "svc", Payload: []byte("q"), TimeoutMs: 5000})
	q := old.expectOp(api.OpRequest)
	old.reply(q.ID, "old")
	q = cur.expectOp(api.OpSurvey)
	cur.reply(q.ID, "new")
	got := map[string]bool{}
	for range 2 {
		a := asker.expectOp(api.OpSurveyAnswer)
		got[a.Survey.Member+"="+string(a.Payload)] = true
	}
	end := asker.expectOp(api.OpSurveyEnd)
	if end.ID != 9 || end.Survey.Asked != 2 || end.Survey.Answered != 2 || len(end.Survey.Missing) != 0 || !got["new=new"] {
		t.Fatalf("answers %v, end %+v", got, end)
	}
}

func TestV11PushAndPull(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t, nil)
	member, _ := connectV11(t, d, "jobs", "")
	pusher, _ := connectV11(t, d, "", "")
	pusher.send(api.Message{Op: api.OpPush, ID: 1, Cluster: "jobs", Payload: []byte("a")})
	if m := pusher.expectOp(api.OpPushAck); m.ID != 1 || m.Status != api.PushBusy {
		t.Fatalf("push without credit: %+v", m)
	}
	member.send(api.Message{Op: api.OpPull, Size: 1})
	roundTrip(t, pusher, member, "jobs", 50) // the PULL has been read
	pusher.send(api.Message{Op: api.OpPush, ID: 2, Cluster: "jobs", Payload: []byte("b")})
	if m := pusher.expectOp(api.OpPushAck); m.ID != 2 || m.Status != api.PushAccepted {
		t.Fatalf("push with credit: %+v", m)
	}
	if m := member.expectOp(api.OpPush); string(m.Payload) != "b" {
		t.Fatalf("pushed %+v", m)
	}
	pusher.send(api.Message{Op: api.OpPush, ID: 3, Cluster: "jobs", Payload: []byte("c")})
	if m := pusher.expectOp(api.OpPushAck); m.Status != api.PushBusy {
		t.Fatalf("push past the credit: %+v", m)
	}
	pusher.send(api.Message{Op: api.OpPush, ID: 4, Cluster: "nobody", Payload: []byte("d")})
	if m := pusher.expectOp(api.OpNoMembers); m.Call != api.OpPush || m.ID != 4 {
		t.Fatalf("push to nobody: %+v", m)
	}
	pusher.request(5, "nobody", "x", 60000)
	if m := pusher.expectOp(api.OpNoMembers); m.Call != api.OpRequest || m.ID != 5 {
		t.Fatalf("request to nobody: %+v", m)
	}
}

func TestV11Cancel(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t, nil)
	svc, _ := connectV11(t, d, "svc", "")
	cli, _ := connectV11(t, d, "", "")
	cli.request(7, "svc", "slow", 60000)
	q := svc.expectOp(api.OpRequest)
	cli.send(api.Message{Op: api.OpCancel, ID: 7})
	cli.expectReply(api.Message{Op: api.OpReply, ID: 7, Fault: api.FaultCancelled})
	if m := svc.expectOp(api.OpCancel); m.ID != q.ID {
		t.Fatalf("CANCEL %d, want %d", m.ID, q.ID)
	}
	svc.reply(q.ID, "too late")                     // dropped, not a violation
	cli.send(api.Message{Op: api.OpCancel, ID: 99}) // not pending: ignored
	roundTrip(t, cli, svc, "svc", 8)
}

// TestV11PushDroppedCounted: a push accepted for a member that then leaves
// without confirming it is counted as dropped, never lost silently.
func TestV11PushDroppedCounted(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t, nil)
	member, _ := connectV11(t, d, "jobs", "")
	pusher, _ := connectV11(t, d, "", "")
	member.send(api.Message{Op: api.OpPull, Size: 2})
	roundTrip(t, pusher, member, "jobs", 50)
	for id := range uint64(2) {
		pusher.send(api.Message{Op: api.OpPush, ID: id, Cluster: "jobs", Payload: []byte("job")})
		if m := pusher.expectOp(api.OpPushAck); m.Status != api.PushAccepted {
			t.Fatalf("push %d: %+v", id, m)
		}
	}
	member.expectOp(api.OpPush)
	member.expectOp(api.OpPush)
	member.send(api.Message{Op: api.OpPull, Size: 1}) // one handled
	roundTrip(t, pusher, member, "jobs", 51)
	member.nc.Close() // leaves holding the other
	waitFor(t, "the unconfirmed push counted", func() bool { return d.srv.Stats().PushesDropped == 1 })
	if s := d.srv.Stats(); s.PushesDelivered != 2 {
		t.Fatalf("stats %+v", s)
	}
}

// TestV11Subscribe: a v1.1 SUBSCRIBE is answered with SUBSCRIBED (twice for
// the same subject too), a wildcard subject gets matching events once with
// their topic, and a bad subject breaks the protocol.
func TestV11Subscribe(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t, nil)
	c, _ := connectV11(t, d, "", "")
	for _, subject := range []string{"news.*", "news.>", "news.*"} {
		c.send(api.Message{Op: api.OpSubscribe, Topic: subject})
		if m := c.recv(); m.Op != api.OpSubscribed || m.Topic != subject || len(m.Daemons) != 0 {
			t.Fatalf("SUBSCRIBE %q answered %+v", subject, m)
		}
	}
	c.send(api.Message{Op: api.OpPublish, Topic: "news.sport", Payload: []byte("goal")})
	c.send(api.Message{Op: api.OpPublish, Topic: "news.sport.local", Payload: []byte("won")})
	for _, want := range []string{"news.sport goal", "news.sport.local won"} {
		if m := c.recv(); m.Op != api.OpPublish || m.Topic+" "+string(m.Payload) != want {
			t.Fatalf("got %+v, want %s once", m, want)
		}
	}
	c.send(api.Message{Op: api.OpSubscribe, Topic: "a..b"})
	c.expectRefused(api.OpClose, "bad subject")
}

// TestV11SubscribeAnswersBounded: with no answer slot left (MaxPendingRequests)
// SUBSCRIBEs are still each answered once, the read loop waiting instead.
func TestV11SubscribeAnswersBounded(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t, func(c *relay.Config) { c.MaxPendingRequests = 1 })
	c, _ := connectV11(t, d, "", "")
	subjects := []string{"a", "b.*", "c.>", "a", "d"}
	for _, s := range subjects {
		c.send(api.Message{Op: api.OpSubscribe, Topic: s})
	}
	got := map[string]int{}
	for range subjects {
		m := c.recv()
		if m.Op != api.OpSubscribed {
			t.Fatalf("got %+v", m)
		}
		got[m.Topic]++
	}
	if got["a"] != 2 || got["b.*"] != 1 || got["c.>"] != 1 || got["d"] != 1 {
		t.Fatalf("SUBSCRIBED per subject %v", got)
	}
}
