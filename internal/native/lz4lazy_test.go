package native

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/pierrec/lz4/v4"
)

func lz4Samples() [][]byte {
	r := rand.New(rand.NewPCG(1, 2))
	var out [][]byte
	seq := make([]byte, 8*70000)
	for i := range 70000 {
		binary.LittleEndian.PutUint64(seq[8*i:], uint64(i))
	}
	random := make([]byte, 50000)
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	text := bytes.Repeat([]byte("row 12345\tname\n"), 3000)
	return append(out, seq, random, text, bytes.Repeat([]byte{7}, 100000), []byte("short"))
}

// lazyLZ4 decodes what lz4 compresses to the same bytes, as far as asked.
func TestLazyLZ4(t *testing.T) {
	for i, data := range lz4Samples() {
		comp := make([]byte, lz4.CompressBlockBound(len(data)))
		var c lz4.Compressor
		n, err := c.CompressBlock(data, comp)
		if err != nil || n == 0 {
			continue // incompressible: stored as is
		}
		for _, target := range []int{1, min(17, len(data)), min(4096, len(data)), len(data)} {
			d := &lazyLZ4{src: comp[:n], dst: make([]byte, len(data))}
			if !d.decodeTo(target) {
				t.Fatalf("sample %d: decodeTo(%d) failed", i, target)
			}
			if d.dn < target || !bytes.Equal(d.dst[:d.dn], data[:d.dn]) {
				t.Fatalf("sample %d: decodeTo(%d) gave %d bytes, not the data", i, target, d.dn)
			}
		}
	}
}

func FuzzLazyLZ4(f *testing.F) {
	for _, s := range lz4Samples() {
		comp := make([]byte, lz4.CompressBlockBound(len(s)))
		var c lz4.Compressor
		if n, err := c.CompressBlock(s[:min(len(s), 4096)], comp); err == nil && n > 0 {
			f.Add(comp[:n], 4096)
		}
	}
	f.Fuzz(func(t *testing.T, src []byte, size int) {
		if size < 0 || size > 1<<20 {
			return
		}
		want := make([]byte, size)
		n, err := lz4.UncompressBlock(src, want)
		d := &lazyLZ4{src: src, dst: make([]byte, size)}
		ok := d.decodeTo(size)
		if err == nil && n == size {
			if !ok || !bytes.Equal(d.dst, want) {
				t.Fatalf("lz4 decodes %d bytes, lazyLZ4 %v %d", n, ok, d.dn)
			}
		}
	})
}
