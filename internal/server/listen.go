package server

import (
	"container/list"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Connection limits. A connection that idles in the accept queue costs a
// file descriptor, and past the process's file limit accept fails for
// everyone (the load test's 20,000 idle sockets made a normal request
// wait 5 s). So the main listener holds at most server.max_connections;
// beyond it the oldest connection idle for at least evictAfter (a
// keep-alive connection between requests, or one that has sent nothing
// yet) is closed to make room, and when there is none the new connection
// gets a short 503 and is closed, without holding up accept.
const (
	// maxConnectionsCeiling caps the default.
	maxConnectionsCeiling = 10000
	// reservedFiles are the descriptors kept for everything but client
	// connections: configuration, the audit trail, the metrics listener,
	// IdP and token endpoint calls, logs.
	reservedFiles = 128
	// minDefaultConnections is the default's floor on tiny file limits.
	minDefaultConnections = 32
	// metricsConnections bounds the metrics listener (server.metrics_listen).
	metricsConnections = 64
	// evictAfter is how long a connection must have been idle before a new
	// one may take its place at the cap: keep-alive clients between two
	// quick requests are not cut.
	evictAfter = time.Second
	// maxRefusing bounds the refusals in the background at once; beyond
	// it a connection gets the 503 at once, without waiting for its
	// request (TLS ones: no answer), and is closed.
	maxRefusing = 1024
	// refuseWait is how long a refused connection's request is waited for
	// before the 503 (and the TLS handshake before it); refuseTimeout
	// bounds the whole refusal; refuseLinger is how long the request is
	// drained after the 503, so that closing does not reset the connection
	// before the client has read it.
	refuseWait    = 200 * time.Millisecond
	refuseTimeout = time.Second
	refuseLinger  = 250 * time.Millisecond
)

// DefaultMaxConnections is server.max_connections when it is 0: half the
// process's file limit (each busy client connection may hold an upstream
// connection to ClickHouse as well) less reservedFiles, at most
// maxConnectionsCeiling and at least minDefaultConnections; 10000 when
// the limit is unknown.
func DefaultMaxConnections() int {
	return defaultMaxConnections(fileLimit())
}

func defaultMaxConnections(files int) int {
	if files <= 0 {
		return maxConnectionsCeiling
	}
	return min(maxConnectionsCeiling, max(minDefaultConnections, files/2-reservedFiles))
}

// connMetrics count the listeners' connections.
type connMetrics struct {
	open    *prometheus.GaugeVec
	refused *prometheus.CounterVec
	evicted *prometheus.CounterVec
	max     *prometheus.GaugeVec
}

func newConnMetrics(reg prometheus.Registerer) *connMetrics {
	m := &connMetrics{
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "clickgate_connections_open",
			Help: "Client connections open, by listener (main, metrics).",
		}, []string{"listener"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clickgate_connections_refused_total",
			Help: "Connections refused (503, closed) because the listener held server.max_connections.",
		}, []string{"listener"}),
		evicted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clickgate_connections_evicted_total",
			Help: "Idle connections closed to make room for a new one at server.max_connections.",
		}, []string{"listener"}),
		max: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "clickgate_connections_max",
			Help: "The listener's connection limit (server.max_connections for main).",
		}, []string{"listener"}),
	}
	if reg != nil {
		reg.MustRegister(m.open, m.refused, m.evicted, m.max)
	}
	return m
}

// limitListener holds at most max connections of the listener beneath.
type limitListener struct {
	net.Listener
	max      int64
	name     string // the listener label and the setting in refusals
	tls      *tls.Config
	refusal  []byte // the whole HTTP response
	n        atomic.Int64
	refusing atomic.Int64
	open     prometheus.Gauge
	refused  prometheus.Counter
	evicted  prometheus.Counter

	mu   sync.Mutex
	idle list.List // of *limitConn, oldest idle first
}

// limit wraps l so that it holds at most max connections. setting names
// the limit in refusals; tlsCfg, when the server speaks TLS on l, is used
// to write the refusal in TLS.
func (m *connMetrics) limit(l net.Listener, label string, max int, setting string, tlsCfg *tls.Config) *limitListener {
	if m == nil {
		m = newConnMetrics(nil)
	}
	body := fmt.Sprintf("clickgate: too many connections (%s = %d); try again later\n", setting, max)
	ll := &limitListener{
		Listener: l, max: int64(max), name: label, tls: tlsCfg,
		refusal: fmt.Appendf(nil, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"+
			"Content-Length: %d\r\nRetry-After: 1\r\nConnection: close\r\n\r\n%s", len(body), body),
		open: m.open.WithLabelValues(label), refused: m.refused.WithLabelValues(label), evicted: m.evicted.WithLabelValues(label),
	}
	m.max.WithLabelValues(label).Set(float64(max))
	return ll
}

// Accept returns the next connection below the limit; those above it are
// answered and closed in the background.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.n.Add(1) > l.max && !l.evict() {
			l.n.Add(-1)
			l.refused.Inc()
			l.refuse(c)
			continue
		}
		l.open.Inc()
		lc := &limitConn{Conn: c, l: l}
		lc.setIdle(true) // nothing sent yet
		return lc, nil
	}
}

// evict closes the connection idle the longest, if for evictAfter at
// least, and reports whether it did. Its Close frees its place.
func (l *limitListener) evict() bool {
	l.mu.Lock()
	e := l.idle.Front()
	if e == nil || time.Since(e.Value.(*limitConn).since) < evictAfter {
		l.mu.Unlock()
		return false
	}
	victim := e.Value.(*limitConn)
	l.idle.Remove(e)
	victim.elem = nil
	l.mu.Unlock()
	l.evicted.Inc()
	_ = victim.Close() // its place goes to the new connection
	return true
}

// refuse answers c with the 503 and closes it, in the background.
func (l *limitListener) refuse(c net.Conn) {
	if l.refusing.Add(1) > maxRefusing {
		// A flood: answer at once, without waiting for the request (the
		// answer fits the socket's send buffer), and close.
		l.refusing.Add(-1)
		if l.tls == nil {
			_ = c.SetWriteDeadline(time.Now().Add(10 * time.Millisecond))
			_, _ = c.Write(l.refusal)
		}
		c.Close()
		return
	}
	go func() {
		defer l.refusing.Add(-1)
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(refuseTimeout))
		var rw net.Conn = c
		if l.tls != nil {
			rw = tls.Server(c, l.tls)
		}
		// Wait a moment for the request: an answer before it would reach
		// some clients as an unsolicited response rather than as the
		// answer to their request.
		var buf [4096]byte
		_ = c.SetReadDeadline(time.Now().Add(refuseWait))
		_, _ = rw.Read(buf[:])
		if _, err := rw.Write(l.refusal); err != nil {
			return
		}
		// Drain what the client sent so that closing does not reset the
		// connection under the answer.
		if tc, ok := c.(interface{ CloseWrite() error }); ok && l.tls == nil {
			_ = tc.CloseWrite()
		}
		_ = c.SetReadDeadline(time.Now().Add(refuseLinger))
		for range 16 {
			if _, err := rw.Read(buf[:]); err != nil {
				return
			}
		}
	}()
}

// connState tracks which connections are idle, for eviction: hand it to
// http.Server.ConnState.
func (l *limitListener) connState(c net.Conn, s http.ConnState) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	lc, ok := c.(*limitConn)
	if !ok || lc.l != l {
		return
	}
	switch s {
	case http.StateIdle:
		lc.setIdle(true)
	case http.StateActive, http.StateHijacked, http.StateClosed:
		lc.setIdle(false)
	}
}

// limitConn gives its place back when closed.
type limitConn struct {
	net.Conn
	l     *limitListener
	once  sync.Once
	elem  *list.Element // in l.idle; guarded by l.mu
	since time.Time     // idle since; guarded by l.mu
}

func (c *limitConn) setIdle(idle bool) {
	c.l.mu.Lock()
	if c.elem != nil {
		c.l.idle.Remove(c.elem)
		c.elem = nil
	}
	if idle {
		c.since = time.Now()
		c.elem = c.l.idle.PushBack(c)
	}
	c.l.mu.Unlock()
}

func (c *limitConn) Close() error {
	c.release()
	return c.Conn.Close()
}

func (c *limitConn) release() {
	c.once.Do(func() {
		c.setIdle(false)
		c.l.n.Add(-1)
		c.l.open.Dec()
	})
}

// limitMain wraps the main listener l (beneath TLS) with
// server.max_connections.
func (s *Server) limitMain(l net.Listener, tlsCfg *tls.Config) *limitListener {
	n := s.cfg.Server.MaxConnections
	if n <= 0 {
		n = DefaultMaxConnections()
	} else if files := fileLimit(); files > 0 && n > files-reservedFiles {
		s.log.Warn("server.max_connections is above the process's file limit; past it, accept fails for everyone: raise the limit (ulimit -n, LimitNOFILE=) or lower server.max_connections",
			"max_connections", n, "file_limit", files)
	}
	return s.conns.limit(l, "main", n, "server.max_connections", tlsCfg)
}
