package api

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
)

// badVectors break the protocol: each must fail with ErrProtocol.
var badVectors = []struct {
	name   string
	client bool
	wire   string
	lim    Limits
}{
	{"client/unknown-0x0e", true, `0e`, Limits{}},
	{"client/unknown-0xff", true, `ff 00 00`, Limits{}},
	{"client/DENY", true, `01 10 "iris-relay-magic" 00`, Limits{}},
	{"daemon/unknown-0x0e", false, `0e`, Limits{}},
	{"daemon/SUBSCRIBE", false, `06 01 "t"`, Limits{}},
	{"daemon/UNSUBSCRIBE", false, `07 01 "t"`, Limits{}},
	{"client/REPLY/bad-bool", true, `05 01 02 00`, Limits{}},
	{"daemon/REPLY/bad-timedOut", false, `05 01 02`, Limits{}},
	{"daemon/REPLY/bad-success", false, `05 01 00 ff 00`, Limits{}},
	{"daemon/TUN_CONFIRM/bad-bool", false, `0a 01 80 00`, Limits{}},
	{"client/varint-11-bytes", true, `04 80808080808080808080 01 00 00 00 00`, Limits{}},
	{"client/varint-overflow", true, `0d ffffffffffffffffff 02`, Limits{}},
	{"daemon/varint-overflow", false, `0b 01 ffffffffffffffffff 7f`, Limits{}},
	{"client/string-over-limit", true, `06 05 "topic"`, Limits{MaxStringLen: 4}},
	{"client/string-over-default", true, `06 818004`, Limits{}}, // 65537
	{"client/payload-over-limit", true, `03 00 05 "hello"`, Limits{MaxMessageLen: 4}},
	{"daemon/payload-over-default", false, `03 81808008`, Limits{}}, // 16 MiB + 1
	{"daemon/fault-over-limit", false, `05 01 00 00 03 "abc"`, Limits{MaxStringLen: 2}},
}

func TestProtocolViolations(t *testing.T) {
	for _, v := range badVectors {
		t.Run(v.name, func(t *testing.T) {
			d := NewDecoder(bytes.NewReader(wire(t, v.wire)), v.lim)
			read := (*Decoder).ReadDaemon
			if v.client {
				read = (*Decoder).ReadClient
			}
			var m Message
			err := read(d, &m)
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("read = %v, want ErrProtocol", err)
			}
			if !strings.HasPrefix(err.Error(), "api: read ") {
				t.Errorf("error %q lacks the operation prefix", err)
			}
			// The stream is desynchronised: the error sticks.
			if err2 := read(d, &m); err2 != err {
				t.Errorf("second read = %v, want the same error", err2)
			}
		})
	}
}

// TestVarintEdges: the largest 10-byte varint and non-minimal encodings are
// accepted, as encoding/binary accepts them.
func TestVarintEdges(t *testing.T) {
	for _, c := range []struct {
		wire string
		id   uint64
	}{
		{`0d ffffffffffffffffff01`, 1<<64 - 1},
		{`0d 8000`, 0},
		{`0d 81808000`, 1},
	} {
		d := NewDecoder(bytes.NewReader(wire(t, c.wire)), Limits{})
		var m Message
		if err := d.ReadClient(&m); err != nil || m.ID != c.id {
			t.Errorf("%s: read = %v, ID %d, want %d", c.wire, err, m.ID, c.id)
		}
	}
}

// TestTruncated cuts every valid vector at every length: the empty stream is
// a clean io.EOF, every other prefix an io.ErrUnexpectedEOF that is not a
// protocol violation.
func TestTruncated(t *testing.T) {
	for _, dir := range directions {
		for _, v := range dir.vectors {
			b := wire(t, v.wire)
			for n := range len(b) {
				d := NewDecoder(bytes.NewReader(b[:n]), Limits{})
				var m Message
				err := dir.read(d, &m)
				switch {
				case n == 0 && err != io.EOF:
					t.Errorf("%s/%s[:0]: %v, want io.EOF", dir.name, v.name, err)
				case n > 0 && (!errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, ErrProtocol)):
					t.Errorf("%s/%s[:%d]: %v, want io.ErrUnexpectedEOF", dir.name, v.name, n, err)
				}
			}
		}
	}
}

// allocBytes returns the bytes allocated while f runs.
func allocBytes(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestHugeDeclaredLengthOverLimit: a 1 GiB length over the limit fails
// before anything is allocated or read for it.
func TestHugeDeclaredLengthOverLimit(t *testing.T) {
	for _, dir := range directions {
		// BROADCAST: client 03 string(cluster) binary(message); daemon 03 binary(message).
		b := wire(t, `03 00 8080808004 "tiny"`) // cluster "", message of 1 GiB
		if dir.name == "daemon" {
			b = wire(t, `03 8080808004 "tiny"`)
		}
		var err error
		n := allocBytes(func() {
			d := NewDecoder(bytes.NewReader(b), Limits{})
			var m Message
			err = dir.read(d, &m)
		})
		if !errors.Is(err, ErrProtocol) {
			t.Fatalf("%s: read = %v, want ErrProtocol", dir.name, err)
		}
		if n > 1<<20 {
			t.Errorf("%s: allocated %d bytes for a rejected length", dir.name, n)
		}
	}
}

// TestHugeDeclaredLengthTruncated: a 1 GiB length within a (raised) limit
// whose bytes never come allocates about what arrived, not 1 GiB.
func TestHugeDeclaredLengthTruncated(t *testing.T) {
	b := append(wire(t, `03 8080808004`), make([]byte, 3<<20)...) // 3 MiB of 1 GiB
	var err error
	n := allocBytes(func() {
		d := NewDecoder(bytes.NewReader(b), Limits{MaxMessageLen: 1 << 30})
		var m Message
		err = d.ReadDaemon(&m)
	})
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("read = %v, want io.ErrUnexpectedEOF", err)
	}
	if n > 16<<20 {
		t.Errorf("allocated %d bytes for 3 MiB received", n)
	}
}

// TestLargeFields decodes fields bigger than the bufio buffer and bigger than
// eagerAllocMax, through a reader that hands out small pieces.
func TestLargeFields(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789abcdef"), (3*eagerAllocMax+5)/16)
	topic := strings.Repeat("t", readBufferSize+7)
	want := Message{Op: OpPublish, Topic: topic, Payload: payload}
	buf := AppendDaemon(nil, &want)
	lim := Limits{MaxStringLen: len(topic), MaxMessageLen: len(payload)}
	d := NewDecoder(&smallReader{r: bytes.NewReader(buf)}, lim)
	var m Message
	if err := d.ReadDaemon(&m); err != nil {
		t.Fatal(err)
	}
	if m.Topic != topic || !bytes.Equal(m.Payload, payload) {
		t.Fatalf("large PUBLISH mangled: topic %d bytes, payload %d bytes", len(m.Topic), len(m.Payload))
	}
	if err := d.ReadDaemon(&m); err != io.EOF {
		t.Fatalf("read after = %v, want io.EOF", err)
	}
}

// smallReader returns at most 1000 bytes per Read.
type smallReader struct{ r io.Reader }

func (s *smallReader) Read(p []byte) (int, error) {
	return s.r.Read(p[:min(len(p), 1000)])
}

func TestAtLimitAccepted(t *testing.T) {
	d := NewDecoder(bytes.NewReader(wire(t, `03 05 "svc.x" 05 "hello"`)), Limits{MaxStringLen: 5, MaxMessageLen: 5})
	var m Message
	if err := d.ReadClient(&m); err != nil || m.Cluster != "svc.x" || string(m.Payload) != "hello" {
		t.Fatalf("read = %v, %+v", err, m)
	}
}
