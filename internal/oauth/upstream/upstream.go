// Package upstream is the OAuth broker as a client of the identity
// provider where it sends people to sign in: authorization code with
// PKCE, the code exchange, and refreshes that ask the IdP again.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"golang.org/x/oauth2"

	"github.com/clickgate/clickgate/internal/oidcdiscovery"
	"github.com/clickgate/clickgate/internal/token"
)

// Client signs people in at the identity provider where the broker sends
// them, as an OAuth client of its own (authorization code with PKCE).
type Client struct {
	// Processor is the token processor that verifies the upstream's
	// access tokens; only identities it proves are accepted.
	Processor string
	// Issuer is checked against an iss parameter on the callback (RFC
	// 9207), when the IdP sends one; empty for IdPs without issuers.
	Issuer string

	client *http.Client
	base   oauth2.Config

	mu       sync.Mutex
	endpoint *oauth2.Endpoint
}

// Well-known endpoints of IdPs without discovery.
var (
	googleEndpoint = oauth2.Endpoint{
		AuthURL: "https://accounts.google.com/o/oauth2/v2/auth", TokenURL: "https://oauth2.googleapis.com/token",
		AuthStyle: oauth2.AuthStyleInParams,
	}
)

// New describes the sign-in at the IdP of processor name (cfg).
// clientID and secret are the broker's credentials there; redirect is
// the broker's callback URL.
func New(name string, cfg *token.Config, clientID, secret, redirect string, scopes []string, client *http.Client) (*Client, error) {
	if client == nil {
		client = http.DefaultClient
	}
	u := &Client{
		Processor: name, client: client,
		base: oauth2.Config{ClientID: clientID, ClientSecret: secret, RedirectURL: redirect, Scopes: scopes},
	}
	switch cfg.Type {
	case token.TypeOIDC:
		u.Issuer = cfg.Issuer // the endpoints are discovered on first use
	case token.TypeGitHub:
		// github.com, or GitHub Enterprise whose API is https://HOST/api/v3.
		web := "https://github.com"
		if cfg.APIURL != "" && !strings.HasPrefix(cfg.APIURL, "https://api.github.com") {
			api, err := url.Parse(cfg.APIURL)
			if err != nil {
				return nil, fmt.Errorf("token_processors.%s.api_url: %v", name, err)
			}
			web = api.Scheme + "://" + api.Host
		}
		u.endpoint = &oauth2.Endpoint{AuthURL: web + "/login/oauth/authorize", TokenURL: web + "/login/oauth/access_token", AuthStyle: oauth2.AuthStyleInParams}
	case token.TypeGoogle:
		u.Issuer = "https://accounts.google.com"
		e := googleEndpoint
		u.endpoint = &e
	default:
		return nil, fmt.Errorf("broker.upstream: processor %s of type %s cannot sign people in", name, cfg.Type)
	}
	return u, nil
}

// config returns the OAuth client configuration, discovering the
// endpoints on first use (and again after a failure).
func (u *Client) config(ctx context.Context) (*oauth2.Config, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.endpoint == nil {
		e, err := u.discoverEndpoints(ctx)
		if err != nil {
			return nil, err
		}
		u.endpoint = e
	}
	c := u.base
	c.Endpoint = *u.endpoint
	return &c, nil
}

func (u *Client) discoverEndpoints(ctx context.Context) (*oauth2.Endpoint, error) {
	d, err := oidcdiscovery.Fetch(ctx, oidcdiscovery.HTTP(u.client), u.Issuer)
	if err != nil {
		return nil, err
	}
	if d.AuthorizationEndpoint == "" || d.TokenEndpoint == "" {
		return nil, fmt.Errorf("discovery at %s lacks authorization_endpoint or token_endpoint", oidcdiscovery.URL(u.Issuer))
	}
	return &oauth2.Endpoint{AuthURL: d.AuthorizationEndpoint, TokenURL: d.TokenEndpoint}, nil
}

// AuthCodeURL is where the person signs in; verifier is the broker's own
// PKCE verifier for this sign-in.
func (u *Client) AuthCodeURL(ctx context.Context, state, verifier string) (string, error) {
	c, err := u.config(ctx)
	if err != nil {
		return "", err
	}
	return c.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier)), nil
}

// Exchange trades the upstream's code for its tokens.
func (u *Client) Exchange(ctx context.Context, code, verifier string) (*oauth2.Token, error) {
	c, err := u.config(ctx)
	if err != nil {
		return nil, err
	}
	tok, err := c.Exchange(context.WithValue(ctx, oauth2.HTTPClient, u.client), code, oauth2.VerifierOption(verifier))
	if err != nil {
		return nil, refusal("the sign-in code", err)
	}
	return tok, nil
}

// Refresh asks the upstream for new tokens with its refresh token, which
// tells whether the person's sign-in there still stands.
func (u *Client) Refresh(ctx context.Context, refreshToken string) (*oauth2.Token, error) {
	c, err := u.config(ctx)
	if err != nil {
		return nil, err
	}
	tok, err := c.TokenSource(context.WithValue(ctx, oauth2.HTTPClient, u.client), &oauth2.Token{RefreshToken: refreshToken}).Token()
	if err != nil {
		return nil, refusal("the refresh token", err)
	}
	return tok, nil
}

// ErrRefused reports an upstream that answered no (rather than not
// answering).
var ErrRefused = errors.New("the identity provider refused")

func refusal(what string, err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500 {
		desc := re.ErrorDescription
		if len(desc) > 200 {
			desc = desc[:200] + "…"
		}
		return fmt.Errorf("%w %s: %s %s", ErrRefused, what, re.ErrorCode, desc)
	}
	if errors.As(err, &re) && re.Response != nil {
		return fmt.Errorf("the identity provider answered HTTP %d for %s", re.Response.StatusCode, what)
	}
	return fmt.Errorf("asking the identity provider about %s: %v", what, err)
}
