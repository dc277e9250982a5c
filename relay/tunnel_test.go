package relay_test

import (
	"testing"
	"time"

	"github.com/iris-mesh/iris/api"
	"github.com/iris-mesh/iris/internal/leakcheck"
	"github.com/iris-mesh/iris/relay"
)

// TestTunnelBytes checks a tunnel's whole life on the wire, byte for byte,
// for both apps: build and offer, confirm, credit grants, a chunk each way
// with its credit returned, and the close.
func TestTunnelBytes(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t, nil)
	svc := connect(t, d, "svc")
	cli := connect(t, d, "")
	cli.sendHex("09 01 03737663 e807") // TUN_INIT(tunId 1, "svc", 1000 ms)
	svc.expectHex("09 01 808004")      // offer: TUN_INIT(buildId 1, chunkLimit 64 KiB)
	svc.sendHex("0a 01 07")            // TUN_CONFIRM(buildId 1, tunId 7)
	svc.expectHex("0b 07 80808002")    // the daemon grants the service 4 MiB
	cli.expectHex("0a 01 00 808004")   // TUN_CONFIRM(1, built, chunkLimit 64 KiB)
	cli.expectHex("0b 01 80808002")    // and grants the client 4 MiB
	cli.sendHex("0b 01 80808020")      // the client grants 64 MiB
	svc.sendHex("0b 07 80808020")      // so does the service

	cli.sendHex("0c 01 05 05 68656c6c6f") // TUN_TRANSFER(1, size 5, "hello")
	svc.expectHex("0c 07 05 05 68656c6c6f")
	cli.expectHex("0b 01 05") // its 5 bytes were passed on: credit back
	svc.sendHex("0c 07 02 02 6869")
	cli.expectHex("0c 01 02 02 6869")
	svc.expectHex("0b 07 02")

	// A message in two chunks: size on the first, 0 on the rest.
	cli.sendHex("0c 01 04 02 6162 0c 01 00 02 6364")
	svc.expectHex("0c 07 04 02 6162 0c 07 00 02 6364")
	cli.expectHex("0b 01 02 0b 01 02")

	cli.sendHex("0d 01")      // TUN_CLOSE(1)
	cli.expectHex("0d 01 00") // answered with no reason
	svc.expectHex("0d 07 00") // the far end is told, gracefully
	roundTrip(t, cli, svc, "svc", 1)
}

// TestTunnelUnconfirmedOffer: an offer the service never confirms is
// withdrawn after TunnelConfirmTimeout and the build fails well before its
// deadline; the service's connection survives, and a late confirm gets a
// close.
func TestTunnelUnconfirmedOffer(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t, func(c *relay.Config) { c.TunnelConfirmTimeout = 100 * time.Millisecond })
	svc := connect(t, d, "svc")
	cli := connect(t, d, "")
	start := time.Now()
	cli.send(api.Message{Op: api.OpTunInit, ID: 1, Cluster: "svc", TimeoutMs: 10000})
	// One offer, withdrawn unconfirmed; the only member is not asked again.
	if m := svc.expectOp(api.OpTunInit); m.ID != 1 {
		t.Fatalf("offer has build id %d", m.ID)
	}
	if m := cli.expectOp(api.OpTunConfirm); m.ID != 1 || !m.TimedOut {
		t.Fatalf("TUN_CONFIRM = %+v, want failed", m)
	}
	if el := time.Since(start); el > 5*time.Second { // far from 10s even on a busy machine
		t.Fatalf("the build failed after %v; its deadline was 10s, the offer's 100ms", el)
	}
	svc.sendHex("0a 01 09") // a confirm too late
	if m := svc.expectOp(api.OpTunClose); m.ID != 9 || m.Fault == "" {
		t.Fatalf("late confirm answered with %+v, want TUN_CLOSE(9, reason)", m)
	}
	roundTrip(t, cli, svc, "svc", 1)
}

// TestTunnelViolations: a chunk over the announced limit, or beyond the
// granted credit, closes that connection only.
func TestTunnelViolations(t *testing.T) {
	leakcheck.Check(t)
	d := startDaemon(t, func(c *relay.Config) {
		c.TunnelChunkLimit = 4
		c.TunnelGrant = 8
	})
	// Past the window the daemons grant each other (64 KiB at least), a
	// far end that reads nothing stops returning credit.
	const window = 1 << 20
	chunk := unhex(t, "0c 01 04 04 61626364")
	for _, bad := range []func(c *client){
		func(c *client) { c.sendHex("0c 01 05 05 6162636465") }, // a 5-byte chunk, limit 4
		func(c *client) { // 4-byte chunks until the grant of 8 is overrun
			for range window/4 + 4 {
				if _, err := c.nc.Write(chunk); err != nil {
					return // closed already
				}
			}
		},
	} {
		svc := connect(t, d, "svc")
		cli := connect(t, d, "")
		cli.sendHex("09 01 03737663 e807")
		offer := svc.expectOp(api.OpTunInit)
		svc.send(api.Message{Op: api.OpTunConfirm, ID: offer.ID, ID2: 7})
		if m := svc.expectOp(api.OpTunAllow); m.ID != 7 || m.Size != 8 {
			t.Fatalf("service grant %+v", m)
		}
		if m := cli.expectOp(api.OpTunConfirm); m.ID != 1 || m.TimedOut || m.Size != 4 {
			t.Fatalf("TUN_CONFIRM %+v", m)
		}
		if m := cli.expectOp(api.OpTunAllow); m.ID != 1 || m.Size != 8 {
			t.Fatalf("client grant %+v", m)
		}
		go bad(cli) // the daemon may stop reading it: do not block the test
		cli.expectClosedAfterTunnelData()
		svc.expectTunnelEnd(7)
		other := connect(t, d, "")
		roundTrip(t, other, svc, "svc", 1)
		svc.send(api.Message{Op: api.OpClose})
		svc.expectOp(api.OpClose)
	}
}

// TestTunnelToEmptyCluster: the build times out at its deadline.
func TestTunnelToEmptyCluster(t *testing.T) {
	d := startDaemon(t, nil)
	cli := connect(t, d, "")
	start := time.Now()
	cli.sendHex("09 01 03737663 64") // 100 ms
	cli.expectHex("0a 01 01")
	if el := time.Since(start); el < 100*time.Millisecond || el > 100*time.Millisecond+3*time.Second {
		t.Fatalf("timed out after %v, want 100ms (plus scheduling delay)", el)
	}
}
