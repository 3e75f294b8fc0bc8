// Package native serves ClickHouse's native TCP protocol with token
// sign-in, in front of ClickHouse's own native interface: clickhouse-client,
// clickhouse-go, ch-go and the other native drivers sign in with a token
// as their password and reach ClickHouse as the person's upstream
// account, like the HTTP gateway (package gateway).
//
// A connection is relayed packet by packet. clickgate decodes what decides
// who and what reaches ClickHouse — the client's Hello (the token), each
// Query packet (query id, client info, settings, the SQL) — and writes
// them anew; everything else (data blocks, progress, logs, exceptions,
// Ping/Pong, Cancel) is framed, to know where each packet ends, and
// relayed as it came. The upstream connection is opened only after the
// token was accepted.
//
// The protocol revision is the lowest of the client's, ch-go's
// (proto.Version, the newest whose packets clickgate can frame) and the
// server's. A query that may take data from the client (an INSERT) runs
// compressed, and each of the client's blocks goes to ClickHouse in a
// compressed frame of its own: a block the server fails to read then ends
// within that frame, and the server never reads the rest of a client's
// block as packets of its own. A read keeps the client's choice; the only
// data it may send uncompressed, the empty block that ends its external
// tables, clickgate writes itself.
package native

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/ch-go/proto"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clickgate/clickgate/internal/audit"
	"github.com/clickgate/clickgate/internal/authn"
	"github.com/clickgate/clickgate/internal/clickhouse"
	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/limits"
	"github.com/clickgate/clickgate/internal/lograte"
)

// Interface names the native listener in the session log and the audit.
const Interface = "native"

// Authenticator resolves a Hello's credentials to a principal.
type Authenticator interface {
	AuthenticateClient(ctx context.Context, cl authn.Client, c authn.Credentials, iface string) (*authn.Result, error)
}

// Options configure a Server.
type Options struct {
	Auth Authenticator
	Mode clickhouse.Mode
	// ModeName is clickhouse.mode; New refuses modes the native protocol
	// cannot carry.
	ModeName string
	// Settings are clickhouse.settings, fixed for every query.
	Settings map[string]string
	// Nodes are ClickHouse's native interfaces, tried in turn.
	Nodes []config.NativeNode
	// TLS is the client configuration for tls:// nodes; nil: the system
	// roots.
	TLS    *tls.Config
	Limits *limits.Limiter // nil: none
	Audit  audit.Recorder
	Logger *slog.Logger
	// ConnectTimeout bounds dialing a node; HandshakeTimeout bounds a
	// client's Hello and the server's answer.
	ConnectTimeout   time.Duration
	HandshakeTimeout time.Duration
	// IdleTimeout closes a connection that runs no query for so long
	// (ClickHouse's idle_connection_timeout, 1 hour, by default).
	IdleTimeout time.Duration
	// Dial opens upstream connections; nil: a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// MaxConnections bounds the connections open at once; beyond it a
	// new one is answered with an exception and closed. 0: no bound.
	MaxConnections int
	// Registerer takes the listener's metrics; nil: none registered.
	Registerer prometheus.Registerer
}

// Server serves native-protocol connections.
type Server struct {
	o     Options
	m     *metrics
	dials atomic.Int64
	next  atomic.Uint32

	mu       sync.Mutex
	conns    map[*conn]struct{}
	draining bool
	wg       sync.WaitGroup
}

// Defaults of Options.
const (
	DefaultConnectTimeout   = 5 * time.Second
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultIdleTimeout      = time.Hour
)

// New checks o and returns a Server.
func New(o Options) (*Server, error) {
	if err := CheckMode(o.ModeName); err != nil {
		return nil, err
	}
	if len(o.Nodes) == 0 {
		return nil, errors.New("native: no ClickHouse native interface (clickhouse.native_url) to relay to")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.Dial == nil {
		d := &net.Dialer{Timeout: o.ConnectTimeout, KeepAlive: 30 * time.Second}
		o.Dial = d.DialContext
	}
	return &Server{o: o, m: newMetrics(o.Registerer), conns: map[*conn]struct{}{}}, nil
}

// CheckMode refuses an upstream mode that the native protocol cannot
// carry. Every mode of config can: mapped, service, http_auth and
// impersonate put a user and password in ClickHouse's Hello (impersonate
// adds EXECUTE AS to each query), bearer and exchange the token in the
// JWT form, for a server that checks tokens itself. The one that cannot,
// chdb:// (no native interface), config refuses. "" is no mode (tests).
func CheckMode(mode string) error {
	switch mode {
	case "", config.ModeMapped, config.ModeService, config.ModeHTTPAuth, config.ModeImpersonate, config.ModeBearer, config.ModeExchange:
		return nil
	}
	return errors.New("native: clickhouse.mode " + mode + " is not one the native listener can serve")
}

// Dials is how many upstream connections the server opened.
func (s *Server) Dials() int64 { return s.dials.Load() }

// Serve accepts connections on l until ctx ends or l fails, then closes
// l; connections already open run on (Shutdown ends them).
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		s.ServeConn(c)
	}
}

// ServeConn serves c in the background until either side closes it.
func (s *Server) ServeConn(c net.Conn) {
	s.mu.Lock()
	if s.draining {
		s.mu.Unlock()
		c.Close()
		return
	}
	if m := s.o.MaxConnections; m > 0 && len(s.conns) >= m {
		s.mu.Unlock()
		go refuseBusy(c, m)
		return
	}
	cn := newConn(s, c)
	s.conns[cn] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	s.m.open.Inc()
	go func() {
		defer s.wg.Done()
		defer s.m.open.Dec()
		defer func() {
			s.mu.Lock()
			delete(s.conns, cn)
			s.mu.Unlock()
		}()
		cn.serve()
	}()
}

// Shutdown takes no new connections, closes the idle ones, and lets each
// query in flight finish (closing its connection after) until ctx ends;
// then it closes the rest.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining = true
	for c := range s.conns {
		c.drain()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		n := len(s.conns)
		for c := range s.conns {
			c.close()
		}
		s.mu.Unlock()
		<-done
		if n > 0 {
			lograte.Warn(s.o.Logger, "native: shutdown timeout passed: cut the connections still running a query", "connections", n)
		}
		return nil
	}
}

// refuseBusy answers a connection beyond MaxConnections with an exception
// (the client reads it after its Hello) and closes it.
func refuseBusy(c net.Conn, max int) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	b := proto.Buffer{}
	proto.ServerCodeException.Encode(&b)
	e := proto.Exception{Code: codeTooManyConnections, Name: "DB::Exception",
		Message: fmt.Sprintf("clickgate: too many native connections (server.max_connections = %d); try again later. (TOO_MANY_SIMULTANEOUS_QUERIES)", max)}
	e.EncodeAware(&b, 0)
	_, _ = c.Write(b.Buf)
}

// codeTooManyConnections is ClickHouse's TOO_MANY_SIMULTANEOUS_QUERIES.
const codeTooManyConnections = 202
