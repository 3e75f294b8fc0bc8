package devidp

import (
	"slices"
	"time"

	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"

	"github.com/clickgate/clickgate/internal/config"
)

// CLIClientID is the built-in public client of clickgate login.
const CLIClientID = config.DevIdPCLIClient

// CLIRedirectURI is the built-in client's registered redirect URI. As a
// native client it may use it on any port of any loopback address
// (RFC 8252, section 7.3), e.g. http://127.0.0.1:53219/callback.
const CLIRedirectURI = "http://127.0.0.1/callback"

// grantTypes maps dev_idp grant type names to OAuth's.
var grantTypes = map[string]oidc.GrantType{
	config.GrantAuthorizationCode: oidc.GrantTypeCode,
	config.GrantRefreshToken:      oidc.GrantTypeRefreshToken,
	config.GrantClientCredentials: oidc.GrantTypeClientCredentials,
	config.GrantDeviceCode:        oidc.GrantTypeDeviceCode,
	config.GrantTokenExchange:     oidc.GrantTypeTokenExchange,
}

// client is an application registered at the IdP.
type client struct {
	id       string
	secret   secret // plain "" and no hash: a public client
	public   bool
	redirect []string
	grants   []oidc.GrantType
	// For client credentials tokens.
	groups    []string
	audiences []string
	loginURL  func(authRequestID string) string
	idTTL     time.Duration
	// devMode lets configured clients use http redirect URIs on any host
	// (a local Grafana, say); the built-in CLI client is held to the
	// native-app rules.
	devMode bool
}

func newClient(c config.DevClient, loginURL func(string) string, ttl time.Duration) *client {
	cl := &client{
		id:        c.ClientID,
		secret:    newSecret(c.ClientSecret),
		public:    c.ClientSecret == "",
		redirect:  c.RedirectURIs,
		groups:    c.Groups,
		audiences: c.Audiences,
		loginURL:  loginURL,
		idTTL:     ttl,
		devMode:   true,
	}
	for _, g := range c.GrantTypes {
		if gt, ok := grantTypes[g]; ok {
			cl.grants = append(cl.grants, gt)
		}
	}
	return cl
}

func newCLIClient(loginURL func(string) string, ttl time.Duration) *client {
	return &client{
		id:       CLIClientID,
		public:   true,
		redirect: []string{CLIRedirectURI},
		grants:   []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken, oidc.GrantTypeDeviceCode},
		loginURL: loginURL,
		idTTL:    ttl,
	}
}

// newBrokerClient is the built-in client of clickgate's own OAuth broker
// when it signs people in here: public (PKCE), redirecting to the
// broker's callback on public_url, which may be plain http in
// development.
func newBrokerClient(callback string, loginURL func(string) string, ttl time.Duration) *client {
	return &client{
		id:       config.DevIdPBrokerClient,
		public:   true,
		redirect: []string{callback},
		grants:   []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken},
		loginURL: loginURL,
		idTTL:    ttl,
		devMode:  true,
	}
}

func (c *client) can(g oidc.GrantType) bool { return slices.Contains(c.grants, g) }

func (c *client) GetID() string                    { return c.id }
func (c *client) RedirectURIs() []string           { return c.redirect }
func (c *client) PostLogoutRedirectURIs() []string { return c.redirect }
func (c *client) ApplicationType() op.ApplicationType {
	if c.public {
		return op.ApplicationTypeNative
	}
	return op.ApplicationTypeWeb
}

func (c *client) AuthMethod() oidc.AuthMethod {
	if c.public {
		return oidc.AuthMethodNone
	}
	return oidc.AuthMethodBasic
}

func (c *client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *client) GrantTypes() []oidc.GrantType        { return c.grants }
func (c *client) LoginURL(id string) string           { return c.loginURL(id) }
func (c *client) AccessTokenType() op.AccessTokenType { return op.AccessTokenTypeJWT }
func (c *client) IDTokenLifetime() time.Duration      { return c.idTTL }
func (c *client) DevMode() bool                       { return c.devMode }

// IsScopeAllowed lets clients ask for scopes beyond OpenID's, such as
// groups or the MCP scopes; they end up in the access token's scope claim.
func (c *client) IsScopeAllowed(scope string) bool { return validScope(scope) }

// IDTokenUserinfoClaimsAssertion puts email, name and groups into ID
// tokens even when an access token is issued too.
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return true }
func (c *client) ClockSkew() time.Duration             { return 0 }
func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

// validScope accepts RFC 6749 scope tokens of sensible length.
func validScope(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for _, r := range s {
		if r < 0x21 || r > 0x7e || r == '"' || r == '\\' {
			return false
		}
	}
	return true
}
