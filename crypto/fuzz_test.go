package crypto

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

// fuzzRekeyInterval is low so that fuzzed streams cross rekeys.
const fuzzRekeyInterval = 2

// FuzzOpen feeds a byte stream through ReadRecord and Open, as a link's read
// loop does. Seeds are real records. Whatever the input, nothing may panic,
// and every record that opens must be exactly what Seal produces for its
// plaintext at that position (so only genuine records open).
func FuzzOpen(f *testing.F) {
	a, _ := fixedPair(fuzzRekeyInterval)
	var stream []byte
	for i, n := range []int{1, 16, 100, 1000, 5, 3000} {
		rec, err := a.Seal(nil, message(i, n))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(rec) // one record (the first opens; later ones are out of order)
		stream = append(stream, rec...)
		f.Add(bytes.Clone(stream)) // a valid prefix of the stream
	}
	tampered := bytes.Clone(stream)
	tampered[len(tampered)-1] ^= 1
	f.Add(tampered)
	f.Add([]byte{})
	f.Add([]byte{0, 16})
	f.Add([]byte{0xff, 0xff, 1, 2, 3})

	f.Fuzz(func(t *testing.T, data []byte) {
		sealer, opener := fixedPair(fuzzRekeyInterval)
		r := bytes.NewReader(data)
		buf := make([]byte, 0, maxRecordSize)
		for i := 0; ; i++ {
			body, err := ReadRecord(r, buf)
			if err != nil {
				if err != io.EOF && !errors.Is(err, ErrRecord) && !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("ReadRecord: unexpected error %v", err)
				}
				return
			}
			ct := bytes.Clone(body)
			pt, err := opener.Open(body[:0], body)
			if err != nil {
				if !errors.Is(err, ErrRecord) {
					t.Fatalf("Open: error %v does not wrap ErrRecord", err)
				}
				if _, err := opener.Open(nil, ct); !errors.Is(err, ErrRecord) {
					t.Fatalf("Open after a failure = %v, want ErrRecord", err)
				}
				return
			}
			want, err := sealer.Seal(nil, pt)
			if err != nil {
				t.Fatalf("record %d opened to %d bytes that Seal rejects: %v", i, len(pt), err)
			}
			if !bytes.Equal(want[RecordHeaderSize:], ct) {
				t.Fatalf("record %d opened but is not what Seal produces", i)
			}
		}
	})
}

// FuzzHandshakeResponder feeds arbitrary bytes to a responder as the
// initiator's side of the stream (length prefix and first message). It must
// never panic, must fail with ErrHandshake on anything but a genuine first
// message, and must read no more than one framed message.
func FuzzHandshakeResponder(f *testing.F) {
	k := testKey()
	valid := validFirstMessage(f, "fuzz", k)
	f.Add(valid)
	f.Add(validFirstMessage(f, "other", k))
	f.Add(valid[:30])
	f.Add(append(bytes.Clone(valid), 0xde, 0xad))
	f.Add([]byte{})
	f.Add([]byte{0})
	f.Add([]byte{0, 0})
	f.Add([]byte{0xff, 0xff, 1, 2, 3})
	f.Add(frame(1024, make([]byte, 1024)))
	f.Add(frame(48, make([]byte, 48)))

	f.Fuzz(func(t *testing.T, data []byte) {
		counter := &countingReader{r: bytes.NewReader(data)}
		var out bytes.Buffer
		rw := struct {
			io.Reader
			io.Writer
		}{counter, &out}
		s, err := Handshake(rw, false, "fuzz", k)
		if counter.n > handshakeHeaderSize+maxHandshakeMessage {
			t.Fatalf("responder read %d bytes", counter.n)
		}
		if err != nil {
			if s != nil || !errors.Is(err, ErrHandshake) {
				t.Fatalf("Handshake = %v, %v; want nil, ErrHandshake", s, err)
			}
			if out.Len() != 0 {
				t.Fatalf("responder wrote %d bytes before failing", out.Len())
			}
			return
		}
		if !bytes.HasPrefix(data, valid[:handshakeHeaderSize]) || out.Len() != handshakeHeaderSize+48 {
			t.Fatalf("handshake succeeded on %x, replied %d bytes", data, out.Len())
		}
	})
}
