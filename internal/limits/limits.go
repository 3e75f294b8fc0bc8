// Package limits bounds what each person may run through clickgate, at the
// gateway and MCP alike: how many queries they have in flight, how many
// more may wait for a slot and for how long, how many requests they may
// send per minute, and the networks they may connect from.
//
// # Which entry applies
//
// Configuration (config.Limits) has a default entry, entries per role and
// entries per person. A person is keyed by their ClickHouse user name
// (identity.Principal.User), a role by its ClickHouse role name. The
// limit that applies to a request is built key by key:
//
//  1. start from the default entry;
//  2. each of the person's roles that has an entry gives that entry laid
//     over the default (a key the role leaves out is the default's); when
//     several roles have entries, each key takes the most generous of their
//     values: 0 (no limit) beats any number, else the larger number wins,
//     the longer max_queue_time wins, and the networks are the union (a
//     role allowed from anywhere allows anywhere); roles without an entry
//     play no part;
//  3. the person's own entry, if any, is laid over the result: every key
//     it sets wins, every key it leaves out is inherited.
//
// A key is left out when it is absent from the YAML (nil) or, for
// max_queue_time and networks, zero/empty.
//
// # What each key does
//
//   - max_concurrent_queries bounds the person's requests in flight: one
//     gateway request (from authentication until its response is fully
//     written) or one MCP query counts one; an MCP tool call sends its
//     queries one after the other, so it holds at most one slot. 0 or left
//     out everywhere: no bound.
//   - max_queue: when every slot is taken, up to max_queue more requests
//     wait, first come first served; beyond that the request is refused at
//     once. Left out everywhere: nobody waits. 0: no bound on the queue
//     (0 means "no limit" for every key, as config documents).
//   - max_queue_time: the longest a request waits in the queue before it is
//     refused; 0 (left out) waits as long as the request itself lasts
//     (until the client goes away or the request's deadline).
//   - requests_per_minute: a token bucket per person holding up to
//     requests_per_minute tokens, refilled at requests_per_minute per
//     minute: a burst of a minute's worth, then an even pace. A gateway
//     request or an MCP tool call takes one token, however many queries the
//     call sends; a request refused for concurrency gets its token back.
//   - networks: the client's address (the connection's remote address,
//     never X-Forwarded-For, which any client can write) must be inside one
//     of the CIDRs (or equal one of the addresses). MCP over stdio has no
//     client address (the client is the process's own parent) and is not
//     checked.
//
// Refusals are [*Refusal]s, in ClickHouse's words: concurrency (queue
// full, queue wait over) is HTTP 429 with Code 202
// TOO_MANY_SIMULTANEOUS_QUERIES, requests per minute 429 with Code 201
// QUOTA_EXCEEDED, networks 403 with Code 195 IP_ADDRESS_NOT_ALLOWED. The
// 429s carry RetryAfter: until the next token for requests per minute,
// one second for concurrency.
//
// # MCP's own limit
//
// One Limiter serves the gateway and MCP, so a person's gateway queries
// and tool calls take the same slots and the same tokens. The older key
// mcp.max_concurrent_queries (default 4) still bounds MCP alone while
// limits sets max_concurrent_queries nowhere (neither default, nor any
// role, nor any person): then each person may have that many MCP queries
// in flight, counted apart from their gateway requests, which are not
// bounded — exactly the behaviour before limits existed (max_queue and
// max_queue_time of the limits entry still apply to the MCP queue). As
// soon as limits sets max_concurrent_queries anywhere,
// mcp.max_concurrent_queries is ignored and limits alone decide, for both
// fronts together.
//
// # Memory
//
// A person has state only while they have a concurrency or rate limit;
// that state is dropped once they have nothing in flight, nothing
// waiting, and have been idle for a minute (when their token bucket is
// full again), so many people passing through do not grow memory.
package limits

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clickgate/clickgate/internal/config"
)

// ClickHouse error codes of refusals.
const (
	CodeIPAddressNotAllowed = 195
	CodeQuotaExceeded       = 201
	CodeTooManySimultaneous = 202
)

const (
	nameIPAddressNotAllowed = "IP_ADDRESS_NOT_ALLOWED"
	nameQuotaExceeded       = "QUOTA_EXCEEDED"
	nameTooManySimultaneous = "TOO_MANY_SIMULTANEOUS_QUERIES"

	// concurrencyRetryAfter is the Retry-After of a concurrency refusal:
	// queries come and go; a second is a fair guess.
	concurrencyRetryAfter = time.Second
	// idleAfter is when an idle person's state may go: their token bucket
	// is full again after a minute.
	idleAfter  = time.Minute
	sweepEvery = time.Minute

	// Where MaxConcurrentQueries came from, for messages.
	keyLimits = "limits max_concurrent_queries"
	keyMCP    = "mcp.max_concurrent_queries"
)

// Refusal reasons, the label of clickgate_limits_refusals_total.
const (
	reasonQueueFull = "queue_full"
	reasonTime      = "queue_time"
	reasonCancelled = "cancelled"
	reasonRate      = "requests_per_minute"
	reasonNetwork   = "networks"
)

// Refusal is a request refused by a limit, with what ClickHouse would
// answer: the HTTP status, the ClickHouse error code and name.
type Refusal struct {
	Status  int    // 429 or 403
	Code    int    // 202, 201 or 195
	Name    string // TOO_MANY_SIMULTANEOUS_QUERIES, QUOTA_EXCEEDED, IP_ADDRESS_NOT_ALLOWED
	Message string // the limit, its value and what to do
	// RetryAfter is when trying again makes sense; 0 for networks.
	RetryAfter time.Duration
	// Reason is the metric's label: queue_full, queue_time, cancelled,
	// requests_per_minute or networks.
	Reason string
}

func (r *Refusal) Error() string { return r.Message }

// RetryAfterSeconds is RetryAfter in whole seconds, rounded up, at least
// 1: the value of a Retry-After header (0 when RetryAfter is 0).
func (r *Refusal) RetryAfterSeconds() int {
	if r.RetryAfter <= 0 {
		return 0
	}
	return max(1, int((r.RetryAfter+time.Second-1)/time.Second))
}

// Limit is what applies to one request, resolved from the entries.
type Limit struct {
	// MaxConcurrentQueries bounds requests in flight; 0: no bound.
	MaxConcurrentQueries int
	// MaxQueue is how many more may wait; Unbounded: any number.
	MaxQueue int
	// MaxQueueTime bounds a wait; 0: as long as the request lasts.
	MaxQueueTime time.Duration
	// RequestsPerMinute bounds the rate; 0: no bound.
	RequestsPerMinute int
	// Networks the client must come from; empty: anywhere.
	Networks []netip.Prefix
	// source names the configuration key of MaxConcurrentQueries.
	source string
	// tools means the MCP-only pool (mcp.max_concurrent_queries).
	tools bool
}

// Unbounded is Limit.MaxQueue when any number may wait (max_queue: 0).
const Unbounded = math.MaxInt

// entry is one configured entry, parsed.
type entry struct {
	maxConcurrent, maxQueue, perMinute *int
	queueTime                          time.Duration
	networks                           []netip.Prefix
}

func parseEntry(l config.Limit) entry {
	e := entry{maxConcurrent: l.MaxConcurrentQueries, maxQueue: l.MaxQueue, perMinute: l.RequestsPerMinute, queueTime: l.MaxQueueTime}
	for _, n := range l.Networks {
		if p, err := netip.ParsePrefix(strings.TrimSpace(n)); err == nil {
			e.networks = append(e.networks, p.Masked())
		} else if a, err := netip.ParseAddr(strings.TrimSpace(n)); err == nil {
			a = a.Unmap()
			e.networks = append(e.networks, netip.PrefixFrom(a, a.BitLen()))
		}
		// config validation refuses anything else.
	}
	return e
}

// over lays e over base: what e sets wins.
func (e entry) over(base entry) entry {
	if e.maxConcurrent != nil {
		base.maxConcurrent = e.maxConcurrent
	}
	if e.maxQueue != nil {
		base.maxQueue = e.maxQueue
	}
	if e.perMinute != nil {
		base.perMinute = e.perMinute
	}
	if e.queueTime != 0 {
		base.queueTime = e.queueTime
	}
	if len(e.networks) > 0 {
		base.networks = e.networks
	}
	return base
}

// generous returns the more generous of two optional bounds where 0
// means none; nil is "left out" and loses to any value.
func generous(a, b *int) *int {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	case *a == 0:
		return a
	case *b == 0:
		return b
	case *b > *a:
		return b
	}
	return a
}

// widest merges the effective entries of several roles, key by key.
func widest(es []entry) entry {
	m := es[0]
	anywhere := len(m.networks) == 0
	nets := slices.Clone(m.networks)
	for _, e := range es[1:] {
		m.maxConcurrent = generous(m.maxConcurrent, e.maxConcurrent)
		m.maxQueue = generous(m.maxQueue, e.maxQueue)
		m.perMinute = generous(m.perMinute, e.perMinute)
		m.queueTime = max(m.queueTime, e.queueTime)
		if len(e.networks) == 0 {
			anywhere = true
		}
		for _, p := range e.networks {
			if !slices.Contains(nets, p) {
				nets = append(nets, p)
			}
		}
	}
	slices.SortFunc(nets, func(a, b netip.Prefix) int { return strings.Compare(a.String(), b.String()) })
	m.networks = nets
	if anywhere {
		m.networks = nil
	}
	return m
}

// Options configure a Limiter beyond its configuration.
type Options struct {
	// Registerer receives the clickgate_limits_* metrics; nil: none.
	Registerer prometheus.Registerer
	// MCPMaxConcurrent is mcp.max_concurrent_queries: MCP's own bound
	// while limits sets max_concurrent_queries nowhere (see the package
	// documentation); 0: none.
	MCPMaxConcurrent int
	// Now is the clock; time.Now by default.
	Now func() time.Time
}

// Limiter applies limits to requests; one is shared by every front. A
// nil *Limiter applies none.
type Limiter struct {
	def    entry
	roles  map[string]entry
	people map[string]entry
	// mcp is MCP's own bound when limits sets max_concurrent_queries
	// nowhere; 0 otherwise.
	mcp int
	now func() time.Time
	m   *metrics

	mu        sync.Mutex
	state     map[string]*person
	lastSweep time.Time
}

// New returns a Limiter for cfg with metrics in reg (which may be nil).
func New(cfg config.Limits, reg prometheus.Registerer) *Limiter {
	return NewOptions(cfg, Options{Registerer: reg})
}

// NewOptions returns a Limiter for cfg.
func NewOptions(cfg config.Limits, o Options) *Limiter {
	l := &Limiter{def: parseEntry(cfg.Default), roles: map[string]entry{}, people: map[string]entry{},
		now: o.Now, state: map[string]*person{}}
	if l.now == nil {
		l.now = time.Now
	}
	anywhere := cfg.Default.MaxConcurrentQueries != nil
	for name, e := range cfg.Roles {
		l.roles[name] = parseEntry(e)
		anywhere = anywhere || e.MaxConcurrentQueries != nil
	}
	for name, e := range cfg.People {
		l.people[name] = parseEntry(e)
		anywhere = anywhere || e.MaxConcurrentQueries != nil
	}
	if !anywhere && o.MCPMaxConcurrent > 0 {
		l.mcp = o.MCPMaxConcurrent
	}
	l.m = newMetrics(o.Registerer, l)
	return l
}

// Resolve is the limit for a gateway request of user with roles.
func (l *Limiter) Resolve(user string, roles []string) Limit { return l.resolve(user, roles, false) }

// ResolveTool is the limit for an MCP query of user with roles.
func (l *Limiter) ResolveTool(user string, roles []string) Limit { return l.resolve(user, roles, true) }

func (l *Limiter) resolve(user string, roles []string, tool bool) Limit {
	e := l.def
	var fromRoles []entry
	for _, r := range roles {
		if re, ok := l.roles[r]; ok {
			fromRoles = append(fromRoles, re.over(l.def))
		}
	}
	if len(fromRoles) > 0 {
		e = widest(fromRoles)
	}
	if pe, ok := l.people[user]; ok {
		e = pe.over(e)
	}
	lim := Limit{MaxQueueTime: e.queueTime, Networks: e.networks, source: keyLimits}
	if e.maxConcurrent != nil {
		lim.MaxConcurrentQueries = *e.maxConcurrent
	}
	if e.maxQueue != nil {
		lim.MaxQueue = *e.maxQueue
		if lim.MaxQueue == 0 {
			lim.MaxQueue = Unbounded
		}
	}
	if e.perMinute != nil {
		lim.RequestsPerMinute = *e.perMinute
	}
	if tool && l.mcp > 0 {
		lim.MaxConcurrentQueries, lim.source, lim.tools = l.mcp, keyMCP, true
	}
	return lim
}

// Request is one request to admit.
type Request struct {
	User  string
	Roles []string
	// Addr is the client's address (host:port or host); "" (MCP over
	// stdio) is not checked against networks.
	Addr string
	// Tool marks an MCP query (mcp.max_concurrent_queries may apply).
	Tool bool
	// Charged marks another query of an MCP call that already took its
	// token: requests_per_minute is not charged again.
	Charged bool
}

// Acquire admits a gateway request of user with roles from addr, waiting
// in the person's queue if need be; release gives the slot back when the
// request is done. A refusal is a *Refusal.
func (l *Limiter) Acquire(ctx context.Context, user string, roles []string, addr string) (release func(), err error) {
	return l.AcquireRequest(ctx, Request{User: user, Roles: roles, Addr: addr})
}

// AcquireRequest is Acquire for any front.
func (l *Limiter) AcquireRequest(ctx context.Context, req Request) (release func(), err error) {
	if l == nil {
		return func() {}, nil
	}
	lim := l.resolve(req.User, req.Roles, req.Tool)
	if len(lim.Networks) > 0 && req.Addr != "" {
		if err := allowed(req.Addr, lim.Networks); err != nil {
			return nil, l.refused(err)
		}
	}
	perMinute := lim.RequestsPerMinute
	if req.Charged {
		perMinute = 0
	}
	if lim.MaxConcurrentQueries == 0 && perMinute == 0 {
		return func() {}, nil
	}
	now := l.now()
	l.mu.Lock()
	l.sweep(now)
	p := l.state[req.User]
	if p == nil {
		p = &person{}
		l.state[req.User] = p
	}
	p.seen = now
	if perMinute > 0 {
		if wait := p.bucket.take(now, perMinute); wait > 0 {
			l.mu.Unlock()
			return nil, l.refused(&Refusal{Status: http.StatusTooManyRequests, Code: CodeQuotaExceeded, Name: nameQuotaExceeded, RetryAfter: wait, Reason: reasonRate,
				Message: fmt.Sprintf("clickgate: you have used up your %d requests per minute (limits requests_per_minute: %d); retry in %s",
					perMinute, perMinute, seconds(wait))})
		}
	}
	refund := func() {
		if perMinute > 0 {
			p.bucket.refund(perMinute)
		}
	}
	if lim.MaxConcurrentQueries == 0 {
		l.mu.Unlock()
		return func() {}, nil
	}
	pl := &p.all
	if lim.tools {
		pl = &p.tools
	}
	if pl.queue.Len() == 0 && pl.inFlight < lim.MaxConcurrentQueries {
		pl.inFlight++
		l.mu.Unlock()
		return l.releaser(p, pl), nil
	}
	if pl.queue.Len() >= lim.MaxQueue {
		refund()
		l.mu.Unlock()
		return nil, l.refused(busy(reasonQueueFull, lim, pl.inFlight, pl.queue.Len()))
	}
	w := &waiter{ready: make(chan struct{}), max: lim.MaxConcurrentQueries}
	el := pl.queue.PushBack(w)
	p.waiting++
	l.m.queued.Inc()
	l.mu.Unlock()

	start := time.Now()
	var expired <-chan time.Time
	if lim.MaxQueueTime > 0 {
		t := time.NewTimer(lim.MaxQueueTime)
		defer t.Stop()
		expired = t.C
	}
	reason := reasonTime
	select {
	case <-w.ready:
	case <-expired:
	case <-ctx.Done():
		reason = reasonCancelled
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !w.granted {
		pl.queue.Remove(el)
		p.waiting--
		l.dispatch(pl)
		refund()
	}
	l.m.queued.Dec()
	waited := time.Since(start)
	if w.granted {
		l.m.wait.WithLabelValues("admitted").Observe(waited.Seconds())
		return l.releaser(p, pl), nil
	}
	l.m.wait.WithLabelValues("refused").Observe(waited.Seconds())
	r := busy(reason, lim, pl.inFlight, pl.queue.Len())
	if reason == reasonCancelled {
		r.Message = fmt.Sprintf("clickgate: the request ended (%v) after waiting %s for one of your %d query slots (%s: %d)",
			context.Cause(ctx), seconds(waited), lim.MaxConcurrentQueries, lim.source, lim.MaxConcurrentQueries)
	}
	l.m.refusals.WithLabelValues(r.Reason).Inc()
	return nil, r
}

// busy is the refusal when every slot is taken.
func busy(reason string, lim Limit, inFlight, waiting int) *Refusal {
	r := &Refusal{Status: http.StatusTooManyRequests, Code: CodeTooManySimultaneous, Name: nameTooManySimultaneous,
		RetryAfter: concurrencyRetryAfter, Reason: reason}
	queue := "no queue (limits max_queue is not set)"
	if lim.MaxQueue == Unbounded {
		queue = "an unbounded queue (limits max_queue: 0)"
	} else if lim.MaxQueue > 0 {
		queue = fmt.Sprintf("%d waiting (limits max_queue: %d)", waiting, lim.MaxQueue)
	}
	switch reason {
	case reasonQueueFull:
		r.Message = fmt.Sprintf("clickgate: you already have %d queries running (%s: %d) and %s; retry in a second or wait for one to finish",
			inFlight, lim.source, lim.MaxConcurrentQueries, queue)
	default:
		r.Message = fmt.Sprintf("clickgate: no query slot came free within %s (limits max_queue_time: %s) while you have %d queries running (%s: %d); retry in a second or wait for one to finish",
			seconds(lim.MaxQueueTime), lim.MaxQueueTime, inFlight, lim.source, lim.MaxConcurrentQueries)
	}
	return r
}

func (l *Limiter) refused(r *Refusal) *Refusal {
	l.m.refusals.WithLabelValues(r.Reason).Inc()
	return r
}

// allowed checks addr against networks.
func allowed(addr string, networks []netip.Prefix) *Refusal {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	if i := strings.IndexByte(host, '%'); i >= 0 { // an IPv6 zone
		host = host[:i]
	}
	a, err := netip.ParseAddr(host)
	if err == nil {
		a = a.Unmap()
		for _, n := range networks {
			if n.Contains(a) {
				return nil
			}
		}
	}
	names := make([]string, len(networks))
	for i, n := range networks {
		names[i] = n.String()
	}
	return &Refusal{Status: http.StatusForbidden, Code: CodeIPAddressNotAllowed, Name: nameIPAddressNotAllowed, Reason: reasonNetwork,
		Message: fmt.Sprintf("clickgate: you may not connect from %s (limits networks: %s); connect from one of those networks, or ask an administrator to add yours",
			host, strings.Join(names, ", "))}
}

// seconds renders d for people: "2s", "1.5s".
func seconds(d time.Duration) string {
	if d >= time.Second {
		d = d.Round(100 * time.Millisecond)
	} else {
		d = d.Round(time.Millisecond)
	}
	return d.String()
}

// person is one person's state.
type person struct {
	all, tools pool
	waiting    int
	bucket     bucket
	seen       time.Time
}

func (p *person) idle(now time.Time) bool {
	return p.all.inFlight == 0 && p.tools.inFlight == 0 && p.waiting == 0 && now.Sub(p.seen) >= idleAfter
}

// pool is a set of slots and its FIFO queue.
type pool struct {
	inFlight int
	queue    list.List // of *waiter
}

type waiter struct {
	ready   chan struct{}
	granted bool
	max     int
}

// dispatch admits waiters from the head of the queue while their bound
// allows; l.mu is held.
func (l *Limiter) dispatch(pl *pool) {
	for pl.queue.Len() > 0 {
		el := pl.queue.Front()
		w := el.Value.(*waiter)
		if pl.inFlight >= w.max {
			return
		}
		pl.queue.Remove(el)
		pl.inFlight++
		w.granted = true
		close(w.ready)
	}
}

func (l *Limiter) releaser(p *person, pl *pool) func() {
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			pl.inFlight--
			p.seen = l.now()
			l.dispatch(pl)
		})
	}
}

// sweep drops idle people, at most once per sweepEvery; l.mu is held.
func (l *Limiter) sweep(now time.Time) {
	if now.Sub(l.lastSweep) < sweepEvery {
		return
	}
	l.lastSweep = now
	for user, p := range l.state {
		if p.idle(now) {
			delete(l.state, user)
		}
	}
}

// bucket is a token bucket of requests per minute.
type bucket struct {
	tokens float64
	last   time.Time
	used   bool
}

func (b *bucket) fill(now time.Time, perMinute int) {
	capacity := float64(perMinute)
	if !b.used {
		b.tokens, b.last, b.used = capacity, now, true
		return
	}
	if elapsed := now.Sub(b.last); elapsed > 0 {
		b.tokens += elapsed.Minutes() * capacity
		b.last = now
	}
	b.tokens = min(b.tokens, capacity)
}

// take takes a token, or returns how long until there is one.
func (b *bucket) take(now time.Time, perMinute int) time.Duration {
	b.fill(now, perMinute)
	if b.tokens >= 1 {
		b.tokens--
		return 0
	}
	return time.Duration((1 - b.tokens) * float64(time.Minute) / float64(perMinute))
}

func (b *bucket) refund(perMinute int) {
	b.tokens = min(b.tokens+1, float64(perMinute))
}

// metrics are the clickgate_limits_* metrics.
type metrics struct {
	refusals *prometheus.CounterVec
	queued   prometheus.Gauge
	wait     *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer, l *Limiter) *metrics {
	m := &metrics{
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clickgate_limits_refusals_total",
			Help: "Requests refused by limits, by reason: queue_full, queue_time, cancelled (the request ended while waiting), requests_per_minute, networks.",
		}, []string{"reason"}),
		queued: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "clickgate_limits_queued",
			Help: "Requests waiting now for one of their person's query slots.",
		}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "clickgate_limits_queue_wait_seconds",
			Help:    "Time requests waited for a query slot, by outcome: admitted or refused.",
			Buckets: []float64{.01, .05, .1, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"outcome"}),
	}
	if reg == nil {
		return m
	}
	people := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "clickgate_limits_people",
		Help: "People whose limit state is kept (in flight, waiting, or recently active).",
	}, func() float64 {
		l.mu.Lock()
		defer l.mu.Unlock()
		return float64(len(l.state))
	})
	m.refusals = register(reg, m.refusals)
	m.queued = register(reg, m.queued)
	m.wait = register(reg, m.wait)
	register(reg, prometheus.Collector(people))
	return m
}

// register registers c, or returns the collector already registered
// under its name (a second Limiter on the same registry).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}
