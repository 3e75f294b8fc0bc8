package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clickgate/clickgate/internal/audit"
	"github.com/clickgate/clickgate/internal/authn"
	"github.com/clickgate/clickgate/internal/chpool"
	"github.com/clickgate/clickgate/internal/clickhouse"
	"github.com/clickgate/clickgate/internal/config"
	"github.com/clickgate/clickgate/internal/gateway"
	"github.com/clickgate/clickgate/internal/identity"
	"github.com/clickgate/clickgate/internal/limits"
	"github.com/clickgate/clickgate/internal/mcp"
	"github.com/clickgate/clickgate/internal/native"
	"github.com/clickgate/clickgate/internal/token"
)

// The parts of clickgate, each built by its own function, so that each
// command builds only what it uses (clickgate mcp: Auth, Upstream and
// NewMCP; serve: all of them through New) and a part can be rebuilt alone.

// Auth is the one path from credentials to a principal, with what it is
// made of.
type Auth struct {
	*authn.Authenticator
	Verifier *token.Verifier
	// Log is the audit trail; the caller closes it with CloseAudit.
	Log   *audit.Log
	trail *trail // set when a Process shares the trail
	p     *Process
}

// CloseAudit is this part's end of the audit trail: it closes the trail,
// or, when a Process shares it, lets the last server using it close it.
func (a *Auth) CloseAudit() error {
	if a.trail != nil {
		return a.p.trails.release(a.trail)
	}
	return a.Log.Close()
}

// NewAuth builds the authenticator: the configured token processors, the
// directory, the session log, and metrics in reg (which may be nil).
func NewAuth(cfg *config.Config, opt Options, reg prometheus.Registerer) (*Auth, error) {
	opt = opt.withDefaults()
	return newAuth(cfg, opt, tokenOptions(opt, reg), reg)
}

// loginRecordPeriod is how often a token's LoginSuccess is recorded again
// under audit.login_success: per_token.
const loginRecordPeriod = time.Hour

// OpenAudit opens the audit trail cfg describes: the file, the ClickHouse
// table, or both; nil when neither is set. The caller closes it.
func OpenAudit(cfg *config.Config, opt Options, reg prometheus.Registerer) (*audit.Log, error) {
	a := cfg.Audit
	o := audit.Options{File: a.File, MaxSize: a.MaxSize, MaxFiles: a.MaxFiles, Required: a.Required, Registerer: reg, Logger: opt.Logger}
	if o.Table = AuditTable(cfg); o.Table != nil {
		o.Table.HTTPClient = opt.HTTPClient
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return audit.OpenOptions(ctx, o)
}

// Recorder is how the fronts record their events in log, as cfg says.
func Recorder(cfg *config.Config, log *audit.Log) audit.Recorder {
	r := audit.Recorder{Log: log, Mode: cfg.ClickHouse.Mode, Verbatim: cfg.Audit.QueryText == config.QueryTextFull}
	switch cfg.Audit.QueryText {
	case config.QueryTextRedacted:
		r.Text = clickhouse.Redact
	case config.QueryTextNone:
		r.Text = func(string) string { return "" }
	}
	return r
}

// AuditTable is the audit table cfg describes (audit.clickhouse), for the
// sink and for readers; nil when there is none.
func AuditTable(cfg *config.Config) *audit.TableOptions {
	t := cfg.Audit.ClickHouse
	if t == nil {
		return nil
	}
	return &audit.TableOptions{URL: t.URL, User: t.User, Password: t.Password, Database: t.Database, Table: t.Table,
		BatchRows: t.BatchRows, FlushInterval: t.FlushInterval, SpoolDir: t.SpoolDir, SpoolMaxBytes: t.SpoolMaxBytes, TTL: t.TTL}
}

// newAuth is NewAuth with processor options shared with extra processors
// (the broker's own) built beside it.
func newAuth(cfg *config.Config, opt Options, tok token.Options, reg prometheus.Registerer, extra ...token.Extra) (*Auth, error) {
	verifier, err := token.NewVerifierFromConfig(cfg.Directory.Processors, cfg.TokenProcessors, tok, extra...)
	if err != nil {
		return nil, err
	}
	dir, err := identity.NewDirectory(DirectoryConfig(cfg))
	if err != nil {
		return nil, err
	}
	var log *audit.Log
	var shared *trail
	if p := opt.Process; p != nil {
		shared, err = p.trails.acquire(cfg, opt)
		if shared != nil {
			log = shared.log
		}
	} else {
		log, err = OpenAudit(cfg, opt, reg)
	}
	if err != nil {
		return nil, err
	}
	a := authn.New(verifier, dir, log, reg)
	a.AdmitToClickHouse(authn.ClickHouseAudiences(cfg))
	if cfg.Audit.LoginSuccess == config.LoginSuccessPerToken {
		a.RecordLoginsPerToken(loginRecordPeriod)
	}
	return &Auth{Authenticator: a, Verifier: verifier, Log: log, trail: shared, p: opt.Process}, nil
}

// tokenOptions are what every processor shares; metrics only with a registry.
func tokenOptions(opt Options, reg prometheus.Registerer) token.Options {
	o := token.Options{HTTPClient: opt.HTTPClient, Now: opt.Now}
	if reg != nil {
		o.Metrics = token.NewMetrics(reg)
	}
	return o
}

// Upstream is the way to ClickHouse: its mode, and the pool of nodes
// whose transport every request to ClickHouse goes through.
type Upstream struct {
	*clickhouse.Upstreams
	Transport http.RoundTripper
	// Pool spreads requests over the nodes; nil with the embedded engine.
	// Run its health checks (Pool.Run) while serving.
	Pool *chpool.Pool
}

// NewUpstream builds the configured upstream mode over the pool of
// clickhouse.urls, with the pool's metrics in reg (which may be nil);
// exchange mode finds token endpoints through the verifier's processors.
func NewUpstream(cfg *config.Config, opt Options, verifier *token.Verifier, reg prometheus.Registerer) (*Upstream, error) {
	opt = opt.withDefaults()
	ch := cfg.ClickHouse
	var transport http.RoundTripper
	var pool *chpool.Pool
	if _, embedded := config.ChDBPath(ch.URL); !embedded {
		var err error
		pool, err = chpool.New(ch.URLs, chpool.Options{
			Health: ch.Health, Retries: *ch.Retries, ConnectTimeout: ch.ConnectTimeout, ResponseTimeout: ch.ResponseTimeout,
			Transport: gateway.NewTransport(), Logger: opt.Logger, Registerer: reg,
		})
		if err != nil {
			return nil, fmt.Errorf("clickhouse.urls: %w", err)
		}
		transport = pool.Transport()
	}
	up, err := clickhouse.New(ch, clickhouse.Deps{
		HTTP: &http.Client{Transport: transport}, Logger: opt.Logger, Now: opt.Now,
		TokenEndpoint: func(ctx context.Context, processor string) (clickhouse.TokenEndpoint, error) {
			e, err := verifier.TokenEndpoint(ctx, processor)
			return clickhouse.TokenEndpoint(e), err
		},
	})
	if err != nil {
		return nil, err
	}
	return &Upstream{Upstreams: up, Transport: transport, Pool: pool}, nil
}

// NewLimits builds the limits cfg describes, one for every front (the
// gateway and MCP share a person's slots and tokens), with metrics in reg
// (which may be nil); mcp.max_concurrent_queries is MCP's bound while
// limits sets max_concurrent_queries nowhere.
func NewLimits(cfg *config.Config, reg prometheus.Registerer) *limits.Limiter {
	return limits.NewOptions(cfg.Limits, limits.Options{Registerer: reg, MCPMaxConcurrent: cfg.MCP.MaxConcurrentQueries})
}

// NewMCP builds the MCP server (tools, resources, prompts) over up; its
// tool calls go to the audit trail log (nil: none). It has limits of its
// own (clickgate mcp); serve shares one Limiter with the gateway.
func NewMCP(cfg *config.Config, opt Options, up *Upstream, log *audit.Log) *mcp.Server {
	return newMCP(cfg, opt, up, log, NewLimits(cfg, nil))
}

func newMCP(cfg *config.Config, opt Options, up *Upstream, log *audit.Log, lim *limits.Limiter) *mcp.Server {
	opt = opt.withDefaults()
	return mcp.New(mcp.Options{
		Mode: up.Mode, Querier: &clickhouse.Querier{Target: up.Target, HTTP: &http.Client{Transport: up.Transport}, Fixed: cfg.ClickHouse.Settings, Engine: up.Engine},
		ReadOnly: *cfg.MCP.ReadOnly, MaxResultRows: cfg.MCP.MaxResultRows, MaxResultBytes: cfg.MCP.MaxResultBytes,
		QueryTimeout: cfg.MCP.QueryTimeout, Limits: lim, Version: opt.Version, Logger: opt.Logger,
		Audit: Recorder(cfg, log), Policy: cfg.MCP.Policy,
	})
}

func (opt Options) withDefaults() Options {
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	if opt.Now == nil {
		opt.Now = time.Now
	}
	return opt
}

// newNative builds the native-protocol listener's server over up, with
// the gateway's authenticator, limits and audit.
func newNative(cfg *config.Config, opt Options, auth *authn.Authenticator, up *Upstream, log *audit.Log, lim *limits.Limiter, reg prometheus.Registerer) (*native.Server, error) {
	ch := cfg.ClickHouse
	maxConnections := cfg.Server.MaxConnections
	if maxConnections <= 0 {
		maxConnections = DefaultMaxConnections()
	}
	nodes, err := ch.NativeNodes()
	if err != nil {
		return nil, fmt.Errorf("clickhouse.native_url: %w", err)
	}
	return native.New(native.Options{
		Auth: auth, Mode: up.Mode, ModeName: ch.Mode, Settings: ch.Settings, Nodes: nodes,
		Limits: lim, Audit: Recorder(cfg, log), Logger: opt.Logger, ConnectTimeout: ch.ConnectTimeout, Registerer: reg,
		MaxConnections: maxConnections,
	})
}
