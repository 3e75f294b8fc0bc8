package clickhouse

import (
	"context"
	"errors"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/sync/singleflight"

	"github.com/clickgate/clickgate/internal/identity"
)

// Provisioner creates ClickHouse users on first sign-in, grants the roles
// the IdP maps, and revokes managed roles it no longer maps. It runs once
// per principal per interval, never per query. Administrators keep plain
// SQL for everything else: roles granted by hand are not managed and are
// never revoked.
type Provisioner struct {
	client    *Client
	createSQL func(user string) (string, error)
	syncRoles bool
	managed   *regexp.Regexp // roles clickgate may revoke; nil: only those it granted
	interval  time.Duration
	log       *slog.Logger
	now       func() time.Time

	done    *lru.Cache[string, provisioned]
	group   singleflight.Group
	mu      sync.Mutex
	granted map[string][]string // user → roles this process granted
}

type provisioned struct {
	roles string
	at    time.Time
}

// ProvisionerConfig configures a Provisioner.
type ProvisionerConfig struct {
	// CreateSQL makes the CREATE USER statement, or is nil to create no users.
	CreateSQL func(user string) (string, error)
	SyncRoles bool
	// ManagedRoles, if set, names the roles sync may revoke (full match).
	ManagedRoles string
	Interval     time.Duration
	Logger       *slog.Logger
	Now          func() time.Time
}

// NewProvisioner runs statements through client (the service account).
func NewProvisioner(client *Client, cfg ProvisionerConfig) (*Provisioner, error) {
	p := &Provisioner{client: client, createSQL: cfg.CreateSQL, syncRoles: cfg.SyncRoles, interval: cfg.Interval,
		log: cfg.Logger, now: cfg.Now, granted: map[string][]string{}}
	if cfg.ManagedRoles != "" {
		re, err := regexp.Compile("^(?:" + cfg.ManagedRoles + ")$")
		if err != nil {
			return nil, err
		}
		p.managed = re
	}
	if p.log == nil {
		p.log = slog.Default()
	}
	if p.now == nil {
		p.now = time.Now
	}
	p.done, _ = lru.New[string, provisioned](100000)
	return p, nil
}

// Ensure provisions p's user and roles unless that was done within the
// interval for the same roles. Missing roles are logged, not fatal. A nil
// Provisioner provisions nothing.
func (p *Provisioner) Ensure(ctx context.Context, pr *identity.Principal) error {
	if p == nil {
		return nil
	}
	roles := strings.Join(pr.Roles, "\x00")
	if d, ok := p.done.Get(pr.User); ok && d.roles == roles && p.now().Sub(d.at) < p.interval {
		return nil
	}
	_, err, _ := p.group.Do(pr.User+"\x00"+roles, func() (any, error) {
		if err := p.provision(context.WithoutCancel(ctx), pr); err != nil {
			return nil, err
		}
		p.done.Add(pr.User, provisioned{roles: roles, at: p.now()})
		return nil, nil
	})
	return err
}

func (p *Provisioner) provision(ctx context.Context, pr *identity.Principal) error {
	if p.createSQL != nil {
		stmt, err := p.createSQL(pr.User)
		if err != nil {
			return err
		}
		if _, err := p.client.Exec(ctx, stmt); err != nil {
			return err
		}
	}
	if len(pr.Roles) > 0 {
		if err := p.grant(ctx, pr.User, pr.Roles); err != nil {
			return err
		}
	}
	if p.syncRoles {
		return p.sync(ctx, pr)
	}
	return nil
}

// grant grants all roles in one statement; if one is unknown it grants
// them one by one and reports the missing ones.
func (p *Provisioner) grant(ctx context.Context, user string, roles []string) error {
	stmt, err := GrantRolesSQL(roles, user)
	if err != nil {
		return err
	}
	_, err = p.client.Exec(ctx, stmt)
	var ex *Exception
	switch {
	case err == nil:
		p.remember(user, roles)
		return nil
	case !errors.As(err, &ex) || ex.Code != CodeUnknownRole:
		return err
	}
	var missing []string
	for _, r := range roles {
		stmt, _ := GrantRolesSQL([]string{r}, user)
		if _, err := p.client.Exec(ctx, stmt); err != nil {
			if errors.As(err, &ex) && ex.Code == CodeUnknownRole {
				missing = append(missing, r)
				continue
			}
			return err
		}
		p.remember(user, []string{r})
	}
	p.log.Warn("provisioning: roles the IdP maps do not exist in ClickHouse; create them or change directory.roles",
		"user", user, "missing_roles", missing)
	return nil
}

func (p *Provisioner) remember(user string, roles []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range roles {
		if !slices.Contains(p.granted[user], r) {
			p.granted[user] = append(p.granted[user], r)
		}
	}
}

// sync revokes managed roles that the principal no longer has.
func (p *Provisioner) sync(ctx context.Context, pr *identity.Principal) error {
	stmt, err := RoleGrantsSQL(pr.User)
	if err != nil {
		return err
	}
	out, err := p.client.Exec(ctx, stmt)
	if err != nil {
		return err
	}
	p.mu.Lock()
	granted := slices.Clone(p.granted[pr.User])
	p.mu.Unlock()
	var stale []string
	for _, r := range strings.Split(strings.TrimSpace(out), "\n") {
		if r == "" || slices.Contains(pr.Roles, r) {
			continue
		}
		if slices.Contains(granted, r) || (p.managed != nil && p.managed.MatchString(r)) {
			stale = append(stale, r)
		}
	}
	if len(stale) == 0 {
		return nil
	}
	stmt, err = RevokeRolesSQL(stale, pr.User)
	if err != nil {
		return err
	}
	if _, err := p.client.Exec(ctx, stmt); err != nil {
		return err
	}
	p.mu.Lock()
	p.granted[pr.User] = slices.DeleteFunc(p.granted[pr.User], func(r string) bool { return slices.Contains(stale, r) })
	p.mu.Unlock()
	p.log.Info("provisioning: revoked roles the IdP no longer maps", "user", pr.User, "roles", stale)
	return nil
}
