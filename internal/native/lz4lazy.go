package native

// lazyLZ4 decodes an LZ4 block only as far as it is read. Relaying a
// server's compressed block to a client that reads it compressed needs
// only the block's header (columns, rows, types) and the lengths inside
// variable-size columns: a block of fixed-size columns is found to end
// after a few bytes of its frame are decoded. Anything read beyond
// lazyLimit decodes the whole frame at once (pierrec/lz4).
type lazyLZ4 struct {
	src []byte
	si  int
	dst []byte // the whole decompressed size
	dn  int    // bytes decoded so far
}

// lazyLimit is how far a frame is decoded sequence by sequence.
const lazyLimit = 16 << 10

// decodeTo decodes at least up to target (at most len(dst)); false when
// the block is malformed.
func (d *lazyLZ4) decodeTo(target int) bool {
	src, dst := d.src, d.dst
	for d.dn < target {
		if d.si >= len(src) {
			return false
		}
		token := src[d.si]
		d.si++
		lit := int(token >> 4)
		if lit == 15 {
			for {
				if d.si >= len(src) {
					return false
				}
				b := src[d.si]
				d.si++
				lit += int(b)
				if b != 255 {
					break
				}
			}
		}
		if lit > len(src)-d.si || lit > len(dst)-d.dn {
			return false
		}
		copy(dst[d.dn:], src[d.si:d.si+lit])
		d.si += lit
		d.dn += lit
		if d.si == len(src) { // the last sequence: literals only
			return d.dn >= target
		}
		if len(src)-d.si < 2 {
			return false
		}
		offset := int(src[d.si]) | int(src[d.si+1])<<8
		d.si += 2
		if offset == 0 || offset > d.dn {
			return false
		}
		ml := int(token & 15)
		if ml == 15 {
			for {
				if d.si >= len(src) {
					return false
				}
				b := src[d.si]
				d.si++
				ml += int(b)
				if b != 255 {
					break
				}
			}
		}
		ml += 4
		if ml > len(dst)-d.dn {
			return false
		}
		m, end := d.dn-offset, d.dn+ml
		for d.dn < end { // the source may overlap what is written: it doubles
			d.dn += copy(dst[d.dn:end], dst[m:d.dn])
		}
	}
	return true
}
