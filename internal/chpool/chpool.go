// Package chpool spreads requests over several ClickHouse nodes (replicas
// of one cluster) and keeps away from the ones that are down or lagging.
//
// A Pool checks its nodes in the background (Run) and hands out an
// http.RoundTripper (Transport) that, for each request:
//
//   - picks the node that is up and not lagging with the fewest requests
//     in flight, round-robin among equals (lagging nodes are used only when
//     no other node is up);
//   - sends a request carrying a session_id URL parameter to the node that
//     served that session first (ClickHouse keeps sessions in one server's
//     memory);
//   - retries on another node, up to Options.Retries times, only when the
//     request failed before a connection to its node was obtained (dial
//     error, connection refused, connect timeout, TLS handshake failure):
//     no byte of such a request was written, so it cannot have run. A
//     request that may have reached ClickHouse is never retried by the pool.
//
// Failures are *Error values that carry the HTTP status and ClickHouse
// error code to show a client.
//
// Use:
//
//	ch := cfg.ClickHouse
//	p, err := chpool.New(ch.URLs, chpool.Options{Health: ch.Health, Retries: *ch.Retries,
//		ConnectTimeout: ch.ConnectTimeout, ResponseTimeout: ch.ResponseTimeout,
//		Logger: log, Registerer: prometheus.DefaultRegisterer})
//	p.Check(ctx)  // optional: know the nodes' state before serving
//	go p.Run(ctx) // checks until ctx ends
//	client := &http.Client{Transport: p.Transport()}
//	// requests built against ch.URLs[0] go to the picked node
package chpool

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clickgate/clickgate/internal/config"
)

// Defaults for zero Options fields.
const (
	DefaultInterval       = 5 * time.Second
	DefaultTimeout        = 2 * time.Second
	DefaultConnectTimeout = 5 * time.Second
	// DefaultSessionTTL is ClickHouse's default session_timeout.
	DefaultSessionTTL  = 60 * time.Second
	DefaultMaxSessions = 10000
)

// Options configure a Pool. The zero value is usable: checks every 5 s
// with a 2 s timeout, no retries, a 5 s connect timeout and no response
// timeout.
type Options struct {
	// Health: GET /ping every Interval (default 5 s), each bounded by
	// Timeout (default 2 s); with MaxReplicaDelay > 0 also GET
	// /replicas_status?verbose=1, and a node whose replicas lag more than
	// MaxReplicaDelay is lagging.
	Health config.Health
	// Retries is how many other nodes a request is tried on when its node
	// failed before the request was written (config: clickhouse.retries).
	// Negative counts as 0.
	Retries int
	// ConnectTimeout bounds connecting to a node (TCP and TLS); default 5 s.
	ConnectTimeout time.Duration
	// ResponseTimeout bounds the wait for a node's response headers once
	// the request is written; 0 means no bound.
	ResponseTimeout time.Duration
	// Transport is the base of the pool's transports; it is cloned, never
	// modified. Its dialing gets ConnectTimeout and its
	// ResponseHeaderTimeout becomes ResponseTimeout. Nil means a clone of
	// http.DefaultTransport with 32 idle connections per node kept for at
	// most 2 s (ClickHouse closes idle connections after its
	// keep_alive_timeout, 3 s in its shipped config; reusing a connection
	// the server is closing fails the request).
	Transport *http.Transport
	// SessionTTL is how long a session stays bound to its node after its
	// last request (default 60 s, ClickHouse's default session_timeout; a
	// request's own session_timeout parameter lengthens it). MaxSessions
	// bounds the sessions remembered (default 10000; the one closest to
	// expiry is forgotten first).
	SessionTTL  time.Duration
	MaxSessions int
	// Logger gets node state changes (down, up, lagging, caught up), once
	// per change. Nil discards them.
	Logger *slog.Logger
	// Registerer gets the metrics clickgate_clickhouse_node_{up, lagging,
	// in_flight, requests_total, errors_total, retries_total}, labelled
	// node="host:port". Nil registers nothing. When the metrics are already
	// registered there (a reload), the existing ones are reused.
	Registerer prometheus.Registerer
}

// Pool is a set of ClickHouse nodes. Its methods are safe for concurrent use.
type Pool struct {
	nodes           []*node
	retries         int
	connectTimeout  time.Duration
	responseTimeout time.Duration
	interval        time.Duration
	timeout         time.Duration
	maxDelay        time.Duration
	sessionTTL      time.Duration
	maxSessions     int
	log             *slog.Logger
	rt              *http.Transport // requests
	hc              *http.Client    // health checks, on their own connections

	mu       sync.Mutex // picking, node states, sessions
	seq      uint64     // picks so far
	sessions map[string]*session
}

type session struct {
	node    *node
	expires time.Time
}

type node struct {
	url  *url.URL // as configured
	raw  string
	host string // host:port, the metrics label

	inFlight                  atomic.Int64
	requests, errors, retries atomic.Uint64

	// Under Pool.mu.
	up, lagging bool
	delay       time.Duration
	reason      string
	since       time.Time // last change of up or lagging
	checked     time.Time
	downAt      time.Time // last time a request marked it down
	picked      uint64    // p.seq when last picked

	m nodeMetrics
}

// New returns a pool of the nodes at urls (http or https base URLs of
// ClickHouse's HTTP interface). It does no I/O: every node starts as up
// until a check or a request says otherwise; call Check to check them all
// at once, and Run to keep checking.
func New(urls []string, o Options) (*Pool, error) {
	if len(urls) == 0 {
		return nil, errors.New("chpool: no ClickHouse node URL")
	}
	p := &Pool{
		retries:         max(o.Retries, 0),
		connectTimeout:  o.ConnectTimeout,
		responseTimeout: max(o.ResponseTimeout, 0),
		interval:        o.Health.Interval,
		timeout:         o.Health.Timeout,
		maxDelay:        o.Health.MaxReplicaDelay,
		sessionTTL:      o.SessionTTL,
		maxSessions:     o.MaxSessions,
		log:             o.Logger,
		sessions:        map[string]*session{},
	}
	if p.connectTimeout <= 0 {
		p.connectTimeout = DefaultConnectTimeout
	}
	if p.interval <= 0 {
		p.interval = DefaultInterval
	}
	if p.timeout <= 0 {
		p.timeout = DefaultTimeout
	}
	if p.sessionTTL <= 0 {
		p.sessionTTL = DefaultSessionTTL
	}
	if p.maxSessions <= 0 {
		p.maxSessions = DefaultMaxSessions
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, raw := range urls {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil {
			return nil, fmt.Errorf("chpool: ClickHouse node URL %q: %v", raw, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("chpool: ClickHouse node URL %q: want http://host:port or https://host:port", raw)
		}
		host := hostPort(u)
		if seen[host] {
			return nil, fmt.Errorf("chpool: ClickHouse node %s is listed twice", host)
		}
		seen[host] = true
		n := &node{url: u, raw: raw, host: host, up: true, m: m.node(host)}
		n.m.up.Set(1)
		n.m.lagging.Set(0)
		p.nodes = append(p.nodes, n)
	}

	base := o.Transport
	if base == nil {
		base = http.DefaultTransport.(*http.Transport).Clone()
		base.MaxIdleConnsPerHost = 32
		base.IdleConnTimeout = 2 * time.Second
	}
	p.rt = base.Clone()
	p.rt.DialContext = dialer(base.DialContext, p.connectTimeout)
	p.rt.ResponseHeaderTimeout = p.responseTimeout
	if p.rt.TLSHandshakeTimeout <= 0 || p.rt.TLSHandshakeTimeout > p.connectTimeout {
		p.rt.TLSHandshakeTimeout = p.connectTimeout
	}
	ht := p.rt.Clone()
	ht.ResponseHeaderTimeout = 0 // the check's context bounds it
	ht.MaxIdleConnsPerHost = 1
	p.hc = &http.Client{Transport: ht, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return p, nil
}

func dialer(base func(ctx context.Context, network, addr string) (net.Conn, error), timeout time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if base == nil {
		d := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
		return d.DialContext
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		return base(ctx, network, addr)
	}
}

// hostPort is u's host with the scheme's default port when it has none.
func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	if u.Scheme == "https" {
		return net.JoinHostPort(u.Hostname(), "443")
	}
	return net.JoinHostPort(u.Hostname(), "80")
}

// NodeStatus is one node's state, as Nodes reports it.
type NodeStatus struct {
	URL  string // as given to New
	Node string // host:port, the metrics label
	// Up: the last check (or, before any, New) found the node answering,
	// and no request failed to reach it since.
	Up bool
	// Lagging: up, but its replicas lag more than Health.MaxReplicaDelay
	// (or /replicas_status did not say); it gets requests only when no
	// other node is up.
	Lagging bool
	// Delay is the largest absolute replica delay of the last check (with
	// MaxReplicaDelay > 0 only).
	Delay time.Duration
	// Reason says why the node is down or lagging; empty when it is fine.
	Reason string
	// Since is when Up or Lagging last changed; zero when never.
	Since time.Time
	// Checked is the end of the last health check; zero before the first.
	Checked time.Time
	// InFlight counts the requests sent to the node whose response body is
	// not closed yet; Requests, Errors and Retries are the counters of the
	// metrics of the same names.
	InFlight                  int64
	Requests, Errors, Retries uint64
}

// Nodes returns the state of every node, in the order given to New.
func (p *Pool) Nodes() []NodeStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]NodeStatus, len(p.nodes))
	for i, n := range p.nodes {
		out[i] = NodeStatus{
			URL: n.raw, Node: n.host, Up: n.up, Lagging: n.lagging, Delay: n.delay,
			Reason: n.reason, Since: n.since, Checked: n.checked,
			InFlight: n.inFlight.Load(), Requests: n.requests.Load(), Errors: n.errors.Load(), Retries: n.retries.Load(),
		}
	}
	return out
}

// Close closes the pool's idle connections. Requests in flight are not
// affected; a closed pool can still be used.
func (p *Pool) Close() {
	p.rt.CloseIdleConnections()
	p.hc.CloseIdleConnections()
}

// setState changes a node's state and logs the change. Under p.mu.
func (p *Pool) setState(n *node, up, lagging bool, delay time.Duration, reason string, now time.Time) {
	wasUp, wasLagging := n.up, n.lagging
	n.up, n.lagging, n.delay, n.reason = up, lagging, delay, reason
	n.m.up.Set(b2f(up))
	n.m.lagging.Set(b2f(up && lagging))
	if up == wasUp && lagging == wasLagging {
		return
	}
	var since time.Duration
	if !n.since.IsZero() {
		since = now.Sub(n.since).Round(time.Millisecond)
	}
	n.since = now
	switch {
	case !up && wasUp:
		p.log.Warn("ClickHouse node down", "node", n.host, "reason", reason)
	case up && !wasUp:
		args := []any{"node", n.host}
		if since > 0 {
			args = append(args, "down_for", since.String())
		}
		if lagging {
			args = append(args, "lagging", reason)
		}
		p.log.Info("ClickHouse node up", args...)
	case up && lagging:
		p.log.Warn("ClickHouse node lagging: it gets requests only when no other node is up", "node", n.host, "reason", reason)
	case up && !lagging:
		p.log.Info("ClickHouse node caught up", "node", n.host, "delay", delay.String())
	}
}

// markDown marks n down after a request failed to reach it.
func (p *Pool) markDown(n *node, reason string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	n.downAt = now
	if n.up {
		p.setState(n, false, n.lagging, n.delay, reason, now)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// fmtDuration writes d as a configuration would: 5m, 90s, 1h30m, 500ms.
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}
