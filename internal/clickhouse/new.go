package clickhouse

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/clickgate/clickgate/internal/chdb"
	"github.com/clickgate/clickgate/internal/chhttp"
	"github.com/clickgate/clickgate/internal/config"
)

// Deps are what modes need from the rest of clickgate.
type Deps struct {
	// HTTP reaches ClickHouse (and, for exchange, the IdP).
	HTTP   *http.Client
	Logger *slog.Logger
	Now    func() time.Time
	// TokenEndpoint finds a processor's token endpoint (exchange mode).
	TokenEndpoint func(ctx context.Context, processor string) (TokenEndpoint, error)
}

// Upstreams is the configured way to reach ClickHouse.
type Upstreams struct {
	Mode Mode
	// Service runs clickgate's own statements; nil when no user is set.
	Service *Client
	// Tickets verifies http_auth tickets; nil in other modes.
	Tickets *Tickets
	// Target is ClickHouse's HTTP interface; nil with Engine.
	Target *url.URL
	// Engine runs queries inside clickgate when clickhouse.url is
	// chdb://<dir>; nil otherwise.
	Engine Engine
}

// New builds the mode cfg describes.
func New(cfg *config.ClickHouse, d Deps) (*Upstreams, error) {
	if dir, ok := config.ChDBPath(cfg.URL); ok {
		e, err := chdb.Open(dir)
		if err != nil {
			return nil, fmt.Errorf("clickhouse.url: %w", err)
		}
		return &Upstreams{Mode: embeddedMode{}, Engine: e}, nil
	}
	target, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("clickhouse.url: %w", err)
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	u := &Upstreams{Target: target}
	if cfg.User != "" {
		u.Service = &Client{URL: target, User: cfg.User, Password: cfg.Password, HTTP: d.HTTP}
	}
	// provisioner is nil when provisioning is off: users and grants are
	// then the administrator's.
	provisioner := func(create func(string) (string, error)) (*Provisioner, error) {
		if !cfg.Provisioning.CreateUsers && !cfg.Provisioning.SyncRoles {
			return nil, nil
		}
		if !cfg.Provisioning.CreateUsers {
			create = nil
		}
		if u.Service == nil {
			return nil, fmt.Errorf("clickhouse.user: %s mode needs a service account to provision users", cfg.Mode)
		}
		return NewProvisioner(u.Service, ProvisionerConfig{
			CreateSQL: create, SyncRoles: cfg.Provisioning.SyncRoles, ManagedRoles: cfg.Provisioning.ManagedRoles,
			Interval: cfg.Provisioning.Interval, Logger: d.Logger, Now: d.Now,
		})
	}
	switch cfg.Mode {
	case config.ModeService:
		u.Mode = &serviceMode{header: basic(cfg.User, cfg.Password), account: cfg.User, attribution: attributionFor(cfg, u.Service)}
	case config.ModeMapped:
		m := &mappedMode{}
		if len(cfg.Accounts) > 0 {
			a := cfg.Accounts[0] // any account can tell the version
			m.attribution = attributionFor(cfg, &Client{URL: target, User: a.User, Password: a.Password, HTTP: d.HTTP})
		}
		for _, a := range cfg.Accounts {
			m.accounts = append(m.accounts, Account{Role: a.Role, User: a.User, Password: a.Password})
			m.headers = append(m.headers, basic(a.User, a.Password))
		}
		u.Mode = m
	case config.ModeBearer:
		u.Mode = &bearerMode{audience: cfg.Audience}
	case config.ModeExchange:
		if d.TokenEndpoint == nil {
			return nil, fmt.Errorf("clickhouse.mode: exchange needs token processors with a token endpoint")
		}
		cache, _ := lru.New[[sha256.Size]byte, exchanged](10000)
		u.Mode = &exchangeMode{audience: cfg.Audience, endpoint: d.TokenEndpoint, http: d.HTTP, now: d.Now, cache: cache}
	case config.ModeHTTPAuth:
		tickets, err := NewTickets([]byte(cfg.TicketSecret), DefaultTicketTTL, d.Now)
		if err != nil {
			return nil, err
		}
		p, err := provisioner(func(user string) (string, error) { return CreateHTTPUserSQL(user, cfg.AuthServer) })
		if err != nil {
			return nil, err
		}
		u.Tickets = tickets
		u.Mode = &httpAuthMode{tickets: tickets, provision: p}
	case config.ModeImpersonate:
		p, err := provisioner(CreateImpersonationTargetSQL)
		if err != nil {
			return nil, err
		}
		u.Mode = &impersonateMode{header: basic(cfg.User, cfg.Password), provision: p}
	default:
		return nil, fmt.Errorf("clickhouse.mode: %q is not a mode", cfg.Mode)
	}
	return u, nil
}

// embeddedMode is service mode on the engine inside clickgate (chdb://,
// which config allows in service mode only): one user, and neither quotas
// nor a query_log for quota_key and log_comment to name the person in.
type embeddedMode struct{}

func (embeddedMode) Upstream(context.Context, *Caller) (*Upstream, error) {
	return &Upstream{Account: "default"}, nil
}

// attributionFor names people on the shared accounts of cfg, asking
// version (once, when it answers) whether log_comment is known, and each
// account once whether it may set it.
func attributionFor(cfg *config.ClickHouse, version *Client) *attribution {
	return &attribution{quotaKey: cfg.QuotaKey,
		logComment: func(ctx context.Context) bool {
			v, err := version.Version(ctx)
			return err == nil && v.AtLeast(20, 12) // log_comment arrived in 20.12
		},
		settable: func(ctx context.Context, header http.Header) (ok, known bool) {
			c := &chhttp.Client{URL: version.URL, HTTP: version.HTTP}
			body, _, err := c.Open(ctx, "SELECT 1", url.Values{"log_comment": {"clickgate: may this account set log_comment?"}}, header)
			var ex *Exception
			switch {
			case err == nil:
				body.Close()
				return true, true
			case errors.As(err, &ex) && ex.Code == codeReadonly:
				return false, true // readonly = 1: no setting may change
			}
			return false, false
		}}
}
