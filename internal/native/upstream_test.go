package native

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/ch-go/proto"

	"github.com/clickgate/clickgate/internal/clickhouse"
	"github.com/clickgate/clickgate/internal/config"
)

// recorded is what a recording upstream read: the Hello's user and
// password, and the first Query packet.
type recorded struct {
	user, password string
	query          *query
	err            error
}

// recordingUpstream answers Hello at rev, reads one Query and answers
// EndOfStream.
func recordingUpstream(c net.Conn, rev int, out chan<- recorded) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	s := &rawSource{r: bufio.NewReader(c)}
	var r recorded
	defer func() { out <- r }()
	if _, r.err = readUVarInt(s); r.err != nil {
		return
	}
	for range 1 {
		if _, r.err = readString(s, 1<<10, ""); r.err != nil {
			return
		}
	}
	for range 3 {
		if _, r.err = readUVarInt(s); r.err != nil {
			return
		}
	}
	for _, f := range []*string{new(string), &r.user, &r.password} {
		if *f, r.err = readString(s, 1<<16, ""); r.err != nil {
			return
		}
	}
	b := proto.Buffer{}
	sh := proto.ServerHello{Name: "ClickHouse", Major: 25, Minor: 11, Revision: rev, Timezone: "UTC", DisplayName: "rec", Patch: 1}
	sh.EncodeAware(&b, rev)
	if _, r.err = c.Write(b.Buf); r.err != nil {
		return
	}
	if proto.FeatureAddendum.In(rev) {
		if _, r.err = readString(s, 1<<10, ""); r.err != nil {
			return
		}
	}
	var code uint64
	if code, r.err = readUVarInt(s); r.err != nil || code != uint64(proto.ClientCodeQuery) {
		return
	}
	r.query, r.err = readQuery(s, rev)
	_, _ = c.Write([]byte{byte(proto.ServerCodeEndOfStream)})
}

type modeFunc func(context.Context, *clickhouse.Caller) (*clickhouse.Upstream, error)

func (f modeFunc) Upstream(ctx context.Context, c *clickhouse.Caller) (*clickhouse.Upstream, error) {
	return f(ctx, c)
}

// relayOne sends a Hello with the good token and one query through a
// server whose mode is m, and returns what the upstream read.
func relayOne(t *testing.T, rev int, m clickhouse.Mode, fixed map[string]string, q upstreamQuery) recorded {
	t.Helper()
	out := make(chan recorded, 1)
	s, err := New(Options{
		Auth: fakeAuth{}, Mode: m, ModeName: config.ModeMapped, Settings: fixed,
		Nodes:  []config.NativeNode{{Addr: "rec:9000"}},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Dial: func(context.Context, string, string) (net.Conn, error) {
			a, b := net.Pipe()
			go recordingUpstream(b, rev, out)
			return a, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	script := hello(rev, "", goodToken)
	if proto.FeatureAddendum.In(rev) {
		script = append(script, appendString(nil, "client-quota-key")...)
	}
	script = append(script, queryPacket(rev, q)...)
	runConn(s, script)
	select {
	case r := <-out:
		if r.err != nil {
			t.Fatal(r.err)
		}
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream read nothing")
	}
	return recorded{}
}

func TestUpstreamPerMode(t *testing.T) {
	client := upstreamQuery{id: "mine", stage: 2, body: "SELECT 1",
		info:   clientInfo{osUser: "mallory", hostname: "h", name: "ClickHouse client", major: 24, minor: 1, revision: 54460},
		client: []setting{{name: "max_threads", value: "2"}}}
	for _, rev := range []int{54412, 54460} {
		// bearer: the token in the JWT form.
		r := relayOne(t, rev, modeFunc(func(_ context.Context, c *clickhouse.Caller) (*clickhouse.Upstream, error) {
			return &clickhouse.Upstream{Header: http.Header{"Authorization": {"Bearer " + c.Token}}, Account: "alice"}, nil
		}), nil, client)
		if r.user != jwtMarker || r.password != goodToken {
			t.Fatalf("bearer at %d: Hello user %q password %q", rev, r.user, r.password)
		}
		// impersonate: EXECUTE AS before the query, the service account's Hello.
		r = relayOne(t, rev, modeFunc(func(_ context.Context, c *clickhouse.Caller) (*clickhouse.Upstream, error) {
			h := http.Header{}
			h.Set("Authorization", "Basic c3ZjOnN2Yy1wdw==") // svc:svc-pw
			return &clickhouse.Upstream{Header: h, QueryPrefix: "EXECUTE AS `alice` ", Account: "alice"}, nil
		}), map[string]string{"readonly": "1", "max_execution_time": "30"}, client)
		if r.user != "svc" || r.password != "svc-pw" || r.query.body != "EXECUTE AS `alice` SELECT 1" {
			t.Fatalf("impersonate at %d: %q %q %q", rev, r.user, r.password, r.query.body)
		}
		var names []string
		for _, s := range r.query.settings {
			names = append(names, s.name+"="+s.value)
		}
		if got := strings.Join(names, ","); got != "max_threads=2,max_execution_time=30,readonly=1" {
			t.Fatalf("settings at %d: %s", rev, got)
		}
		// mapped (shared): quota key, person in the client info, query id namespaced.
		r = relayOne(t, rev, fakeMode{}, nil, client)
		if r.user != "account" || r.password != "pw" {
			t.Fatalf("mapped at %d: Hello %q %q", rev, r.user, r.password)
		}
		q := r.query
		if q.info.osUser != "alice" || !strings.Contains(q.info.name, "clickgate (user alice)") || q.id != clickhouse.Namespace("alice")+"mine" {
			t.Fatalf("mapped at %d: client info %+v, id %q", rev, q.info, q.id)
		}
		if q.info.kind != queryKindInitial || q.info.quotaKey != "alice" {
			t.Fatalf("mapped at %d: query kind %d, quota key %q", rev, q.info.kind, q.info.quotaKey)
		}
		if q.compression { // a read keeps the client's choice
			t.Fatalf("mapped at %d: an uncompressed read went compressed", rev)
		}
	}
}

// A node that does not answer is passed over for the next; none
// answering is refused with 210, and the person's token never reaches
// a node.
func TestNodesTriedInTurn(t *testing.T) {
	var tried []string
	out := make(chan recorded, 1)
	s, err := New(Options{
		Auth: fakeAuth{}, Mode: fakeMode{}, ModeName: config.ModeMapped,
		Nodes:  []config.NativeNode{{Addr: "down-1:9000"}, {Addr: "up:9000"}, {Addr: "down-2:9000"}},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Dial: func(_ context.Context, _, addr string) (net.Conn, error) {
			tried = append(tried, addr)
			if addr != "up:9000" {
				return nil, &net.OpError{Op: "dial", Err: io.ErrClosedPipe}
			}
			a, b := net.Pipe()
			go recordingUpstream(b, 54460, out)
			return a, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	q := upstreamQuery{id: "x", stage: 2, body: "SELECT 1", info: clientInfo{name: "c", revision: 54460}}
	for range 3 {
		tried = nil
		runConn(s, append(append(hello(54460, "", goodToken), appendString(nil, "")...), queryPacket(54460, q)...))
		if r := <-out; r.err != nil || r.query == nil || r.user != "account" {
			t.Fatalf("tried %v: %+v", tried, r)
		}
		if tried[len(tried)-1] != "up:9000" {
			t.Fatalf("tried %v", tried)
		}
	}
	if s.Dials() != 3 {
		t.Fatalf("%d upstream connections, want 3", s.Dials())
	}
}

// A connection that runs no query for IdleTimeout is closed.
func TestIdleTimeout(t *testing.T) {
	s := newFuzzServer(t, 54412)
	s.o.IdleTimeout = 200 * time.Millisecond
	client, server := net.Pipe()
	done := make(chan struct{})
	go func() { defer close(done); newConn(s, server).serve() }()
	go func() { _, _ = client.Write(hello(54412, "", goodToken)) }()
	_ = client.SetDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if _, err := io.Copy(io.Discard, client); err != nil {
		t.Fatalf("the connection was not closed: %v", err)
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > 3*time.Second {
		t.Fatalf("closed after %s, want the idle timeout", d)
	}
	<-done
}

// Beyond MaxConnections a new connection gets an exception and is closed.
func TestMaxConnections(t *testing.T) {
	s := newFuzzServer(t, 54412)
	s.o.MaxConnections = 1
	first, firstServer := net.Pipe()
	s.ServeConn(firstServer)
	go func() { _, _ = first.Write(hello(54412, "", goodToken)) }()
	second, secondServer := net.Pipe()
	s.ServeConn(secondServer)
	_ = second.SetDeadline(time.Now().Add(5 * time.Second))
	r := proto.NewReader(second)
	code, err := r.UVarInt()
	if err != nil || proto.ServerCode(code) != proto.ServerCodeException {
		t.Fatalf("the second connection got %d %v", code, err)
	}
	var e proto.Exception
	if err := e.DecodeAware(r, 0); err != nil || e.Code != codeTooManyConnections {
		t.Fatalf("%+v %v", e, err)
	}
	first.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = s.Shutdown(ctx)
}
