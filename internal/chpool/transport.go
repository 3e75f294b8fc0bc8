package chpool

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Transport returns the RoundTripper that sends each request to a node of
// the pool. Callers build requests against any node's URL (the first, say):
// the scheme and host are replaced by the picked node's, and so is the
// Host header unless the caller set one that differs from the URL's host.
// The path and query are kept.
//
// The response body must be closed (or read to its end): until then the
// request counts as in flight on its node.
//
// Retries: a request is tried on another node (up to Options.Retries
// times) only when its node failed before a connection to it was obtained,
// so before any byte was written, and when its body can be replayed
// (no body, or req.GetBody set, as http.NewRequest does for in-memory
// bodies). Such a node is marked down at once; so is a node that accepted
// a request but did not answer within ResponseTimeout. Other failures
// (the connection reset while a query ran, say) are returned and left to
// the health check. Note that net/http itself replays a GET, HEAD or
// OPTIONS request without body, on the same node, when a reused keep-alive
// connection turns out to be closed by the server; ClickHouse runs GET
// queries readonly.
func (p *Pool) Transport() http.RoundTripper { return (*transport)(p) }

type transport Pool

func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	p := (*Pool)(t)
	ctx := req.Context()
	q := req.URL.Query()
	sid := q.Get("session_id")
	ttl := p.sessionTTL
	if s, err := strconv.Atoi(q.Get("session_timeout")); err == nil && time.Duration(s)*time.Second > ttl {
		ttl = time.Duration(s) * time.Second
	}
	replayable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	var tried []*node
	for attempt := 0; ; attempt++ {
		n, sticky, err := p.pick(sid, ttl, tried)
		if err != nil {
			if attempt == 0 && req.Body != nil {
				req.Body.Close()
			}
			return nil, err
		}
		out := req.Clone(ctx)
		if attempt > 0 && req.Body != nil && req.Body != http.NoBody {
			body, err := req.GetBody()
			if err != nil {
				n.done()
				return nil, err
			}
			out.Body = body
		}
		out.URL.Scheme, out.URL.Host = n.url.Scheme, n.url.Host
		if req.Host == "" || req.Host == req.URL.Host {
			out.Host = ""
		}
		var connected atomic.Bool
		out = out.WithContext(httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
			GotConn:      func(httptrace.GotConnInfo) { connected.Store(true) },
			WroteHeaders: func() { connected.Store(true) },
			WroteRequest: func(httptrace.WroteRequestInfo) { connected.Store(true) },
		}))
		n.requests.Add(1)
		n.m.requests.Inc()
		resp, err := p.rt.RoundTrip(out)
		if err == nil {
			if sid != "" && !sticky {
				p.bindSession(sid, n, ttl)
			}
			resp.Body = &body{ReadCloser: resp.Body, n: n}
			return resp, nil
		}
		n.done()
		if ctx.Err() != nil {
			return nil, err // the caller gave up: not the node's doing
		}
		n.errors.Add(1)
		n.m.errors.Inc()
		if !connected.Load() {
			// Nothing of this request reached the node.
			p.markDown(n, "a request could not reach it: "+err.Error())
			if sticky {
				return nil, sessionLostError(sid, n, err)
			}
			if replayable && attempt < p.retries {
				n.retries.Add(1)
				n.m.retries.Inc()
				tried = append(tried, n)
				continue
			}
			return nil, unreachableError(n, err)
		}
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() && p.responseTimeout > 0 {
			d := fmtDuration(p.responseTimeout)
			p.markDown(n, "it did not answer a request within clickhouse.response_timeout = "+d)
			return nil, timeoutError(n, d, err)
		}
		return nil, failedError(n, err)
	}
}

// pick chooses the node for a request and counts the request in flight
// there. A request of a known session goes to the session's node (sticky).
func (p *Pool) pick(sid string, ttl time.Duration, tried []*node) (n *node, sticky bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if sid != "" {
		if s, ok := p.sessions[sid]; ok {
			if now.Before(s.expires) {
				if !s.node.up {
					return nil, false, sessionLostError(sid, s.node, errors.New(s.node.reason))
				}
				s.expires = later(s.expires, now.Add(ttl))
				s.node.start()
				return s.node, true, nil
			}
			delete(p.sessions, sid)
		}
	}
	// Up and not lagging first; then the fewest in flight; then the one
	// picked least recently (round robin among equals).
	k := len(p.nodes)
	var best *node
	down := 0
	for _, c := range p.nodes {
		if !c.up {
			down++
			continue
		}
		if contains(tried, c) {
			continue
		}
		if best == nil || better(c, best) {
			best = c
		}
	}
	if best == nil {
		if down == k {
			return nil, false, noNodeError(down, k)
		}
		// Every node that is up was tried; the caller reports the last error.
		last := tried[len(tried)-1]
		return nil, false, unreachableError(last, errors.New("and no other node is left to try"))
	}
	p.seq++
	best.picked = p.seq
	best.start()
	return best, false, nil
}

// better reports whether c is a better pick than b.
func better(c, b *node) bool {
	if c.lagging != b.lagging {
		return !c.lagging
	}
	if lc, lb := c.inFlight.Load(), b.inFlight.Load(); lc != lb {
		return lc < lb
	}
	return c.picked < b.picked
}

func contains(ns []*node, n *node) bool {
	for _, x := range ns {
		if x == n {
			return true
		}
	}
	return false
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// bindSession remembers that session sid is on n, unless a concurrent
// request bound it already.
func (p *Pool) bindSession(sid string, n *node, ttl time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now()
	if s, ok := p.sessions[sid]; ok && now.Before(s.expires) {
		return
	}
	if len(p.sessions) >= p.maxSessions {
		p.sweepSessions(now)
		for len(p.sessions) >= p.maxSessions {
			var oldest string
			var t time.Time
			for id, s := range p.sessions {
				if oldest == "" || s.expires.Before(t) {
					oldest, t = id, s.expires
				}
			}
			delete(p.sessions, oldest)
		}
	}
	p.sessions[sid] = &session{node: n, expires: now.Add(ttl)}
}

// sweepSessions forgets expired sessions. Under p.mu.
func (p *Pool) sweepSessions(now time.Time) {
	for id, s := range p.sessions {
		if !now.Before(s.expires) {
			delete(p.sessions, id)
		}
	}
}

func (n *node) start() {
	n.inFlight.Add(1)
	n.m.inFlight.Inc()
}

func (n *node) done() {
	n.inFlight.Add(-1)
	n.m.inFlight.Dec()
}

// body ends the request's time in flight when it is closed or read to its
// end.
type body struct {
	io.ReadCloser
	n    *node
	once sync.Once
}

func (b *body) Read(buf []byte) (int, error) {
	k, err := b.ReadCloser.Read(buf)
	if err != nil {
		b.once.Do(b.n.done)
	}
	return k, err
}

func (b *body) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.n.done)
	return err
}
