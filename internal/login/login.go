// Package login signs a person in at an OpenID provider from the command
// line and keeps their tokens: it obtains them (authorization code with
// PKCE through a loopback redirect, or the device flow of RFC 8628),
// caches them per issuer and client in the user's configuration directory
// (files readable by their owner only), refreshes them when they are near
// expiry, and revokes them on logout (RFC 7009).
//
// It is the client side of clickgate login, token, whoami and query; it
// knows nothing of clickgate's server beyond the issuer it is given.
package login

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// DefaultScopes are asked for when a provider names none: an ID token,
// the person's name and email, and a refresh token.
var DefaultScopes = []string{"openid", "profile", "email", "offline_access"}

// DevIdPScopes are the scopes asked of clickgate's development IdP: the
// defaults plus its groups claim.
var DevIdPScopes = []string{"openid", "profile", "email", "groups", "offline_access"}

// DefaultMinValid is how much lifetime an access token must have left to
// be handed out as it is; one with less is refreshed first.
const DefaultMinValid = 60 * time.Second

// Provider is where and as which application a person signs in.
type Provider struct {
	// Issuer is the OpenID provider's issuer URL; its discovery document
	// is at Issuer + "/.well-known/openid-configuration".
	Issuer string
	// ClientID names the application; ClientSecret is empty for a public
	// client (which PKCE protects).
	ClientID     string
	ClientSecret string
	// Scopes asked for; DefaultScopes when empty.
	Scopes []string
	// Audience, when set, is sent as the audience parameter (Auth0, and
	// others, issue access tokens for the API it names).
	Audience string
}

func (p Provider) scopes() []string {
	if len(p.Scopes) == 0 {
		return DefaultScopes
	}
	return p.Scopes
}

// ParseScopes splits a --scope value separated by spaces or commas.
func ParseScopes(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == ',' })
}

// ErrNotSignedIn means there is no cached sign-in to use.
var ErrNotSignedIn = errors.New("not signed in")

// ErrSignInExpired means the cached sign-in can no longer be refreshed
// (the refresh token expired or was revoked, or there is none).
var ErrSignInExpired = errors.New("sign-in expired")

// oauthConfig is the oauth2 configuration of p at the endpoints of m.
func (p Provider) oauthConfig(m *Metadata, redirectURL string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     p.ClientID,
		ClientSecret: p.ClientSecret,
		Endpoint: oauth2.Endpoint{
			AuthURL:       m.AuthorizationEndpoint,
			TokenURL:      m.TokenEndpoint,
			DeviceAuthURL: m.DeviceAuthorizationEndpoint,
		},
		RedirectURL: redirectURL,
		Scopes:      p.scopes(),
	}
}

// withClient makes oauth2 use client for its requests.
func withClient(ctx context.Context, client *http.Client) context.Context {
	if client == nil {
		client = defaultHTTPClient
	}
	return context.WithValue(ctx, oauth2.HTTPClient, client)
}

var defaultHTTPClient = &http.Client{Timeout: 30 * time.Second}

// newSession records the tokens a sign-in at p obtained.
func newSession(p Provider, m *Metadata, tok *oauth2.Token, now time.Time) *Session {
	s := &Session{
		Issuer:             p.Issuer,
		ClientID:           p.ClientID,
		ClientSecret:       p.ClientSecret,
		Scopes:             p.scopes(),
		Audience:           p.Audience,
		TokenEndpoint:      m.TokenEndpoint,
		RevocationEndpoint: m.RevocationEndpoint,
	}
	s.update(tok, now)
	return s
}

// tokenError turns an error of the token endpoint into one a person can
// act on.
func tokenError(what string, err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		msg := re.ErrorCode
		if msg == "" {
			msg = fmt.Sprintf("HTTP %d", re.Response.StatusCode)
		}
		if re.ErrorDescription != "" {
			msg += ": " + re.ErrorDescription
		}
		return fmt.Errorf("login: %s: the identity provider refused: %s", what, msg)
	}
	return fmt.Errorf("login: %s: %w", what, err)
}
