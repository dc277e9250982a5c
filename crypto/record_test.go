package crypto

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/flynn/noise"
)

// fixedPair returns two Sessions with fixed keys that talk to each other
// (a seals what b opens and the reverse), without a handshake.
func fixedPair(interval uint64) (a, b *Session) {
	k1, k2 := [32]byte{1}, [32]byte{2}
	a = newSession(noise.UnsafeNewCipherState(cipherSuite, k1, 0), noise.UnsafeNewCipherState(cipherSuite, k2, 0))
	b = newSession(noise.UnsafeNewCipherState(cipherSuite, k2, 0), noise.UnsafeNewCipherState(cipherSuite, k1, 0))
	a.rekeyInterval, b.rekeyInterval = interval, interval
	return a, b
}

// message returns n deterministic bytes that differ per seed.
func message(seed, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(seed*131 + i*7)
	}
	return p
}

func TestRecordRoundTrip(t *testing.T) {
	si, sr := mustPair(t)
	sizes := []int{1, 2, 15, 16, 17, 100, 1 << 10, 4096, MaxRecordPlaintext - 1, MaxRecordPlaintext}
	for _, pair := range []struct {
		name     string
		from, to *Session
	}{{"initiator to responder", si, sr}, {"responder to initiator", sr, si}} {
		t.Run(pair.name, func(t *testing.T) {
			var stream bytes.Buffer
			var rec []byte
			for i, n := range sizes {
				var err error
				rec, err = pair.from.Seal(rec[:0], message(i, n))
				if err != nil {
					t.Fatalf("Seal(%d bytes): %v", n, err)
				}
				if len(rec) != RecordHeaderSize+n+16 {
					t.Fatalf("record of %d bytes for %d plaintext bytes", len(rec), n)
				}
				stream.Write(rec)
			}
			buf := make([]byte, 0, maxRecordSize)
			for i, n := range sizes {
				body, err := ReadRecord(&stream, buf)
				if err != nil {
					t.Fatalf("ReadRecord %d: %v", i, err)
				}
				pt, err := pair.to.Open(body[:0], body) // in place
				if err != nil {
					t.Fatalf("Open %d: %v", i, err)
				}
				if !bytes.Equal(pt, message(i, n)) {
					t.Fatalf("record %d: plaintext differs", i)
				}
			}
			if _, err := ReadRecord(&stream, buf); err != io.EOF {
				t.Fatalf("ReadRecord at end = %v, want io.EOF", err)
			}
		})
	}
}

func TestSealAppends(t *testing.T) {
	a, b := fixedPair(RekeyInterval)
	dst := []byte("prefix")
	out, err := a.Seal(dst, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if string(out[:6]) != "prefix" || len(out) != 6+RecordHeaderSize+1+16 {
		t.Fatalf("Seal did not append: %q", out)
	}
	pt, err := b.Open([]byte("head:"), out[6+RecordHeaderSize:])
	if err != nil || string(pt) != "head:x" {
		t.Fatalf("Open = %q, %v", pt, err)
	}
}

func TestSealLengthLimits(t *testing.T) {
	a, b := fixedPair(RekeyInterval)
	dst := []byte("keep")
	for _, n := range []int{0, MaxRecordPlaintext + 1, 1 << 20} {
		out, err := a.Seal(dst, make([]byte, n))
		if !errors.Is(err, ErrRecord) || !bytes.Equal(out, dst) {
			t.Fatalf("Seal(%d bytes) = %q, %v; want dst unchanged and ErrRecord", n, out, err)
		}
	}
	// The failed calls did not advance the session.
	rec, _ := a.Seal(nil, []byte("ok"))
	if pt, err := b.Open(nil, rec[RecordHeaderSize:]); err != nil || string(pt) != "ok" {
		t.Fatalf("Open after rejected Seals = %q, %v", pt, err)
	}
}

// TestRecordsAreNoiseTransportMessages checks that the allocation-free record
// path produces exactly what noise.CipherState.Encrypt and Rekey produce.
func TestRecordsAreNoiseTransportMessages(t *testing.T) {
	const interval = 3
	a, _ := fixedPair(interval)
	ref := noise.UnsafeNewCipherState(cipherSuite, [32]byte{1}, 0)
	for i := range 4*interval + 2 {
		pt := message(i, 10+i)
		rec, err := a.Seal(nil, pt)
		if err != nil {
			t.Fatal(err)
		}
		want, err := ref.Encrypt(nil, nil, pt)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(rec[RecordHeaderSize:], want) {
			t.Fatalf("record %d differs from noise.CipherState.Encrypt", i)
		}
		if (i+1)%interval == 0 {
			ref.Rekey()
		}
	}
}

func TestRekeySync(t *testing.T) {
	const interval, rounds = 4, 5*4 + 3
	si, sr := mustPair(t)
	si.rekeyInterval, sr.rekeyInterval = interval, interval
	keys := map[[32]byte]bool{si.send.cs.UnsafeKey(): true}
	for i := range rounds {
		for _, p := range [][2]*Session{{si, sr}, {sr, si}} {
			rec, err := p[0].Seal(nil, message(i, 33))
			if err != nil {
				t.Fatal(err)
			}
			pt, err := p[1].Open(nil, rec[RecordHeaderSize:])
			if err != nil {
				t.Fatalf("round %d: Open: %v", i, err)
			}
			if !bytes.Equal(pt, message(i, 33)) {
				t.Fatalf("round %d: plaintext differs", i)
			}
			if p[0].send.cs.UnsafeKey() != p[1].recv.cs.UnsafeKey() || p[0].send.cs.Nonce() != p[1].recv.cs.Nonce() {
				t.Fatalf("round %d: sides out of sync", i)
			}
		}
		keys[si.send.cs.UnsafeKey()] = true
	}
	if got, want := len(keys), 1+rounds/interval; got != want {
		t.Fatalf("initiator used %d send keys, want %d (one per rekey)", got, want)
	}
	if si.send.cs.Nonce() != rounds {
		t.Fatalf("nonce = %d, want %d: rekeying must not reset the counter", si.send.cs.Nonce(), rounds)
	}
}

// TestRekeyMismatchFails proves the rekey changes the key: a receiver that
// does not rekey fails on the first record after the interval.
func TestRekeyMismatchFails(t *testing.T) {
	a, b := fixedPair(4)
	b.rekeyInterval = 1000
	for i := range 5 {
		rec, _ := a.Seal(nil, message(i, 8))
		_, err := b.Open(nil, rec[RecordHeaderSize:])
		if i < 4 && err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if i == 4 && !errors.Is(err, ErrRecord) {
			t.Fatalf("record after missed rekey: error = %v, want ErrRecord", err)
		}
	}
}

// sealBody seals message(seed, 40) with a and returns the record body.
func sealBody(t *testing.T, a *Session, seed int) []byte {
	t.Helper()
	rec, err := a.Seal(nil, message(seed, 40))
	if err != nil {
		t.Fatal(err)
	}
	return rec[RecordHeaderSize:]
}

func TestOpenRejects(t *testing.T) {
	tests := map[string]func(t *testing.T, a, b *Session) []byte{
		"flipped ciphertext bit": func(t *testing.T, a, b *Session) []byte { r := sealBody(t, a, 0); r[3] ^= 0x10; return r },
		"flipped tag bit":        func(t *testing.T, a, b *Session) []byte { r := sealBody(t, a, 0); r[len(r)-1] ^= 1; return r },
		"truncated":              func(t *testing.T, a, b *Session) []byte { return sealBody(t, a, 0)[:30] },
		"extended":               func(t *testing.T, a, b *Session) []byte { return append(sealBody(t, a, 0), 0) },
		"too short":              func(t *testing.T, a, b *Session) []byte { return make([]byte, 16) },
		"empty":                  func(t *testing.T, a, b *Session) []byte { return nil },
		"too long":               func(t *testing.T, a, b *Session) []byte { return make([]byte, maxRecordCiphertext+1) },
		"reordered":              func(t *testing.T, a, b *Session) []byte { sealBody(t, a, 0); return sealBody(t, a, 1) },
		"reflected":              func(t *testing.T, a, b *Session) []byte { return sealBody(t, b, 0) },
		"other session": func(t *testing.T, a, b *Session) []byte {
			c, _ := mustPair(t)
			return sealBody(t, c, 0)
		},
		"replayed": func(t *testing.T, a, b *Session) []byte {
			r := sealBody(t, a, 0)
			if _, err := b.Open(nil, bytes.Clone(r)); err != nil {
				t.Fatal(err)
			}
			return r
		},
	}
	for name, bad := range tests {
		t.Run(name, func(t *testing.T) {
			a, b := fixedPair(RekeyInterval)
			r := bad(t, a, b)
			dst := []byte("keep")
			out, err := b.Open(dst, r)
			if !errors.Is(err, ErrRecord) || string(out) != "keep" {
				t.Fatalf("Open = %q, %v; want dst unchanged and ErrRecord", out, err)
			}
			// The receive direction is now broken for good...
			good, _ := fixedPair(RekeyInterval)
			if _, err := b.Open(nil, sealBody(t, good, 0)); !errors.Is(err, ErrRecord) {
				t.Fatalf("Open after failure = %v, want ErrRecord", err)
			}
			// ...while the other direction is unaffected ("reflected" used
			// b's send counter already).
			if name != "reflected" {
				if _, err := a.Open(nil, sealBody(t, b, 0)); err != nil {
					t.Fatalf("reverse direction: %v", err)
				}
			}
		})
	}
}

func TestOverlapIsAnErrorNotAPanic(t *testing.T) {
	a, b := fixedPair(RekeyInterval)
	buf := make([]byte, 200)
	copy(buf, "plaintext")
	if _, err := a.Seal(buf[:0], buf[:9]); err == nil {
		t.Fatal("Seal with plaintext under the header: no error")
	}
	if _, err := a.Seal(buf[:0], buf[5:14]); err == nil {
		t.Fatal("Seal with shifted plaintext: no error")
	}
	rec, err := a.Seal(buf[:0], []byte("plaintext"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Open(buf[:0], rec[RecordHeaderSize:]); err == nil {
		t.Fatal("Open with shifted output: no error")
	}
	if b.recv.broken {
		t.Fatal("a caller bug broke the session")
	}
	if pt, err := b.Open(buf[:0], bytes.Clone(rec[RecordHeaderSize:])); err != nil || string(pt) != "plaintext" {
		t.Fatalf("Open = %q, %v", pt, err)
	}
}

func TestNonceExhausted(t *testing.T) {
	a, b := fixedPair(RekeyInterval)
	a.send.cs.SetNonce(noise.MaxNonce + 1)
	if _, err := a.Seal(nil, []byte("x")); err == nil {
		t.Fatal("Seal with exhausted nonce: no error")
	}
	b.recv.cs.SetNonce(noise.MaxNonce + 1)
	if _, err := b.Open(nil, make([]byte, 32)); err == nil {
		t.Fatal("Open with exhausted nonce: no error")
	}
}

func TestSealOpenReadNoAllocs(t *testing.T) {
	a, b := fixedPair(RekeyInterval)
	const n, runs = 1000, 100
	recs := make([][]byte, runs+1) // AllocsPerRun calls f runs+1 times
	for i := range recs {
		recs[i] = sealBody(t, a, i)
	}
	buf := make([]byte, maxRecordSize)
	out := make([]byte, MaxRecordPlaintext)
	stream, err := a.Seal(nil, message(0, n))
	if err != nil {
		t.Fatal(err)
	}
	var r bytes.Reader
	tests := []struct {
		name string
		f    func(i int) error
	}{
		{"Open in place", func(i int) error {
			_, err := b.Open(recs[i][:0], recs[i])
			return err
		}},
		{"Seal in place", func(int) error {
			// The plaintext sits right after the room for the header.
			_, err := a.Seal(buf[:0], buf[RecordHeaderSize:RecordHeaderSize+n])
			return err
		}},
		{"Seal", func(int) error {
			_, err := a.Seal(buf[:0], out[:n])
			return err
		}},
		{"ReadRecord", func(int) error {
			r.Reset(stream)
			_, err := ReadRecord(&r, buf)
			return err
		}},
	}
	for _, tt := range tests {
		i := 0
		allocs := testing.AllocsPerRun(runs, func() {
			if err := tt.f(i); err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			i++
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocs per call, want 0", tt.name, allocs)
		}
	}
}

func TestReadRecord(t *testing.T) {
	valid := append(frame(17, nil), make([]byte, 17)...)
	tests := []struct {
		name  string
		input []byte
		want  error
	}{
		{"clean EOF", nil, io.EOF},
		{"half header", []byte{0}, io.ErrUnexpectedEOF},
		{"header only", frame(17, nil), io.ErrUnexpectedEOF},
		{"short body", valid[:10], io.ErrUnexpectedEOF},
		{"length 0", frame(0, make([]byte, 40)), ErrRecord},
		{"length 16", frame(16, make([]byte, 40)), ErrRecord},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body, err := ReadRecord(bytes.NewReader(tt.input), nil)
			if body != nil || !errors.Is(err, tt.want) {
				t.Fatalf("ReadRecord = %x, %v; want %v", body, err, tt.want)
			}
			if tt.want == io.EOF && err != io.EOF {
				t.Fatalf("clean EOF must be io.EOF itself, got %v", err)
			}
		})
	}
	// Small or nil buffers grow.
	for _, buf := range [][]byte{nil, make([]byte, 1), make([]byte, 10, 18)} {
		body, err := ReadRecord(bytes.NewReader(valid), buf)
		if err != nil || len(body) != 17 {
			t.Fatalf("ReadRecord(cap %d) = %d bytes, %v", cap(buf), len(body), err)
		}
	}
	big := frame(maxRecordCiphertext, make([]byte, maxRecordCiphertext))
	if body, err := ReadRecord(bytes.NewReader(big), nil); err != nil || len(body) != maxRecordCiphertext {
		t.Fatalf("max record: %d bytes, %v", len(body), err)
	}
}

// TestFullDuplex runs a writer and a reader loop per side over net.Pipe, so
// Seal and Open of one Session run concurrently (checked by -race).
func TestFullDuplex(t *testing.T) {
	si, sr := mustPair(t)
	si.rekeyInterval, sr.rekeyInterval = 7, 7
	ci, cr := net.Pipe()
	defer ci.Close()
	defer cr.Close()
	const count = 100
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for _, side := range []struct {
		s    *Session
		conn net.Conn
	}{{si, ci}, {sr, cr}} {
		wg.Add(2)
		go func() {
			defer wg.Done()
			var rec []byte
			for i := range count {
				var err error
				if rec, err = side.s.Seal(rec[:0], message(i, 1+i*37)); err == nil {
					_, err = side.conn.Write(rec)
				}
				if err != nil {
					errs <- fmt.Errorf("write %d: %w", i, err)
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, maxRecordSize)
			for i := range count {
				body, err := ReadRecord(side.conn, buf)
				if err == nil {
					body, err = side.s.Open(body[:0], body)
				}
				if err == nil && !bytes.Equal(body, message(i, 1+i*37)) {
					err = errors.New("plaintext differs")
				}
				if err != nil {
					errs <- fmt.Errorf("read %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}
