package crypto

import (
	"fmt"
	"testing"
)

// benchSizes are plaintext sizes: a small frame, a typical one, and a full
// record (64 KiB minus the 16-byte tag, minus one for the 16-bit length).
var benchSizes = []int{64, 1 << 10, MaxRecordPlaintext}

func BenchmarkSeal(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			a, _ := fixedPair(RekeyInterval)
			pt := message(1, n)
			dst := make([]byte, 0, maxRecordSize)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := a.Seal(dst, pt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			a, o := fixedPair(RekeyInterval)
			rec, err := a.Seal(nil, message(1, n))
			if err != nil {
				b.Fatal(err)
			}
			body := rec[RecordHeaderSize:]
			dst := make([]byte, 0, MaxRecordPlaintext)
			b.SetBytes(int64(n))
			b.ReportAllocs()
			for b.Loop() {
				o.recv.cs.SetNonce(0) // reopen the same record
				if _, err := o.Open(dst, body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkHandshake measures both sides of a handshake over net.Pipe.
func BenchmarkHandshake(b *testing.B) {
	k := testKey()
	b.ReportAllocs()
	for b.Loop() {
		_, _, errI, errR := handshakeOverPipe(b, peer{"bench", k}, peer{"bench", k})
		if errI != nil || errR != nil {
			b.Fatal(errI, errR)
		}
	}
}
