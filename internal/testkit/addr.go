package testkit

import (
	"net"
	"testing"
)

// FreeAddr returns a loopback address (127.0.0.1:port) with a port that
// was free a moment ago, for a server the test starts as a process.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
