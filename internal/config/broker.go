package config

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/clickgate/clickgate/internal/problems"
	"github.com/clickgate/clickgate/internal/token"
)

// Broker defaults.
const (
	DefaultBrokerAccessTokenTTL  = 10 * time.Minute
	DefaultBrokerRefreshTokenTTL = 7 * 24 * time.Hour
)

// Broker stores.
const (
	BrokerStoreFile       = "file"
	BrokerStoreClickHouse = "clickhouse"
)

// BrokerLeeway is the clock skew allowed on the broker's own tokens.
const BrokerLeeway = time.Second

// BrokerProcessor is the name of the built-in processor that verifies the
// broker's own access tokens; token_processors may not use it.
const BrokerProcessor = "clickgate-broker"

// DevIdPBrokerClient is the development IdP's built-in client for the
// broker's upstream sign-in (public, PKCE, redirect public_url +
// /oauth/callback); used when broker.upstream trusts the dev IdP and has
// no client_id.
const DevIdPBrokerClient = "clickgate-broker"

// BrokerUpstreamIsDevIdP reports whether the broker signs people in at
// the development IdP with its built-in client.
func (c *Config) BrokerUpstreamIsDevIdP() bool {
	p := c.TokenProcessors[c.Broker.Upstream]
	return c.Broker.Enabled && c.DevIdP.Enabled && p != nil && p.Type == token.TypeOIDC &&
		strings.TrimRight(p.Issuer, "/") == c.DevIdPIssuer() && p.ClientID == ""
}

// BrokerProcessorConfig is how clickgate verifies its broker's access
// tokens: ES256 JWTs from public_url for the MCP resource, naming the
// person in "username" and their upstream groups in "groups" (the
// directory turns them into roles as for the upstream's own tokens).
func (c *Config) BrokerProcessorConfig() *token.Config {
	p := &token.Config{
		Type: token.TypeJWT, Issuer: c.Server.PublicURL, Audiences: []string{c.MCPResource()},
		Algorithms: []string{"ES256"}, UsernameClaim: "username", GroupsClaim: "groups",
		// clickgate both issues and checks these tokens: only the clocks
		// of replicas may differ, by far less than an IdP's.
		Leeway: BrokerLeeway,
	}
	p.ApplyDefaults()
	return p
}

func (c *Config) applyBrokerDefaults() {
	b := &c.Broker
	if !b.Enabled {
		return
	}
	if b.KeyFile == "" {
		b.KeyFile = filepath.Join(StateDir(), "broker-keys.json")
	}
	if b.Store == "" {
		b.Store = BrokerStoreFile
	}
	if b.StoreFile == "" && b.Store == BrokerStoreFile {
		b.StoreFile = filepath.Join(StateDir(), "broker-state.json")
	}
	if b.StoreTable == "" && b.Store == BrokerStoreClickHouse {
		b.StoreTable = "clickgate_broker_state"
	}
	if b.AccessTokenTTL == 0 {
		b.AccessTokenTTL = DefaultBrokerAccessTokenTTL
	}
	if b.RefreshTokenTTL == 0 {
		b.RefreshTokenTTL = DefaultBrokerRefreshTokenTTL
	}
	if p := c.TokenProcessors[b.Upstream]; p != nil && len(b.UpstreamScopes) == 0 {
		switch {
		case p.Type == token.TypeGitHub:
			b.UpstreamScopes = []string{"read:user", "user:email", "read:org"}
		case c.BrokerUpstreamIsDevIdP():
			// A refresh token there lets every refresh here re-check the person.
			b.UpstreamScopes = []string{"openid", "email", "profile", "offline_access"}
		default:
			b.UpstreamScopes = []string{"openid", "email", "profile"}
		}
	}
}

// BrokerSealKey decodes broker.seal_key (base64, base64url or hex of 32
// bytes); nil when it is not set.
func (c *Config) BrokerSealKey() ([]byte, error) {
	s := strings.TrimSpace(c.Broker.SealKey)
	if s == "" {
		return nil, nil
	}
	for _, dec := range []func(string) ([]byte, error){
		hex.DecodeString, base64.StdEncoding.DecodeString, base64.RawStdEncoding.DecodeString,
		base64.URLEncoding.DecodeString, base64.RawURLEncoding.DecodeString,
	} {
		if k, err := dec(s); err == nil && len(k) == 32 {
			return k, nil
		}
	}
	return nil, fmt.Errorf("broker.seal_key: not 32 bytes in base64 or hex; make one with: openssl rand -base64 32")
}

func (c *Config) validateBroker(v *problems.List) {
	b := &c.Broker
	if !b.Enabled {
		return
	}
	p, ok := c.TokenProcessors[b.Upstream]
	switch {
	case b.Upstream == "":
		v.Add("broker.upstream", "missing; name the token processor whose IdP signs people in")
	case !ok || p == nil:
		v.Add("broker.upstream", "%q is not a processor in token_processors", b.Upstream)
	case p.Type != token.TypeOIDC && p.Type != token.TypeGitHub && p.Type != token.TypeGoogle:
		v.Add("broker.upstream", "processor %q is of type %s; the broker signs people in with an oidc, github or google processor", b.Upstream, p.Type)
	case p.ClientID == "" && !c.BrokerUpstreamIsDevIdP():
		v.Add("token_processors."+b.Upstream+".client_id", "missing; the broker signs people in as this client: register %s%s as its redirect URI at the IdP", c.Server.PublicURL, "/oauth/callback")
	}
	if _, ok := c.TokenProcessors[BrokerProcessor]; ok {
		v.Add("token_processors."+BrokerProcessor, "the name is taken by the broker's own processor; rename it")
	}
	if c.ClickHouse == nil || !*c.MCP.Enabled {
		v.Add("broker.enabled", "the broker signs MCP clients in to /mcp; it needs a clickhouse section and mcp.enabled")
	} else if c.ClickHouse.Mode == ModeExchange {
		v.Add("broker.enabled", "exchange mode trades the caller's token at the upstream IdP, which does not know the broker's own tokens; use mapped, service, http_auth or impersonate (or bearer with ClickHouse trusting %s/oauth/jwks)", c.Server.PublicURL)
	}
	switch b.Store {
	case BrokerStoreFile:
	case BrokerStoreClickHouse:
		if ch := c.ClickHouse; ch != nil && (ch.User == "" || strings.HasPrefix(ch.URL, ChDBScheme)) {
			v.Add("broker.store", "clickhouse keeps the broker's state through clickhouse.url as clickhouse.user: set a user that may CREATE, SELECT, INSERT and ALTER DELETE %s", b.StoreTable)
		}
	default:
		v.Add("broker.store", "%q is not a store; use file or clickhouse", b.Store)
	}
	if _, err := c.BrokerSealKey(); err != nil {
		v.Add("broker.seal_key", "%v", strings.TrimPrefix(err.Error(), "broker.seal_key: "))
	}
	if b.AccessTokenTTL < 5*time.Second || b.AccessTokenTTL > 24*time.Hour {
		v.Add("broker.access_token_ttl", "%s is outside 5s…24h", b.AccessTokenTTL)
	}
	if b.RefreshTokenTTL < b.AccessTokenTTL || b.RefreshTokenTTL > 90*24*time.Hour {
		v.Add("broker.refresh_token_ttl", "%s is outside access_token_ttl…2160h (90 days)", b.RefreshTokenTTL)
	}
	seen := map[string]bool{}
	for i, cl := range b.Clients {
		path := fmt.Sprintf("broker.clients[%d]", i)
		switch {
		case cl.ClientID == "" || strings.ContainsAny(cl.ClientID, " \t\r\n"):
			v.Add(path+".client_id", "%q is not a client id (not empty, no spaces)", cl.ClientID)
		case strings.HasPrefix(cl.ClientID, "https://") || strings.HasPrefix(cl.ClientID, "http://"):
			v.Add(path+".client_id", "%q is a URL; URL client ids are Client ID Metadata Documents and need no registration", cl.ClientID)
		case seen[cl.ClientID]:
			v.Add(path+".client_id", "%q is listed twice", cl.ClientID)
		}
		seen[cl.ClientID] = true
		if len(cl.RedirectURIs) == 0 {
			v.Add(path+".redirect_uris", "missing; list the client's redirect URIs exactly")
		}
		for j, raw := range cl.RedirectURIs {
			u, err := url.Parse(raw)
			if err != nil || u.Scheme == "" || u.Fragment != "" || strings.Contains(raw, "#") || (u.Host == "" && (u.Scheme == "http" || u.Scheme == "https")) {
				v.Add(fmt.Sprintf("%s.redirect_uris[%d]", path, j), "%q is not an absolute URL without fragment", raw)
			}
		}
	}
	if u, err := url.Parse(c.Server.PublicURL); err == nil && u.Scheme != "https" {
		switch u.Hostname() {
		case "localhost", "127.0.0.1", "::1":
		default:
			c.Warnings = append(c.Warnings, "broker is on but server.public_url is not https: MCP clients refuse authorization servers on plain http except on localhost")
		}
	}
	if b.AllowPrivateClientURLs {
		c.Warnings = append(c.Warnings, "broker.allow_private_client_urls is on: client metadata may be fetched from private and loopback addresses (development only)")
	}
}
