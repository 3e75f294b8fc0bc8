package native

import (
	"testing"
	"time"
)

func TestSeedsRunQuickly(t *testing.T) {
	for i, s := range seeds() {
		for _, rev := range []int{54412, 54460} {
			srv := newFuzzServer(t, rev)
			start := time.Now()
			runConn(srv, s)
			if d := time.Since(start); d > 500*time.Millisecond {
				t.Errorf("seed %d at %d took %s", i, rev, d)
			}
		}
	}
}
