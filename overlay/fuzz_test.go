package overlay

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"

	"github.com/iris-mesh/iris/crypto"
)

func appendFrame(b []byte, kind byte, payload []byte) []byte {
	b = append(b, kind)
	b = binary.BigEndian.AppendUint32(b, uint32(len(payload)))
	return append(b, payload...)
}

type parsedFrame struct {
	kind    byte
	payload []byte
}

// sessionPair returns the two ends of a crypto session: what send seals,
// recv opens.
func sessionPair(tb testing.TB) (send, recv *crypto.Session) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	errc := make(chan error, 1)
	go func() {
		var err error
		recv, _, err = crypto.Accept(b, "test-net", []crypto.Key{testKey})
		errc <- err
	}()
	send, err := crypto.Handshake(a, true, "test-net", testKey)
	if err2 := <-errc; err == nil {
		err = err2
	}
	if err != nil {
		tb.Fatal(err)
	}
	return send, recv
}

// sealChunks seals each chunk of a plaintext stream into records (more than
// one when it is longer than a record holds; none when it is empty).
func sealChunks(tb testing.TB, send *crypto.Session, chunks [][]byte) []byte {
	var out []byte
	for _, c := range chunks {
		for len(c) > 0 {
			k := min(len(c), crypto.MaxRecordPlaintext)
			var err error
			if out, err = send.Seal(out, c[:k]); err != nil {
				tb.Fatal(err)
			}
			c = c[k:]
		}
	}
	return out
}

// readFrames runs a link's record reader over records read from src.
func readFrames(recv *crypto.Session, max int, src io.Reader) ([]parsedFrame, error) {
	var out []parsedFrame
	rr := recordReader{
		src: src, open: recv.Open, max: max, opened: func(int) {},
		deliver: func(k byte, p []byte, _ func()) {
			out = append(out, parsedFrame{k, append([]byte(nil), p...)})
		},
	}
	for {
		if err := rr.step(); err != nil {
			if err == io.EOF && rr.r == rr.w && rr.x == rr.y && !rr.known {
				return out, nil // the stream ended between records
			}
			return out, err
		}
	}
}

// parseAll seals each chunk of a plaintext stream into records and reads
// them back with a link's record reader.
func parseAll(t *testing.T, max int, chunks [][]byte) ([]parsedFrame, error) {
	send, recv := sessionPair(t)
	return readFrames(recv, max, bytes.NewReader(sealChunks(t, send, chunks)))
}

func TestFrameParserSplits(t *testing.T) {
	var stream []byte
	stream = appendFrame(stream, frameApp, []byte("one"))
	stream = appendFrame(stream, frameApp, nil)
	stream = appendFrame(stream, 'Z', []byte("unknown kind"))
	stream = appendFrame(stream, frameApp, bytes.Repeat([]byte("x"), 1000))
	whole, err := parseAll(t, 1<<20, [][]byte{stream})
	if err != nil || len(whole) != 4 {
		t.Fatalf("whole: %d frames, %v", len(whole), err)
	}
	for i := 1; i < len(stream); i++ {
		got, err := parseAll(t, 1<<20, [][]byte{stream[:i], stream[i:]})
		if err != nil || len(got) != len(whole) {
			t.Fatalf("split at %d: %d frames, %v", i, len(got), err)
		}
		for j := range got {
			if got[j].kind != whole[j].kind || !bytes.Equal(got[j].payload, whole[j].payload) {
				t.Fatalf("split at %d: frame %d differs", i, j)
			}
		}
	}
	if _, err := parseAll(t, 10, [][]byte{appendFrame(nil, frameApp, make([]byte, 11))}); err == nil {
		t.Fatal("oversized frame accepted")
	}
}

// FuzzFrameParser feeds arbitrary streams in two chunks: the parser must
// never panic, must reject frames over the limit, and must give the same
// frames however the stream is split.
func FuzzFrameParser(f *testing.F) {
	f.Add(appendFrame(appendFrame(nil, frameApp, []byte("a")), frameApp, []byte("bc")), 3)
	f.Add(appendFrame(nil, 'x', make([]byte, 70)), 40)
	f.Add([]byte{frameApp, 0xff, 0xff, 0xff, 0xff}, 2)
	f.Fuzz(func(t *testing.T, stream []byte, split int) {
		const max = 1 << 16
		whole, errWhole := parseAll(t, max, [][]byte{stream})
		if len(stream) > 0 {
			split = ((split % len(stream)) + len(stream)) % len(stream)
		} else {
			split = 0
		}
		parts, errParts := parseAll(t, max, [][]byte{stream[:split], stream[split:]})
		if (errWhole == nil) != (errParts == nil) || len(whole) != len(parts) {
			t.Fatalf("whole: %d frames, %v; split: %d frames, %v", len(whole), errWhole, len(parts), errParts)
		}
		for i := range whole {
			if len(whole[i].payload) > max || !bytes.Equal(whole[i].payload, parts[i].payload) {
				t.Fatalf("frame %d differs", i)
			}
		}
	})
}

// FuzzRecordReader feeds arbitrary bytes to a link's record reader, as a
// peer that is not who it claims, or a broken path, would send them: it
// must fail cleanly (no record of these authenticates, whatever lengths
// they claim), never panic, and never deliver a frame.
func FuzzRecordReader(f *testing.F) {
	f.Add([]byte{0x00, 0x00})
	f.Add([]byte{0x00, 0x10, 1, 2, 3})
	f.Add(append([]byte{0xff, 0xff}, make([]byte, 300)...))
	f.Add(append([]byte{0x00, 0x20}, make([]byte, 40)...))
	_, recv := sessionPair(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		rr := recordReader{
			src: bytes.NewReader(in), open: recv.Open, max: 1 << 16, opened: func(int) {},
			deliver: func(byte, []byte, func()) { t.Fatal("a frame from bytes that never authenticate") },
		}
		for range len(in) + 2 {
			if err := rr.step(); err != nil {
				return
			}
		}
		t.Fatal("the reader neither failed nor stopped")
	})
}

// FuzzReadHello decodes arbitrary hellos: errors are fine, panics are not.
func FuzzReadHello(f *testing.F) {
	var b bytes.Buffer
	if err := writeHello(&b, "node-1"); err != nil {
		f.Fatal(err)
	}
	f.Add(b.Bytes()[1:]) // without the connection kind
	f.Add([]byte{0x04, 0x00, 0xde, 0xad})
	f.Add([]byte{0x00, 0x05, 0x81, 0xa1, 'v', 0x01, 0x00})
	f.Fuzz(func(t *testing.T, in []byte) {
		h, err := readHello(bytes.NewReader(in))
		if err == nil && (h.ID == "" || len(h.ID) > 128 || h.Version != linkVersion) {
			t.Fatalf("accepted bad hello %+v", h)
		}
	})
}
