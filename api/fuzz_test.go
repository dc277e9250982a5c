package api

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
)

// fuzzLimits and fuzzEagerMax keep each run fast (a declared length costs
// little memory) while the growing path of readN stays reachable.
var fuzzLimits = Limits{MaxStringLen: 1 << 10, MaxMessageLen: 4 << 10}

const fuzzEagerMax = 64

func newFuzzDecoder(b []byte) *Decoder {
	d := NewDecoder(bytes.NewReader(b), fuzzLimits)
	d.eagerMax = fuzzEagerMax
	return d
}

// seedCorpus adds every vector of the direction, every protocol violation and
// the whole vector stream back to back.
func seedCorpus(f *testing.F, dir direction, client bool) {
	var all []byte
	for _, v := range dir.vectors {
		b := wire(f, v.wire)
		f.Add(b)
		all = append(all, b...)
	}
	f.Add(all)
	for _, v := range badVectors {
		if v.client == client {
			f.Add(wire(f, v.wire))
		}
	}
}

// fuzzRead decodes every message in data. For each message decoded, encoding
// it and decoding the encoding must give the same message, and re-encoding
// that must give the same bytes (the encoding is canonical even though the
// decoder accepts non-minimal varints).
func fuzzRead(t *testing.T, dir direction, data []byte) {
	d := newFuzzDecoder(data)
	for {
		var m Message
		err := dir.read(d, &m)
		if err == io.EOF {
			return
		}
		if err != nil {
			if !errors.Is(err, ErrProtocol) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		enc := dir.append(nil, &m)
		d2 := newFuzzDecoder(enc)
		var m2 Message
		if err := dir.read(d2, &m2); err != nil {
			t.Fatalf("re-decode of % x (from %+v): %v", enc, m, err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip changed the message\nfirst  %+v\nsecond %+v", m, m2)
		}
		var m3 Message
		if err := dir.read(d2, &m3); err != io.EOF {
			t.Fatalf("re-decode left bytes: %v", err)
		}
		if enc2 := dir.append(nil, &m2); !bytes.Equal(enc, enc2) {
			t.Fatalf("encoding not canonical: % x then % x", enc, enc2)
		}
	}
}

func FuzzReadClient(f *testing.F) {
	seedCorpus(f, directions[0], true)
	f.Fuzz(func(t *testing.T, data []byte) {
		fuzzRead(t, directions[0], data)
		fuzzBorrow(t, directions[0], data)
	})
}

// fuzzBorrow decodes data as client messages twice in lockstep, once with
// events borrowed (SetBorrow) and once without: each message, and the
// error that ends the stream, must be the same.
func fuzzBorrow(t *testing.T, dir direction, data []byte) {
	plain, borrow := newFuzzDecoder(data), newFuzzDecoder(data)
	borrow.SetBorrow(100)
	for {
		var m1, m2 Message
		err1, err2 := dir.read(plain, &m1), dir.read(borrow, &m2)
		if (err1 == nil) != (err2 == nil) || (err1 != nil && err1.Error() != err2.Error()) {
			t.Fatalf("errors differ: %v, borrowing %v", err1, err2)
		}
		if err1 != nil {
			return
		}
		if !reflect.DeepEqual(m1, m2) {
			t.Fatalf("borrowing changed the message\nplain  %+v\nborrow %+v", m1, m2)
		}
	}
}

func FuzzReadDaemon(f *testing.F) {
	seedCorpus(f, directions[1], false)
	f.Fuzz(func(t *testing.T, data []byte) { fuzzRead(t, directions[1], data) })
}
