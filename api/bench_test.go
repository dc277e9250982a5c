package api

import (
	"bytes"
	"testing"
)

var benchSizes = []struct {
	name string
	n    int
}{{"64B", 64}, {"1KiB", 1 << 10}}

// benchMessages are the REQUEST and PUBLISH shapes measured in each direction.
func benchMessages(payload []byte) []struct {
	name string
	msg  Message
} {
	return []struct {
		name string
		msg  Message
	}{
		{"REQUEST", Message{Op: OpRequest, ID: 300, Cluster: "service", Payload: payload, TimeoutMs: 1000}},
		{"PUBLISH", Message{Op: OpPublish, Topic: "events.topic", Payload: payload}},
	}
}

func BenchmarkEncode(b *testing.B) {
	for _, dir := range directions {
		for _, size := range benchSizes {
			for _, bm := range benchMessages(bytes.Repeat([]byte{'x'}, size.n)) {
				b.Run(dir.name+"/"+bm.name+"/"+size.name, func(b *testing.B) {
					buf := dir.append(nil, &bm.msg)
					b.SetBytes(int64(len(buf)))
					b.ReportAllocs()
					for b.Loop() {
						buf = dir.append(buf[:0], &bm.msg)
					}
				})
			}
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, dir := range directions {
		for _, size := range benchSizes {
			for _, bm := range benchMessages(bytes.Repeat([]byte{'x'}, size.n)) {
				b.Run(dir.name+"/"+bm.name+"/"+size.name, func(b *testing.B) {
					enc := dir.append(nil, &bm.msg)
					d := NewDecoder(&loopReader{b: enc}, Limits{})
					var m Message
					b.SetBytes(int64(len(enc)))
					b.ReportAllocs()
					for b.Loop() {
						if err := dir.read(d, &m); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}
