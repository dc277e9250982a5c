package api

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

// direction bundles one side's encoder and decoder method for table tests.
type direction struct {
	name    string
	vectors []vector
	append  func([]byte, *Message) []byte
	read    func(*Decoder, *Message) error
}

var directions = []direction{
	{"client", clientVectors, AppendClient, (*Decoder).ReadClient},
	{"daemon", daemonVectors, AppendDaemon, (*Decoder).ReadDaemon},
}

func TestEncodeVectors(t *testing.T) {
	for _, dir := range directions {
		for _, v := range dir.vectors {
			t.Run(dir.name+"/"+v.name, func(t *testing.T) {
				want := wire(t, v.wire)
				got := dir.append(nil, &v.msg)
				if !bytes.Equal(got, want) {
					t.Fatalf("encoded\n got % x\nwant % x", got, want)
				}
				// Appending keeps the prefix.
				got = dir.append([]byte("prefix"), &v.msg)
				if !bytes.Equal(got, append([]byte("prefix"), want...)) {
					t.Fatalf("append to prefix: got % x", got)
				}
			})
		}
	}
}

func TestDecodeVectors(t *testing.T) {
	for _, dir := range directions {
		for _, v := range dir.vectors {
			t.Run(dir.name+"/"+v.name, func(t *testing.T) {
				d := NewDecoder(bytes.NewReader(wire(t, v.wire)), Limits{})
				m := Message{ID: 99, Topic: "stale", Payload: []byte("stale")} // must be reset
				if err := dir.read(d, &m); err != nil {
					t.Fatalf("read: %v", err)
				}
				if !reflect.DeepEqual(m, v.msg) {
					t.Fatalf("decoded\n got %+v\nwant %+v", m, v.msg)
				}
				if err := dir.read(d, &m); err != io.EOF {
					t.Fatalf("read after the message = %v, want io.EOF", err)
				}
			})
		}
	}
}

// TestRoundTripStream encodes every vector back to back and decodes the
// stream, through a reader that returns one byte at a time.
func TestRoundTripStream(t *testing.T) {
	for _, dir := range directions {
		t.Run(dir.name, func(t *testing.T) {
			var buf []byte
			for _, v := range dir.vectors {
				buf = dir.append(buf, &v.msg)
			}
			d := NewDecoder(&oneByteReader{r: bytes.NewReader(buf)}, Limits{})
			for _, v := range dir.vectors {
				var m Message
				if err := dir.read(d, &m); err != nil {
					t.Fatalf("%s: read: %v", v.name, err)
				}
				if !reflect.DeepEqual(m, v.msg) {
					t.Fatalf("%s: decoded %+v, want %+v", v.name, m, v.msg)
				}
			}
			var m Message
			if err := dir.read(d, &m); err != io.EOF {
				t.Fatalf("read at end = %v, want io.EOF", err)
			}
		})
	}
}

// usedFields mirrors the field table in doc.go: the Message fields each
// opcode may put on the wire, per direction (bool-gated ones included).
var usedFields = map[string]map[Opcode]string{
	"client": {
		OpInit: "Magic Version Cluster", OpClose: "", OpBroadcast: "Cluster Payload",
		OpRequest: "ID Cluster Payload TimeoutMs", OpReply: "ID Success Payload Fault",
		OpSubscribe: "Topic", OpUnsubscribe: "Topic", OpPublish: "Topic Payload",
		OpTunInit: "ID Cluster TimeoutMs", OpTunConfirm: "ID ID2", OpTunAllow: "ID Size",
		OpTunTransfer: "ID Size Payload", OpTunClose: "ID",
	},
	"daemon": {
		OpInit: "Magic Version", OpDeny: "Magic Fault", OpClose: "Fault", OpBroadcast: "Payload",
		OpRequest: "ID Payload TimeoutMs", OpReply: "ID TimedOut Success Payload Fault",
		OpPublish: "Topic Payload", OpTunInit: "ID Size", OpTunConfirm: "ID TimedOut Size",
		OpTunAllow: "ID Size", OpTunTransfer: "ID Size Payload", OpTunClose: "ID Fault",
	},
}

// TestEncodeIgnoresUnusedFields: fields an opcode does not use in a direction
// (per the doc table) never reach the wire.
func TestEncodeIgnoresUnusedFields(t *testing.T) {
	noise := reflect.ValueOf(Message{ID: 11, ID2: 12, Cluster: "x", Topic: "y",
		Payload: []byte("z"), Fault: "f", Magic: "m", Version: "v", TimeoutMs: 13,
		Success: true, TimedOut: true, Size: 14})
	for _, dir := range directions {
		for _, v := range dir.vectors {
			used := " " + usedFields[dir.name][v.msg.Op] + " "
			m := v.msg
			mv := reflect.ValueOf(&m).Elem()
			for i := range mv.NumField() {
				name := mv.Type().Field(i).Name
				if name != "Op" && !strings.Contains(used, " "+name+" ") {
					mv.Field(i).Set(noise.Field(i))
				}
			}
			want := dir.append(nil, &v.msg)
			if got := dir.append(nil, &m); !bytes.Equal(got, want) {
				t.Errorf("%s/%s: unused fields leaked: got % x want % x", dir.name, v.name, got, want)
			}
		}
	}
}

func TestDenyVersionReason(t *testing.T) {
	if got := DenyVersionReason("v0.9"); got != denyV09 {
		t.Fatalf("DenyVersionReason = %q, want %q", got, denyV09)
	}
	if len(denyV09) != 0x36 {
		t.Fatalf("len(denyV09) = %d, vector says 0x36", len(denyV09))
	}
}

func TestOpcodeString(t *testing.T) {
	for op, want := range map[Opcode]string{
		OpInit: "INIT", OpDeny: "DENY", OpReply: "REPLY", OpTunConfirm: "TUN_CONFIRM",
		OpTunClose: "TUN_CLOSE", OpSurvey: "SURVEY", OpNoMembers: "NO_MEMBERS", OpGap: "GAP",
		0x18: "Opcode(0x18)", 0xff: "Opcode(0xff)",
	} {
		if got := op.String(); got != want {
			t.Errorf("Opcode(%d).String() = %q, want %q", uint8(op), got, want)
		}
	}
	if OpTunClose != 0x0d {
		t.Fatalf("OpTunClose = %#x", uint8(OpTunClose))
	}
}

func TestLimits(t *testing.T) {
	if err := DefaultLimits().Validate(); err != nil {
		t.Fatal(err)
	}
	if l := DefaultLimits(); l.MaxStringLen != 64<<10 || l.MaxMessageLen != 16<<20 {
		t.Fatalf("DefaultLimits = %+v", l)
	}
	if got := (Limits{}).withDefaults(); got != DefaultLimits() {
		t.Fatalf("zero Limits with defaults = %+v", got)
	}
	for _, l := range []Limits{{MaxStringLen: -1}, {MaxMessageLen: -1}} {
		if err := l.Validate(); err == nil {
			t.Errorf("%+v: Validate = nil, want error", l)
		}
	}
	defer func() {
		if recover() == nil {
			t.Fatal("NewDecoder with negative limits did not panic")
		}
	}()
	NewDecoder(bytes.NewReader(nil), Limits{MaxStringLen: -1})
}

func TestNewDecoderReusesBufioReader(t *testing.T) {
	big := bufio.NewReaderSize(bytes.NewReader(nil), 1<<20)
	if d := NewDecoder(big, Limits{}); d.br != big {
		t.Error("a large *bufio.Reader was wrapped again")
	}
	small := bufio.NewReaderSize(bytes.NewReader(nil), 16)
	if d := NewDecoder(small, Limits{}); d.br == small || d.br.Size() < readBufferSize {
		t.Error("a small *bufio.Reader was used as is")
	}
}

func TestAppendPanicsOnWrongDirection(t *testing.T) {
	cases := []struct {
		name string
		fn   func([]byte, *Message) []byte
		op   Opcode
	}{
		{"client DENY", AppendClient, OpDeny},
		{"client 0x16", AppendClient, 0x16},
		{"client SURVEY_END", AppendClient, OpSurveyEnd},
		{"daemon PULL", AppendDaemon, OpPull},
		{"daemon SUBSCRIBE", AppendDaemon, OpSubscribe},
		{"daemon UNSUBSCRIBE", AppendDaemon, OpUnsubscribe},
		{"daemon 0xff", AppendDaemon, 0xff},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			c.fn(nil, &Message{Op: c.op})
		})
	}
}

func TestAppendAllocs(t *testing.T) {
	buf := make([]byte, 0, 4096)
	for _, dir := range directions {
		for _, v := range dir.vectors {
			allocs := testing.AllocsPerRun(100, func() {
				buf = dir.append(buf[:0], &v.msg)
			})
			if allocs != 0 {
				t.Errorf("%s/%s: %v allocs per append, want 0", dir.name, v.name, allocs)
			}
		}
	}
}

// TestDecodeAllocs: decoding in place costs one allocation per payload
// field and per string field not decoded lately (a repeated name is
// cached), and nothing else.
func TestDecodeAllocs(t *testing.T) {
	cases := []struct {
		name   string
		dir    direction
		msg    Message
		allocs float64
	}{
		{"client REQUEST", directions[0], Message{Op: OpRequest, ID: 1, Cluster: "svc", Payload: []byte("ping"), TimeoutMs: 10}, 1},
		{"client TUN_ALLOW", directions[0], Message{Op: OpTunAllow, ID: 1, Size: 10}, 0},
		{"daemon REPLY", directions[1], Message{Op: OpReply, ID: 1, Success: true, Payload: []byte("pong")}, 1},
		{"daemon PUBLISH", directions[1], Message{Op: OpPublish, Topic: "topic", Payload: []byte("ev")}, 1},
	}
	for _, c := range cases {
		d := NewDecoder(&loopReader{b: c.dir.append(nil, &c.msg)}, Limits{})
		var m Message
		allocs := testing.AllocsPerRun(100, func() {
			if err := c.dir.read(d, &m); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != c.allocs {
			t.Errorf("%s: %v allocs per read, want %v", c.name, allocs, c.allocs)
		}
	}
}

// oneByteReader returns at most one byte per Read, to exercise every
// buffer-refill path of the Decoder.
type oneByteReader struct{ r io.Reader }

func (o *oneByteReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	return o.r.Read(p[:1])
}

// loopReader repeats b forever, so a decoding loop needs no per-iteration
// setup.
type loopReader struct {
	b   []byte
	off int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], l.b[l.off:])
		n += c
		l.off = (l.off + c) % len(l.b)
	}
	return n, nil
}

func TestReadErrorAtBoundaryIsNotSticky(t *testing.T) {
	errTimeout := errors.New("deadline")
	d := NewDecoder(&firstErrReader{err: errTimeout, r: bytes.NewReader([]byte{byte(OpClose)})}, Limits{})
	var m Message
	if err := d.ReadClient(&m); !errors.Is(err, errTimeout) {
		t.Fatalf("first read = %v, want %v", err, errTimeout)
	}
	if err := d.ReadClient(&m); err != nil || m.Op != OpClose {
		t.Fatalf("second read = %v, %+v; want CLOSE", err, m)
	}
}

// firstErrReader fails its first Read with err, then reads from r.
type firstErrReader struct {
	err error
	r   io.Reader
}

func (f *firstErrReader) Read(p []byte) (int, error) {
	if err := f.err; err != nil {
		f.err = nil
		return 0, err
	}
	return f.r.Read(p)
}

// TestDecodeNameCache: names that share a cache slot, or differ from a
// cached one in the middle, still decode as sent.
func TestDecodeNameCache(t *testing.T) {
	var b []byte
	topics := []string{"ab", "ba", "ab", "axb", "ayb", "axb", string(make([]byte, nameCacheMax+1)), "ab"}
	for _, tp := range topics {
		b = AppendDaemon(b, &Message{Op: OpPublish, Topic: tp, Payload: []byte("e")})
	}
	d := NewDecoder(bytes.NewReader(b), Limits{})
	for _, want := range topics {
		var m Message
		if err := d.ReadDaemon(&m); err != nil {
			t.Fatal(err)
		}
		if m.Topic != want {
			t.Fatalf("topic %q, want %q", m.Topic, want)
		}
	}
}

// TestAppendDaemonHead: the head and the payload together are the whole
// encoding, for every opcode the head applies to.
func TestAppendDaemonHead(t *testing.T) {
	p := bytes.Repeat([]byte{7}, 300)
	for _, m := range []Message{
		{Op: OpBroadcast, Payload: p}, {Op: OpPush, Payload: p},
		{Op: OpPublish, Topic: "news", Payload: p},
		{Op: OpTunTransfer, ID: 9, Size: 1 << 20, Payload: p},
	} {
		head, ok := AppendDaemonHead([]byte("x"), &m)
		if !ok || !bytes.Equal(append(head, p...), AppendDaemon([]byte("x"), &m)) {
			t.Errorf("%s: head does not match AppendDaemon", m.Op)
		}
	}
	if head, ok := AppendDaemonHead(nil, &Message{Op: OpReply, Payload: p}); ok || len(head) != 0 {
		t.Error("REPLY has a head")
	}
}

// countedReader counts what it reads and the reads it makes.
type countedReader struct {
	r            io.Reader
	bytes, reads int
	maxAsked     int // the largest read asked for
}

func (c *countedReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.bytes += n
	c.reads++
	c.maxAsked = max(c.maxAsked, len(p))
	return n, err
}

// TestDecoderBulkReadAhead checks that in a stream of large fields each is
// read straight into its slice (the refills of the bufio buffer in between
// bring only bulkReadAhead bytes), and that a small message lifts that bound.
func TestDecoderBulkReadAhead(t *testing.T) {
	chunk := bytes.Repeat([]byte{'c'}, 64<<10)
	tun := func(i int) *Message { return &Message{Op: OpTunTransfer, ID: 1, Size: uint64(i), Payload: chunk} }
	var stream []byte
	for i := range 4 {
		stream = AppendClient(stream, tun(i))
	}
	for range 3 {
		stream = AppendClient(stream, &Message{Op: OpPublish, Topic: "t", Payload: []byte("small")})
	}
	mid := bytes.Repeat([]byte{'m'}, 10<<10)
	stream = AppendClient(stream, &Message{Op: OpPublish, Topic: "t", Payload: mid})

	src := bytes.NewReader(stream)
	d := NewDecoder(src, Limits{})
	fill := &countedReader{r: src}
	direct := &countedReader{r: src}
	d.fill.r, d.src = fill, direct

	var m Message
	if err := d.ReadClient(&m); err != nil || !bytes.Equal(m.Payload, chunk) {
		t.Fatalf("first chunk: %v", err)
	}
	fill0, reads0 := fill.bytes, fill.reads+direct.reads
	for i := 1; i < 4; i++ {
		if err := d.ReadClient(&m); err != nil || !bytes.Equal(m.Payload, chunk) || m.Size != uint64(i) {
			t.Fatalf("chunk %d: %v", i, err)
		}
	}
	if got := fill.bytes - fill0; got > 3*bulkReadAhead {
		t.Errorf("3 chunks after the first: %d bytes through the buffer, want at most %d", got, 3*bulkReadAhead)
	}
	if reads := fill.reads + direct.reads - reads0; reads > 3 {
		t.Errorf("3 chunks after the first took %d reads, want one each", reads)
	}
	if direct.bytes < 3*(len(chunk)-bulkReadAhead) {
		t.Errorf("%d bytes of the chunks read directly, want most of the last 3", direct.bytes)
	}
	for range 3 {
		if err := d.ReadClient(&m); err != nil || string(m.Payload) != "small" {
			t.Fatalf("small message: %v", err)
		}
	}
	reads := fill.reads
	if err := d.ReadClient(&m); err != nil || !bytes.Equal(m.Payload, mid) {
		t.Fatalf("10 KiB message: %v", err)
	}
	if fill.reads-reads > 1 {
		t.Errorf("10 KiB message after small ones took %d refills, want at most 1", fill.reads-reads)
	}
	if err := d.ReadClient(&m); err != io.EOF {
		t.Fatalf("end of stream: %v", err)
	}
}

// TestSetBorrow: a PUBLISH event up to the limit is a slice of the
// Decoder's buffer (which runs on past it), valid until the next read; a
// larger one is the caller's own copy, of its exact size.
func TestSetBorrow(t *testing.T) {
	small, large := bytes.Repeat([]byte("s"), 100), bytes.Repeat([]byte("L"), 101)
	events := [][]byte{small, large, small, {}}
	var stream []byte
	for _, p := range events {
		stream = AppendClient(stream, &Message{Op: OpPublish, Topic: "t", Payload: p})
	}
	d := NewDecoder(bytes.NewReader(stream), Limits{})
	d.SetBorrow(100)
	var m Message
	for i, want := range events {
		if err := d.ReadClient(&m); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(m.Payload, want) || m.Payload == nil {
			t.Fatalf("event %d = %q, want %q", i, m.Payload, want)
		}
		if borrowed := cap(m.Payload) > len(m.Payload); borrowed != (len(want) <= 100) {
			t.Errorf("event %d of %d bytes: borrowed %v", i, len(want), borrowed)
		}
	}
}
