package benchkit

import "io"

// Drain reads r to its end in large reads, keeping no more than the last
// 64 bytes: a stream's size, and its tail to check how it ended (an
// exception mid-stream).
func Drain(r io.Reader) (n int64, tail []byte, err error) {
	buf := make([]byte, 256<<10)
	for {
		k, err := r.Read(buf)
		n += int64(k)
		if k > 0 {
			tail = append(tail[:0], buf[max(0, k-64):k]...)
		}
		if err == io.EOF {
			return n, tail, nil
		}
		if err != nil {
			return n, tail, err
		}
	}
}
