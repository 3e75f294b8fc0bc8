// Package config loads and validates clickgate's YAML configuration.
//
// Loading is strict: unknown keys are errors that name the key's path,
// ${ENV} references are expanded in scalar values, and every problem found
// is reported at once with what to fix.
package config

import (
	"os"
	"path/filepath"
	"time"

	"github.com/clickgate/clickgate/internal/token"
)

// Config is the whole clickgate configuration file.
type Config struct {
	Server          Server                   `yaml:"server"`
	TokenProcessors map[string]*token.Config `yaml:"token_processors"`
	Directory       Directory                `yaml:"directory"`
	// ClickHouse is nil when the file has no clickhouse section: the
	// gateway is then off, while the auth endpoint and /whoami still work.
	ClickHouse *ClickHouse `yaml:"clickhouse"`
	MCP        MCP         `yaml:"mcp"`
	Broker     Broker      `yaml:"broker"`
	DevIdP     DevIdP      `yaml:"dev_idp"`
	Audit      Audit       `yaml:"audit"`
	Limits     Limits      `yaml:"limits"`

	// Warnings are non-fatal findings, such as unset environment variables.
	Warnings []string `yaml:"-"`
}

// Server configures the HTTP listener.
type Server struct {
	Listen         string   `yaml:"listen"`
	PublicURL      string   `yaml:"public_url"`
	TLS            TLS      `yaml:"tls"`
	AllowedOrigins []string `yaml:"allowed_origins"`
	// MaxConnections bounds the connections the listener holds open;
	// beyond it new ones get a 503 and are closed. 0: a default below the
	// process's file limit.
	MaxConnections int `yaml:"max_connections"`
	// MetricsListen (host:port), when set, is a second, plain-HTTP listener
	// that serves /metrics alone; the main listener then answers /metrics
	// with a local 404. Empty: /metrics is on the main listener.
	MetricsListen string `yaml:"metrics_listen"`
	// NativeListen (host:port), when set, serves ClickHouse's native TCP
	// protocol with token sign-in (package native); NativeTLS, when both
	// files are set, puts TLS on it (ClickHouse's secure port is 9440).
	NativeListen string `yaml:"native_listen"`
	NativeTLS    TLS    `yaml:"native_tls"`
	// ShutdownGrace is how long, after SIGTERM or SIGINT, new connections
	// are still accepted while /readyz answers 503, so that load balancers
	// stop sending before the listener closes; default
	// DefaultShutdownGrace. Load leaves it set.
	ShutdownGrace *time.Duration `yaml:"shutdown_grace"`
	// ShutdownTimeout is how long requests in flight may run on after the
	// listener closed; those still running then are cut. Default
	// DefaultShutdownTimeout. Load leaves it set.
	ShutdownTimeout *time.Duration `yaml:"shutdown_timeout"`
}

// Shutdown returns server.shutdown_grace and server.shutdown_timeout,
// with their defaults when unset (a Config not from Load).
func (s Server) Shutdown() (grace, timeout time.Duration) {
	grace, timeout = DefaultShutdownGrace, DefaultShutdownTimeout
	if s.ShutdownGrace != nil {
		grace = *s.ShutdownGrace
	}
	if s.ShutdownTimeout != nil {
		timeout = *s.ShutdownTimeout
	}
	return grace, timeout
}

// TLS names the listener's certificate; both empty means plain HTTP.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Directory turns identities into ClickHouse principals.
type Directory struct {
	Processors     []string `yaml:"processors"`
	AllowedDomains []string `yaml:"allowed_domains"`
	Roles          Roles    `yaml:"roles"`
}

// Roles is the group → role pipeline: mapping, filter, transform, common.
type Roles struct {
	Mapping   map[string]string `yaml:"mapping"`
	Filter    string            `yaml:"filter"`
	Transform string            `yaml:"transform"`
	Common    []string          `yaml:"common"`
}

// Upstream modes.
const (
	ModeBearer      = "bearer"
	ModeExchange    = "exchange"
	ModeHTTPAuth    = "http_auth"
	ModeImpersonate = "impersonate"
	ModeMapped      = "mapped"
	ModeService     = "service"
)

// ClickHouse configures the upstream server and how requests reach it.
type ClickHouse struct {
	URL          string            `yaml:"url"`
	Mode         string            `yaml:"mode"`
	User         string            `yaml:"user"`
	Password     string            `yaml:"password"`
	Audience     string            `yaml:"audience"`
	AuthServer   string            `yaml:"auth_server"`
	Accounts     []Account         `yaml:"accounts"`
	Provisioning Provisioning      `yaml:"provisioning"`
	Settings     map[string]string `yaml:"settings"`
	// TicketSecret signs http_auth tickets; replicas must share it. Empty
	// means a random key per process.
	TicketSecret string `yaml:"ticket_secret"`
	// QuotaKey sends the person as quota_key in the shared-account modes
	// (service, mapped): only for accounts whose quota is keyed, since
	// ClickHouse refuses a client-supplied key under any other quota.
	QuotaKey bool `yaml:"quota_key"`

	// URLs are the nodes (replicas of one cluster) when there are several;
	// URL alone is one node. Load sets URLs to [URL] then.
	URLs   []string `yaml:"urls"`
	Health Health   `yaml:"health"`
	// NativeURL names ClickHouse's native TCP interface, for the native
	// listener: tcp://host:port (tls://host:port with TLS), one or a list
	// (the nodes of the cluster, tried in turn). Load sets it, when
	// server.native_listen is set and it is not, from the HTTP URLs: each
	// host with port 9000 (tls:// and 9440 for https).
	NativeURL StringList `yaml:"native_url"`
	// Retries is how many other nodes a request is tried on when its node
	// fails before any byte of the request was written to it.
	Retries *int `yaml:"retries"`
	// ConnectTimeout bounds connecting to a node; ResponseTimeout bounds
	// the wait for its response headers (which ClickHouse sends when the
	// first result is ready: raise it for queries that think longer), so
	// that a node that stopped answering fails a request instead of
	// hanging it.
	ConnectTimeout  time.Duration `yaml:"connect_timeout"`
	ResponseTimeout time.Duration `yaml:"response_timeout"`
}

// Health configures the checks of the nodes: GET /ping every Interval,
// each bounded by Timeout, and /replicas_status when MaxReplicaDelay is
// set (a node whose replicas lag more gets no requests).
type Health struct {
	Interval        time.Duration `yaml:"interval"`
	Timeout         time.Duration `yaml:"timeout"`
	MaxReplicaDelay time.Duration `yaml:"max_replica_delay"`
}

// Account is a static ClickHouse account for mapped mode.
type Account struct {
	Role     string `yaml:"role"`
	User     string `yaml:"user"`
	Password string `yaml:"password"`
}

// Provisioning controls user creation and role sync.
type Provisioning struct {
	CreateUsers bool `yaml:"create_users"`
	SyncRoles   bool `yaml:"sync_roles"`
	// ManagedRoles (a full-match regexp) names roles sync_roles may revoke
	// beyond those this process granted; roles granted by hand outside it
	// are never touched.
	ManagedRoles string `yaml:"managed_roles"`
	// Interval is how often a principal is provisioned again.
	Interval time.Duration `yaml:"interval"`
}

// MCP configures the MCP server.
type MCP struct {
	Enabled        *bool         `yaml:"enabled"`
	ReadOnly       *bool         `yaml:"read_only"`
	MaxResultRows  int           `yaml:"max_result_rows"`
	MaxResultBytes int           `yaml:"max_result_bytes"`
	QueryTimeout   time.Duration `yaml:"query_timeout"`
	Policy         []MCPPolicy   `yaml:"policy"`
	// Audiences are accepted at /mcp besides the MCP resource itself.
	Audiences []string `yaml:"audiences"`
	// Scopes, when set, are required per tool class.
	Scopes MCPScopes `yaml:"scopes"`
	// MaxConcurrentQueries limits each person's queries in flight.
	MaxConcurrentQueries int `yaml:"max_concurrent_queries"`
}

// MCPScopes are the OAuth scopes that read and write tools require.
type MCPScopes struct {
	Read  string `yaml:"read"`
	Write string `yaml:"write"`
}

// MCPResource is the resource identifier of the MCP endpoint (RFC 8707).
func (c *Config) MCPResource() string { return c.Server.PublicURL + "/mcp" }

// Broker configures clickgate as OAuth authorization server for MCP clients.
type Broker struct {
	Enabled bool `yaml:"enabled"`
	// Upstream is the processor whose IdP performs the sign-in: an oidc,
	// github or google processor with client_id (and usually
	// client_secret), or an oidc processor trusting the dev IdP.
	Upstream string `yaml:"upstream"`
	// UpstreamScopes are asked of the upstream IdP; default by type.
	UpstreamScopes []string `yaml:"upstream_scopes"`
	// SealKey (32 bytes, base64 or hex) encrypts and authenticates the
	// broker's transient state; replicas must share it. Empty: a key kept
	// in the state directory (one process only).
	SealKey string `yaml:"seal_key"`
	// KeyFile keeps the access-token signing keys (ES256, rotated with
	// clickgate broker rotate-key); replicas must share it.
	KeyFile string `yaml:"key_file"`
	// Store remembers used codes and refresh-token families: "file"
	// (StoreFile, shared by processes on one host or a shared volume) or
	// "clickhouse" (StoreTable, through clickhouse.url as clickhouse.user,
	// for replicas on several hosts).
	Store           string        `yaml:"store"`
	StoreFile       string        `yaml:"store_file"`
	StoreTable      string        `yaml:"store_table"`
	AccessTokenTTL  time.Duration `yaml:"access_token_ttl"`
	RefreshTokenTTL time.Duration `yaml:"refresh_token_ttl"`
	// Clients are pre-registered MCP clients, besides Client ID Metadata
	// Documents and dynamic registration.
	Clients []BrokerClient `yaml:"clients"`
	// AllowPrivateClientURLs lets Client ID Metadata Documents be fetched
	// from loopback, private and link-local addresses: development only.
	AllowPrivateClientURLs bool `yaml:"allow_private_client_urls"`
}

// BrokerClient is a pre-registered client of the broker.
type BrokerClient struct {
	ClientID     string   `yaml:"client_id"`
	ClientSecret string   `yaml:"client_secret"` // empty: a public client
	ClientName   string   `yaml:"client_name"`
	RedirectURIs []string `yaml:"redirect_uris"`
}

// DevIdP configures the built-in development identity provider, an OpenID
// provider served under /idp (issuer public_url + /idp).
type DevIdP struct {
	Enabled bool      `yaml:"enabled"`
	Users   []DevUser `yaml:"users"`
	// Clients are the applications allowed to use it, besides the built-in
	// public client "clickgate-cli" (clickgate login).
	Clients []DevClient `yaml:"clients"`
	// KeyFile keeps the signing keys (created on first start, mode 0600);
	// default DefaultDevIdPKeyFile().
	KeyFile string `yaml:"key_file"`
	// TokenTTL is the lifetime of access and ID tokens.
	TokenTTL time.Duration `yaml:"token_ttl"`
	// RefreshTokenTTL is how long a refresh token may be used.
	RefreshTokenTTL time.Duration `yaml:"refresh_token_ttl"`
	// Audiences go into every person's access token; default
	// clickhouse.audience (or "clickhouse") and the MCP resource.
	Audiences []string `yaml:"audiences"`
}

// DevUser is one person known to the development IdP.
type DevUser struct {
	Username string `yaml:"username"`
	// Password is plain text or a bcrypt hash ($2a$, $2b$ or $2y$).
	Password string   `yaml:"password"`
	Email    string   `yaml:"email"`
	Groups   []string `yaml:"groups"`
	Name     string   `yaml:"name"`
	// EmailVerified is the email_verified claim; default true.
	EmailVerified *bool `yaml:"email_verified"`
}

// DevClient is an application registered at the development IdP.
type DevClient struct {
	ClientID string `yaml:"client_id"`
	// ClientSecret is plain text or a bcrypt hash; empty makes a public
	// client, which must use PKCE.
	ClientSecret string   `yaml:"client_secret"`
	RedirectURIs []string `yaml:"redirect_uris"`
	// GrantTypes are some of authorization_code, refresh_token,
	// client_credentials, device_code, token_exchange; default all that
	// the client's kind allows.
	GrantTypes []string `yaml:"grant_types"`
	// Groups are the groups claim of client credentials tokens.
	Groups []string `yaml:"groups"`
	// Audiences of client credentials tokens; default dev_idp.audiences.
	Audiences []string `yaml:"audiences"`
}

// Limits bound what each person may run, at the gateway and MCP alike:
// the entry for the person wins over those of their roles, which win over
// the default; a person with several roles with entries gets, key by key,
// the most generous of them.
type Limits struct {
	Default Limit            `yaml:"default"`
	Roles   map[string]Limit `yaml:"roles"`
	People  map[string]Limit `yaml:"people"`
}

// Limit is one entry of limits; a key left out inherits from the less
// specific entry, and 0 means no limit.
type Limit struct {
	// MaxConcurrentQueries bounds the person's queries in flight; up to
	// MaxQueue more wait for a slot, at most MaxQueueTime each.
	MaxConcurrentQueries *int          `yaml:"max_concurrent_queries"`
	MaxQueue             *int          `yaml:"max_queue"`
	MaxQueueTime         time.Duration `yaml:"max_queue_time"`
	RequestsPerMinute    *int          `yaml:"requests_per_minute"`
	// Networks are the client addresses (CIDRs) the person may come from.
	Networks []string `yaml:"networks"`
}

// Audit configures the audit trail: one event per sign-in, query, tool
// call and broker action, to a JSON-lines file and/or a ClickHouse table.
type Audit struct {
	// File receives JSON lines; "-" means stderr, "" turns the file off.
	File string `yaml:"file"`
	// MaxSize (bytes) rotates the file to file.1 … file.MaxFiles when it
	// would grow past it; 0 never rotates (reopen it on SIGHUP instead).
	MaxSize  int64 `yaml:"max_size"`
	MaxFiles int   `yaml:"max_files"`
	// QueryText is how SQL is recorded: full, redacted (literals become ?)
	// or none.
	QueryText string `yaml:"query_text"`
	// LoginSuccess is per_token (a token's first use, until its cached
	// identity expires) or per_request.
	LoginSuccess string `yaml:"login_success"`
	// Required refuses queries when no sink can keep their events.
	Required   bool             `yaml:"required"`
	ClickHouse *AuditClickHouse `yaml:"clickhouse"`
}

// Audit.QueryText values.
const (
	QueryTextFull     = "full"
	QueryTextRedacted = "redacted"
	QueryTextNone     = "none"
)

// Audit.LoginSuccess values.
const (
	LoginSuccessPerToken   = "per_token"
	LoginSuccessPerRequest = "per_request"
)

// AuditClickHouse is the audit table's ClickHouse: URL empty means the
// gateway's clickhouse.url, as clickhouse.user.
type AuditClickHouse struct {
	URL      string `yaml:"url"`
	User     string `yaml:"user"`
	Password string `yaml:"password"`
	Database string `yaml:"database"`
	Table    string `yaml:"table"`
	// BatchRows and FlushInterval bound how long an event waits in memory.
	BatchRows     int           `yaml:"batch_rows"`
	FlushInterval time.Duration `yaml:"flush_interval"`
	// SpoolDir keeps batches the table could not take, for replay.
	SpoolDir      string        `yaml:"spool_dir"`
	SpoolMaxBytes int64         `yaml:"spool_max_bytes"`
	TTL           time.Duration `yaml:"ttl"`
}

// DevIdPPath is where the development IdP is served; its issuer is
// server.public_url + DevIdPPath.
const DevIdPPath = "/idp"

// DevIdPIssuer is the development IdP's issuer URL.
func (c *Config) DevIdPIssuer() string { return c.Server.PublicURL + DevIdPPath }

// DefaultDevIdPKeyFile is where the development IdP keeps its signing keys
// when dev_idp.key_file is not set: dev-idp-keys.json in StateDir.
func DefaultDevIdPKeyFile() string { return filepath.Join(StateDir(), "dev-idp-keys.json") }

// StateDir is where clickgate keeps keys and state it creates itself:
// $CLICKGATE_STATE_DIR, else $XDG_STATE_HOME/clickgate, else
// ~/.local/state/clickgate, else .clickgate in the working directory.
func StateDir() string {
	if dir := os.Getenv("CLICKGATE_STATE_DIR"); dir != "" {
		return dir
	}
	if x := os.Getenv("XDG_STATE_HOME"); x != "" {
		return filepath.Join(x, "clickgate")
	}
	if home, err := os.UserHomeDir(); err == nil && home != "" {
		return filepath.Join(home, ".local", "state", "clickgate")
	}
	return ".clickgate"
}
