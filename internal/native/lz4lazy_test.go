package native

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
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

// skipStrings consumes exactly the strings, whatever the buffer and
// frame boundaries, and relays them unchanged.
func TestSkipStrings(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var data []byte
	const n = 5000
	for range n {
		l := r.IntN(300)
		if r.IntN(50) == 0 {
			l = 70000 // longer than any buffer here
		}
		data = appendString(data, string(bytes.Repeat([]byte{'a' + byte(l%26)}, l)))
	}
	tail := []byte("after")
	for _, size := range []int{16, 64, 4096, 1 << 16} {
		var out bytes.Buffer
		src := &rawSource{r: bufio.NewReaderSize(bytes.NewReader(append(append([]byte(nil), data...), tail...)), size), tee: &out}
		if err := src.skipStrings(n); err != nil {
			t.Fatalf("buffer %d: %v", size, err)
		}
		if !bytes.Equal(out.Bytes(), data) {
			t.Fatalf("buffer %d: relayed %d bytes, not the %d of the strings", size, out.Len(), len(data))
		}
		rest, _ := io.ReadAll(src.r)
		if !bytes.Equal(rest, tail) {
			t.Fatalf("buffer %d: %q left after the strings", size, rest)
		}
		// The same in frames of a few sizes (a frame's header is read
		// whole from the buffer: 25 bytes at least).
		if size < 64 {
			continue
		}
		for _, frame := range []int{999, 65536, 1 << 20} {
			var frames []byte
			for i := 0; i < len(data); i += frame {
				frames = writeFrame(frames, data[i:min(i+frame, len(data))])
			}
			var out bytes.Buffer
			fs := &frameSource{raw: bufio.NewReaderSize(bytes.NewReader(frames), size), tee: &out}
			if err := fs.skipStrings(n); err != nil || !bytes.Equal(out.Bytes(), data) || !fs.atBoundary() {
				t.Fatalf("frames of %d: %v, %d bytes", frame, err, out.Len())
			}
			lazy := &frameSource{raw: bufio.NewReaderSize(bytes.NewReader(frames), size), trusted: true}
			if err := lazy.skipStrings(n); err != nil || !lazy.atBoundary() {
				t.Fatalf("lazy frames of %d: %v", frame, err)
			}
		}
	}
}
