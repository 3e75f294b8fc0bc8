package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/clickgate/clickgate/internal/config"
)

// Process holds what outlives one configuration in a process that
// reloads it: the Go runtime's and the process's metrics, the listeners'
// connection counts and the reload counters. Pass it as Options.Process
// to every server.New of the process; the metrics of each server (token
// checks, nodes, limits, the audit trail, …) are the server's own and
// start again from zero at a reload.
type Process struct {
	reg     *prometheus.Registry
	conns   *connMetrics
	reloads *prometheus.CounterVec
	lastOK  prometheus.Gauge
	trails  trails // the audit trail, shared by servers while its configuration stays
}

// Reload results, the label result of clickgate_config_reloads_total.
const (
	ReloadOK      = "ok"      // the new configuration serves
	ReloadInvalid = "invalid" // the file did not load; the running one stays
	ReloadFailed  = "failed"  // valid, but building its server failed; the running one stays
)

// NewProcess makes the metrics of a process; the configuration it starts
// with counts as its first successful load.
func NewProcess() *Process {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	p := &Process{
		reg:   reg,
		conns: newConnMetrics(reg),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "clickgate_config_reloads_total",
			Help: "Configuration reloads (SIGHUP, serve --watch) by result: ok (applied), invalid (the file did not load), failed (valid, but its server could not be built). The running configuration stays unless ok.",
		}, []string{"result"}),
		lastOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "clickgate_config_last_reload_success_timestamp_seconds",
			Help: "When the configuration serving now was loaded (start or last successful reload), Unix time.",
		}),
	}
	reg.MustRegister(p.reloads, p.lastOK)
	for _, r := range []string{ReloadOK, ReloadInvalid, ReloadFailed} {
		p.reloads.WithLabelValues(r)
	}
	p.lastOK.SetToCurrentTime()
	return p
}

// Reloaded counts a reload with its result (ReloadOK, ReloadInvalid,
// ReloadFailed).
func (p *Process) Reloaded(result string) {
	p.reloads.WithLabelValues(result).Inc()
	if result == ReloadOK {
		p.lastOK.SetToCurrentTime()
	}
}

// Live serves whichever Server is current: Swap replaces it at once for
// new requests while the requests in flight finish on the server they
// started on, which is then closed. A process that reloads its
// configuration serves a Live.
type Live struct {
	cur  atomic.Pointer[Server]
	cert atomic.Pointer[tls.Certificate] // the main listener's, with TLS

	mu       sync.Mutex
	bgCtx    context.Context // while Serve runs: the background tasks'
	draining bool            // shutting down: no more swaps
	retiring sync.WaitGroup  // servers swapped out, closing

	hurry     chan struct{} // closed by Hurry: the grace ends now
	hurryOnce sync.Once
}

// Hurry ends a shutdown's grace at once (a second SIGINT, say): the
// listener closes now; requests in flight still get shutdown_timeout.
func (lv *Live) Hurry() { lv.hurryOnce.Do(func() { close(lv.hurry) }) }

// NewLive serves s until a Swap.
func NewLive(s *Server) *Live {
	lv := &Live{hurry: make(chan struct{})}
	lv.cur.Store(s)
	return lv
}

// Current is the server that new requests go to.
func (lv *Live) Current() *Server { return lv.cur.Load() }

// ServeHTTP serves r on the current server, counted in its requests in
// flight so that a swap closes it only after r is done.
func (lv *Live) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	for {
		s := lv.cur.Load()
		if s.requests.enter() {
			defer s.requests.leave()
			s.handler.ServeHTTP(w, r)
			return
		}
		if lv.cur.Load() == s { // closed and not replaced: the very end of a shutdown
			w.Header().Set("Connection", "close")
			http.Error(w, "clickgate: shutting down", http.StatusServiceUnavailable)
			return
		}
		// s was swapped out between the load and enter: take the new one.
	}
}

// ErrShuttingDown is Swap's error once Serve has begun to shut down.
var ErrShuttingDown = errors.New("clickgate is shutting down")

// Swap makes next the current server: new requests go to it, its
// background tasks start, and the server it replaces is closed in the
// background once its requests in flight are done. With TLS, next's
// certificate files are loaded first (a renewed certificate takes effect
// here); when that fails, or Serve is shutting down, nothing changes and
// the caller still owns next. The listeners, server.max_connections and
// turning TLS on or off stay as Serve started them (config.KeepRestartKeys).
func (lv *Live) Swap(next *Server) error {
	var cert *tls.Certificate
	if lv.cert.Load() != nil && next.cfg.Server.TLS.CertFile != "" {
		c, err := loadCert(next.cfg.Server.TLS)
		if err != nil {
			return err
		}
		cert = c
	}
	lv.mu.Lock()
	defer lv.mu.Unlock()
	if lv.draining {
		return ErrShuttingDown
	}
	if cert != nil {
		lv.cert.Store(cert)
	}
	old := lv.cur.Swap(next)
	if lv.bgCtx != nil {
		next.startBackground(lv.bgCtx)
	}
	lv.retiring.Add(1)
	go func() {
		defer lv.retiring.Done()
		// No deadline: a request of the old configuration may run as long
		// as it would have without the reload. Shutdown bounds it.
		if err := old.Close(context.Background()); err != nil {
			old.log.Error("closing the server of the previous configuration", "error", err)
		}
	}()
	return nil
}

func loadCert(t config.TLS) (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("server.tls: %w", err)
	}
	return &cert, nil
}

// Serve accepts connections on l (with TLS when the current server's
// configuration has a certificate, and with its server.max_connections)
// and serves the current server until ctx ends. Then it shuts down
// gracefully:
//
//  1. /readyz answers 503 at once, responses say Connection: close and
//     idle keep-alive connections are closed;
//  2. new connections are still accepted and served for
//     server.shutdown_grace, so that load balancers notice first;
//  3. the listener closes and the requests in flight get up to
//     server.shutdown_timeout to finish; those still running then are cut;
//  4. every server is closed: background tasks stop, the audit trail is
//     flushed and closed.
//
// Both durations are the current configuration's when ctx ends.
func (lv *Live) Serve(ctx context.Context, l net.Listener) error {
	s := lv.Current()
	var tc *tls.Config
	if t := s.cfg.Server.TLS; t.CertFile != "" {
		cert, err := loadCert(t)
		if err != nil {
			return err
		}
		lv.cert.Store(cert)
		tc = &tls.Config{MinVersion: tls.VersionTLS12,
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return lv.cert.Load(), nil }}
	}
	lim := s.limitMain(l, tc) // beneath TLS: a refused connection costs no handshake unless answered
	hs := s.newHTTPServer(lv)
	hs.ConnState = lim.connState
	l = lim
	if tc != nil {
		l = tls.NewListener(l, tc)
	}
	// The background tasks (health checks above all) run on while the
	// requests in flight finish.
	bgCtx, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBackground()
	lv.mu.Lock()
	lv.bgCtx = bgCtx
	s = lv.Current()
	s.startBackground(bgCtx)
	lv.mu.Unlock()

	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(l) }()
	var err error
	select {
	case err = <-errc: // the listener failed
		hs.Close()
	case <-ctx.Done():
		err = lv.shutdown(hs, errc)
	}
	return errors.Join(err, lv.closeAll())
}

// shutdown is Serve's graceful end, steps 1 to 3.
func (lv *Live) shutdown(hs *http.Server, errc <-chan error) error {
	lv.mu.Lock()
	lv.draining = true
	s := lv.Current()
	lv.mu.Unlock()
	s.draining.Store(true)
	grace, timeout := s.cfg.Server.Shutdown()
	s.log.Info("shutting down: /readyz answers 503; new connections are accepted for shutdown_grace, then requests in flight get shutdown_timeout",
		"shutdown_grace", grace, "shutdown_timeout", timeout, "in_flight", s.InFlight())
	hs.SetKeepAlivesEnabled(false)
	select {
	case <-time.After(grace):
	case <-lv.hurry:
	case err := <-errc:
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := hs.Shutdown(ctx)
	if err != nil {
		s.log.Warn("shutdown_timeout passed: cutting the requests still in flight", "shutdown_timeout", timeout, "in_flight", lv.Current().InFlight())
		hs.Close()
	}
	if err2 := <-errc; !errors.Is(err2, http.ErrServerClosed) {
		return err2
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return nil // said in the log; not a failure of the stop
	}
	return err
}

// closeAll closes the current server and waits for those swapped out.
// After Shutdown (or hs.Close) no handler starts any more; one cut by
// hs.Close may still be returning, so each gets a moment.
func (lv *Live) closeAll() error {
	lv.mu.Lock()
	lv.draining = true
	s := lv.Current()
	lv.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.Close(ctx)
	done := make(chan struct{})
	go func() { lv.retiring.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		err = errors.Join(err, errors.New("servers of earlier configurations did not close in time"))
	}
	return err
}

// ServeMetrics serves the current server's /metrics on ml until ctx ends
// (server.metrics_listen); like Server.ServeMetrics.
func (lv *Live) ServeMetrics(ctx context.Context, ml net.Listener) error {
	s := lv.Current()
	mux := http.NewServeMux()
	mux.Handle("/metrics", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		lv.Current().metrics.ServeHTTP(w, r)
	}))
	hs := s.newHTTPServer(mux)
	lim := s.conns.limit(ml, "metrics", metricsConnections, "the metrics listener's limit", nil)
	hs.ConnState = lim.connState
	_, timeout := s.cfg.Server.Shutdown()
	return serveUntil(ctx, hs, lim, timeout)
}

// ServeNative accepts native-protocol connections on l until ctx ends
// (server.native_listen; with TLS when server.native_tls is set) and
// gives each to the current server's native listener, so that a reload
// serves new connections with the new configuration. Then it closes l and
// lets the open connections finish their queries for shutdown_timeout.
func (lv *Live) ServeNative(ctx context.Context, l net.Listener) error {
	s := lv.Current()
	if t := s.cfg.Server.NativeTLS; t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return fmt.Errorf("server.native_tls: %w", err)
		}
		l = tls.NewListener(l, &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}})
	}
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return err
		}
		n := lv.Current().native
		if n == nil {
			c.Close()
			continue
		}
		n.ServeConn(c)
	}
	_, timeout := lv.Current().cfg.Server.Shutdown()
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if n := lv.Current().native; n != nil {
		return n.Shutdown(sctx)
	}
	return nil
}
