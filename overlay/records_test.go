package overlay

import (
	"bytes"
	"io"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/iris-mesh/iris/crypto"
)

// packedRecords cuts a plaintext stream into full records, as a link's
// batcher does under load, and seals them.
func packedRecords(tb testing.TB, send *crypto.Session, stream []byte) []byte {
	var chunks [][]byte
	for len(stream) > 0 {
		k := min(len(stream), crypto.MaxRecordPlaintext)
		chunks = append(chunks, stream[:k])
		stream = stream[k:]
	}
	return sealChunks(tb, send, chunks)
}

// mixedStream returns a stream of frames of many sizes: tiny, just under
// and over sliceMin, 64 KiB tunnel chunks (which span records) and one
// larger than the arena.
func mixedStream() (stream []byte, frames []parsedFrame) {
	sizes := []int{0, 5, 64<<10 + 20, 100, sliceMin - 1, sliceMin, 64<<10 + 20, 64<<10 + 20,
		3, arenaSize + 12345, 64<<10 + 20, 7}
	for i, n := range sizes {
		p := make([]byte, n)
		for j := range p {
			p[j] = byte(i*31 + j*7)
		}
		stream = appendFrame(stream, frameApp, p)
		frames = append(frames, parsedFrame{frameApp, p})
	}
	return stream, frames
}

// pieceReader returns at most a random number of bytes per read, up to max.
type pieceReader struct {
	r   io.Reader
	rnd *rand.Rand
	max int
}

func (p *pieceReader) Read(b []byte) (int, error) {
	return p.r.Read(b[:min(len(b), 1+p.rnd.IntN(p.max))])
}

// TestRecordReaderFrames reads a mixed stream packed into full records,
// the same frames one record per frame, and with large bodies in records of
// their own (as the batcher seals them), with reads of every size: the
// frames arrive whole and in order.
func TestRecordReaderFrames(t *testing.T) {
	stream, want := mixedStream()
	var perFrame, apart [][]byte
	for rest := stream; len(rest) > 0; {
		n := frameHeaderSize + int(uint32(rest[1])<<24|uint32(rest[2])<<16|uint32(rest[3])<<8|uint32(rest[4]))
		perFrame = append(perFrame, rest[:n])
		if n-frameHeaderSize >= sealDirect { // as the batcher seals large bodies
			apart = append(apart, rest[:frameHeaderSize], rest[frameHeaderSize:n])
		} else {
			apart = append(apart, rest[:n])
		}
		rest = rest[n:]
	}
	for _, packing := range []string{"packed", "per-frame", "bodies apart"} {
		for _, reads := range []int{0, 1 << 20, 70 << 10, 1000, 17} {
			send, recv := sessionPair(t)
			var records []byte
			switch packing {
			case "packed":
				records = packedRecords(t, send, stream)
			case "per-frame":
				records = sealChunks(t, send, perFrame)
			default:
				records = sealChunks(t, send, apart)
			}
			var src io.Reader = bytes.NewReader(records)
			if reads > 0 {
				src = &pieceReader{r: src, rnd: rand.New(rand.NewPCG(1, uint64(reads))), max: reads}
			}
			got, err := readFrames(recv, DefaultMaxFrameSize, src)
			if err != nil {
				t.Fatalf("%s, reads up to %d: %v", packing, reads, err)
			}
			if len(got) != len(want) {
				t.Fatalf("%s, reads up to %d: %d frames, want %d", packing, reads, len(got), len(want))
			}
			for i := range want {
				if got[i].kind != want[i].kind || !bytes.Equal(got[i].payload, want[i].payload) {
					t.Fatalf("%s, reads up to %d: frame %d (%d bytes) differs", packing, reads, i, len(want[i].payload))
				}
			}
		}
	}
}

// TestRecordReaderSlicesSpanningFrames: 64 KiB frames, each spanning two
// records, are delivered as slices of the reader's arenas, not copies.
func TestRecordReaderSlicesSpanningFrames(t *testing.T) {
	const frames = 64
	body := bytes.Repeat([]byte{'t'}, 64<<10+20)
	var stream []byte
	for range frames {
		stream = appendFrame(stream, frameApp, body)
	}
	send, recv := sessionPair(t)
	records := packedRecords(t, send, stream)
	var got int
	var arenas []*byte // the start of each distinct backing array seen
	rr := recordReader{
		src: bytes.NewReader(records), open: recv.Open, max: DefaultMaxFrameSize, opened: func(int) {},
		deliver: func(_ byte, p []byte, _ func()) {
			if !bytes.Equal(p, body) {
				t.Fatalf("frame %d differs", got)
			}
			got++
		},
	}
	arenas = make([]*byte, 0, frames)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for got < frames {
		if err := rr.step(); err != nil {
			t.Fatal(err)
		}
		if rr.a != nil && (len(arenas) == 0 || arenas[len(arenas)-1] != &rr.a[0]) {
			arenas = append(arenas, &rr.a[0])
		}
	}
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	// The arenas hold the frames (a few arenas more than their bytes, for
	// the room left at an arena's end); a copy per frame would allocate as
	// much again.
	t.Logf("%d bytes allocated, %d arenas", allocated, len(arenas))
	if limit := uint64(frames*len(body) + 3*arenaSize); allocated > limit {
		t.Errorf("%d bytes allocated for %d frames of 64 KiB, want at most %d", allocated, frames, limit)
	}
}

// TestRecordReaderRecyclesReleasedArenas: when the consumer releases each
// sliced frame once done with it, the reader's arenas are reused rather
// than allocated anew.
func TestRecordReaderRecyclesReleasedArenas(t *testing.T) {
	const frames = 64
	body := bytes.Repeat([]byte{'r'}, 64<<10+20)
	var stream []byte
	for range frames {
		stream = appendFrame(stream, frameApp, body)
	}
	send, recv := sessionPair(t)
	records := packedRecords(t, send, stream)
	got, released := 0, 0
	rr := recordReader{
		src: bytes.NewReader(records), open: recv.Open, max: DefaultMaxFrameSize, opened: func(int) {},
		deliver: func(_ byte, p []byte, release func()) {
			if !bytes.Equal(p, body) {
				t.Fatalf("frame %d differs", got)
			}
			got++
			if release != nil {
				release()
				released++
			}
		},
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for got < frames {
		if err := rr.step(); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("%d bytes allocated, %d frames released", allocated, released)
	if released != frames {
		t.Errorf("%d of %d frames came with a release", released, frames)
	}
	// (With -race, sync.Pool drops some of what it is given.)
	if limit := uint64(4 * arenaSize); allocated > limit && !raceEnabled {
		t.Errorf("%d bytes allocated for %d released frames of 64 KiB, want at most %d", allocated, frames, limit)
	}
}

// raceEnabled is set when the tests run with -race (race_test.go).
var raceEnabled bool

// TestRecordReaderSmallFramesHoldLittle: a link carrying only small
// frames never takes an arena, and between reads that left nothing
// pending it holds only its small buffer.
func TestRecordReaderSmallFramesHoldLittle(t *testing.T) {
	var chunks [][]byte
	for i := range 200 {
		chunks = append(chunks, appendFrame(nil, frameApp, bytes.Repeat([]byte{byte(i)}, 1+i*50)))
	}
	send, recv := sessionPair(t)
	src := &pieceReader{r: bytes.NewReader(sealChunks(t, send, chunks)), rnd: rand.New(rand.NewPCG(3, 4)), max: 12 << 10}
	got := 0
	rr := recordReader{
		src: src, open: recv.Open, max: DefaultMaxFrameSize, opened: func(int) {},
		deliver: func(_ byte, p []byte, release func()) {
			if release != nil || len(p) != 1+got*50 {
				t.Fatalf("frame %d: %d bytes, release %v", got, len(p), release != nil)
			}
			got++
		},
	}
	for got < len(chunks) {
		if err := rr.step(); err != nil {
			t.Fatal(err)
		}
		if cap(rr.a) > recordBufSize {
			t.Fatalf("after %d frames the reader holds %d bytes", got, cap(rr.a))
		}
		if rr.r == rr.w && rr.x == rr.y && rr.drained && rr.a != nil {
			t.Fatalf("after %d frames, nothing pending, the reader holds %d bytes", got, cap(rr.a))
		}
	}
}
