package config

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/clickgate/clickgate/internal/problems"
)

// Defaults that apply when a key is absent.
const (
	DefaultListen = "127.0.0.1:8443"
	// DefaultShutdownGrace and DefaultShutdownTimeout are
	// server.shutdown_grace and server.shutdown_timeout.
	DefaultShutdownGrace   = 5 * time.Second
	DefaultShutdownTimeout = 30 * time.Second
)

func (c *Config) applyDefaults() {
	if c.Server.Listen == "" {
		c.Server.Listen = DefaultListen
	}
	if c.Server.PublicURL == "" {
		c.Server.PublicURL = defaultPublicURL(c.Server)
	}
	c.Server.PublicURL = strings.TrimRight(c.Server.PublicURL, "/")
	if c.Server.ShutdownGrace == nil {
		c.Server.ShutdownGrace = ptr(DefaultShutdownGrace)
	}
	if c.Server.ShutdownTimeout == nil {
		c.Server.ShutdownTimeout = ptr(DefaultShutdownTimeout)
	}

	for _, p := range c.TokenProcessors {
		if p == nil {
			continue
		}
		p.ApplyDefaults()
	}
	if len(c.Directory.Processors) == 0 {
		c.Directory.Processors = sortedKeys(c.TokenProcessors)
	}
	if ch := c.ClickHouse; ch != nil {
		if ch.Provisioning.Interval == 0 {
			ch.Provisioning.Interval = 10 * time.Minute
		}
		if ch.AuthServer == "" {
			ch.AuthServer = "clickgate"
		}
		ch.URL = strings.TrimRight(ch.URL, "/")
		ch.applyNodeDefaults()
	}
	if c.MCP.Enabled == nil {
		c.MCP.Enabled = ptr(true)
	}
	if c.MCP.ReadOnly == nil {
		c.MCP.ReadOnly = ptr(true)
	}
	if c.MCP.MaxResultRows == 0 {
		c.MCP.MaxResultRows = 1000
	}
	if c.MCP.MaxResultBytes == 0 {
		c.MCP.MaxResultBytes = 1 << 20
	}
	if c.MCP.QueryTimeout == 0 {
		c.MCP.QueryTimeout = 30 * time.Second
	}
	if c.MCP.MaxConcurrentQueries == 0 {
		c.MCP.MaxConcurrentQueries = 4
	}
	c.applyNativeDefaults()
	c.applyDevIdPDefaults()
	c.applyBrokerDefaults()
	c.applyAuditDefaults()
}

func (c *Config) applyAuditDefaults() {
	a := &c.Audit
	if a.QueryText == "" {
		a.QueryText = QueryTextFull
	}
	if a.LoginSuccess == "" {
		a.LoginSuccess = LoginSuccessPerToken
	}
	if a.MaxSize > 0 && a.MaxFiles == 0 {
		a.MaxFiles = 5
	}
	t := a.ClickHouse
	if t == nil {
		return
	}
	if t.URL == "" && c.ClickHouse != nil && !strings.HasPrefix(c.ClickHouse.URL, ChDBScheme) {
		t.URL, t.User, t.Password = c.ClickHouse.URL, c.ClickHouse.User, c.ClickHouse.Password
	}
	t.URL = strings.TrimRight(t.URL, "/")
	if t.Database == "" {
		t.Database = "default"
	}
	if t.Table == "" {
		t.Table = "clickgate_audit"
	}
	if t.BatchRows == 0 {
		t.BatchRows = 1000
	}
	if t.FlushInterval == 0 {
		t.FlushInterval = time.Second
	}
	if t.SpoolDir == "" {
		t.SpoolDir = filepath.Join(StateDir(), "audit-spool")
	}
	if t.SpoolMaxBytes == 0 {
		t.SpoolMaxBytes = 1 << 30
	}
}

func (c *Config) validateAudit(v *problems.List) {
	a := c.Audit
	if !slices.Contains([]string{QueryTextFull, QueryTextRedacted, QueryTextNone}, a.QueryText) {
		v.Add("audit.query_text", "%q is not one of full, redacted, none", a.QueryText)
	}
	if !slices.Contains([]string{LoginSuccessPerToken, LoginSuccessPerRequest}, a.LoginSuccess) {
		v.Add("audit.login_success", "%q is not one of per_token, per_request", a.LoginSuccess)
	}
	if a.MaxSize < 0 || a.MaxFiles < 0 {
		v.Add("audit", "max_size and max_files must not be negative")
	}
	if a.MaxSize > 0 && (a.File == "" || a.File == "-") {
		v.Add("audit.max_size", "rotates audit.file; set a file path")
	}
	if a.Required && a.File == "" && a.ClickHouse == nil {
		v.Add("audit.required", "needs a sink: set audit.file or audit.clickhouse")
	}
	t := a.ClickHouse
	if t == nil {
		return
	}
	if t.URL == "" {
		v.Add("audit.clickhouse.url", "missing; set it, or set clickhouse.url to keep the trail in the same ClickHouse (not possible with chdb://)")
	} else {
		v.URL("audit.clickhouse.url", t.URL)
	}
	for _, n := range [][2]string{{"database", t.Database}, {"table", t.Table}} {
		if !identifier.MatchString(n[1]) {
			v.Add("audit.clickhouse."+n[0], "%q is not a plain name (letters, digits and _, not starting with a digit)", n[1])
		}
	}
	if t.BatchRows < 0 || t.FlushInterval < 0 || t.SpoolMaxBytes < 0 || t.TTL < 0 {
		v.Add("audit.clickhouse", "batch_rows, flush_interval, spool_max_bytes and ttl must not be negative")
	}
}

// identifier is a database or table name that needs no quoting.
var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// maxShutdownWait bounds server.shutdown_grace and server.shutdown_timeout.
const maxShutdownWait = time.Hour

func ptr[T any](v T) *T { return &v }

func (c *Config) validate() []string {
	var v problems.List
	if _, _, err := net.SplitHostPort(c.Server.Listen); err != nil {
		v.Add("server.listen", "%q is not host:port (for example 127.0.0.1:8443)", c.Server.Listen)
	}
	if c.Server.MetricsListen != "" {
		c.validateMetricsListen(&v)
	}
	v.URL("server.public_url", c.Server.PublicURL)
	if (c.Server.TLS.CertFile == "") != (c.Server.TLS.KeyFile == "") {
		v.Add("server.tls", "set both cert_file and key_file, or neither")
	}

	if len(c.TokenProcessors) == 0 {
		v.Add("token_processors", "at least one processor is needed to verify tokens")
	}
	for _, name := range sortedKeys(c.TokenProcessors) {
		p := c.TokenProcessors[name]
		path := "token_processors." + name
		if p == nil {
			v.Add(path, "is empty; set at least type")
			continue
		}
		p.Validate(path, &v)
	}
	seen := map[string]bool{}
	for i, name := range c.Directory.Processors {
		if _, ok := c.TokenProcessors[name]; !ok {
			v.Add(fmt.Sprintf("directory.processors[%d]", i), "%q is not a processor in token_processors (have: %s)", name, strings.Join(sortedKeys(c.TokenProcessors), ", "))
		}
		if seen[name] {
			v.Add(fmt.Sprintf("directory.processors[%d]", i), "%q is listed twice", name)
		}
		seen[name] = true
	}
	for i, d := range c.Directory.AllowedDomains {
		if d == "" || strings.ContainsAny(d, "@ /") {
			v.Add(fmt.Sprintf("directory.allowed_domains[%d]", i), "%q is not a domain (write example.com)", d)
		}
	}
	if ch := c.ClickHouse; ch != nil {
		ch.validate(&v)
	}
	c.validateNative(&v)
	c.Limits.validate(&v)
	if grace, timeout := c.Server.Shutdown(); grace < 0 || timeout < 0 {
		v.Add("server", "shutdown_grace and shutdown_timeout must not be negative (0s: no grace, or no wait for requests in flight)")
	} else if grace > maxShutdownWait || timeout > maxShutdownWait {
		v.Add("server", "shutdown_grace and shutdown_timeout must be at most %s each (a stop that waits longer looks hung to systemd and Kubernetes)", maxShutdownWait)
	}
	if c.Server.MaxConnections < 0 {
		v.Add("server.max_connections", "must not be negative (0: a default below the file limit)")
	}
	if c.MCP.MaxResultRows < 0 || c.MCP.MaxResultBytes < 0 || c.MCP.QueryTimeout < 0 {
		v.Add("mcp", "max_result_rows, max_result_bytes and query_timeout must not be negative")
	}
	c.validateMCPPolicy(&v)
	c.validateBroker(&v)
	c.validateDevIdP(&v)
	c.validateAudit(&v)
	return v.Items()
}

// validateMetricsListen checks server.metrics_listen: host:port with a
// numeric port, and not the main listener's address.
func (c *Config) validateMetricsListen(v *problems.List) {
	const path = "server.metrics_listen"
	addr := c.Server.MetricsListen
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.Add(path, "%q is not host:port (for example 127.0.0.1:9464)", addr)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		v.Add(path, "%q needs a port number from 1 to 65535 (for example 127.0.0.1:9464)", addr)
		return
	}
	mainHost, mainPort, err := net.SplitHostPort(c.Server.Listen)
	if err == nil && mainPort == port && (host == mainHost || wildcardHost(host) || wildcardHost(mainHost)) {
		v.Add(path, "%q overlaps server.listen %q; give the metrics listener its own port", addr, c.Server.Listen)
	}
}

// wildcardHost reports whether a listen host binds every address.
func wildcardHost(host string) bool {
	return host == "" || host == "0.0.0.0" || host == "::"
}

func (ch *ClickHouse) validate(v *problems.List) {
	if ch.URL == "" && len(ch.URLs) == 0 {
		v.Add("clickhouse.url", "missing; for example http://127.0.0.1:8123 (or clickhouse.urls for several nodes)")
	}
	ch.validateNodes(v)
	modes := []string{ModeBearer, ModeExchange, ModeHTTPAuth, ModeImpersonate, ModeMapped, ModeService}
	if !slices.Contains(modes, ch.Mode) {
		v.Add("clickhouse.mode", "%q is not a mode; use one of %s", ch.Mode, strings.Join(modes, ", "))
	}
	embedded := strings.HasPrefix(ch.URL, "chdb:")
	if ch.URL != "" && !embedded {
		v.URL("clickhouse.url", ch.URL)
	}
	if embedded {
		ch.validateChDB(v)
	}
	switch ch.Mode {
	case ModeMapped:
		if len(ch.Accounts) == 0 {
			v.Add("clickhouse.accounts", "mapped mode needs at least one {role, user, password} account")
		}
		for i, a := range ch.Accounts {
			if a.Role == "" || a.User == "" {
				v.Add(fmt.Sprintf("clickhouse.accounts[%d]", i), "needs role and user")
			}
		}
	case ModeService, ModeImpersonate:
		if !embedded {
			v.Required("clickhouse.user", ch.User, "the service account clickgate runs queries as")
		}
	case ModeHTTPAuth:
		if ch.Provisioning.CreateUsers || ch.Provisioning.SyncRoles {
			v.Required("clickhouse.user", ch.User, "the account that creates users and grants roles")
		}
	case ModeBearer, ModeExchange:
		v.Required("clickhouse.audience", ch.Audience, "the audience ClickHouse's token processor expects")
	}
	if ch.TicketSecret != "" && len(ch.TicketSecret) < 32 {
		v.Add("clickhouse.ticket_secret", "is shorter than 32 bytes; use a long random secret")
	}
	if ch.Provisioning.ManagedRoles != "" {
		if _, err := regexp.Compile(ch.Provisioning.ManagedRoles); err != nil {
			v.Add("clickhouse.provisioning.managed_roles", "%v", err)
		}
	}
	for k := range ch.Settings {
		if k == "user" || k == "password" || k == "query" || k == "session_id" {
			v.Add("clickhouse.settings."+k, "is not a setting clickgate may fix")
		}
	}
}

// ChDBScheme starts a clickhouse.url that runs ClickHouse inside clickgate
// (package chdb): chdb://<data directory>, e.g. chdb:///var/lib/clickgate/chdb
// or chdb://data (relative to the working directory).
const ChDBScheme = "chdb://"

// ChDBPath returns the data directory of a chdb:// url, and whether url is
// one.
func ChDBPath(url string) (dir string, ok bool) {
	dir, ok = strings.CutPrefix(url, ChDBScheme)
	return dir, ok && dir != ""
}

// validateChDB checks a chdb:// url. The embedded engine is one
// ClickHouse with a single all-powerful user and no authentication: there
// are no accounts to map people to, no tokens it would check and no users to
// create or impersonate, so only service mode applies (every person's
// queries run as that one user, with clickgate's readonly and limits, and
// clickgate's audit log naming the person), and a user or password would
// mean nothing.
func (ch *ClickHouse) validateChDB(v *problems.List) {
	if _, ok := ChDBPath(ch.URL); !ok {
		v.Add("clickhouse.url", "%q names no data directory; write chdb:///absolute/dir or chdb://relative/dir", ch.URL)
	}
	if ch.Mode != "" && ch.Mode != ModeService {
		v.Add("clickhouse.mode", "chdb:// needs mode service, not %s: the embedded engine has one user and no authentication, so there is no account, token or user for %s mode to use", ch.Mode, ch.Mode)
	}
	if ch.User != "" || ch.Password != "" {
		v.Add("clickhouse.user", "chdb:// has no users; remove user and password")
	}
}

// acceptMCPAudience lets processors that check an audience accept tokens
// minted for the MCP endpoint too: "a token must carry one of these (plus
// public_url + /mcp for MCP)".
func (c *Config) acceptMCPAudience() {
	if !*c.MCP.Enabled {
		return
	}
	resource := c.MCPResource()
	for _, p := range c.TokenProcessors {
		if len(p.Audiences) > 0 && !slices.Contains(p.Audiences, resource) {
			p.Audiences = append(p.Audiences, resource)
		}
	}
}

// Development IdP defaults and checks.

// DevIdPCLIClient is the development IdP's built-in public client, used by
// clickgate login (loopback redirects on any port, device flow).
const DevIdPCLIClient = "clickgate-cli"

// Grant types a dev_idp client may name.
const (
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	GrantClientCredentials = "client_credentials"
	GrantDeviceCode        = "device_code"
	GrantTokenExchange     = "token_exchange"
)

// DevIdPGrantTypes are the grant types the development IdP supports.
var DevIdPGrantTypes = []string{GrantAuthorizationCode, GrantRefreshToken, GrantClientCredentials, GrantDeviceCode, GrantTokenExchange}

// Development IdP defaults.
const (
	DefaultDevIdPTokenTTL        = 10 * time.Minute
	DefaultDevIdPRefreshTokenTTL = 24 * time.Hour
)

func (c *Config) applyDevIdPDefaults() {
	d := &c.DevIdP
	if !d.Enabled {
		return
	}
	if d.KeyFile == "" {
		d.KeyFile = DefaultDevIdPKeyFile()
	}
	if d.TokenTTL == 0 {
		d.TokenTTL = DefaultDevIdPTokenTTL
	}
	if d.RefreshTokenTTL == 0 {
		d.RefreshTokenTTL = DefaultDevIdPRefreshTokenTTL
	}
	if len(d.Audiences) == 0 {
		aud := "clickhouse"
		if c.ClickHouse != nil && c.ClickHouse.Audience != "" {
			aud = c.ClickHouse.Audience
		}
		d.Audiences = []string{aud, c.MCPResource()}
	}
	for i := range d.Clients {
		cl := &d.Clients[i]
		if len(cl.GrantTypes) > 0 {
			continue
		}
		if len(cl.RedirectURIs) > 0 {
			cl.GrantTypes = append(cl.GrantTypes, GrantAuthorizationCode, GrantRefreshToken)
		}
		cl.GrantTypes = append(cl.GrantTypes, GrantDeviceCode)
		if cl.ClientSecret != "" {
			cl.GrantTypes = append(cl.GrantTypes, GrantClientCredentials, GrantTokenExchange)
		}
	}
}

// IsBcryptHash reports whether a dev_idp password or client secret is a
// bcrypt hash rather than plain text.
func IsBcryptHash(s string) bool {
	return len(s) == 60 && (strings.HasPrefix(s, "$2a$") || strings.HasPrefix(s, "$2b$") || strings.HasPrefix(s, "$2y$"))
}

func (c *Config) validateDevIdP(v *problems.List) {
	d := &c.DevIdP
	if !d.Enabled {
		return
	}
	badName := func(s string) bool {
		return s == "" || strings.IndexFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0
	}
	checkSecret := func(path, s string) {
		if strings.HasPrefix(s, "$2") && !IsBcryptHash(s) {
			v.Add(path, "looks like a bcrypt hash but is not one (60 characters starting $2a$, $2b$ or $2y$); hash with: htpasswd -bnBC 10 \"\" PASSWORD | tr -d ':\\n'")
		} else if IsBcryptHash(s) {
			if _, err := bcrypt.Cost([]byte(s)); err != nil {
				v.Add(path, "is not a valid bcrypt hash: %v", err)
			}
		}
	}
	users := map[string]bool{}
	emails := map[string]bool{}
	for i, u := range d.Users {
		path := fmt.Sprintf("dev_idp.users[%d]", i)
		if badName(u.Username) {
			v.Add(path+".username", "%q is not a user name (not empty, no spaces or control characters)", u.Username)
		} else if users[strings.ToLower(u.Username)] {
			v.Add(path+".username", "%q is listed twice", u.Username)
		}
		users[strings.ToLower(u.Username)] = true
		if u.Password == "" {
			v.Add(path+".password", "missing; give the password in plain text or as a bcrypt hash")
		}
		checkSecret(path+".password", u.Password)
		if u.Email != "" {
			if at := strings.Index(u.Email, "@"); at <= 0 || at == len(u.Email)-1 || strings.ContainsAny(u.Email, " \t\r\n") {
				v.Add(path+".email", "%q is not an email address", u.Email)
			} else if emails[strings.ToLower(u.Email)] {
				v.Add(path+".email", "%q belongs to two users", u.Email)
			}
			emails[strings.ToLower(u.Email)] = true
		}
		for j, g := range u.Groups {
			if strings.TrimSpace(g) == "" {
				v.Add(fmt.Sprintf("%s.groups[%d]", path, j), "is empty")
			}
		}
	}
	clients := map[string]bool{}
	for i, cl := range d.Clients {
		path := fmt.Sprintf("dev_idp.clients[%d]", i)
		switch {
		case badName(cl.ClientID):
			v.Add(path+".client_id", "%q is not a client id (not empty, no spaces or control characters)", cl.ClientID)
		case cl.ClientID == DevIdPCLIClient:
			v.Add(path+".client_id", "%q is the built-in client of clickgate login; choose another id", cl.ClientID)
		case clients[cl.ClientID]:
			v.Add(path+".client_id", "%q is listed twice", cl.ClientID)
		case users[strings.ToLower(cl.ClientID)]:
			v.Add(path+".client_id", "%q is also a user name; tokens of the two would have the same subject", cl.ClientID)
		}
		clients[cl.ClientID] = true
		checkSecret(path+".client_secret", cl.ClientSecret)
		for j, raw := range cl.RedirectURIs {
			u, err := url.Parse(raw)
			if err != nil || u.Scheme == "" || u.Fragment != "" || (u.Host == "" && (u.Scheme == "http" || u.Scheme == "https")) {
				v.Add(fmt.Sprintf("%s.redirect_uris[%d]", path, j), "%q is not an absolute URL without fragment", raw)
			}
		}
		for j, g := range cl.GrantTypes {
			gp := fmt.Sprintf("%s.grant_types[%d]", path, j)
			switch {
			case !slices.Contains(DevIdPGrantTypes, g):
				v.Add(gp, "%q is not a grant type; use some of %s", g, strings.Join(DevIdPGrantTypes, ", "))
			case g == GrantAuthorizationCode && len(cl.RedirectURIs) == 0:
				v.Add(gp, "authorization_code needs redirect_uris")
			case (g == GrantClientCredentials || g == GrantTokenExchange) && cl.ClientSecret == "":
				v.Add(gp, "%s needs a client_secret (a public client cannot keep one)", g)
			}
		}
		for j, a := range cl.Audiences {
			if strings.TrimSpace(a) == "" {
				v.Add(fmt.Sprintf("%s.audiences[%d]", path, j), "is empty")
			}
		}
	}
	if d.TokenTTL < time.Minute || d.TokenTTL > 24*time.Hour {
		v.Add("dev_idp.token_ttl", "%s is outside 1m…24h", d.TokenTTL)
	}
	if d.RefreshTokenTTL < d.TokenTTL || d.RefreshTokenTTL > 90*24*time.Hour {
		v.Add("dev_idp.refresh_token_ttl", "%s is outside token_ttl…2160h (90 days)", d.RefreshTokenTTL)
	}
	for i, a := range d.Audiences {
		if strings.TrimSpace(a) == "" {
			v.Add(fmt.Sprintf("dev_idp.audiences[%d]", i), "is empty")
		}
	}
	if len(d.Users) == 0 && len(d.Clients) == 0 {
		c.Warnings = append(c.Warnings, "dev_idp is on without users or clients: nobody can sign in at it (add dev_idp.users)")
	}
	issuer := c.DevIdPIssuer()
	trusted := false
	for _, p := range c.TokenProcessors {
		if p != nil && strings.TrimRight(p.Issuer, "/") == issuer {
			trusted = true
		}
	}
	if !trusted {
		c.Warnings = append(c.Warnings, fmt.Sprintf("dev_idp is on but no token processor trusts its tokens; add one: {type: oidc, issuer: %s, audiences: [%s], username_claim: email}", issuer, d.Audiences[0]))
	}
}

// Node defaults.
const (
	DefaultHealthInterval  = 5 * time.Second
	DefaultHealthTimeout   = 2 * time.Second
	DefaultRetries         = 2
	DefaultConnectTimeout  = 5 * time.Second
	DefaultResponseTimeout = 5 * time.Minute
)

func (ch *ClickHouse) applyNodeDefaults() {
	for i, u := range ch.URLs {
		ch.URLs[i] = strings.TrimRight(u, "/")
	}
	switch {
	case len(ch.URLs) == 0 && ch.URL != "":
		ch.URLs = []string{ch.URL}
	case ch.URL == "" && len(ch.URLs) > 0:
		ch.URL = ch.URLs[0] // the first node stands for the cluster where one URL is needed
	}
	if ch.Health.Interval == 0 {
		ch.Health.Interval = DefaultHealthInterval
	}
	if ch.Health.Timeout == 0 {
		ch.Health.Timeout = DefaultHealthTimeout
	}
	if ch.Retries == nil {
		ch.Retries = ptr(DefaultRetries)
	}
	if ch.ConnectTimeout == 0 {
		ch.ConnectTimeout = DefaultConnectTimeout
	}
	if ch.ResponseTimeout == 0 {
		ch.ResponseTimeout = DefaultResponseTimeout
	}
}

func (ch *ClickHouse) validateNodes(v *problems.List) {
	if ch.URL != "" && len(ch.URLs) > 1 && !slices.Contains(ch.URLs, ch.URL) {
		v.Add("clickhouse", "set url (one node) or urls (several), not both")
	}
	seen := map[string]bool{}
	for i, u := range ch.URLs {
		path := fmt.Sprintf("clickhouse.urls[%d]", i)
		if strings.HasPrefix(u, ChDBScheme) {
			if len(ch.URLs) > 1 {
				v.Add(path, "chdb:// is one embedded engine; it cannot be one of several nodes")
			}
			continue
		}
		v.URL(path, u)
		if seen[u] {
			v.Add(path, "%q is listed twice", u)
		}
		seen[u] = true
	}
	if ch.Health.Interval < 0 || ch.Health.Timeout < 0 || ch.Health.MaxReplicaDelay < 0 {
		v.Add("clickhouse.health", "interval, timeout and max_replica_delay must not be negative")
	}
	if ch.Health.Timeout > ch.Health.Interval {
		v.Add("clickhouse.health.timeout", "%s is longer than the interval %s", ch.Health.Timeout, ch.Health.Interval)
	}
	if *ch.Retries < 0 {
		v.Add("clickhouse.retries", "must not be negative")
	}
	if ch.ConnectTimeout < 0 || ch.ResponseTimeout < 0 {
		v.Add("clickhouse", "connect_timeout and response_timeout must not be negative")
	}
}

func (l *Limits) validate(v *problems.List) {
	l.Default.validate(v, "limits.default")
	for _, name := range sortedKeys(l.Roles) {
		l.Roles[name].validate(v, "limits.roles."+name)
	}
	for _, name := range sortedKeys(l.People) {
		l.People[name].validate(v, "limits.people."+name)
	}
}

func (l Limit) validate(v *problems.List, path string) {
	for _, n := range []struct {
		key string
		val *int
	}{{"max_concurrent_queries", l.MaxConcurrentQueries}, {"max_queue", l.MaxQueue}, {"requests_per_minute", l.RequestsPerMinute}} {
		if n.val != nil && *n.val < 0 {
			v.Add(path+"."+n.key, "must not be negative (0: no limit)")
		}
	}
	if l.MaxQueueTime < 0 {
		v.Add(path+".max_queue_time", "must not be negative")
	}
	for i, n := range l.Networks {
		if _, _, err := net.ParseCIDR(n); err != nil {
			if net.ParseIP(n) == nil {
				v.Add(fmt.Sprintf("%s.networks[%d]", path, i), "%q is not an address or CIDR (for example 10.0.0.0/8)", n)
			}
		}
	}
}
