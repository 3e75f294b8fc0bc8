package native

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/go-faster/city"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// errProtocol marks input that breaks the native protocol: the
// connection is closed, since where the next packet begins is unknown.
var errProtocol = errors.New("native: protocol error")

func protocolError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errProtocol, fmt.Sprintf(format, args...))
}

// source is a stream of protocol bytes being parsed: the socket, or the
// decompressed data of compressed frames. Every byte consumed is also
// written to the tee, when one is set, so that what was parsed can be
// relayed as it was.
type source interface {
	ReadByte() (byte, error)
	// full fills p.
	full(p []byte) error
	// skip consumes n bytes.
	skip(n uint64) error
	// skipStrings consumes n length-prefixed strings (a String column).
	skipStrings(n uint64) error
}

// scanStrings walks up to n length-prefixed strings wholly inside buf and
// returns how many and the bytes they take. A string whose length does
// not fit in maxStringBytes stops the walk with an error.
func scanStrings(buf []byte, n uint64) (count uint64, used int, err error) {
	for count < n {
		var l uint64
		k := 0
		for ; k < maxVarUIntBytes && used+k < len(buf); k++ {
			b := buf[used+k]
			l |= uint64(b&0x7f) << (7 * k)
			if b&0x80 == 0 {
				break
			}
		}
		if k == maxVarUIntBytes {
			return count, used, protocolError("a VarUInt is longer than %d bytes", maxVarUIntBytes)
		}
		if used+k >= len(buf) { // the length runs past buf
			return count, used, nil
		}
		if l > maxStringBytes {
			return count, used, protocolError("a string of %d bytes is more than clickgate relays", l)
		}
		if uint64(len(buf)-used-k-1) < l { // the string runs past buf
			return count, used, nil
		}
		used += k + 1 + int(l)
		count++
	}
	return count, used, nil
}

// skipOneString consumes one string byte by byte (its length may straddle
// a buffer or a frame).
func skipOneString(s source) error {
	l, err := readUVarInt(s)
	if err != nil {
		return err
	}
	if l > maxStringBytes {
		return protocolError("a string of %d bytes is more than clickgate relays", l)
	}
	return s.skip(l)
}

// maxVarUIntBytes is the longest VarUInt ClickHouse reads (18.16 reads
// at most 9 bytes): a longer one could be read differently by the two
// ends, so it is refused.
const maxVarUIntBytes = 9

func readUVarInt(s source) (uint64, error) {
	var x uint64
	for i := 0; i < maxVarUIntBytes; i++ {
		b, err := s.ReadByte()
		if err != nil {
			return 0, err
		}
		x |= uint64(b&0x7f) << (7 * i)
		if b&0x80 == 0 {
			return x, nil
		}
	}
	return 0, protocolError("a VarUInt is longer than %d bytes", maxVarUIntBytes)
}

// readString reads a length-prefixed string of at most limit bytes.
func readString(s source, limit int, what string) (string, error) {
	b, err := readBytes(s, limit, what)
	return string(b), err
}

func readBytes(s source, limit int, what string) ([]byte, error) {
	n, err := readUVarInt(s)
	if err != nil {
		return nil, err
	}
	if n > uint64(limit) {
		return nil, protocolError("%s is %d bytes long, more than the %d clickgate accepts", what, n, limit)
	}
	// Grown as the bytes arrive: a length alone reserves no memory.
	const step = 64 << 10
	b := make([]byte, 0, min(n, step))
	for uint64(len(b)) < n {
		k := int(min(n-uint64(len(b)), step))
		b = slices.Grow(b, k)
		if err := s.full(b[len(b) : len(b)+k]); err != nil {
			return nil, err
		}
		b = b[:len(b)+k]
	}
	return b, nil
}

func readUInt64(s source) (uint64, error) {
	var b [8]byte
	if err := s.full(b[:]); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(b[:]), nil
}

// rawSource reads the socket through a bufio.Reader.
type rawSource struct {
	r   *bufio.Reader
	tee io.Writer // nil: none
	one [1]byte
}

func (s *rawSource) ReadByte() (byte, error) {
	b, err := s.r.ReadByte()
	if err == nil && s.tee != nil {
		s.one[0] = b
		if _, err := s.tee.Write(s.one[:]); err != nil {
			return 0, err
		}
	}
	return b, err
}

func (s *rawSource) skipStrings(n uint64) error {
	for n > 0 {
		if s.r.Buffered() == 0 {
			if _, err := s.r.Peek(1); err != nil {
				return eof(err)
			}
		}
		buf, _ := s.r.Peek(s.r.Buffered())
		count, used, err := scanStrings(buf, n)
		if err != nil {
			return err
		}
		if used > 0 {
			if s.tee != nil {
				if _, err := s.tee.Write(buf[:used]); err != nil {
					return err
				}
			}
			_, _ = s.r.Discard(used)
			n -= count
			continue
		}
		// The next string does not lie whole in the buffer.
		if err := skipOneString(s); err != nil {
			return err
		}
		n--
	}
	return nil
}

func (s *rawSource) full(p []byte) error {
	if _, err := io.ReadFull(s.r, p); err != nil {
		return eof(err)
	}
	if s.tee != nil {
		_, err := s.tee.Write(p)
		return err
	}
	return nil
}

func (s *rawSource) skip(n uint64) error {
	for n > 0 {
		want := int(min(n, uint64(s.r.Size())))
		buf, err := s.r.Peek(want)
		if len(buf) == 0 && err != nil {
			return eof(err)
		}
		if s.tee != nil {
			if _, err := s.tee.Write(buf); err != nil {
				return err
			}
		}
		d, _ := s.r.Discard(len(buf))
		n -= uint64(d)
	}
	return nil
}

func eof(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// Compressed frames (ClickHouse's CompressedReadBuffer): a CityHash128
// checksum of the rest, a method byte, the frame's size with the 9 header
// bytes, the decompressed size, then the payload.
const (
	checksumSize    = 16
	frameHeaderSize = 9
	methodNone      = 0x02
	methodLZ4       = 0x82
	methodZSTD      = 0x90
	// maxFrameSize bounds one frame, compressed or not (ClickHouse's own
	// limit is 1 GiB; clickgate holds a frame in memory).
	maxFrameSize = 128 << 20
)

// frameSource is the decompressed data of the frames read from raw.
type frameSource struct {
	raw    *bufio.Reader
	rawTee io.Writer // the frames as they came; nil: none
	tee    io.Writer // the decompressed bytes consumed; nil: none
	// trusted skips the checksums, which the client checks itself (a
	// server's frames relayed as they came), and lets an LZ4 frame be
	// decoded only as far as it is read (lazyLZ4).
	trusted bool
	frame   []byte // the raw frame
	data    []byte // decompressed: all of it, or, while lazy is set, as far as lazy.dn
	size    int    // the frame's decompressed size
	pos     int
	lazy    *lazyLZ4
	zstd    *zstd.Decoder
	one     [1]byte
}

// atBoundary reports whether every byte of the frames read was consumed.
func (f *frameSource) atBoundary() bool { return f.pos == f.size }

func (f *frameSource) next() error {
	head, err := f.raw.Peek(checksumSize + frameHeaderSize)
	if err != nil {
		return eof(err)
	}
	size := binary.LittleEndian.Uint32(head[checksumSize+1:])
	dataSize := binary.LittleEndian.Uint32(head[checksumSize+5:])
	if size < frameHeaderSize || size > maxFrameSize || dataSize > maxFrameSize {
		return protocolError("a compressed frame of %d bytes (%d decompressed) is outside what clickgate accepts (%d)", size, dataSize, maxFrameSize)
	}
	// Read in steps: a header alone reserves no memory.
	total := checksumSize + int(size)
	f.frame = f.frame[:0]
	for len(f.frame) < total {
		k := min(total-len(f.frame), 1<<20)
		f.frame = slices.Grow(f.frame, k)
		if _, err := io.ReadFull(f.raw, f.frame[len(f.frame):len(f.frame)+k]); err != nil {
			return eof(err)
		}
		f.frame = f.frame[:len(f.frame)+k]
	}
	if !f.trusted {
		sum := city.CH128(f.frame[checksumSize:])
		if binary.LittleEndian.Uint64(f.frame[0:8]) != sum.Low || binary.LittleEndian.Uint64(f.frame[8:16]) != sum.High {
			return protocolError("a compressed frame's checksum does not match")
		}
	}
	payload := f.frame[checksumSize+frameHeaderSize:]
	f.data = append(f.data[:0], make([]byte, dataSize)...)
	f.size, f.pos, f.lazy = int(dataSize), 0, nil
	switch f.frame[checksumSize] {
	case methodNone:
		if len(payload) != int(dataSize) {
			return protocolError("an uncompressed frame's sizes disagree")
		}
		copy(f.data, payload)
	case methodLZ4:
		if f.trusted && f.tee == nil {
			f.lazy = &lazyLZ4{src: payload, dst: f.data}
			break
		}
		n, err := lz4.UncompressBlock(payload, f.data)
		if err != nil || n != int(dataSize) {
			return protocolError("an LZ4 frame does not decompress to its size")
		}
	case methodZSTD:
		if f.zstd == nil {
			if f.zstd, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxMemory(maxFrameSize)); err != nil {
				return err
			}
		}
		out, err := f.zstd.DecodeAll(payload, f.data[:0])
		if err != nil || len(out) != int(dataSize) {
			return protocolError("a ZSTD frame does not decompress to its size")
		}
		f.data = out
	default:
		return protocolError("compression method 0x%02x is not one clickgate reads (LZ4, ZSTD, none)", f.frame[checksumSize])
	}
	if f.rawTee != nil {
		if _, err := f.rawTee.Write(f.frame); err != nil {
			return err
		}
	}
	return nil
}

// decoded makes the frame's bytes up to end readable.
func (f *frameSource) decoded(end int) error {
	d := f.lazy
	if d == nil || d.dn >= end {
		return nil
	}
	if end <= lazyLimit {
		if !d.decodeTo(end) {
			return protocolError("an LZ4 frame does not decompress")
		}
		return nil
	}
	n, err := lz4.UncompressBlock(d.src, f.data)
	if err != nil || n != f.size {
		return protocolError("an LZ4 frame does not decompress to its size")
	}
	f.lazy = nil
	return nil
}

func (f *frameSource) fill() error {
	for f.pos == f.size {
		if err := f.next(); err != nil {
			return err
		}
	}
	return nil
}

func (f *frameSource) ReadByte() (byte, error) {
	if err := f.fill(); err != nil {
		return 0, err
	}
	if err := f.decoded(f.pos + 1); err != nil {
		return 0, err
	}
	b := f.data[f.pos]
	f.pos++
	if f.tee != nil {
		f.one[0] = b
		if _, err := f.tee.Write(f.one[:]); err != nil {
			return 0, err
		}
	}
	return b, nil
}

func (f *frameSource) skipStrings(n uint64) error {
	for n > 0 {
		if err := f.fill(); err != nil {
			return err
		}
		if err := f.decoded(f.size); err != nil { // lengths throughout: all of the frame
			return err
		}
		buf := f.data[f.pos:f.size]
		count, used, err := scanStrings(buf, n)
		if err != nil {
			return err
		}
		if used > 0 {
			if f.tee != nil {
				if _, err := f.tee.Write(buf[:used]); err != nil {
					return err
				}
			}
			f.pos += used
			n -= count
			continue
		}
		// The next string runs into the next frame.
		if err := skipOneString(f); err != nil {
			return err
		}
		n--
	}
	return nil
}

func (f *frameSource) full(p []byte) error {
	for len(p) > 0 {
		if err := f.fill(); err != nil {
			return err
		}
		k := min(len(p), f.size-f.pos)
		if err := f.decoded(f.pos + k); err != nil {
			return err
		}
		copy(p, f.data[f.pos:f.pos+k])
		if f.tee != nil {
			if _, err := f.tee.Write(p[:k]); err != nil {
				return err
			}
		}
		f.pos += k
		p = p[k:]
	}
	return nil
}

func (f *frameSource) skip(n uint64) error {
	for n > 0 {
		if err := f.fill(); err != nil {
			return err
		}
		k := int(min(n, uint64(f.size-f.pos)))
		if f.tee != nil {
			if err := f.decoded(f.pos + k); err != nil {
				return err
			}
			if _, err := f.tee.Write(f.data[f.pos : f.pos+k]); err != nil {
				return err
			}
		}
		f.pos += k
		n -= uint64(k)
	}
	return nil
}

// writeFrame compresses data as one LZ4 frame (stored as is when LZ4
// does not make it smaller) and appends the frame to dst.
func writeFrame(dst, data []byte) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, checksumSize+frameHeaderSize+lz4.CompressBlockBound(len(data)))...)
	body := dst[start+checksumSize+frameHeaderSize:]
	var c lz4.Compressor
	n, err := c.CompressBlock(data, body)
	method := byte(methodLZ4)
	if err != nil || n == 0 || n >= len(data) {
		method, n = methodNone, copy(body, data)
	}
	dst = dst[:start+checksumSize+frameHeaderSize+n]
	h := dst[start+checksumSize:]
	h[0] = method
	binary.LittleEndian.PutUint32(h[1:], uint32(frameHeaderSize+n))
	binary.LittleEndian.PutUint32(h[5:], uint32(len(data)))
	sum := city.CH128(dst[start+checksumSize:])
	binary.LittleEndian.PutUint64(dst[start:], sum.Low)
	binary.LittleEndian.PutUint64(dst[start+8:], sum.High)
	return dst
}
