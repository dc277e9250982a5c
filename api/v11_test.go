package api

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// The options blocks of the v1.1 INIT vectors, as in docs/relay-protocol.md.
const (
	// name "w1"
	optsW1 = `04 "name" 02 "w1"`
	// daemon "a", member "a/1", max_message 1048576, push_window 256
	infoA = `06 "daemon" 01 "a" 06 "member" 03 "a/1" 0b "max_message" 03 808040 0b "push_window" 02 8002`
)

// v11ClientVectors covers every client → daemon message that v1.1 adds or
// changes.
var v11ClientVectors = []vector{
	{"INIT/v1.1",
		`00 11 "iris-client-magic" 04 "v1.1" 03 "svc" 08 ` + optsW1,
		Message{Op: OpInit, Magic: ClientMagic, Version: ProtocolV11, Cluster: "svc",
			Payload: []byte("\x04name\x02w1")}},
	{"INIT/v1.1-no-options",
		`00 11 "iris-client-magic" 04 "v1.1" 00 00`,
		Message{Op: OpInit, Magic: ClientMagic, Version: ProtocolV11, Payload: []byte{}}},
	{"SURVEY",
		`0e 07 03 "svc" 03 "who" e807 00`,
		Message{Op: OpSurvey, ID: 7, Cluster: "svc", Payload: []byte("who"), TimeoutMs: 1000}},
	{"SURVEY/quorum",
		`0e 08 03 "svc" 00 ac02 03`,
		Message{Op: OpSurvey, ID: 8, Cluster: "svc", Payload: []byte{}, TimeoutMs: 300, Size: 3}},
	{"PUSH",
		`11 05 03 "svc" 03 "job"`,
		Message{Op: OpPush, ID: 5, Cluster: "svc", Payload: []byte("job")}},
	{"PULL", `13 40`, Message{Op: OpPull, Size: 64}},
	{"CANCEL", `14 ac02`, Message{Op: OpCancel, ID: 300}},
}

// v11DaemonVectors covers every daemon → client message that v1.1 adds or
// changes.
var v11DaemonVectors = []vector{
	{"INIT/v1.1",
		`00 10 "iris-relay-magic" 04 "v1.1" 33 ` + infoA,
		Message{Op: OpInit, Magic: RelayMagic, Version: ProtocolV11,
			Payload: EncodeInitInfo(&InitInfo{Daemon: "a", Member: "a/1", MaxMessage: 1 << 20, PushWindow: 256})}},
	{"SURVEY",
		`0e 01 03 "who" e807`,
		Message{Op: OpSurvey, ID: 1, Payload: []byte("who"), TimeoutMs: 1000}},
	{"SURVEY_ANSWER",
		`0f 07 03 "a/1" 01 "a" 04 "load"`,
		Message{Op: OpSurveyAnswer, ID: 7, Survey: &SurveyFields{Member: "a/1", Daemon: "a"}, Payload: []byte("load")}},
	{"SURVEY_END/complete",
		`10 07 09 09 00`,
		Message{Op: OpSurveyEnd, ID: 7, Survey: &SurveyFields{Asked: 9, Answered: 9}}},
	{"SURVEY_END/missing",
		`10 07 09 07 02 03 "c/1" 01 "c" 04 "lost" 02 "w5" 01 "b" 04 "late"`,
		Message{Op: OpSurveyEnd, ID: 7, Survey: &SurveyFields{Asked: 9, Answered: 7, Missing: []Missing{
			{Member: "c/1", Daemon: "c", Reason: MissingLost},
			{Member: "w5", Daemon: "b", Reason: MissingLate},
		}}}},
	{"PUSH", `11 03 "job"`, Message{Op: OpPush, Payload: []byte("job")}},
	{"PUSH_ACK/accepted", `12 05 00`, Message{Op: OpPushAck, ID: 5, Status: PushAccepted}},
	{"PUSH_ACK/busy", `12 05 01`, Message{Op: OpPushAck, ID: 5, Status: PushBusy}},
	{"CANCEL", `14 03`, Message{Op: OpCancel, ID: 3}},
	{"NO_MEMBERS/request", `15 04 ac02`, Message{Op: OpNoMembers, Call: OpRequest, ID: 300}},
	{"NO_MEMBERS/push", `15 11 05`, Message{Op: OpNoMembers, Call: OpPush, ID: 5}},
	{"SUBSCRIBED/all", `16 06 "news.>" 00`, Message{Op: OpSubscribed, Topic: "news.>"}},
	{"SUBSCRIBED/unconfirmed", `16 03 "a.*" 02 01 "b" 01 "c"`,
		Message{Op: OpSubscribed, Topic: "a.*", Daemons: []string{"b", "c"}}},
	{"GAP", `17 ac02`, Message{Op: OpGap, Size: 300}},
}

var v11Directions = []direction{
	{"client", v11ClientVectors, AppendClient, func(d *Decoder, m *Message) error { d.EnableV11(); return d.ReadClient(m) }},
	{"daemon", v11DaemonVectors, AppendDaemon, func(d *Decoder, m *Message) error { d.EnableV11(); return d.ReadDaemon(m) }},
}

func TestV11Vectors(t *testing.T) {
	for _, dir := range v11Directions {
		for _, v := range dir.vectors {
			t.Run(dir.name+"/"+v.name, func(t *testing.T) {
				want := wire(t, v.wire)
				if got := dir.append(nil, &v.msg); !bytes.Equal(got, want) {
					t.Fatalf("encoded\n got % x\nwant % x", got, want)
				}
				var m Message
				if err := dir.read(NewDecoder(bytes.NewReader(want), Limits{}), &m); err != nil {
					t.Fatalf("read: %v", err)
				}
				if !reflect.DeepEqual(m, v.msg) {
					t.Fatalf("decoded\n got %+v\nwant %+v", m, v.msg)
				}
			})
		}
	}
}

// TestV11OpcodesBreakV10Sessions: in a session that did not negotiate v1.1
// every added opcode is a protocol violation, worded as for any unknown
// opcode, so a v1.0 peer cannot tell v1.1 exists.
func TestV11OpcodesBreakV10Sessions(t *testing.T) {
	for _, dir := range directions {
		for _, v := range v11Directions[0].vectors {
			if v.msg.Op == OpInit {
				continue
			}
			d := NewDecoder(bytes.NewReader(wire(t, v.wire)), Limits{})
			var m Message
			err := dir.read(d, &m)
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("%s %s in a v1.0 session: %v, want ErrProtocol", dir.name, v.name, err)
			}
			want := "unknown opcode 0x" + hexByte(uint8(v.msg.Op))
			if !bytes.Contains([]byte(err.Error()), []byte(want)) {
				t.Errorf("%s %s: error %q does not say %q", dir.name, v.name, err, want)
			}
		}
	}
}

func TestV11WrongDirection(t *testing.T) {
	for _, c := range []struct {
		client bool
		wire   string
	}{
		{true, `0f 01 00 00 00`}, {true, `10 01 00 00 00`}, {true, `12 01 00`}, {true, `15 04 01`},
		{true, `16 01 "a" 00`}, {true, `17 01`},
		{false, `13 01`},
	} {
		d := NewDecoder(bytes.NewReader(wire(t, c.wire)), Limits{})
		d.EnableV11()
		var m Message
		var err error
		if c.client {
			err = d.ReadClient(&m)
		} else {
			err = d.ReadDaemon(&m)
		}
		if !errors.Is(err, ErrProtocol) {
			t.Errorf("client=%v % s: %v, want ErrProtocol", c.client, c.wire, err)
		}
	}
}

func TestSurveyEndCountBounded(t *testing.T) {
	// A count that MaxMessageLen bytes cannot hold is refused before any
	// allocation; a plausible one that the stream does not back fails at
	// its end.
	d := NewDecoder(bytes.NewReader(wire(t, `10 01 00 00 ffffffff0f`)), Limits{MaxMessageLen: 30})
	d.EnableV11()
	var m Message
	if err := d.ReadDaemon(&m); !errors.Is(err, ErrProtocol) {
		t.Fatalf("huge count: %v", err)
	}
}

func TestInitOptions(t *testing.T) {
	o := InitOptions{Name: "w1"}
	b := EncodeInitOptions(&o)
	if !bytes.Equal(b, wire(t, optsW1)) {
		t.Fatalf("EncodeInitOptions = % x", b)
	}
	got, err := DecodeInitOptions(b)
	if err != nil || got != o {
		t.Fatalf("DecodeInitOptions = %+v, %v", got, err)
	}
	i := InitInfo{Daemon: "a", Member: "a/1", MaxMessage: 1 << 20, PushWindow: 256}
	if b := EncodeInitInfo(&i); !bytes.Equal(b, wire(t, infoA)) {
		t.Fatalf("EncodeInitInfo = % x", b)
	}
	// Unknown keys are ignored, so the block can grow.
	more := wire(t, `04 "name" 02 "w2" 06 "future" 01 01`)
	if got, err := DecodeInitOptions(more); err != nil || got.Name != "w2" {
		t.Fatalf("options with an unknown key = %+v, %v", got, err)
	}
	for _, bad := range []string{`04 "name" 05 "w"`, `ffffffffffffffffffff01`, `04 "na"`, `04 "name"`} {
		if _, err := DecodeInitOptions(wire(t, bad)); !errors.Is(err, ErrProtocol) {
			t.Errorf("DecodeInitOptions(%s) = %v, want ErrProtocol", bad, err)
		}
	}
	if _, err := DecodeInitInfo(wire(t, `0b "max_message" 02 8080`)); !errors.Is(err, ErrProtocol) {
		t.Errorf("bad varint value: %v", err)
	}
	// The list of daemons that did not confirm a registration.
	u := InitInfo{Daemon: "a", Unconfirmed: []string{"b", "cd"}, Subjects: true}
	ub := EncodeInitInfo(&u)
	if want := wire(t, `06 "daemon" 01 "a" 0b "unconfirmed" 05 01 "b" 02 "cd" 08 "subjects" 01 01`); !bytes.Equal(ub, want) {
		t.Fatalf("EncodeInitInfo(unconfirmed) = % x, want % x", ub, want)
	}
	if got, err := DecodeInitInfo(ub); err != nil || !reflect.DeepEqual(got, u) {
		t.Fatalf("DecodeInitInfo(unconfirmed) = %+v, %v", got, err)
	}
	if _, err := DecodeInitInfo(wire(t, `0b "unconfirmed" 02 05 "b"`)); !errors.Is(err, ErrProtocol) {
		t.Errorf("truncated list item: %v", err)
	}
}

func FuzzReadClientV11(f *testing.F) {
	seedCorpus(f, v11Directions[0], true)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzRead(t, v11Directions[0], data)
		fuzzBorrow(t, v11Directions[0], data)
	})
}

func FuzzReadDaemonV11(f *testing.F) {
	seedCorpus(f, v11Directions[1], false)
	f.Fuzz(func(t *testing.T, data []byte) { fuzzRead(t, v11Directions[1], data) })
}

func FuzzDecodeInitOptions(f *testing.F) {
	f.Add(wire(f, optsW1))
	f.Add(wire(f, infoA))
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := DecodeInitOptions(data)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error does not wrap ErrProtocol: %v", err)
			}
			return
		}
		if got, err := DecodeInitOptions(EncodeInitOptions(&o)); err != nil || got != o {
			t.Fatalf("round trip: %+v, %v; want %+v", got, err, o)
		}
		if i, err := DecodeInitInfo(data); err == nil {
			if got, err := DecodeInitInfo(EncodeInitInfo(&i)); err != nil || !reflect.DeepEqual(got, i) {
				t.Fatalf("info round trip: %+v, %v; want %+v", got, err, i)
			}
		}
	})
}
