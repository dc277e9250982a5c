package api_test

import (
	"bytes"
	"fmt"

	"github.com/iris-mesh/iris/api"
)

// A client encodes a REQUEST; the daemon decodes it and answers with the
// timed-out form of REPLY, which the client decodes.
func Example() {
	req := api.Message{Op: api.OpRequest, ID: 300, Cluster: "svc", Payload: []byte("ping"), TimeoutMs: 1000}
	wire := api.AppendClient(nil, &req)
	fmt.Printf("C→D % x\n", wire)

	var m api.Message
	if err := api.NewDecoder(bytes.NewReader(wire), api.Limits{}).ReadClient(&m); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("daemon read %s id=%d cluster=%q payload=%q timeout=%dms\n",
		m.Op, m.ID, m.Cluster, m.Payload, m.TimeoutMs)

	reply := api.AppendDaemon(nil, &api.Message{Op: api.OpReply, ID: m.ID, TimedOut: true})
	fmt.Printf("D→C % x\n", reply)
	// Output:
	// C→D 04 ac 02 03 73 76 63 04 70 69 6e 67 e8 07
	// daemon read REQUEST id=300 cluster="svc" payload="ping" timeout=1000ms
	// D→C 05 ac 02 01
}

// The daemon refuses a client that asks for a version it does not speak.
func ExampleDenyVersionReason() {
	deny := api.Message{Op: api.OpDeny, Magic: api.RelayMagic, Fault: api.DenyVersionReason("v0.9")}
	fmt.Println(deny.Fault)
	fmt.Printf("% x\n", api.AppendDaemon(nil, &deny)[:19])
	// Output:
	// Unsupported protocol. Client: v0.9. Iris: v1.0-draft2.
	// 01 10 69 72 69 73 2d 72 65 6c 61 79 2d 6d 61 67 69 63 36
}
