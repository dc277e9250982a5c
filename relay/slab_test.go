package relay

import (
	"bytes"
	"testing"

	"github.com/iris-mesh/iris/api"
)

// TestSlabBlocks: events encoded into a slab come back whole from the
// blocks take returns, in order; blocks grow with what was encoded since
// the last take, up to slabBlock, and never hold more than about three
// times the events' bytes.
func TestSlabBlocks(t *testing.T) {
	var s eventSlab
	var written []*slabBuf
	for round, size := range []int{1, 100, 1000, 5000, 16<<10 - 1} {
		var encs [][]byte
		var want []byte
		total := 0
		for i := range 300 {
			m := api.Message{Op: api.OpPublish, Topic: "t", Payload: bytes.Repeat([]byte{byte(i)}, size)}
			enc := s.encode(&m)
			encs = append(encs, enc)
			want = api.AppendDaemon(want, &m)
			total += len(enc)
			held := 0
			for _, b := range append(s.full, s.cur) {
				held += cap(b.b)
			}
			if limit := 3*total + 2*(size+maxEventHead+1) + minSlabBlock; held > limit {
				t.Fatalf("round %d: %d bytes encoded held in %d bytes of blocks, want at most %d", round, total, held, limit)
			}
		}
		blocks := s.take(written)
		var got []byte
		for _, b := range blocks {
			if cap(b.b) > slabBlock && size+maxEventHead+1 <= slabBlock {
				t.Errorf("round %d: a block of %d bytes", round, cap(b.b))
			}
			got = append(got, b.b...)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("round %d: the blocks hold %d bytes, not the %d encoded", round, len(got), len(want))
		}
		// Each encoding lies in a block, as returned.
		var joined []byte
		for _, e := range encs {
			joined = append(joined, e...)
		}
		if !bytes.Equal(joined, want) {
			t.Fatalf("round %d: the encodings returned differ from the blocks", round)
		}
		written = blocks
	}
	s.take(written)
	if s.cur != nil || len(s.full) != 0 || s.bytes != 0 {
		t.Fatalf("an emptied slab holds %v, %d full blocks, %d bytes", s.cur, len(s.full), s.bytes)
	}
}

// TestSlabClasses checks the block size classes.
func TestSlabClasses(t *testing.T) {
	for _, c := range []struct{ n, class int }{
		{0, 0}, {1, 0}, {1024, 0}, {1025, 1}, {2048, 1}, {2049, 2}, {64 << 10, 6},
	} {
		if got := slabClass(c.n); got != c.class {
			t.Errorf("slabClass(%d) = %d, want %d", c.n, got, c.class)
		}
		if b := getBlock(max(c.n, 1)); cap(b.b) != minSlabBlock<<c.class || len(b.b) != 0 {
			t.Errorf("getBlock(%d): len %d cap %d", c.n, len(b.b), cap(b.b))
		}
	}
	if b := getBlock(slabBlock + 1); cap(b.b) != slabBlock+1 {
		t.Errorf("getBlock beyond slabBlock: cap %d", cap(b.b))
	}
}
