package api

import (
	"encoding/hex"
	"strings"
	"testing"
)

// vector is one message in its hand-written wire form, taken from
// docs/relay-protocol.md.
type vector struct {
	name string
	wire string // hex bytes, plus "quoted" ASCII for string contents
	msg  Message
}

// wire parses a vector's wire notation: whitespace-separated hex groups
// ("ac02") and double-quoted ASCII text whose bytes are taken literally.
// Lengths are never computed: they are written out in hex like every other
// byte.
func wire(t testing.TB, s string) []byte {
	t.Helper()
	var out []byte
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		if s[0] == '"' {
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				t.Fatalf("wire %q: unterminated quote", s)
			}
			out = append(out, s[1:1+end]...)
			s = s[2+end:]
			continue
		}
		tok, rest, _ := strings.Cut(s, " ")
		b, err := hex.DecodeString(tok)
		if err != nil {
			t.Fatalf("wire token %q: %v", tok, err)
		}
		out = append(out, b...)
		s = rest
	}
	return out
}

// The reason DenyVersionReason("v0.9") must give, 54 (0x36) bytes.
const denyV09 = "Unsupported protocol. Client: v0.9. Iris: v1.0-draft2."

// clientVectors covers every client → daemon opcode.
var clientVectors = []vector{
	{"INIT/plain",
		"00 11 69726973 2d636c69656e74 2d6d61676963 0b 76312e30 2d647261667432 00",
		Message{Op: OpInit, Magic: ClientMagic, Version: ProtocolVersion}},
	{"INIT/service",
		`00 11 "iris-client-magic" 0b "v1.0-draft2" 03 "svc"`,
		Message{Op: OpInit, Magic: ClientMagic, Version: ProtocolVersion, Cluster: "svc"}},
	{"INIT/old-version",
		`00 11 "iris-client-magic" 04 "v0.9" 00`,
		Message{Op: OpInit, Magic: ClientMagic, Version: "v0.9"}},
	{"CLOSE", `02`, Message{Op: OpClose}},
	{"BROADCAST",
		`03 03 "svc" 02 "hi"`,
		Message{Op: OpBroadcast, Cluster: "svc", Payload: []byte("hi")}},
	{"BROADCAST/empty",
		`03 03 "svc" 00`,
		Message{Op: OpBroadcast, Cluster: "svc", Payload: []byte{}}},
	{"REQUEST",
		`04 ac02 03 "svc" 04 "ping" e807`,
		Message{Op: OpRequest, ID: 300, Cluster: "svc", Payload: []byte("ping"), TimeoutMs: 1000}},
	{"REQUEST/zero",
		`04 00 00 00 00`,
		Message{Op: OpRequest, Payload: []byte{}}},
	{"REQUEST/max-id",
		`04 ffffffffffffffffff01 01 "c" 00 808004`,
		Message{Op: OpRequest, ID: 1<<64 - 1, Cluster: "c", Payload: []byte{}, TimeoutMs: 65536}},
	{"REPLY/success",
		`05 ac02 01 02 "ok"`,
		Message{Op: OpReply, ID: 300, Success: true, Payload: []byte("ok")}},
	{"REPLY/fault",
		`05 ac02 00 04 "boom"`,
		Message{Op: OpReply, ID: 300, Fault: "boom"}},
	{"REPLY/timeout",
		`05 07 00 00`, // success=false, empty fault: the daemon treats it as a timeout
		Message{Op: OpReply, ID: 7}},
	{"SUBSCRIBE", `06 05 "topic"`, Message{Op: OpSubscribe, Topic: "topic"}},
	{"UNSUBSCRIBE", `07 05 "topic"`, Message{Op: OpUnsubscribe, Topic: "topic"}},
	{"PUBLISH",
		`08 05 "topic" 02 "ev"`,
		Message{Op: OpPublish, Topic: "topic", Payload: []byte("ev")}},
	{"TUN_INIT",
		`09 01 03 "svc" e807`,
		Message{Op: OpTunInit, ID: 1, Cluster: "svc", TimeoutMs: 1000}},
	{"TUN_CONFIRM",
		`0a 05 ac02`,
		Message{Op: OpTunConfirm, ID: 5, ID2: 300}},
	{"TUN_ALLOW/64MiB",
		`0b 01 80808020`,
		Message{Op: OpTunAllow, ID: 1, Size: 64 << 20}},
	{"TUN_TRANSFER/first",
		`0c 01 808004 03 "abc"`,
		Message{Op: OpTunTransfer, ID: 1, Size: 65536, Payload: []byte("abc")}},
	{"TUN_TRANSFER/cont",
		`0c 01 00 02 "de"`,
		Message{Op: OpTunTransfer, ID: 1, Payload: []byte("de")}},
	{"TUN_CLOSE", `0d ac02`, Message{Op: OpTunClose, ID: 300}},
}

// daemonVectors covers every daemon → client opcode.
var daemonVectors = []vector{
	{"INIT",
		"00 10 69726973 2d72656c6179 2d6d61676963 0b 76312e30 2d647261667432",
		Message{Op: OpInit, Magic: RelayMagic, Version: ProtocolVersion}},
	{"DENY/version",
		`01 10 "iris-relay-magic" 36 "` + denyV09 + `"`,
		Message{Op: OpDeny, Magic: RelayMagic, Fault: denyV09}},
	{"CLOSE/graceful", `02 00`, Message{Op: OpClose}},
	{"CLOSE/reason", `02 04 "fail"`, Message{Op: OpClose, Fault: "fail"}},
	{"BROADCAST", `03 02 "hi"`, Message{Op: OpBroadcast, Payload: []byte("hi")}},
	{"REQUEST",
		`04 ac02 04 "ping" e807`,
		Message{Op: OpRequest, ID: 300, Payload: []byte("ping"), TimeoutMs: 1000}},
	{"REPLY/timedout", `05 ac02 01`, Message{Op: OpReply, ID: 300, TimedOut: true}},
	{"REPLY/success",
		`05 ac02 00 01 02 "ok"`,
		Message{Op: OpReply, ID: 300, Success: true, Payload: []byte("ok")}},
	{"REPLY/fault",
		`05 ac02 00 00 04 "boom"`,
		Message{Op: OpReply, ID: 300, Fault: "boom"}},
	{"PUBLISH",
		`08 05 "topic" 02 "ev"`,
		Message{Op: OpPublish, Topic: "topic", Payload: []byte("ev")}},
	{"TUN_INIT",
		`09 07 808004`,
		Message{Op: OpTunInit, ID: 7, Size: 65536}},
	{"TUN_CONFIRM/ok",
		`0a 01 00 808004`,
		Message{Op: OpTunConfirm, ID: 1, Size: 65536}},
	{"TUN_CONFIRM/timedout", `0a 01 01`, Message{Op: OpTunConfirm, ID: 1, TimedOut: true}},
	{"TUN_ALLOW/4MiB",
		`0b 01 80808002`,
		Message{Op: OpTunAllow, ID: 1, Size: 4 << 20}},
	{"TUN_TRANSFER",
		`0c e807 03 03 "xyz"`,
		Message{Op: OpTunTransfer, ID: 1000, Size: 3, Payload: []byte("xyz")}},
	{"TUN_CLOSE/graceful", `0d 01 00`, Message{Op: OpTunClose, ID: 1}},
	{"TUN_CLOSE/reason", `0d 01 07 "timeout"`, Message{Op: OpTunClose, ID: 1, Fault: "timeout"}},
}

func TestWireNotation(t *testing.T) {
	got := wire(t, `00 "ab c" ac02 ""`)
	want := []byte{0x00, 'a', 'b', ' ', 'c', 0xac, 0x02}
	if string(got) != string(want) {
		t.Fatalf("wire = % x, want % x", got, want)
	}
}

// TestVectorsCoverEveryOpcode guards the tables above: each direction lists
// every opcode it may send.
func TestVectorsCoverEveryOpcode(t *testing.T) {
	check := func(dir string, vs []vector, except ...Opcode) {
		seen := map[Opcode]bool{}
		for _, v := range vs {
			seen[v.msg.Op] = true
		}
		for op := OpInit; op <= OpTunClose; op++ {
			excluded := false
			for _, e := range except {
				excluded = excluded || e == op
			}
			if seen[op] == excluded {
				t.Errorf("%s vectors: %s covered=%v, want %v", dir, op, seen[op], !excluded)
			}
		}
	}
	check("client", clientVectors, OpDeny)
	check("daemon", daemonVectors, OpSubscribe, OpUnsubscribe)
}
