package login

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Metadata is the part of an OpenID provider's discovery document that
// sign-in needs.
type Metadata struct {
	Issuer                        string   `json:"issuer"`
	AuthorizationEndpoint         string   `json:"authorization_endpoint"`
	TokenEndpoint                 string   `json:"token_endpoint"`
	DeviceAuthorizationEndpoint   string   `json:"device_authorization_endpoint"`
	RevocationEndpoint            string   `json:"revocation_endpoint"`
	CodeChallengeMethodsSupported []string `json:"code_challenge_methods_supported"`
}

// DiscoveryError is why an issuer's discovery document could not be had:
// the provider is unreachable, or the URL is not an issuer's.
type DiscoveryError struct {
	Issuer string
	Err    error
}

func (e *DiscoveryError) Error() string { return e.Err.Error() }
func (e *DiscoveryError) Unwrap() error { return e.Err }

// Discover fetches issuer's discovery document and checks that it speaks
// for issuer (OpenID Connect Discovery 1.0, section 4.3). Its errors are
// *DiscoveryError.
func Discover(ctx context.Context, client *http.Client, issuer string) (*Metadata, error) {
	m, err := discover(ctx, client, issuer)
	if err != nil {
		return nil, &DiscoveryError{Issuer: issuer, Err: err}
	}
	return m, nil
}

func discover(ctx context.Context, client *http.Client, issuer string) (*Metadata, error) {
	if client == nil {
		client = defaultHTTPClient
	}
	u, err := url.Parse(issuer)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("login: issuer %q is not an http(s) URL", issuer)
	}
	where := strings.TrimRight(issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, where, nil)
	if err != nil {
		return nil, fmt.Errorf("login: discovery: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("login: cannot reach the identity provider: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("login: discovery %s: %w", where, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("login: discovery %s: HTTP %d (is %s an OpenID provider's issuer URL?)", where, resp.StatusCode, issuer)
	}
	var m Metadata
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("login: discovery %s: not JSON: %w", where, err)
	}
	if strings.TrimRight(m.Issuer, "/") != strings.TrimRight(issuer, "/") {
		return nil, fmt.Errorf("login: discovery %s names issuer %q, expected %q", where, m.Issuer, issuer)
	}
	if m.TokenEndpoint == "" {
		return nil, fmt.Errorf("login: discovery %s has no token_endpoint", where)
	}
	return &m, nil
}
