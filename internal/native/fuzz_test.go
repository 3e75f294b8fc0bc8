package native

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/clickgate/clickgate/internal/authn"
	"github.com/clickgate/clickgate/internal/clickhouse"
	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/identity"
)

// goodToken is the one token the fuzzed server's authenticator accepts.
const goodToken = "good-token"

type fakeAuth struct{}

func (fakeAuth) AuthenticateClient(_ context.Context, _ authn.Client, c authn.Credentials, _ string) (*authn.Result, error) {
	if c.Token != goodToken {
		return nil, errors.New("token: not valid")
	}
	if c.User != "" && c.User != "alice" {
		return nil, authn.ErrUserMismatch
	}
	return &authn.Result{Identity: &identity.Identity{Subject: "alice"}, Principal: &identity.Principal{User: "alice", Roles: []string{"r"}}}, nil
}

type fakeMode struct{}

func (fakeMode) Upstream(context.Context, *clickhouse.Caller) (*clickhouse.Upstream, error) {
	h := http.Header{}
	h.Set("Authorization", "Basic YWNjb3VudDpwdw==") // account:pw
	return &clickhouse.Upstream{Header: h, Shared: true, Account: "account", Person: "alice", Settings: map[string]string{"quota_key": "alice"}}, nil
}

// fakeUpstream answers a Hello like ClickHouse at revision rev, then
// reads whatever comes and answers each read with EndOfStream.
func fakeUpstream(c net.Conn, rev int) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	br := bufio.NewReader(c)
	if _, err := br.Peek(1); err != nil {
		return
	}
	b := proto.Buffer{}
	sh := proto.ServerHello{Name: "ClickHouse", Major: 18, Minor: 16, Revision: rev, Timezone: "UTC", DisplayName: "fake", Patch: 1}
	sh.EncodeAware(&b, rev)
	if _, err := c.Write(b.Buf); err != nil {
		return
	}
	// Reads and writes apart, as a socket's buffers would have them.
	reads := make(chan struct{}, 1<<16)
	go func() {
		defer close(reads)
		buf := make([]byte, 4096)
		for {
			if _, err := br.Read(buf); err != nil {
				return
			}
			select {
			case reads <- struct{}{}:
			default:
			}
		}
	}()
	for range reads {
		if _, err := c.Write([]byte{byte(proto.ServerCodeEndOfStream)}); err != nil {
			return
		}
	}
}

func newFuzzServer(tb testing.TB, rev int) *Server {
	s, err := New(Options{
		Auth: fakeAuth{}, Mode: fakeMode{}, ModeName: config.ModeMapped,
		Settings: map[string]string{"readonly": "1", "max_execution_time": "30", "load_balancing": "random"},
		Nodes:    []config.NativeNode{{Addr: "fake:9000"}},
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		Dial: func(context.Context, string, string) (net.Conn, error) {
			a, b := net.Pipe()
			go fakeUpstream(b, rev)
			return a, nil
		},
		HandshakeTimeout: time.Second,
	})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// hello is a client Hello at revision rev.
func hello(rev int, user, password string) []byte {
	b := proto.Buffer{}
	proto.ClientHello{Name: "fuzz", Major: 18, Minor: 16, ProtocolVersion: rev, User: user, Password: password}.Encode(&b)
	return b.Buf
}

func queryPacket(rev int, q upstreamQuery) []byte {
	b, err := q.encode(nil, rev)
	if err != nil {
		panic(err)
	}
	return b
}

// scriptedConn is a client that sends its script and reads nothing.
type scriptedConn struct{ r *bytes.Reader }

func (c *scriptedConn) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c *scriptedConn) Write(p []byte) (int, error) { return len(p), nil }
func (c *scriptedConn) Close() error                { return nil }
func (c *scriptedConn) LocalAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9000}
}
func (c *scriptedConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}
func (c *scriptedConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptedConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptedConn) SetWriteDeadline(time.Time) error { return nil }

// runConn serves one connection whose client sends data and then closes.
func runConn(s *Server, data []byte) {
	newConn(s, &scriptedConn{r: bytes.NewReader(data)}).serve()
}

func seeds() [][]byte {
	var out [][]byte
	for _, rev := range []int{54412, 54460} {
		q := upstreamQuery{id: "q1", info: clientInfo{name: "fuzz", revision: uint64(rev)}, stage: 2, body: "SELECT 1",
			client: []setting{{name: "max_threads", value: "2"}}}
		withQuery := append(hello(rev, "", goodToken), queryPacket(rev, q)...)
		if rev >= 54458 {
			withQuery = append(hello(rev, "", goodToken), append(appendString(nil, "key"), queryPacket(rev, q)...)...)
		}
		// An empty Data block after the query.
		data := appendString(appendUVarInt(nil, uint64(proto.ClientCodeData)), "")
		data = append(data, 1, 0, 2, 0xff, 0xff, 0xff, 0xff, 0, 0, 0)
		out = append(out,
			hello(rev, "", goodToken),
			hello(rev, "default", "bad"),
			hello(rev, jwtMarker, goodToken),
			withQuery,
			append(append([]byte(nil), withQuery...), data...),
			append(append([]byte(nil), withQuery...), byte(proto.ClientCodePing), byte(proto.ClientCodeCancel)),
		)
	}
	return out
}

// FuzzConn feeds a connection arbitrary client bytes: nothing may panic
// or hang, and no upstream connection is opened unless the Hello carried
// the good token.
func FuzzConn(f *testing.F) {
	for _, s := range seeds() {
		f.Add(s)
	}
	servers := map[int]*Server{54412: newFuzzServer(f, 54412), 54460: newFuzzServer(f, 54460)}
	f.Fuzz(func(t *testing.T, data []byte) {
		rev := 54412
		if len(data) > 0 && data[len(data)-1]&1 == 1 {
			rev = 54460
		}
		s := servers[rev]
		before := s.Dials()
		runConn(s, data)
		if s.Dials() != before && !bytes.Contains(data, []byte(goodToken)) {
			t.Fatalf("an upstream connection was opened for a Hello without the token")
		}
	})
}

// FuzzPackets feeds the packet parsers arbitrary bytes.
func FuzzPackets(f *testing.F) {
	for _, s := range seeds() {
		f.Add(s)
	}
	f.Add(writeFrame(nil, []byte{1, 0, 2, 0xff, 0xff, 0xff, 0xff, 0, 1, 1, 1, 'x', 6, 'S', 't', 'r', 'i', 'n', 'g', 1, 'a'}))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, rev := range []int{54412, 54460} {
			_, _ = readQuery(&rawSource{r: bufio.NewReader(bytes.NewReader(data))}, rev)
			_, _ = skipBlock(&rawSource{r: bufio.NewReader(bytes.NewReader(data))}, rev)
			fs := &frameSource{raw: bufio.NewReader(bytes.NewReader(data))}
			if _, err := skipBlock(fs, rev); err == nil {
				_ = fs.atBoundary()
			}
		}
		_, _ = parseType(string(data), 0)
	})
}
