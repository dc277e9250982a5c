package bench

import (
	"bytes"
	"fmt"
	"testing"
)

// TestSystems checks every harness quickly: a few requests through one and
// two nodes, a few events to two subscribers on one and two nodes, and a
// few tunnel messages.
func TestSystems(t *testing.T) {
	for _, sys := range systems {
		for _, nodes := range []int{1, 2} {
			t.Run(fmt.Sprintf("request/nodes=%d/sys=%s", nodes, sys), func(t *testing.T) {
				req := newRequester(t, sys, nodes)
				for i := range 10 {
					p := []byte(fmt.Sprint("ping ", i))
					reply, err := req(p)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(reply, p) {
						t.Fatalf("reply %q, want %q", reply, p)
					}
				}
			})
		}
		t.Run("pubsub2/sys="+sys, func(t *testing.T) {
			pub, counters := newPubSubNodes(t, sys, 2, 2)
			paced(t, 100, counters, func() error { return pub([]byte("event")) })
		})
		t.Run("pubsub/sys="+sys, func(t *testing.T) {
			pub, counters := newPubSub(t, sys, 2)
			paced(t, 100, counters, func() error { return pub([]byte("event")) })
		})
	}
	for _, sys := range []string{"iris", "tcp", "tcpgcm"} {
		for _, nodes := range []int{1, 2} {
			t.Run(fmt.Sprintf("tunnel/nodes=%d/sys=%s", nodes, sys), func(t *testing.T) {
				send, recv := newBulk(t, sys, nodes)
				msg := bytes.Repeat([]byte{'t'}, tunnelMsg)
				for range 3 {
					if err := send(msg); err != nil {
						t.Fatal(err)
					}
					if err := recv(); err != nil {
						t.Fatal(err)
					}
				}
			})
		}
	}
}
