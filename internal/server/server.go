// Package server assembles clickgate's HTTP listener from a configuration.
package server

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/clickgate/clickgate/internal/audit"
	"github.com/clickgate/clickgate/internal/authn"
	"github.com/clickgate/clickgate/internal/chauth"
	"github.com/clickgate/clickgate/internal/chpool"
	"github.com/clickgate/clickgate/internal/clickhouse"
	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/devidp"
	"github.com/clickgate/clickgate/internal/gateway"
	"github.com/clickgate/clickgate/internal/identity"
	"github.com/clickgate/clickgate/internal/keyring"
	"github.com/clickgate/clickgate/internal/lograte"
	"github.com/clickgate/clickgate/internal/mcp"
	"github.com/clickgate/clickgate/internal/native"
	"github.com/clickgate/clickgate/internal/token"
)

// MaxHeaderBytes leaves room for a MaxTokenBytes token plus ordinary headers.
const MaxHeaderBytes = 64 << 10

// Server is clickgate's HTTP side.
type Server struct {
	// unready holds, per readiness check, whether it last failed.
	unready sync.Map
	cfg     *config.Config
	auth    *authn.Authenticator
	log     *slog.Logger
	audit   *audit.Log
	// closeAudit is this server's end of the audit trail (Auth.CloseAudit).
	closeAudit func() error
	handler    http.Handler
	// metrics serves the Prometheus registry: on the main handler, or on
	// its own listener (ServeMetrics) when server.metrics_listen is set.
	metrics http.Handler
	// clickhouse is nil when the gateway is off.
	clickhouse *clickhouse.Upstreams
	// mcp is nil when MCP is off.
	mcp *mcp.Server
	// native serves server.native_listen; nil when it is off.
	native *native.Server
	// background runs while Serve does (maintenance such as purges).
	background []func(ctx context.Context)
	// pool holds the ClickHouse nodes; nil without a clickhouse section
	// or with the embedded engine.
	pool *chpool.Pool
	// conns counts the listeners' connections (listen.go).
	conns *connMetrics

	// requests counts the requests in flight that a Live lets in, so that
	// Close waits for them (a reload retires a server while its requests
	// run on).
	requests inFlight
	// draining makes /readyz answer 503: the process is shutting down.
	draining atomic.Bool
	// stopBackground ends the background tasks that startBackground
	// started; guarded by bgMu.
	bgMu           sync.Mutex
	stopBackground context.CancelFunc
	closeOnce      sync.Once
	closeErr       error
}

// Options are the parts a caller may supply; zero values are sensible.
type Options struct {
	Logger     *slog.Logger
	HTTPClient *http.Client // for IdP calls
	Now        func() time.Time
	Version    string // reported to MCP clients
	// ClientMetadataRoots are trusted when the broker fetches Client ID
	// Metadata Documents; nil means the system roots.
	ClientMetadataRoots *x509.CertPool
	// Process, when set, holds the metrics that outlive one configuration
	// in a process that reloads it (the Go runtime's, the listeners'
	// connections, the reloads): the server then registers only its own
	// metrics, in a registry of its own, and /metrics serves both. Without
	// it the server's registry has all of them.
	Process *Process
}

// New builds a server from cfg: every part the configuration turns on.
func New(cfg *config.Config, opt Options) (*Server, error) {
	opt = opt.withDefaults()
	// A registry per server: a reload builds a new server beside the
	// running one, whose collectors have the same names.
	reg := prometheus.NewRegistry()
	var gatherer prometheus.Gatherer = reg
	var conns *connMetrics
	if p := opt.Process; p != nil {
		gatherer, conns = prometheus.Gatherers{p.reg, reg}, p.conns
	} else {
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		conns = newConnMetrics(reg)
	}
	tok := tokenOptions(opt, reg)
	var brokerKeys *keyring.Ring
	var extra []token.Extra
	if cfg.Broker.Enabled {
		k, err := openBrokerKeys(cfg, opt)
		if err != nil {
			return nil, err
		}
		brokerKeys, extra = k, append(extra, brokerProcessor(cfg, k, tok))
	}
	auth, err := newAuth(cfg, opt, tok, reg, extra...)
	if err != nil {
		return nil, err
	}
	built := false
	defer func() {
		if !built { // a reload that fails leaves no trail open behind it
			auth.CloseAudit()
		}
	}()
	if auth.trail != nil { // the trail's metrics, whichever server opened it
		gatherer = append(gatherer.(prometheus.Gatherers), auth.trail.reg)
	}
	s := &Server{cfg: cfg, log: opt.Logger, audit: auth.Log, closeAudit: auth.CloseAudit, auth: auth.Authenticator}
	s.conns = conns

	mux := http.NewServeMux()
	var tickets chauth.Tickets
	var root http.Handler = http.HandlerFunc(s.gatewayOff)
	if cfg.ClickHouse != nil {
		up, err := NewUpstream(cfg, opt, auth.Verifier, reg)
		if err != nil {
			return nil, err
		}
		if up.Pool != nil {
			// Know the nodes before the first request: a lagging replica
			// or a dead node gets none.
			check, cancel := context.WithTimeout(context.Background(), 2*cfg.ClickHouse.Health.Timeout)
			up.Pool.Check(check)
			cancel()
			s.pool = up.Pool
			s.background = append(s.background, up.Pool.Run)
		}
		if up.Tickets != nil {
			tickets = up.Tickets
		}
		s.clickhouse = up.Upstreams
		lim := NewLimits(cfg, reg) // one for the gateway and MCP: a person's queries count together
		if up.Engine != nil {
			root = http.HandlerFunc(gatewayEmbedded)
		} else {
			root = gateway.New(gateway.Options{
				Target: up.Target, Auth: s.auth, Mode: up.Mode, Settings: cfg.ClickHouse.Settings,
				Transport: up.Transport, Logger: opt.Logger,
				Audit: Recorder(cfg, s.audit), Limits: lim,
			})
		}
		if *cfg.MCP.Enabled {
			s.mountMCP(mux, newMCP(cfg, opt, up, s.audit, lim))
		}
		if cfg.Server.NativeListen != "" && up.Engine == nil {
			if s.native, err = newNative(cfg, opt, s.auth, up, s.audit, lim, reg); err != nil {
				return nil, err
			}
		}
	}
	if cfg.DevIdP.Enabled {
		idp, err := devidp.New(cfg, devidp.Options{Logger: opt.Logger, Now: opt.Now})
		if err != nil {
			return nil, err
		}
		mux.Handle(config.DevIdPPath+"/", idp)
	}
	if brokerKeys != nil {
		if err := s.mountBroker(mux, brokerKeys, reg, opt); err != nil {
			return nil, err
		}
	}
	mux.Handle("/", root)
	mux.Handle("/clickhouse/auth", chauth.Handler(s.auth, tickets, auth.Log))
	mux.HandleFunc("/whoami", s.whoami)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", s.readyz)
	s.metrics = promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{})
	if cfg.Server.MetricsListen == "" {
		mux.Handle("/metrics", s.metrics)
	} else {
		// A local 404, never a path for the gateway to forward.
		mux.HandleFunc("/metrics", metricsElsewhere)
	}
	s.handler = mux
	built = true
	return s, nil
}

// mountMCP serves m at /mcp with its protected resource metadata.
func (s *Server) mountMCP(mux *http.ServeMux, m *mcp.Server) {
	cfg := s.cfg
	metadataURL := cfg.Server.PublicURL + "/.well-known/oauth-protected-resource/mcp"
	ho := mcp.HTTPOptions{
		Auth: s.auth, Resource: cfg.MCPResource(), MetadataURL: metadataURL, Audiences: cfg.MCP.Audiences,
		AuthorizationServers: AuthorizationServers(cfg), ReadScope: cfg.MCP.Scopes.Read, WriteScope: cfg.MCP.Scopes.Write,
		AllowedOrigins: cfg.Server.AllowedOrigins,
	}
	s.mcp = m
	mux.Handle("/mcp", m.HTTPHandler(ho))
	meta := mcp.MetadataHandler(ho)
	mux.Handle("/.well-known/oauth-protected-resource", meta)
	mux.Handle("/.well-known/oauth-protected-resource/mcp", meta)
}

// AuthorizationServers are where MCP clients get tokens: clickgate's
// broker when it is on, else the issuers of the token processors.
func AuthorizationServers(cfg *config.Config) []string {
	if cfg.Broker.Enabled {
		return []string{cfg.Server.PublicURL}
	}
	var out []string
	for _, name := range cfg.Directory.Processors {
		iss := cfg.TokenProcessors[name].Issuer
		if strings.HasPrefix(iss, "https://") || strings.HasPrefix(iss, "http://") {
			out = append(out, iss)
		}
	}
	return out
}

// DirectoryConfig extracts the directory policy from cfg.
func DirectoryConfig(cfg *config.Config) identity.DirectoryConfig {
	d := cfg.Directory
	return identity.DirectoryConfig{
		AllowedDomains: d.AllowedDomains,
		Mapping:        d.Roles.Mapping,
		Filter:         d.Roles.Filter,
		Transform:      d.Roles.Transform,
		Common:         d.Roles.Common,
	}
}

// Native is the native-protocol listener's server, or nil when
// server.native_listen is not set.
func (s *Server) Native() *native.Server { return s.native }

// MCP returns the MCP server, or nil when the configuration has no
// clickhouse section or turns MCP off.
func (s *Server) MCP() *mcp.Server { return s.mcp }

// Authenticator is the one path from credentials to a principal.
func (s *Server) Authenticator() *authn.Authenticator { return s.auth }

// Handler is the whole HTTP interface. It serves /metrics unless
// server.metrics_listen moves it to MetricsHandler's own listener.
func (s *Server) Handler() http.Handler { return s.handler }

// MetricsHandler serves the Prometheus metrics at any path; ServeMetrics
// mounts it at /metrics.
func (s *Server) MetricsHandler() http.Handler { return s.metrics }

// metricsElsewhere answers /metrics on the main listener when
// server.metrics_listen serves it.
func metricsElsewhere(w http.ResponseWriter, r *http.Request) {
	http.Error(w, "clickgate: 404 not found: /metrics is served on the metrics listener (server.metrics_listen), not here", http.StatusNotFound)
}

// newHTTPServer is the http.Server both listeners use.
func (s *Server) newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		// An idle keep-alive connection holds a file descriptor and
		// buffers; clients reconnect cheaply.
		IdleTimeout:    30 * time.Second,
		MaxHeaderBytes: MaxHeaderBytes,
		// Accept and TLS handshake errors come once per connection.
		ErrorLog: slog.NewLogLogger(lograte.NewHandler(s.log.Handler(), lograte.DefaultEvery), slog.LevelWarn),
	}
}

// ServeMetrics serves /metrics (and a 404 for every other path) in plain
// HTTP on l until ctx ends, then shuts down gracefully like Serve. It is
// for server.metrics_listen; run it beside Serve with the same ctx.
func (s *Server) ServeMetrics(ctx context.Context, l net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", s.metrics)
	hs := s.newHTTPServer(mux)
	lim := s.conns.limit(l, "metrics", metricsConnections, "the metrics listener's limit", nil)
	hs.ConnState = lim.connState
	_, timeout := s.cfg.Server.Shutdown()
	return serveUntil(ctx, hs, lim, timeout)
}

// RunBackground starts what runs beside serving (the nodes' health
// checks, store purges) until ctx ends; Serve calls it. Call it yourself
// when you serve Handler another way.
func (s *Server) RunBackground(ctx context.Context) {
	for _, run := range s.background {
		go run(ctx)
	}
}

// startBackground runs the background tasks until ctx ends or Close.
func (s *Server) startBackground(ctx context.Context) {
	s.bgMu.Lock()
	defer s.bgMu.Unlock()
	if s.stopBackground != nil {
		return
	}
	ctx, s.stopBackground = context.WithCancel(ctx)
	s.RunBackground(ctx)
}

// ReopenAudit reopens the audit file (after logrotate moved it away).
func (s *Server) ReopenAudit() error { return s.audit.Reopen() }

// Config is the configuration s was built from.
func (s *Server) Config() *config.Config { return s.cfg }

// Close retires s: it waits for the requests in flight that a Live let
// in (until ctx ends), then stops the background tasks, closes the idle
// connections to ClickHouse and flushes and closes the audit trail.
// Requests that reach s afterwards through a Live go to the server that
// replaced it. Close is for a server that no Live serves any more (Swap
// and Live.Serve call it); later calls return the first one's result.
func (s *Server) Close(ctx context.Context) error {
	s.closeOnce.Do(func() {
		var nativeErr error
		if s.native != nil { // idle connections close; queries in flight finish first
			nativeErr = s.native.Shutdown(ctx)
		}
		waitErr := errors.Join(nativeErr, s.requests.close(ctx))
		s.bgMu.Lock()
		if s.stopBackground != nil {
			s.stopBackground()
		}
		s.stopBackground = func() {} // none start after Close
		s.bgMu.Unlock()
		if s.pool != nil {
			s.pool.Close()
		}
		s.closeErr = errors.Join(waitErr, s.closeAudit())
	})
	return s.closeErr
}

// InFlight is the number of requests s is serving through a Live.
func (s *Server) InFlight() int { return s.requests.count() }

// inFlight counts requests; once closing, it lets none in and signals
// idle when the last one ends.
type inFlight struct {
	mu      sync.Mutex
	n       int
	closing bool
	idle    chan struct{} // closed when closing and n == 0
}

// enter counts a request in, unless the server is closing.
func (f *inFlight) enter() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closing {
		return false
	}
	f.n++
	return true
}

func (f *inFlight) leave() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n--; f.n == 0 && f.closing {
		close(f.idle)
	}
}

func (f *inFlight) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

// close lets no more requests in and waits until those in are done or
// ctx ends.
func (f *inFlight) close(ctx context.Context) error {
	f.mu.Lock()
	if !f.closing {
		f.closing, f.idle = true, make(chan struct{})
		if f.n == 0 {
			close(f.idle)
		}
	}
	idle, n := f.idle, f.n
	f.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%d requests still in flight: %w", n, ctx.Err())
	}
}

// Serve accepts connections on l until ctx ends, then shuts down
// gracefully (see Live.Serve) and closes s.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	return NewLive(s).Serve(ctx, l)
}

// serveUntil runs hs on l until ctx ends, then shuts it down gracefully:
// requests in flight get up to timeout.
func serveUntil(ctx context.Context, hs *http.Server, l net.Listener, timeout time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		shutdownCtx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		if err := hs.Shutdown(shutdownCtx); err != nil {
			hs.Close()
			return err
		}
		if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}

// whoamiResponse is /whoami's JSON.
type whoamiResponse struct {
	Identity  *identity.Identity  `json:"identity"`
	Principal *identity.Principal `json:"principal"`
}

func (s *Server) whoami(w http.ResponseWriter, r *http.Request) {
	c, err := authn.FromRequest(r)
	if err == nil {
		var res *authn.Result
		res, err = s.auth.Authenticate(r.Context(), r, c, audit.InterfaceWhoami)
		if err == nil {
			writeJSON(w, http.StatusOK, whoamiResponse{Identity: res.Identity, Principal: res.Principal})
			return
		}
	}
	writeUnauthorized(w, err)
}

// writeUnauthorized answers with a Bearer challenge naming the reason.
func writeUnauthorized(w http.ResponseWriter, err error) {
	status := authn.Status(err)
	code := "invalid_token"
	switch {
	case errors.Is(err, authn.ErrNoCredentials):
		code = "unauthorized"
	case status == http.StatusServiceUnavailable:
		code = "temporarily_unavailable"
	case status == http.StatusForbidden:
		code = "access_denied"
	}
	w.Header().Set("WWW-Authenticate", authn.Challenge(err))
	writeJSON(w, status, map[string]string{"error": code, "reason": err.Error()})
}

// readyzTimeout bounds each readiness check: the token processors' IdPs
// and ClickHouse are checked side by side, each with its own deadline, so
// that a hanging IdP is reported as the IdP and not as a ClickHouse that
// ran out of time. It exceeds token.IdPFetchTimeout, so that a hanging
// IdP is reported by the processor's own timeout.
const readyzTimeout = token.IdPFetchTimeout + time.Second

// readyz says what is not ready without saying why: it answers anyone,
// and the reasons (addresses, resolver and TLS errors) are for the log,
// which names the part: "processor <name>" (that processor's IdP) or
// "clickhouse".
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		// Shutting down: balancers take this instance out while it still
		// accepts connections for server.shutdown_grace.
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "draining": true})
		return
	}
	var processors map[string]error
	var clickhouseErr error
	var wg sync.WaitGroup
	run := func(f func(ctx context.Context)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(r.Context(), readyzTimeout)
			defer cancel()
			f(ctx)
		}()
	}
	run(func(ctx context.Context) { processors = s.auth.Ready(ctx) })
	if s.clickhouse != nil {
		run(func(ctx context.Context) { clickhouseErr = s.pingClickHouse(ctx) })
	}
	wg.Wait()

	status := http.StatusOK
	checks := map[string]string{}
	check := func(name string, err error) {
		checks[name] = "ok"
		if err != nil {
			checks[name] = "unavailable (see clickgate's log)"
			status = http.StatusServiceUnavailable
		}
		// Log a check when it changes, not at every probe of a balancer.
		if was, _ := s.unready.Swap(name, err != nil); was != (err != nil) {
			if err != nil {
				s.log.Warn("readyz: not ready", "check", name, "error", err)
			} else if was != nil {
				s.log.Info("readyz: ready again", "check", name)
			}
		}
	}
	for name, err := range processors {
		check("processor "+name, err)
	}
	if s.clickhouse != nil {
		check("clickhouse", clickhouseErr)
	}
	writeJSON(w, status, map[string]any{"ready": status == http.StatusOK, "checks": checks})
}

// pingClickHouse asks ClickHouse's /ping, which needs no credentials.
func (s *Server) pingClickHouse(ctx context.Context) error {
	if s.clickhouse.Engine != nil {
		return nil // inside this process, started with it
	}
	if s.pool != nil { // ready while a node is up, asked now
		s.pool.Check(ctx)
		var down []string
		for _, n := range s.pool.Nodes() {
			if n.Up {
				return nil
			}
			down = append(down, n.Node+": "+n.Reason)
		}
		return fmt.Errorf("no node is up (%s)", strings.Join(down, "; "))
	}
	u := *s.clickhouse.Target
	u.Path = strings.TrimRight(u.Path, "/") + "/ping"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("unreachable: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/ping answered HTTP %d", resp.StatusCode)
	}
	return nil
}

func (s *Server) gatewayOff(w http.ResponseWriter, r *http.Request) {
	http.Error(w, "clickgate: the ClickHouse gateway is off because the configuration has no clickhouse section", http.StatusNotFound)
}

// gatewayEmbedded answers gateway paths when clickhouse.url is chdb://:
// the engine runs inside clickgate, with no HTTP interface to proxy to, and
// serving ClickHouse's HTTP protocol (sessions, compression, formats,
// progress) from it is not done.
func gatewayEmbedded(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-ClickHouse-Exception-Code", "48")
	http.Error(w, "Code: 48. DB::Exception: clickgate: the ClickHouse gateway is off because clickhouse.url is chdb://, an engine inside clickgate with no HTTP interface; use the MCP tools at /mcp. (NOT_IMPLEMENTED)", http.StatusNotImplemented)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
